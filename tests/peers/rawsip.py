"""A tiny hand-rolled SIP client over UDP or TCP for driving the peers.

It is deliberately independent of ``pua`` (stdlib sockets only) so tests can
check the peers themselves, or act as a *watcher* (SUBSCRIBE + NOTIFY) next
to the pua under test.  Incoming NOTIFY requests are answered ``200 OK``
automatically and kept in :attr:`RawSipClient.notifies`.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RawSipClient", "SipMessage", "parse_message", "pidf"]


def pidf(entity: str, basic: str = "open", tuple_id: str = "t1", note: str = "") -> str:
    """A minimal PIDF document (RFC 3863)."""
    n = f"<note>{note}</note>" if note else ""
    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{entity}">'
            f'<tuple id="{tuple_id}"><status><basic>{basic}</basic></status>{n}</tuple>'
            '</presence>\n')


@dataclass
class SipMessage:
    first_line: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    raw: bytes = b""

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0 ")

    @property
    def status(self) -> int:
        return int(self.first_line.split(" ", 2)[1]) if self.is_response else 0

    @property
    def reason(self) -> str:
        return self.first_line.split(" ", 2)[2] if self.is_response else ""

    @property
    def method(self) -> str:
        if self.is_response:
            return self.header("CSeq").split()[-1]
        return self.first_line.split(" ", 1)[0]

    _COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "l": "content-length",
                "c": "content-type", "m": "contact", "o": "event", "e": "content-encoding"}

    def _norm(self, name: str) -> str:
        n = name.strip().lower()
        return self._COMPACT.get(n, n)

    def header(self, name: str, default: str = "") -> str:
        n = self._norm(name)
        for k, v in self.headers:
            if self._norm(k) == n:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        n = self._norm(name)
        return [v for k, v in self.headers if self._norm(k) == n]

    def tag(self, hdr: str) -> str:
        for part in self.header(hdr).split(";")[1:]:
            k, _, v = part.strip().partition("=")
            if k.lower() == "tag":
                return v
        return ""


def parse_message(data: bytes) -> SipMessage:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:  # folded line
            k, v = headers[-1]
            headers[-1] = (k, v + " " + line.strip())
        elif ":" in line:
            k, v = line.split(":", 1)
            headers.append((k.strip(), v.strip()))
    return SipMessage(lines[0], headers, body, data)


class RawSipClient:
    """SIP requests to ``(host, port)`` from 127.0.0.1 over ``"udp"`` or ``"tcp"``."""

    def __init__(self, host: str, port: int, transport: str = "udp",
                 local_host: str = "127.0.0.1") -> None:
        self.remote = (host, int(port))
        self.transport = transport.lower()
        self.local_host = local_host
        self.notifies: list[SipMessage] = []
        self._buf = b""
        if self.transport == "udp":
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((local_host, 0))
        elif self.transport == "tcp":
            self.sock = socket.create_connection(self.remote, timeout=5)
        else:
            raise ValueError(f"unsupported transport {transport!r}")
        self.local_port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> RawSipClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def contact(self) -> str:
        t = ";transport=tcp" if self.transport == "tcp" else ""
        return f"<sip:watcher@{self.local_host}:{self.local_port}{t}>"

    # ------------------------------------------------------------- wire I/O
    def send_raw(self, data: bytes) -> None:
        if self.transport == "udp":
            self.sock.sendto(data, self.remote)
        else:
            self.sock.sendall(data)

    def recv_message(self, timeout: float) -> SipMessage | None:
        """Next SIP message, or None when ``timeout`` seconds pass first."""
        deadline = time.monotonic() + timeout
        while True:
            if self.transport == "tcp":
                msg = self._pop_tcp()
                if msg is not None:
                    return msg
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                return None
            except ConnectionRefusedError:  # ICMP from an earlier datagram
                continue
            if self.transport == "udp":
                return parse_message(data)
            if not data:
                return None
            self._buf += data

    def _pop_tcp(self) -> SipMessage | None:
        self._buf = self._buf.lstrip(b"\r\n")  # keep-alive CRLFs
        if b"\r\n\r\n" not in self._buf:
            return None
        head, rest = self._buf.split(b"\r\n\r\n", 1)
        clen = int(parse_message(head + b"\r\n\r\n").header("Content-Length", "0") or 0)
        if len(rest) < clen:
            return None
        self._buf = rest[clen:]
        return parse_message(head + b"\r\n\r\n" + rest[:clen])

    def answer(self, req: SipMessage, code: int = 200, reason: str = "OK") -> None:
        """Answer a request it received (e.g. a t_replicate copy)."""
        self._answer(req, code, reason)

    def _answer(self, req: SipMessage, code: int = 200, reason: str = "OK") -> None:
        lines = [f"SIP/2.0 {code} {reason}"]
        for name in ("Via", "From", "To", "Call-ID", "CSeq"):
            for v in req.header_all(name):
                lines.append(f"{name}: {v}")
        lines.append("Content-Length: 0")
        self.send_raw(("\r\n".join(lines) + "\r\n\r\n").encode())

    # ------------------------------------------------------------ requests
    def build(self, method: str, ruri: str, *, from_uri: str, to_uri: str,
              call_id: str | None = None, cseq: int = 1,
              from_tag: str | None = None, to_tag: str | None = None,
              headers: list[tuple[str, str]] | None = None,
              body: str | bytes = b"") -> tuple[bytes, str]:
        """Serialise a request; returns (bytes, call_id)."""
        body_b = body.encode() if isinstance(body, str) else body
        call_id = call_id or uuid.uuid4().hex
        from_tag = from_tag or uuid.uuid4().hex[:10]
        proto = "UDP" if self.transport == "udp" else "TCP"
        lines = [
            f"{method} {ruri} SIP/2.0",
            f"Via: SIP/2.0/{proto} {self.local_host}:{self.local_port};rport;"
            f"branch=z9hG4bK{uuid.uuid4().hex}",
            "Max-Forwards: 70",
            f"From: <{from_uri}>;tag={from_tag}",
            f"To: <{to_uri}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or [])]
        lines.append(f"Content-Length: {len(body_b)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body_b, call_id

    def request(self, method: str, ruri: str, *, timeout: float = 5.0,
                **kw) -> SipMessage | None:
        """Send a request and return its final response (None on timeout).

        Provisional responses are skipped; NOTIFYs arriving meanwhile are
        answered 200 and stored in :attr:`notifies`.
        """
        data, call_id = self.build(method, ruri, **kw)
        self.send_raw(data)
        cseq = f"{kw.get('cseq', 1)} {method}"
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv_message(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return None
            if not msg.is_response:
                self._handle_request(msg)
                continue
            if msg.header("Call-ID") == call_id and msg.header("CSeq") == cseq \
                    and msg.status >= 200:
                return msg

    def _handle_request(self, msg: SipMessage) -> None:
        if msg.method == "NOTIFY":
            self.notifies.append(msg)
            self._answer(msg)
        elif msg.method != "ACK":
            self._answer(msg, 405, "Method Not Allowed")

    def wait_notify(self, timeout: float = 5.0) -> SipMessage | None:
        """Wait for the next NOTIFY (answered 200); None on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            msg = self.recv_message(max(0.0, deadline - time.monotonic()))
            if msg is None:
                return None
            if not msg.is_response:
                self._handle_request(msg)
                if msg.method == "NOTIFY":
                    return msg

    # ------------------------------------------------------- conveniences
    def publish(self, aor: str, *, expires: int, body: str | bytes = b"",
                etag: str | None = None, event: str = "presence",
                content_type: str = "application/pidf+xml", timeout: float = 5.0,
                **kw) -> SipMessage | None:
        headers = [("Event", event), ("Expires", str(expires))]
        if etag:
            headers.append(("SIP-If-Match", etag))
        if body:
            headers.append(("Content-Type", content_type))
        return self.request("PUBLISH", aor, from_uri=aor, to_uri=aor, headers=headers,
                            body=body, timeout=timeout, **kw)

    def register(self, aor: str, contacts: str | list[str] | None = "", *,
                 expires: int | None = None, call_id: str | None = None, cseq: int = 1,
                 ruri: str | None = None, headers: list[tuple[str, str]] | None = None,
                 timeout: float = 5.0, **kw) -> SipMessage | None:
        """REGISTER ``aor`` (``sip:alice@example.com``); returns the final
        response (None on timeout).

        ``contacts``: ``""`` (default) -> this client's own address
        (``<sip:user@127.0.0.1:PORT>``); a string or a list of strings ->
        one Contact header each (a bare URI is put in ``<>``, a value that
        already has ``<`` or params is sent as is, e.g.
        ``'<sip:a@h>;expires=60;+sip.instance="<urn:uuid:...>"'``); ``"*"``
        -> the wildcard (use with ``expires=0``); ``None`` -> no Contact
        (a query: the 200 lists the bindings).  ``expires``: the Expires
        header, or None for none.  Re-register and unregister with the same
        ``call_id`` and a higher ``cseq``.  The Request-URI defaults to
        ``sip:<domain of aor>``.
        """
        if ruri is None:
            ruri = "sip:" + aor.split("@", 1)[-1].split(";", 1)[0].split(">", 1)[0]
        if contacts == "":
            user = aor.split(":", 1)[-1].split("@", 1)[0]
            t = ";transport=tcp" if self.transport == "tcp" else ""
            contacts = [f"<sip:{user}@{self.local_host}:{self.local_port}{t}>"]
        elif isinstance(contacts, str):
            contacts = [contacts]
        hdrs: list[tuple[str, str]] = []
        for c in contacts or []:
            c = c.strip()
            if c != "*" and not c.startswith("<") and ";" not in c and '"' not in c:
                c = f"<{c}>"
            hdrs.append(("Contact", c))
        if expires is not None:
            hdrs.append(("Expires", str(int(expires))))
        hdrs += headers or []
        return self.request("REGISTER", ruri, from_uri=aor, to_uri=aor, call_id=call_id,
                            cseq=cseq, headers=hdrs, timeout=timeout, **kw)


