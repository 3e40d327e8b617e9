"""Hostile input on the SIP port of a running `pua serve` (UDP and TCP).

Every case is answered with its 4xx (or 513) or dropped, never with a 2xx,
and afterwards the service still answers: a well-formed NOTIFY for an
unknown dialog gets 481 over UDP, ``pua.stats`` works, the process is alive
and it logged no traceback.  One service runs for the whole module; the test
is its outbound proxy and presence server, so it holds a live subscription
dialog and can send NOTIFYs inside it.
"""

from __future__ import annotations

import random
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pua.sip import Request, Response, StreamFramer, make_response, parse_message

from .running import RunningService

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
ANSWERED = 2.0  # seconds to wait for an answer
SILENT = 0.3  # seconds of silence that count as "dropped"
LOCALHOST = "127.0.0.1"


def pidf(note: str) -> bytes:
    """A valid PIDF document for alice."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
        f'<tuple id="t1"><status><basic>open</basic></status><note>{note}</note></tuple>'
        "</presence>"
    ).encode()


# ---------------------------------------------------------------------------
# Raw messages
# ---------------------------------------------------------------------------


def _token() -> str:
    return uuid.uuid4().hex[:16]


def _branch() -> str:
    return "z9hG4bK" + uuid.uuid4().hex


def stray_notify_lines(port: int, transport: str = "UDP") -> list[bytes]:
    """Header lines (no Content-Length) of a well-formed NOTIFY for a dialog
    nobody has: fresh branch, tags and Call-ID."""
    return [
        f"Via: SIP/2.0/{transport} {LOCALHOST}:{port};branch={_branch()};rport".encode(),
        b"Max-Forwards: 70",
        f"From: <{ALICE}>;tag={_token()}".encode(),
        f"To: <{BOB}>;tag={_token()}".encode(),
        f"Call-ID: {_token()}@hostile.test".encode(),
        b"CSeq: 1 NOTIFY",
        b"Event: presence",
        b"Subscription-State: active;expires=600",
    ]


START = b"NOTIFY sip:bob@127.0.0.1 SIP/2.0"


def assemble(lines: list[bytes], body: bytes = b"", *, start: bytes = START,
             length: bool = True) -> bytes:
    """A message from its start line, header lines and body; ``length`` adds
    a correct Content-Length."""
    head = [start, *lines]
    if length:
        head.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def without(lines: list[bytes], *names: str) -> list[bytes]:
    """``lines`` minus the fields called ``names``."""
    drop = {n.lower().encode() for n in names}
    return [line for line in lines if line.split(b":", 1)[0].strip().lower() not in drop]


def replaced(lines: list[bytes], name: str, value: bytes) -> list[bytes]:
    """``lines`` with the value of field ``name`` replaced."""
    key = name.lower().encode()
    return [
        name.encode() + b": " + value if line.split(b":", 1)[0].strip().lower() == key else line
        for line in lines
    ]


def field_value(data: bytes, name: str) -> bytes | None:
    """The raw value of the first ``name`` field of the message ``data``."""
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        key, colon, value = line.partition(b":")
        if colon and key.strip().lower() == name.lower().encode():
            return value.strip()
    return None


# ---------------------------------------------------------------------------
# Sockets
# ---------------------------------------------------------------------------


def udp_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((LOCALHOST, 0))
    return sock


def udp_receive(sock: socket.socket, timeout: float = ANSWERED) -> bytes | None:
    """One datagram, or None when nothing arrives within ``timeout``."""
    sock.settimeout(timeout)
    try:
        return sock.recv(70_000)
    except (TimeoutError, BlockingIOError):
        return None


def expect_response(data: bytes | None) -> Response:
    assert data is not None, "no answer"
    message = parse_message(data)
    assert isinstance(message, Response), f"expected a response, got {data[:80]!r}"
    return message


def expect_silence(sock: socket.socket) -> None:
    data = udp_receive(sock, SILENT)
    assert data is None, f"expected nothing, got {data[:120]!r}"


class TcpClient:
    """A TCP connection to the service, reading with a StreamFramer."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((LOCALHOST, port), timeout=ANSWERED)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        self.framer = StreamFramer()
        self.items: list[Any] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self, timeout: float = ANSWERED) -> Any:
        """The next message or KeepAlive; None on timeout; "closed" when the
        service closed (or reset) the connection."""
        self.sock.settimeout(timeout)
        while not self.items:
            try:
                data = self.sock.recv(65_536)
            except TimeoutError:
                return None
            except ConnectionResetError:
                return "closed"
            if not data:
                return "closed"
            self.items.extend(self.framer.feed(data))
        return self.items.pop(0)

    def close(self) -> None:
        self.sock.close()


