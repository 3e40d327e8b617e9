"""Property tests of the parser: serialize/parse round trips, and the fuzz rule that
bad bytes only ever raise RemoteProtocolError."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pua.errors import MessageTooLarge, RemoteProtocolError
from pua.sip.headers import header_key
from pua.sip.message import Message, Request, Response
from pua.sip.parser import KeepAlive, StreamFramer, parse_message
from pua.sip.uri import SipUri, parse_uri

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------

TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*'()"

tokens = st.text(alphabet=TOKEN_ALPHABET, min_size=1, max_size=12)
escapes = st.builds(lambda b: f"%{b:02X}", st.integers(0, 255))


def _escaped_text(extra: str, min_size: int) -> st.SearchStrategy[str]:
    chars = st.one_of(st.sampled_from(UNRESERVED + extra), escapes)
    return st.lists(chars, min_size=min_size, max_size=10).map("".join)


users = _escaped_text("&=+$,;?/", 1)
passwords = _escaped_text("&=+$,", 0)
paramchars = _escaped_text("[]/:&+$", 1)
hnv_names = _escaped_text("[]/?:+$", 1)
hnv_values = _escaped_text("[]/?:+$", 0)

labels = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hostnames = st.lists(labels, min_size=1, max_size=4).map(".".join)
hosts = st.one_of(
    hostnames,
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
)


@st.composite
def sip_uri_texts(draw: st.DrawFn) -> str:
    """A well-formed sip:/sips: URI, as text."""
    scheme = draw(st.sampled_from(["sip", "sips"]))
    userinfo = ""
    if draw(st.booleans()):
        userinfo = draw(users)
        if draw(st.booleans()):
            userinfo += ":" + draw(passwords)
        userinfo += "@"
    host = draw(hosts)
    port = draw(st.none() | st.integers(0, 65535))
    hostport = host if port is None else f"{host}:{port}"
    params = draw(st.lists(st.tuples(paramchars, st.none() | paramchars), max_size=3))
    param_text = "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)
    headers = draw(st.lists(st.tuples(hnv_names, hnv_values), max_size=2))
    header_text = ("?" + "&".join(f"{k}={v}" for k, v in headers)) if headers else ""
    return f"{scheme}:{userinfo}{hostport}{param_text}{header_text}"


header_names = tokens.filter(lambda n: header_key(n) != "content-length")
# Printable, no control characters (so no CR, LF, NUL), no surrogates, and no
# leading or trailing whitespace (the parser strips values).
header_values = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30
).filter(lambda v: v == v.strip())
header_lists = st.lists(st.tuples(header_names, header_values), max_size=12)
bodies = st.binary(max_size=300)
reasons = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=30)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """A valid Request with a Content-Length matching its body."""
    body = draw(bodies)
    headers = [*draw(header_lists), ("Content-Length", str(len(body)))]
    return Request(draw(tokens), draw(sip_uri_texts()), headers, body)


@st.composite
def responses(draw: st.DrawFn) -> Response:
    """A valid Response with a Content-Length matching its body."""
    body = draw(bodies)
    headers = [*draw(header_lists), ("Content-Length", str(len(body)))]
    return Response(draw(st.integers(100, 699)), draw(reasons), headers, body)


messages = st.one_of(requests(), responses())

# ---------------------------------------------------------------------------
# Seeds for mutation: valid messages a presence agent meets
# ---------------------------------------------------------------------------

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:presentity@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


def _with_length(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body


PUBLISH = _with_length(
    b"PUBLISH sip:presentity@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP pua.example.net:5060;branch=z9hG4bK.77ef4c2312983.pua;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"To: <sip:presentity@example.com>\r\n"
    b'From: "PUA" <sip:presentity@example.com>;tag=1234wxyz\r\n'
    b"Call-ID: 81818181@pua.example.net\r\n"
    b"CSeq: 1 PUBLISH\r\n"
    b"Event: presence\r\n"
    b"Expires: 3600\r\n"
    b"SIP-If-Match: dx200xyz\r\n"
    b"Contact: <sip:pua@pua.example.net;transport=tcp>;expires=3600\r\n"
    b"Route: <sip:proxy.example.com;lr>, <sip:[2001:db8::1]:5070;lr>\r\n"
    b"Content-Type: application/pidf+xml\r\n",
    PIDF,
)

NOTIFY = _with_length(
    b"NOTIFY sip:watcher@192.0.2.5:5060;transport=tcp SIP/2.0\r\n"
    b"v: SIP/2.0/TCP pres.example.com;branch=z9hG4bKa1, SIP/2.0/UDP [2001:db8::9:1]:5070"
    b";branch=z9hG4bKa2;received=192.0.2.9\r\n"
    b"Max-Forwards: 69\r\n"
    b"f: <sip:presentity@example.com>;tag=ffff\r\n"
    b"t: <sip:watcher@example.com>;tag=wwww\r\n"
    b"i: 7d1b@pres.example.com\r\n"
    b"CSeq: 12 NOTIFY\r\n"
    b"o: presence;id=42\r\n"
    b"Subscription-State: terminated;reason=probation;retry-after=30\r\n"
    b"Record-Route: <sip:rr.example.com;lr>\r\n"
    b"c: application/pidf+xml\r\n",
    PIDF,
)

RESPONSE_401 = _with_length(
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP pua.example.net:5060;branch=z9hG4bK.77ef;received=192.0.2.1;rport=5061\r\n"
    b"To: <sip:presentity@example.com>;tag=srv1\r\n"
    b"From: <sip:presentity@example.com>;tag=1234wxyz\r\n"
    b"Call-ID: 81818181@pua.example.net\r\n"
    b"CSeq: 1 PUBLISH\r\n"
    b'WWW-Authenticate: Digest realm="example.com", nonce="a1b2c3", qop="auth", '
    b'algorithm=MD5, opaque=""\r\n'
    b"Retry-After: 120 (I'm in a meeting);duration=60\r\n"
    b"SIP-ETag: dx200xyz\r\n"
    b"Min-Expires: 60\r\n"
    b"Contact: *\r\n",
    b"",
)

SEEDS = [PUBLISH, NOTIFY, RESPONSE_401]


def _parse_and_validate(data: bytes, *, stream: bool = False) -> Request | Response | None:
    """Parse and validate; None on RemoteProtocolError, any other exception escapes."""
    try:
        msg = parse_message(data, stream=stream)
        msg.validate()
    except RemoteProtocolError as exc:
        assert 400 <= exc.status <= 699
        return None
    return msg


def _feed_in_chunks(
    data: bytes, cuts: list[int], *, validate: bool = True
) -> list[Message | KeepAlive] | None:
    """Feed ``data`` cut at ``cuts`` (and validate the messages when asked);
    None once RemoteProtocolError is raised."""
    framer = StreamFramer()
    out: list[Message | KeepAlive] = []
    bounds = [0, *sorted(c % (len(data) + 1) for c in cuts), len(data)]
    try:
        for start, end in itertools.pairwise(bounds):
            out.extend(framer.feed(data[start:end]))
        for item in out:
            if validate and isinstance(item, Message):
                item.validate()
    except RemoteProtocolError:
        return None
    for item in out:
        assert isinstance(item, (Request, Response, KeepAlive))
    return out


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes] = SEEDS) -> bytes:
    """A seed message after 1-6 random byte flips, insertions, deletions,
    duplications and truncations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        pos = draw(st.integers(0, len(data)))
        if op == "flip" and pos < len(data):
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(
                st.binary(min_size=1, max_size=8)
                | st.sampled_from([b"\r\n", b"\r\n\r\n", b"\n", b":", b";", b",", b"<", b'"', b" "])
            )
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "duplicate":
            piece = bytes(data[pos : pos + draw(st.integers(1, 80))])
            where = draw(st.integers(0, len(data)))
            data[where:where] = piece
        elif op == "truncate":
            del data[pos:]
    return bytes(data)