class DocumentWatcher:
    """A subscriber to one resource's ``event`` at a notifier, keeping the
    documents its NOTIFYs carry, each made by ``parse`` from the body (a
    NOTIFY without a body: skipped, or kept as None with ``keep_empty``).
    A NOTIFY sent again (its 200 came late) counts once."""

    def __init__(self, host: str, port: int, uri: str, *, event: str, accept: str,
                 parse: Callable[[bytes], Any], watcher: str = "sip:watcher@example.com",
                 keep_empty: bool = False, expires: int = 300) -> None:
        self.client = RawSipClient(host, port)
        self.uri = uri
        self.parse = parse
        self.keep_empty = keep_empty
        answer = self.client.request(
            "SUBSCRIBE", uri, from_uri=watcher, to_uri=uri,
            headers=[("Event", event), ("Expires", str(expires)),
                     ("Contact", self.client.contact), ("Accept", accept)])
        assert answer is not None and answer.status in (200, 202), answer
        self.documents: list[Any] = []
        self._seen: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.client.close()

    def wait(self, check: Callable[[Any], bool], timeout: float = 15.0) -> Any:
        """The first document (of those seen so far, then of new NOTIFYs)
        that ``check`` accepts; AssertionError listing them on timeout."""
        for document in self.documents:
            if check(document):
                return document
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            notify = self.client.wait_notify(left)
            if notify is None:
                break
            sent = (notify.header("Call-ID"), notify.header("CSeq"))
            if sent in self._seen:
                continue
            self._seen.add(sent)
            if not notify.body.strip() and not self.keep_empty:
                continue
            document = self.parse(notify.body) if notify.body.strip() else None
            self.documents.append(document)
            if check(document):
                return document
        raise AssertionError(f"no such document for {self.uri}; saw {self.documents}")