# ---------------------------------------------------------------------------
# The service and the live dialog
# ---------------------------------------------------------------------------


@dataclass
class Dialog:
    """The subscription dialog as seen by its notifier (this test)."""

    sock: socket.socket
    subscribe: Request
    to_tag: str
    sip_port: int
    cseq: int = 0

    def notify(self, body: bytes = b"", *, content_type: str | None = "application/pidf+xml",
               event: str | None = "presence",
               state: str | None = "active;expires=600",
               contact: str | None = None, from_tag: str | None = None,
               extra: tuple[bytes, ...] = ()) -> bytes:
        """A NOTIFY in this dialog (next CSeq); None drops a header;
        ``extra`` adds header lines."""
        self.cseq += 1
        port = self.sock.getsockname()[1]
        sub = self.subscribe
        lines = [
            f"Via: SIP/2.0/UDP {LOCALHOST}:{port};branch={_branch()};rport".encode(),
            b"Max-Forwards: 70",
            f"From: {sub.header('to')};tag={from_tag or self.to_tag}".encode(),
            f"To: {sub.header('from')}".encode(),
            f"Call-ID: {sub.call_id}".encode(),
            f"CSeq: {self.cseq} NOTIFY".encode(),
            f"Contact: {contact or f'<sip:{LOCALHOST}:{port}>'}".encode(),
        ]
        if event is not None:
            lines.append(f"Event: {event}".encode())
        if state is not None:
            lines.append(f"Subscription-State: {state}".encode())
        if body and content_type is not None:
            lines.append(f"Content-Type: {content_type}".encode())
        lines.extend(extra)
        target = str(sub.contacts[0].uri)
        return assemble(lines, body, start=f"NOTIFY {target} SIP/2.0".encode())

    def send(self, data: bytes) -> Response:
        """Send a NOTIFY of this dialog; its answer."""
        self.sock.sendto(data, (LOCALHOST, self.sip_port))
        return self.answer_to(data)

    def answer_to(self, data: bytes) -> Response:
        """The answer to the NOTIFY ``data`` (matched by CSeq); requests
        from the service (SUBSCRIBE retransmissions) are skipped."""
        cseq = field_value(data, "CSeq")
        while True:
            reply = udp_receive(self.sock)
            assert reply is not None, f"no answer to NOTIFY CSeq {cseq!r}"
            if reply.startswith(b"SIP/2.0 ") and field_value(reply, "CSeq") == cseq:
                return expect_response(reply)


@dataclass
class Env:
    """The module's service, its live dialog, and what it logged so far."""

    svc: RunningService
    dialog: Dialog
    log: list[str] = field(default_factory=list, repr=False)

    @property
    def sip_port(self) -> int:
        return self.svc.sip_port

    def subscription(self) -> dict[str, Any]:
        records = self.svc.rpc("pua.list", ["subscription"])["result"]
        assert len(records) == 1, records
        return records[0]

    def new_log(self) -> str:
        """What the service wrote on stderr since the last call."""
        text = self.svc.new_stderr()
        self.log.append(text)
        return text

    def ping(self) -> None:
        """A well-formed NOTIFY for no dialog gets 481 over UDP."""
        with udp_socket() as sock:
            data = assemble(stray_notify_lines(sock.getsockname()[1]))
            sock.sendto(data, (LOCALHOST, self.sip_port))
            response = expect_response(udp_receive(sock))
            assert response.status == 481
            assert field_value(bytes(response), "Call-ID") == field_value(data, "Call-ID")

    def assert_alive(self) -> None:
        """The service still answers: a NOTIFY for no dialog gets 481 over
        UDP, pua.stats answers, the process runs and logged no traceback."""
        self.ping()
        stats = self.svc.rpc("pua.stats")
        assert "result" in stats, stats
        assert self.svc.process.poll() is None
        text = self.new_log()
        assert "Traceback" not in text and "Exception in callback" not in text, text