FRAGMENTS = [
    b"PUBLISH sip:a@b SIP/2.0\r\n",
    b"SIP/2.0 200 OK\r\n",
    b"Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\n",
    b"CSeq: 1 PUBLISH\r\n",
    b"From: <sip:a@b>;tag=1\r\n",
    b"To: sip:a@b\r\n",
    b"Call-ID: x\r\n",
    b"Content-Length: 4\r\n",
    b"l: 0\r\n",
    b"Event: presence\r\n",
    b"Contact: *\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"\n",
    b" ",
    b":",
    b'"',
    b"<",
    b">",
    b";",
    b",",
]
sip_ish = st.lists(st.sampled_from(FRAGMENTS) | st.binary(max_size=12), max_size=30).map(b"".join)

# ---------------------------------------------------------------------------
# (a) Round trips
# ---------------------------------------------------------------------------


@FAST
@given(sip_uri_texts())
def test_generated_uri_round_trip(text: str) -> None:
    """A generated well-formed SIP URI parses, serializes back to itself, equals itself."""
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert str(uri) == text
    again = parse_uri(str(uri))
    assert again == uri
    assert hash(again) == hash(uri)


@FAST
@given(messages)
def test_message_round_trip(msg: Request | Response) -> None:
    """bytes(msg) parses back to an equal message, which serializes to the same bytes."""
    data = bytes(msg)
    parsed = parse_message(data)
    assert type(parsed) is type(msg)
    assert parsed == msg
    assert bytes(parsed) == data
    assert parse_message(data, stream=True) == msg


@FAST
@given(messages)
def test_round_trip_without_content_length(msg: Request | Response) -> None:
    """Without Content-Length, serialization adds the right one and is stable after parsing."""
    msg.headers.remove("content-length")
    data = bytes(msg)
    parsed = parse_message(data)
    assert parsed.body == msg.body
    assert parsed.start_line() == msg.start_line()
    assert parsed.headers.get("content-length") == str(len(msg.body))
    assert bytes(parse_message(bytes(parsed))) == data


