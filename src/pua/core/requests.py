"""Routing and building requests: where a PUBLISH or SUBSCRIBE goes, and its bytes.

One parser for each thing the layers above also read: the next hop
(:func:`parse_next_hop`, used by the engine, the runtime and the CLI) and
Kamailio-style extra headers (:func:`parse_extra_headers`, used by the API,
the CLI and the store's rows).  One builder for each request:
:func:`build_publish` (the engine and the CLI's one-shot ``pua publish``)
and :func:`build_subscribe`.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from pua.errors import RemoteProtocolError, UsageError
from pua.sip import SipUri, parse_uri
from pua.sip.builder import MAX_FORWARDS
from pua.sip.headers import CSeq, Headers, Via, header_key
from pua.sip.ids import Ids, tag
from pua.sip.message import Request
from pua.sip.uri import Uri

__all__ = [
    "Destination",
    "build_publish",
    "build_subscribe",
    "check_uri",
    "format_extra_headers",
    "parse_extra_headers",
    "parse_next_hop",
]

# Headers the engine writes itself: an extra header may not replace them.
_OWN_HEADERS = frozenset(
    {
        "via",
        "from",
        "to",
        "call-id",
        "cseq",
        "max-forwards",
        "content-length",
        "expires",
        "event",
        "sip-if-match",
        "contact",
        "route",
        "content-type",
    }
)


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a request goes: the next hop's host (a name or an address, the
    runtime resolves it), port and transport."""

    host: str
    port: int
    transport: str

    @property
    def uri(self) -> str:
        """The next hop as a SIP URI."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        suffix = "" if self.transport == "udp" else f";transport={self.transport}"
        return f"sip:{host}:{self.port}{suffix}"


@functools.lru_cache(maxsize=4096)
def parse_next_hop(text: str) -> Destination:
    """The next hop a sip:/sips: URI names (RFC 3263 §4 without DNS: the
    ``transport`` parameter, else UDP, TLS for sips; ``maddr`` over the
    host; port 5060, or 5061 for sips).  Raises UsageError."""
    try:
        uri = parse_uri(text)
    except RemoteProtocolError as exc:
        raise UsageError(f"bad next hop {text!r}: {exc}") from None
    if not isinstance(uri, SipUri):
        raise UsageError(f"cannot route to a non-SIP URI: {text}")
    transport = (uri.param("transport") or ("tls" if uri.secure else "udp")).lower()
    if transport not in ("udp", "tcp", "tls"):
        raise UsageError(f"bad next hop {text!r}: transport {transport!r} is not udp, tcp or tls")
    host = uri.param("maddr") or uri.host
    if host.startswith("["):
        host = host[1:-1]
    return Destination(host, uri.port or (5061 if uri.secure else 5060), transport)


def check_uri(text: str, what: str) -> Uri:
    """``text`` parsed as a URI, or a UsageError naming ``what``."""
    if not isinstance(text, str):
        raise UsageError(f"{what}: expected a URI as text, got {type(text).__name__}")
    try:
        return parse_uri(text)
    except RemoteProtocolError as exc:
        raise UsageError(f"{what}: {exc}") from None


def parse_extra_headers(
    value: str | Iterable[str] | Iterable[tuple[str, str]] | None,
) -> tuple[tuple[str, str], ...]:
    """Extra headers as Kamailio takes them: ``Name: value`` lines (CRLF or
    LF), a list of such lines, or (name, value) pairs.  Strict: a line
    without a colon, a bad header name, a control character, or a header the
    engine writes itself is a UsageError.  The store's rows are read with it."""
    if not value:
        return ()
    if isinstance(value, str):
        lines: list[str | tuple[str, str]] = [
            line for line in value.replace("\r\n", "\n").split("\n") if line.strip()
        ]
    else:
        lines = list(value)
    out: list[tuple[str, str]] = []
    for line in lines:
        if isinstance(line, tuple):
            name, field = line
        else:
            name, colon, field = line.partition(":")
            if not colon:
                raise UsageError(f"bad extra header {line[:60]!r}: expected 'Name: value'")
        name, field = name.strip(), field.strip()
        if not name or not all(c.isalnum() or c in "-.!%*_+`'~" for c in name):
            raise UsageError(f"bad extra header name {name[:60]!r}")
        if any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in field):
            raise UsageError(f"extra header {name}: control characters are not allowed")
        if header_key(name) in _OWN_HEADERS:
            raise UsageError(f"extra header {name}: pua writes this header itself")
        out.append((name, field))
    return tuple(out)