def _establish(svc: RunningService, sock: socket.socket) -> Dialog:
    """Subscribe through the API, answer the SUBSCRIBE 200, return the dialog."""
    # Not waiting: this test answers the SUBSCRIBE itself, after the call.
    answer = svc.rpc("pua.subscribe", [ALICE, BOB, "presence", 600, ".", False])
    assert "result" in answer, answer
    data = udp_receive(sock)
    assert data is not None, "no SUBSCRIBE reached the outbound proxy"
    subscribe = parse_message(data)
    assert isinstance(subscribe, Request) and subscribe.method == "SUBSCRIBE", data[:200]
    to_tag = _token()
    ok = make_response(subscribe, 200, to_tag=to_tag)
    ok.headers.add("Contact", f"<sip:{LOCALHOST}:{sock.getsockname()[1]}>")
    ok.headers.add("Expires", "600")
    sock.sendto(bytes(ok), (LOCALHOST, svc.sip_port))
    dialog = Dialog(sock, subscribe, to_tag, svc.sip_port)
    response = dialog.send(dialog.notify(pidf("first")))
    assert response.status == 200, bytes(response)
    return dialog


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """One `pua serve` whose outbound proxy is this test, with one live
    subscription (alice watched by bob)."""
    proxy = udp_socket()
    data_dir: Path = tmp_path_factory.mktemp("hostile")
    svc = RunningService(
        "--outbound-proxy", f"sip:{LOCALHOST}:{proxy.getsockname()[1]}", data_dir=data_dir
    )
    try:
        yield Env(svc, _establish(svc, proxy))
    finally:
        svc.stop()
        proxy.close()


# ---------------------------------------------------------------------------
# UDP: malformed datagrams
# ---------------------------------------------------------------------------

Build = Callable[[list[bytes]], bytes]
NO_ANSWER: set[int | None] = {None}