@FAST
@given(st.lists(messages | st.just(None), min_size=1, max_size=4), st.lists(st.integers(0, 10_000)))
def test_stream_framer_round_trip_in_chunks(
    items: list[Request | Response | None], cuts: list[int]
) -> None:
    """Messages and CRLFCRLF pings on a stream, cut anywhere, come out whole and in order."""
    stream = b"".join(b"\r\n\r\n" if m is None else bytes(m) for m in items)
    out = _feed_in_chunks(stream, cuts, validate=False)
    assert out is not None
    expected = [KeepAlive() if m is None else m for m in items]
    assert out == expected


# ---------------------------------------------------------------------------
# (b) The fuzz rule: RemoteProtocolError or success, never anything else
# ---------------------------------------------------------------------------


def test_seeds_are_valid() -> None:
    """The mutation seeds themselves parse and validate, so mutations start from good input."""
    for seed in SEEDS:
        msg = _parse_and_validate(seed)
        assert msg is not None
        assert bytes(msg) == seed
        out = _feed_in_chunks(seed, [])
        assert out is not None and len(out) == 1


@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes parse (datagram and stream mode) or raise RemoteProtocolError."""
    _parse_and_validate(data)
    _parse_and_validate(data, stream=True)


@FUZZ
@given(sip_ish)
def test_fuzz_sip_like_bytes(data: bytes) -> None:
    """Concatenated SIP fragments and junk parse or raise RemoteProtocolError."""
    _parse_and_validate(data)
    _parse_and_validate(data, stream=True)


@FUZZ
@given(mutated())
def test_fuzz_mutated_messages(data: bytes) -> None:
    """Mutated valid PUBLISH/NOTIFY/401 messages parse or raise RemoteProtocolError."""
    _parse_and_validate(data)
    _parse_and_validate(data, stream=True)


@FUZZ
@given(st.binary(max_size=2000), st.lists(st.integers(0, 10_000), max_size=8))
def test_fuzz_stream_framer_arbitrary_bytes(data: bytes, cuts: list[int]) -> None:
    """StreamFramer on arbitrary bytes in random chunks: messages or RemoteProtocolError."""
    _feed_in_chunks(data, cuts)


@FUZZ
@given(
    st.lists(mutated() | st.sampled_from(SEEDS), min_size=1, max_size=3),
    st.lists(st.integers(0, 10_000), max_size=8),
)
def test_fuzz_stream_framer_mutated(pieces: list[bytes], cuts: list[int]) -> None:
    """StreamFramer on mutated messages in random chunks: messages or RemoteProtocolError."""
    _feed_in_chunks(b"".join(pieces), cuts)


def test_fuzz_rule_sees_errors() -> None:
    """The fuzz helpers report a bad message as None rather than passing it."""
    assert _parse_and_validate(PUBLISH.replace(b"CSeq: 1 PUBLISH", b"CSeq: x")) is None
    assert _feed_in_chunks(b"\n\njunk", [1]) is None


# ---------------------------------------------------------------------------
# Known bugs found while fuzzing, pinned with minimal reproducers
# ---------------------------------------------------------------------------

HUGE_LENGTH = b"OPTIONS sip:a@b.example SIP/2.0\r\nContent-Length: " + b"1" * 5000 + b"\r\n\r\n"


def test_huge_content_length_datagram() -> None:
    """A 5000-digit Content-Length in a datagram raises RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        parse_message(HUGE_LENGTH)


def test_huge_content_length_stream() -> None:
    """A 5000-digit Content-Length on a stream raises RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(HUGE_LENGTH)


def test_large_content_length_stream_is_too_large() -> None:
    """A 30-digit Content-Length on a stream is refused with 513, not buffered."""
    with pytest.raises(MessageTooLarge):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: " + b"9" * 30 + b"\r\n\r\n")


@pytest.mark.parametrize(
    "line",
    [b"X\nY: 1", b"Subject: a\nInjected: b"],
    ids=["lf-in-name", "lf-in-value"],
)
def test_bare_lf_inside_a_header_line_is_rejected(line: bytes) -> None:
    """Parsed header names are tokens and values hold no CR or LF, or the parse fails."""
    data = b"OPTIONS sip:a@b.example SIP/2.0\r\n" + line + b"\r\nContent-Length: 0\r\n\r\n"
    try:
        msg = parse_message(data)
    except RemoteProtocolError:
        return
    for name, value in msg.headers:
        assert TOKEN_RE.fullmatch(name), name
        assert "\r" not in value and "\n" not in value, value


def test_trailing_non_ascii_space_in_value_survives() -> None:
    """A Subject ending in U+00A0 round-trips unchanged (only SP/HTAB are LWS)."""
    msg = Request(
        "MESSAGE", "sip:a@b.example", [("Subject", "caf\u00e9\u00a0"), ("Content-Length", "0")]
    )
    assert parse_message(bytes(msg)) == msg