def format_extra_headers(headers: Iterable[tuple[str, str]]) -> str:
    """Extra headers as Kamailio's text (``Name: value`` lines, CRLF)."""
    return "".join(f"{name}: {value}\r\n" for name, value in headers)


def _base_fields(
    method: str,
    from_uri: str,
    from_tag: str,
    to_uri: str,
    to_tag: str | None,
    via: Via,
    call_id: str,
    cseq: int,
    user_agent: str | None,
) -> list[tuple[str, str]]:
    # The URIs were checked when the API call was made: written as they
    # are, inside angle brackets (RFC 3261 §20.10), without a re-parse.
    to = f"<{to_uri}>" if to_tag is None else f"<{to_uri}>;tag={to_tag}"
    fields = [
        ("Via", str(via)),
        ("Max-Forwards", str(MAX_FORWARDS)),
        ("From", f"<{from_uri}>;tag={from_tag}"),
        ("To", to),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if user_agent:
        fields.append(("User-Agent", user_agent))
    return fields


def _request(
    method: str, request_uri: str, fields: list[tuple[str, str]], via: Via, cseq: int, body: bytes
) -> Request:
    # The fields are made whole first and handed over in one piece: adding
    # them one by one would re-check the typed values at every field.
    headers = Headers.adopt(fields)
    headers.remember("via:top", via)
    headers.remember("cseq", CSeq(cseq, method))
    return Request(method, request_uri, headers, body)


def build_publish(
    *,
    pres_uri: str,
    event: str,
    expires: int,
    via: Via,
    ids: Ids,
    call_id: str,
    cseq: int = 1,
    etag: str | None = None,
    body: bytes | None = None,
    content_type: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
    user_agent: str | None = None,
) -> Request:
    """A PUBLISH (RFC 3903 §4): Request-URI, From and To the presentity;
    SIP-If-Match for a refresh, modify or removal; the body with its type."""
    fields = _base_fields(
        "PUBLISH", pres_uri, tag(ids), pres_uri, None, via, call_id, cseq, user_agent
    )
    fields.append(("Event", event))
    fields.append(("Expires", str(expires)))
    if etag is not None:
        fields.append(("SIP-If-Match", etag))
    fields.extend(extra_headers)
    if body is not None:
        fields.append(("Content-Type", content_type or "application/octet-stream"))
    return _request("PUBLISH", pres_uri, fields, via, cseq, body or b"")


def build_subscribe(
    *,
    request_uri: str,
    pres_uri: str,
    watcher_uri: str,
    event: str,
    expires: int,
    via: Via,
    call_id: str,
    from_tag: str,
    cseq: int,
    contact: str,
    to_tag: str | None = None,
    route_set: Iterable[str] = (),
    accept: Iterable[str] = (),
    extra_headers: Iterable[tuple[str, str]] = (),
    user_agent: str | None = None,
) -> Request:
    """A SUBSCRIBE (RFC 6665 §4.1.2): To the resource, From the watcher, in
    the dialog when ``to_tag`` is given (with its route set)."""
    fields = _base_fields(
        "SUBSCRIBE", watcher_uri, from_tag, pres_uri, to_tag, via, call_id, cseq, user_agent
    )
    fields.extend(("Route", route) for route in route_set)
    fields.append(("Contact", f"<{contact}>"))
    fields.append(("Event", event))
    fields.append(("Expires", str(expires)))
    types = ", ".join(accept)
    if types:
        fields.append(("Accept", types))
    fields.extend(extra_headers)
    return _request("SUBSCRIBE", request_uri, fields, via, cseq, b"")