def _garbage(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _many_headers(lines: list[bytes]) -> bytes:
    return assemble(lines + [b"X: y"] * 4000)


def _datagram_of(size: int) -> Build:
    """A NOTIFY for no dialog padded with a body to exactly ``size`` bytes."""

    def build(lines: list[bytes]) -> bytes:
        lines = [*lines, b"Content-Type: text/plain"]
        empty = len(assemble(lines))
        # The body's length adds digits to Content-Length ("0" -> "6xxxx").
        body = b"z" * (size - empty - len(str(size)) + 1)
        data = assemble(lines, body)
        assert len(data) == size
        return data

    return build


UDP_CASES = [
    # (builder, acceptable answers: status codes, None for "dropped")
    pytest.param(lambda _: _garbage(1_400, 1), NO_ANSWER, id="random-garbage"),
    pytest.param(lambda _: _garbage(65_000, 2), NO_ANSWER, id="random-garbage-65000"),
    pytest.param(lambda _: b"", NO_ANSWER, id="empty-datagram"),
    pytest.param(lambda _: b"\r\n", NO_ANSWER, id="lone-crlf"),
    pytest.param(lambda _: b"\r\n\r\n", NO_ANSWER, id="crlfcrlf"),
    pytest.param(lambda _: b"\x00" * 512, NO_ANSWER, id="nul-bytes"),
    pytest.param(lambda lines: assemble(lines)[:-4], {400}, id="no-blank-line"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: 500"], b"<x/>", length=False),
                 {400}, id="content-length-larger-than-body"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: -4"], b"<x/>", length=False),
                 {400}, id="content-length-negative"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: four"], b"<x/>", length=False),
                 {400}, id="content-length-non-numeric"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: 0x4"], b"<x/>", length=False),
                 {400}, id="content-length-hex"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: " + b"9" * 5000], b"<x/>",
                                        length=False), {400, 513}, id="content-length-5000-digits"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: 4", b"Content-Length: 4"],
                                        b"<x/>", length=False), {400}, id="content-length-twice"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: 4", b"l: 2"], b"<x/>",
                                        length=False), {400}, id="content-length-and-compact-l"),
    pytest.param(lambda lines: assemble(without(lines, "Call-ID")), NO_ANSWER, id="no-call-id"),
    pytest.param(lambda lines: assemble(without(lines, "CSeq")), NO_ANSWER, id="no-cseq"),
    pytest.param(lambda lines: assemble(without(lines, "Via")), NO_ANSWER, id="no-via"),
    pytest.param(lambda lines: assemble(without(lines, "From")), NO_ANSWER, id="no-from"),
    pytest.param(lambda lines: assemble(without(lines, "To")), NO_ANSWER, id="no-to"),
    pytest.param(lambda lines: assemble(without(lines, "From", "To")), NO_ANSWER,
                 id="no-from-no-to"),
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"1 SUBSCRIBE")), {400},
                 id="cseq-method-mismatch"),
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"one NOTIFY")), {400},
                 id="cseq-not-a-number"),
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"99999999999999 NOTIFY")), {400},
                 id="cseq-out-of-range"),
    pytest.param(lambda lines: assemble([*lines, b"Call-ID: second@hostile.test"]), {400},
                 id="call-id-twice"),
    pytest.param(lambda lines: assemble(replaced(lines, "Via", b"garbage")), {400},
                 id="via-garbage"),
    pytest.param(lambda lines: assemble(replaced(lines, "From", b"<<<sip:")), {400},
                 id="from-garbage"),
    pytest.param(lambda lines: assemble([*lines, b"Subject: " + b"a" * 60_000]), {513},
                 id="header-line-60k"),
    pytest.param(lambda lines: assemble([b"Subject: " + b"a" * 60_000, *lines]), {513, None},
                 id="header-line-60k-first"),
    pytest.param(lambda lines: assemble([*lines, b"Subject: " + b"a" * 9_000]), {513},
                 id="header-line-9k"),
    pytest.param(_many_headers, {513}, id="4000-headers"),
    # 65,507 bytes is the largest UDP payload over IPv4.
    pytest.param(_datagram_of(65_000), {481}, id="datagram-65000-bytes"),
    pytest.param(_datagram_of(65_507), {481}, id="datagram-65507-bytes"),
    pytest.param(lambda lines: assemble([*lines, b"Subject: caf\xe9 \xff\xfe\x80"]), {481},
                 id="non-utf8-in-a-header-value"),
    pytest.param(lambda lines: assemble(replaced(lines, "Call-ID", b"\xff\xfe\xc0@hostile")),
                 {481}, id="non-utf8-in-call-id"),
    pytest.param(lambda lines: assemble(replaced(lines, "From", b'"\xff\xfe" <sip:alice@example.com>'
                                                              b";tag=f1")), {400, 481},
                 id="non-utf8-in-from-display-name"),
    pytest.param(lambda lines: assemble([*lines, b"X-\xff\xfe: y"]), {400},
                 id="non-utf8-in-a-header-name"),
    pytest.param(lambda lines: assemble(lines, start=b"NOT\xffIFY sip:bob@127.0.0.1 SIP/2.0"),
                 {400}, id="non-utf8-in-the-method"),
    pytest.param(lambda lines: assemble(lines, start=b"NOTIFY sip:b\xff\xfeb@127.0.0.1 SIP/2.0"),
                 {400, 416}, id="non-utf8-in-the-request-uri"),
    pytest.param(lambda lines: assemble(lines, start=b"NOTIFY  sip:bob@127.0.0.1 SIP/2.0"),
                 {400}, id="request-line-double-space"),
    pytest.param(lambda lines: assemble(lines, start=b"NOTIFY sip:bob@127.0.0.1"),
                 {400, None}, id="request-line-no-version"),
    pytest.param(lambda lines: assemble([*lines, b"no colon here"]), {400},
                 id="header-without-colon"),
    pytest.param(lambda lines: assemble([*lines, b"Max-Forwards: 70"]), {400, 481},
                 id="max-forwards-twice"),
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"1 OPTIONS"),
                                        start=b"OPTIONS sip:bob@127.0.0.1 SIP/2.0"), {405},
                 id="options"),
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"1 FOO"),
                                        start=b"FOO sip:bob@127.0.0.1 SIP/2.0"), {405, 501},
                 id="unknown-method"),
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"1 ACK"),
                                        start=b"ACK sip:bob@127.0.0.1 SIP/2.0"), NO_ANSWER,
                 id="stray-ack"),
]


@pytest.mark.parametrize(("build", "answers"), UDP_CASES)
def test_malformed_datagram(env: Env, build: Build, answers: set[int | None]) -> None:
    """A malformed datagram gets its 4xx/513 or nothing, never a 2xx; the service lives on."""
    with udp_socket() as sock:
        data = build(stray_notify_lines(sock.getsockname()[1]))
        sock.sendto(data, (LOCALHOST, env.sip_port))
        if answers == NO_ANSWER:
            expect_silence(sock)
        else:
            wait = ANSWERED if None not in answers else SILENT
            reply = udp_receive(sock, wait)
            if reply is None:
                assert None in answers, "no answer"
            else:
                response = expect_response(reply)
                assert response.status in answers, bytes(response)[:300]
                assert udp_receive(sock, 0.0) is None, "a second answer"
    env.assert_alive()


# ---------------------------------------------------------------------------
# UDP: header injection (a bare CR or LF inside a value)
# ---------------------------------------------------------------------------

INJECTIONS = [
    pytest.param("Subject", b"\r", {400}, id="bare-cr-in-subject"),
    pytest.param("Subject", b"\n", {400}, id="bare-lf-in-subject"),
    pytest.param("From", b"\r", {400, None}, id="bare-cr-in-from"),
    pytest.param("From", b"\n", {400, None}, id="bare-lf-in-from"),
    pytest.param("Call-ID", b"\r", {400, None}, id="bare-cr-in-call-id"),
    pytest.param("Call-ID", b"\n", {400, None}, id="bare-lf-in-call-id"),
]


@pytest.mark.parametrize(("name", "breaker", "answers"), INJECTIONS)
def test_header_injection(env: Env, name: str, breaker: bytes, answers: set[int | None]) -> None:
    """A bare CR/LF inside a header value gets 400 or nothing; the injected header is never echoed."""
    with udp_socket() as sock:
        lines = stray_notify_lines(sock.getsockname()[1])
        if name == "Subject":
            lines.append(b"Subject: hello")
        lines = [
            line + breaker + b"X-Injected: yes" if line.split(b":")[0] == name.encode() else line
            for line in lines
        ]
        sock.sendto(assemble(lines), (LOCALHOST, env.sip_port))
        reply = udp_receive(sock, ANSWERED if None not in answers else SILENT)
        if reply is None:
            assert None in answers, "no answer"
        else:
            response = expect_response(reply)
            assert response.status in answers
            head = reply.split(b"\r\n\r\n")[0].lower()
            assert b"\nx-injected" not in head and b"\rx-injected" not in head, reply[:400]
            assert response.header("X-Injected") is None
    env.assert_alive()


# ---------------------------------------------------------------------------
# UDP: stray responses
# ---------------------------------------------------------------------------


def _stray_response(status: bytes, lines: list[bytes]) -> bytes:
    return assemble(lines, start=b"SIP/2.0 " + status)


STRAY_RESPONSES = [
    pytest.param(lambda lines: _stray_response(b"200 OK", lines), id="200-ok"),
    pytest.param(lambda lines: _stray_response(b"200 OK", replaced(lines, "CSeq", b"1 SUBSCRIBE")),
                 id="200-ok-to-a-subscribe"),
    pytest.param(lambda lines: _stray_response(b"202 Accepted", replaced(lines, "CSeq",
                                                                         b"1 PUBLISH")),
                 id="202-to-a-publish"),
    pytest.param(lambda lines: _stray_response(b"100 Trying", lines), id="100-trying"),
    pytest.param(lambda lines: _stray_response(b"481 Nope", lines), id="481"),
    pytest.param(lambda lines: _stray_response(b"200 OK", without(lines, "Via")), id="200-no-via"),
    pytest.param(lambda lines: _stray_response(b"200 OK", without(lines, "Call-ID", "CSeq")),
                 id="200-no-call-id-no-cseq"),
    pytest.param(lambda lines: _stray_response(b"999 Whatever", lines), id="status-999"),
    pytest.param(lambda lines: _stray_response(b"2000 OK", lines), id="status-2000"),
    pytest.param(lambda lines: assemble(lines, start=b"SIP/3.0 200 OK"), id="sip-3.0"),
]


@pytest.mark.parametrize("build", STRAY_RESPONSES)
def test_stray_response_is_dropped(env: Env, build: Build) -> None:
    """A response for no transaction of ours is dropped: nothing answered, nothing sent anywhere."""
    before = env.subscription()
    with udp_socket() as sock:
        sock.sendto(build(stray_notify_lines(sock.getsockname()[1])), (LOCALHOST, env.sip_port))
        expect_silence(sock)
    assert udp_receive(env.dialog.sock, 0.0) is None  # nothing went to the proxy either
    assert env.subscription() == before
    env.assert_alive()


# ---------------------------------------------------------------------------
# NOTIFY semantics
# ---------------------------------------------------------------------------


def test_notify_for_no_dialog_gets_481(env: Env) -> None:
    """A well-formed NOTIFY for a dialog nobody has gets 481, over UDP."""
    with udp_socket() as sock:
        sock.sendto(assemble(stray_notify_lines(sock.getsockname()[1])), (LOCALHOST, env.sip_port))
        assert expect_response(udp_receive(sock)).status == 481
    env.assert_alive()


def test_good_notify_in_the_live_dialog_gets_200(env: Env) -> None:
    """A NOTIFY with a valid PIDF in the live dialog gets 200 (the baseline for the refusals)."""
    response = env.dialog.send(env.dialog.notify(pidf("baseline")))
    assert response.status == 200
    record = env.subscription()
    assert record["state"] == "active" and record["subscription_state"] == "active"
    env.assert_alive()


BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE presence [\n <!ENTITY lol "lol">\n'
    + "".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'
        for i in range(1, 10)
    )
    + "]>\n"
    f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
    '<tuple id="t1"><status><basic>open</basic></status><note>&lol9;</note></tuple></presence>'
)
XXE_FILE = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE presence [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
    '<tuple id="t1"><status><basic>open</basic></status><note>&x;</note></tuple></presence>'
)
# {port} is a TCP listener of the test: a fetch would show as a connection.
XXE_NETWORK = XXE_FILE.replace("file:///etc/passwd", "http://127.0.0.1:{port}/x")
XXE_PARAMETER = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE presence [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>\n'
    f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)
XXE_EXTERNAL_DTD = (
    '<?xml version="1.0"?>\n'
    '<!DOCTYPE presence SYSTEM "file:///etc/passwd">\n'
    f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


def _utf16(text: str) -> bytes:
    # The BOM and encoding declaration make it a valid UTF-16 document that a
    # byte scan for "<!DOCTYPE" cannot see.
    return text.replace('<?xml version="1.0"?>', '<?xml version="1.0" encoding="UTF-16"?>').encode(
        "utf-16"
    )


def _deep(levels: int) -> bytes:
    return (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
        + "<a>" * levels + "</a>" * levels + "</presence>"
    ).encode()


HOSTILE_BODIES = [
    pytest.param(BILLION_LAUGHS.encode(), id="billion-laughs"),
    pytest.param(XXE_FILE.encode(), id="xxe-file-etc-passwd"),
    pytest.param(XXE_NETWORK.encode(), id="xxe-http"),
    pytest.param(XXE_EXTERNAL_DTD.replace("file:///etc/passwd", "http://127.0.0.1:{port}/d")
                 .encode(), id="external-dtd-http"),
    pytest.param(XXE_PARAMETER.encode(), id="xxe-parameter-entity"),
    pytest.param(XXE_EXTERNAL_DTD.encode(), id="external-dtd"),
    pytest.param(BILLION_LAUGHS.replace("DOCTYPE", "doctype").encode(), id="lowercase-doctype"),
    pytest.param(_utf16(BILLION_LAUGHS), id="billion-laughs-utf16"),
    pytest.param(_utf16(XXE_FILE), id="xxe-utf16"),
    pytest.param(_deep(5_000), id="5000-levels-deep"),
    pytest.param(b"<presence", id="malformed-xml"),
    pytest.param(b"<html><body>hi</body></html>", id="wrong-root"),
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
def test_hostile_pidf_is_refused_and_the_dialog_survives(env: Env, body: bytes) -> None:
    """An XML bomb, XXE or bad PIDF in the live dialog gets 400, changes nothing, fetches nothing."""
    dialog = env.dialog
    before = env.subscription()
    with socket.create_server((LOCALHOST, 0)) as listener:
        body = body.replace(b"{port}", str(listener.getsockname()[1]).encode())
        # Were it accepted, this NOTIFY would move the remote target and the expiry.
        hostile = dialog.notify(body, state="active;expires=60", contact="<sip:evil@192.0.2.66:9>")
        assert len(hostile) < 65_000
        response = dialog.send(hostile)
        assert response.status == 400, bytes(response)[:300]
        # The body was parsed before the answer: a fetch would already be queued.
        listener.setblocking(False)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert env.subscription() == before
    assert dialog.send(dialog.notify(pidf("after"))).status == 200
    after = env.subscription()
    assert after["state"] == "active" and after["remote_target"] != "sip:evil@192.0.2.66:9"
    env.assert_alive()


DIALOG_REFUSALS = [
    pytest.param({"event": "dialog"}, {489}, id="wrong-event"),
    pytest.param({"event": "presence.winfo"}, {489}, id="winfo-event"),
    pytest.param({"event": None}, {489}, id="no-event"),
    pytest.param({"state": None}, {400}, id="no-subscription-state"),
    pytest.param({"state": "active;expires=soon"}, {400}, id="subscription-state-garbage"),
    pytest.param({"state": ";;;"}, {400}, id="subscription-state-empty"),
    pytest.param({"event": "pres ence"}, {400, 489}, id="event-garbage"),
    pytest.param({"from_tag": "not-the-notifier"}, {481}, id="wrong-remote-tag"),
]


@pytest.mark.parametrize(("changes", "answers"), DIALOG_REFUSALS)
def test_bad_notify_in_the_live_dialog(env: Env, changes: dict[str, Any], answers: set[int]) -> None:
    """A live-dialog NOTIFY with a bad Event (489), Subscription-State (400) or tag (481) changes nothing."""
    dialog = env.dialog
    before = env.subscription()
    notify = dialog.notify(pidf("refused"), **{"state": "terminated;reason=noresource",
                                               "contact": "<sip:evil@192.0.2.66:9>", **changes})
    response = dialog.send(notify)
    assert response.status in answers, bytes(response)[:300]
    assert env.subscription() == before
    assert dialog.send(dialog.notify(pidf("after"))).status == 200
    env.assert_alive()


# ---------------------------------------------------------------------------
# TCP
# ---------------------------------------------------------------------------


def _stray_tcp(port: int) -> bytes:
    return assemble(stray_notify_lines(port, "TCP"))


TCP_CLOSING = [
    pytest.param(lambda lines: _garbage(1_400, 3) + b"\r\n\r\n", id="random-garbage"),
    pytest.param(lambda lines: b"\n", id="lone-lf"),
    pytest.param(lambda lines: b"\r\r\r\r", id="bare-crs"),
    pytest.param(lambda lines: b"A" * 40_000, id="40k-without-blank-line"),
    pytest.param(lambda lines: assemble(lines, length=False), id="no-content-length"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: -1"], length=False),
                 id="content-length-negative"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: x"], length=False),
                 id="content-length-non-numeric"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: " + b"9" * 5000], length=False),
                 id="content-length-5000-digits"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: 2000000"], length=False),
                 id="content-length-2MB"),
    pytest.param(lambda lines: assemble([*lines, b"Content-Length: 0", b"Content-Length: 0"],
                                        length=False), id="content-length-twice"),
    pytest.param(lambda lines: assemble([*lines, b"no colon"]), id="header-without-colon"),
    pytest.param(lambda lines: assemble([*lines, b"Subject: a\rX-Injected: yes"]),
                 id="bare-cr-in-a-value"),
    pytest.param(lambda lines: assemble(lines + [b"X: y"] * 4000), id="4000-headers"),
    pytest.param(lambda lines: assemble(lines, start=b"NOT\xffIFY sip:bob@127.0.0.1 SIP/2.0"),
                 id="non-utf8-in-the-method"),
]


@pytest.mark.parametrize("build", TCP_CLOSING)
def test_tcp_garbage_closes_the_connection(env: Env, build: Build) -> None:
    """TCP bytes that cannot be framed or parsed close the connection unanswered; a new one is served."""
    client = TcpClient(env.sip_port)
    try:
        client.send(build(stray_notify_lines(client.port, "TCP")))
        assert client.receive() == "closed"
    finally:
        client.close()
    fresh = TcpClient(env.sip_port)
    try:
        fresh.send(_stray_tcp(fresh.port))
        answer = fresh.receive()
        assert isinstance(answer, Response) and answer.status == 481
    finally:
        fresh.close()
    env.assert_alive()


TCP_ANSWERED = [
    pytest.param(lambda lines: assemble(replaced(lines, "CSeq", b"1 SUBSCRIBE")), {400},
                 id="cseq-method-mismatch"),
    pytest.param(lambda lines: assemble(without(lines, "Call-ID")), NO_ANSWER, id="no-call-id"),
    pytest.param(lambda lines: assemble(without(lines, "Via")), NO_ANSWER, id="no-via"),
    pytest.param(lambda lines: assemble(lines, start=b"SIP/2.0 200 OK"), NO_ANSWER,
                 id="stray-200-ok"),
    pytest.param(lambda lines: assemble([*lines, b"Subject: \xff\xfe"]), {481},
                 id="non-utf8-in-a-header-value"),
    pytest.param(assemble, {481}, id="notify-for-no-dialog"),
]


@pytest.mark.parametrize(("build", "answers"), TCP_ANSWERED)
def test_tcp_well_framed_but_wrong(env: Env, build: Build, answers: set[int | None]) -> None:
    """A well-framed but bad message on TCP gets its 4xx or nothing; the connection keeps serving."""
    client = TcpClient(env.sip_port)
    try:
        client.send(build(stray_notify_lines(client.port, "TCP")))
        if answers == NO_ANSWER:
            assert client.receive(SILENT) is None
        else:
            answer = client.receive()
            assert isinstance(answer, Response) and answer.status in answers, answer
        client.send(_stray_tcp(client.port))
        answer = client.receive()
        assert isinstance(answer, Response) and answer.status == 481
    finally:
        client.close()
    env.assert_alive()


def test_tcp_one_byte_at_a_time(env: Env) -> None:
    """A NOTIFY written to TCP one byte per segment is reassembled and answered (481)."""
    client = TcpClient(env.sip_port)
    try:
        for byte in _stray_tcp(client.port):
            client.send(bytes([byte]))
        answer = client.receive()
        assert isinstance(answer, Response) and answer.status == 481
    finally:
        client.close()
    env.assert_alive()


def test_tcp_keepalive_gets_crlf(env: Env) -> None:
    """A CRLFCRLF keep-alive on TCP gets one CRLF, and the connection still carries requests."""
    client = TcpClient(env.sip_port)
    try:
        client.send(b"\r\n\r\n")
        client.sock.settimeout(ANSWERED)
        assert client.sock.recv(16) == b"\r\n"
        client.send(b"\r\n\r\n" + _stray_tcp(client.port))
        client.sock.settimeout(ANSWERED)
        assert client.sock.recv(2) == b"\r\n"
        answer = client.receive()
        assert isinstance(answer, Response) and answer.status == 481
    finally:
        client.close()
    env.assert_alive()


def test_tcp_pipelined_messages(env: Env) -> None:
    """Two NOTIFYs in one TCP write are both answered (481 each)."""
    client = TcpClient(env.sip_port)
    try:
        client.send(_stray_tcp(client.port) + _stray_tcp(client.port))
        first, second = client.receive(), client.receive()
        assert isinstance(first, Response) and first.status == 481
        assert isinstance(second, Response) and second.status == 481
        assert first.call_id != second.call_id
    finally:
        client.close()
    env.assert_alive()


def test_no_traceback_in_the_log(env: Env) -> None:
    """Over the whole module (all stderr read so far, joined), the service logged no traceback."""
    env.assert_alive()
    everything = "".join(env.log)
    assert "Traceback" not in everything


def test_early_notify_with_a_malformed_record_route(service: Callable[..., RunningService]) -> None:
    """An early NOTIFY (before the 2xx) with a bad Record-Route gets 400, and the dialog survives."""
    with udp_socket() as proxy:
        svc = service("--outbound-proxy", f"sip:{LOCALHOST}:{proxy.getsockname()[1]}")
        assert "result" in svc.rpc("pua.subscribe", [ALICE, BOB, "presence", 600, ".", False])
        data = udp_receive(proxy)
        assert data is not None
        subscribe = parse_message(data)
        assert isinstance(subscribe, Request) and subscribe.method == "SUBSCRIBE"
        # The SUBSCRIBE stays unanswered: the NOTIFY creates the dialog.
        dialog = Dialog(proxy, subscribe, _token(), svc.sip_port)
        env = Env(svc, dialog)
        hostile = dialog.notify(pidf("early"), extra=(b"Record-Route: <<<garbage",))
        proxy.sendto(hostile, (LOCALHOST, svc.sip_port))
        env.ping()  # any later datagram flushes what the service queued
        answer = dialog.answer_to(hostile)
        assert answer.status == 400, bytes(answer)[:200]
        assert dialog.send(dialog.notify(pidf("early, well-formed"))).status == 200
        env.assert_alive()
