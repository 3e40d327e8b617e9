"""SIP messages: :class:`Request` and :class:`Response`.

A message is a start line, ordered header fields (:class:`Headers`) and a
body of bytes.  The common typed headers are properties, parsed on first
access and cached until the headers change.  ``bytes(message)`` serializes
it, with Content-Length set from the body (RFC 3261 §20.14).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from . import abnf
from .errors import RemoteProtocolError
from .headers import (
    Challenge,
    CSeq,
    Event,
    Headers,
    NameAddress,
    RetryAfter,
    SubscriptionState,
    Via,
    header_key,
    parse_delta_seconds,
)
from .uri import SipUri, Uri, parse_uri

__all__ = ["Message", "Request", "Response", "REASON_PHRASES"]

# RFC 3261 §21 and the extensions a presence client meets.
REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


# Headers whose grammar allows one value only; a second one makes the
# message ambiguous (RFC 4475 §3.3.9).
SINGLE_VALUED = (
    "call-id",
    "cseq",
    "from",
    "to",
    "max-forwards",
    "content-length",
    "content-type",
    "expires",
    "min-expires",
    "event",
    "subscription-state",
    "sip-etag",
    "sip-if-match",
)

# rfc1123-date  =  wkday "," SP date1 SP time SP "GMT"   (RFC 3261 §25.1)
_RFC1123_DATE_RE = re.compile(
    r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT"
)


def _parse_cseq(headers: Headers) -> CSeq:
    value = headers.get("cseq")
    if value is None:
        raise RemoteProtocolError("missing cseq header")
    return CSeq.parse(value)


def _parse_top_via(headers: Headers) -> Via:
    line = headers.get("via")
    if line is None:
        raise RemoteProtocolError("missing Via header")
    if '"' in line or "," in line:
        values = headers.get_all("via")
        if not values:
            raise RemoteProtocolError("empty Via header")
        return Via.parse(values[0])
    return Via.parse(line)


class Message:
    """What requests and responses share: headers, body, typed access."""

    __slots__ = ("body", "headers")

    def __init__(
        self, headers: Headers | Iterable[tuple[str, str]] = (), body: bytes = b""
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers)
        self.body = body

    def start_line(self) -> str:
        """The request or status line, without CRLF."""
        raise NotImplementedError

    # -- serialization ---------------------------------------------------
    def __bytes__(self) -> bytes:
        # Content-Length is written from the body: the first such field
        # gets its value, any other is left out (RFC 3261 §20.14).
        lines: list[str | None] = [
            None
            if (len(name) == 14 or len(name) == 1) and header_key(name) == "content-length"
            else f"{name}: {value}"
            for name, value in self.headers
        ]
        length = len(self.body)
        if None in lines:
            first = lines.index(None)
            name = self.headers.items()[first][0]
            lines[first] = f"{name}: {length}"
            lines = [line for line in lines if line is not None]
        else:
            lines.append(f"Content-Length: {length}")
        head = "\r\n".join(lines)  # type: ignore[arg-type]  # no None left
        return (
            f"{self.start_line()}\r\n{head}\r\n\r\n".encode("utf-8", "surrogateescape") + self.body
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message) or type(other) is not type(self):
            return NotImplemented
        return (
            self.start_line() == other.start_line()
            and self.headers == other.headers
            and self.body == other.body
        )

    __hash__ = None  # type: ignore[assignment]

    # -- raw access ------------------------------------------------------
    def header(self, name: str) -> str | None:
        """The raw value of the first ``name`` field, or None."""
        return self.headers.get(name)

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise RemoteProtocolError(f"missing {name} header")
        return value

    # -- typed access (lazy, cached) --------------------------------------
    @property
    def call_id(self) -> str:
        """The Call-ID; raises RemoteProtocolError when missing."""
        return self._required("call-id")

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        return self.headers.typed("cseq", _parse_cseq)

    @property
    def from_(self) -> NameAddress:
        """The parsed From."""
        return self.headers.typed("from", lambda h: NameAddress.parse(self._required("from")))

    @property
    def to(self) -> NameAddress:
        """The parsed To."""
        return self.headers.typed("to", lambda h: NameAddress.parse(self._required("to")))

    @property
    def vias(self) -> list[Via]:
        """Every Via value, top first."""
        return self.headers.typed("via", lambda h: [Via.parse(v) for v in h.get_all("via")])

    @property
    def top_via(self) -> Via:
        """The topmost Via; raises RemoteProtocolError when there is none.
        Only the first value is parsed (the others matter to proxies)."""
        return self.headers.typed("via:top", _parse_top_via)

    @property
    def contacts(self) -> list[NameAddress]:
        """Every Contact value (empty for ``Contact: *``)."""

        def parse(h: Headers) -> list[NameAddress]:
            values = h.get_all("contact")
            if values == ["*"]:
                return []
            return [NameAddress.parse(v) for v in values]

        return self.headers.typed("contact", parse)

    @property
    def routes(self) -> list[NameAddress]:
        """Every Route value."""
        return self.headers.typed(
            "route", lambda h: [NameAddress.parse(v) for v in h.get_all("route")]
        )

    @property
    def record_routes(self) -> list[NameAddress]:
        """Every Record-Route value."""
        return self.headers.typed(
            "record-route", lambda h: [NameAddress.parse(v) for v in h.get_all("record-route")]
        )

    def _optional_int(self, name: str) -> int | None:
        def parse(h: Headers) -> int | None:
            value = h.get(name)
            return None if value is None else parse_delta_seconds(value, name)

        return self.headers.typed(name, parse)

    @property
    def expires(self) -> int | None:
        """The Expires header in seconds, or None."""
        return self._optional_int("expires")

    @property
    def min_expires(self) -> int | None:
        """The Min-Expires header (RFC 3261 §20.23), or None."""
        return self._optional_int("min-expires")

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards (0..255), or None."""

        def parse(h: Headers) -> int | None:
            value = h.get("max-forwards")
            if value is None:
                return None
            number = parse_delta_seconds(value, "Max-Forwards")
            if number > 255:
                raise RemoteProtocolError(f"Max-Forwards out of range: {value!r}")
            return number

        return self.headers.typed("max-forwards", parse)

    @property
    def event(self) -> Event | None:
        """The parsed Event header (RFC 6665), or None."""
        return self.headers.typed(
            "event", lambda h: None if (v := h.get("event")) is None else Event.parse(v)
        )

    @property
    def subscription_state(self) -> SubscriptionState | None:
        """The parsed Subscription-State, or None."""
        return self.headers.typed(
            "subscription-state",
            lambda h: (
                None if (v := h.get("subscription-state")) is None else SubscriptionState.parse(v)
            ),
        )

    @property
    def sip_etag(self) -> str | None:
        """SIP-ETag (RFC 3903 §11.3.1), or None."""
        return self._entity_tag("sip-etag")

    @property
    def sip_if_match(self) -> str | None:
        """SIP-If-Match (RFC 3903 §11.3.2), or None."""
        return self._entity_tag("sip-if-match")

    def _entity_tag(self, name: str) -> str | None:
        def parse(h: Headers) -> str | None:
            value = h.get(name)
            if value is None:
                return None
            # entity-tag = token
            if abnf.TOKEN_RE.fullmatch(value) is None:
                raise RemoteProtocolError(f"bad {name}: {value[:80]!r}")
            return value

        return self.headers.typed(name, parse)

    @property
    def retry_after(self) -> RetryAfter | None:
        """The parsed Retry-After, or None."""
        return self.headers.typed(
            "retry-after",
            lambda h: None if (v := h.get("retry-after")) is None else RetryAfter.parse(v),
        )

    @property
    def www_authenticate(self) -> list[Challenge]:
        """Every WWW-Authenticate challenge."""
        return self.headers.typed(
            "www-authenticate",
            lambda h: [Challenge.parse(v) for v in h.get_lines("www-authenticate")],
        )

    @property
    def proxy_authenticate(self) -> list[Challenge]:
        """Every Proxy-Authenticate challenge."""
        return self.headers.typed(
            "proxy-authenticate",
            lambda h: [Challenge.parse(v) for v in h.get_lines("proxy-authenticate")],
        )

    @property
    def content_type(self) -> str | None:
        """The media type of the body, lower-case, without parameters."""
        value = self.headers.get("content-type")
        if value is None:
            return None
        return value.split(";", 1)[0].strip().lower()

    def check_essentials(self) -> None:
        """What the transaction layer needs before it can match or answer a
        message (RFC 3261 §8.1.1, §17): Call-ID, CSeq, From, To and a top
        Via present once and parseable.  Other headers stay unparsed until
        somebody reads them (and raise RemoteProtocolError then)."""
        index = self.headers.positions()
        for name in ("call-id", "cseq", "from", "to"):
            found = index.get(name)
            if found is None:
                raise RemoteProtocolError(f"missing {name} header")
            if len(found) > 1:
                raise RemoteProtocolError(f"more than one {name} header")
        _ = self.cseq, self.top_via

    def validate(self) -> None:
        """Check every header this layer interprets, and the ones RFC 3261
        §8.1.1 requires; raises RemoteProtocolError on the first fault."""
        self.check_essentials()
        for name in SINGLE_VALUED:
            if len(self.headers.get_lines(name)) > 1:
                raise RemoteProtocolError(f"more than one {name} header")
        date = self.headers.get("date")
        if date is not None and _RFC1123_DATE_RE.fullmatch(date) is None:
            raise RemoteProtocolError(f"bad Date: {date[:60]!r}")
        _ = self.from_, self.to, self.contacts, self.routes, self.record_routes
        _ = self.expires, self.min_expires, self.max_forwards, self.event
        _ = self.subscription_state, self.sip_etag, self.sip_if_match, self.retry_after
        _ = self.www_authenticate, self.proxy_authenticate


class Request(Message):
    """A SIP request."""

    __slots__ = ("_uri", "_wire", "method", "uri_text")

    def __init__(
        self,
        method: str,
        uri: str | Uri,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        *,
        uri_text: str | None = None,
    ) -> None:
        """``uri_text``: the text of ``uri`` when it is a parsed URI whose
        text the caller already has (a template), sparing its formatting."""
        super().__init__(headers, body)
        self.method = method
        self._wire: tuple[bytes, Headers, int, bytes, str, str] | None = None
        if isinstance(uri, str):
            self.uri_text = uri
            self._uri: Uri | None = None
        else:
            self.uri_text = str(uri) if uri_text is None else uri_text
            self._uri = uri

    @property
    def uri(self) -> Uri:
        """The Request-URI, parsed on first access."""
        if self._uri is None:
            self._uri = parse_uri(self.uri_text)
        return self._uri

    def start_line(self) -> str:
        """``Method SP Request-URI SP SIP-Version``."""
        return f"{self.method} {self.uri_text} SIP/2.0"

    def keep_wire(self, data: bytes) -> None:
        """Remember ``data`` as this request's serialization, made by whoever
        built it (a template) from the same fields: ``bytes(request)``
        returns it while the method, Request-URI, headers and body stay
        as they are now, and serializes afresh once any of them changes."""
        self._wire = (
            data,
            self.headers,
            self.headers.version,
            self.body,
            self.method,
            self.uri_text,
        )

    def __bytes__(self) -> bytes:
        wire = self._wire
        if (
            wire is not None
            and wire[1] is self.headers
            and wire[2] == self.headers.version
            and wire[3] is self.body
            and wire[4] is self.method
            and wire[5] is self.uri_text
        ):
            return wire[0]
        return super().__bytes__()

    def check_essentials(self) -> None:
        """As :meth:`Message.check_essentials`, plus the Request-URI, From,
        To, and the CSeq method (§8.1.1.5: it must equal the request's)."""
        super().check_essentials()
        _ = self.from_, self.to
        if self.cseq.method != self.method:
            raise RemoteProtocolError(
                f"CSeq method {self.cseq.method} does not match {self.method}"
            )
        uri = self.uri
        # §19.1.1, table 1: headers are not allowed in a Request-URI.
        if isinstance(uri, SipUri) and uri.headers:
            raise RemoteProtocolError("headers in the Request-URI")

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri_text}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("reason", "status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> None:
        super().__init__(headers, body)
        self.status = status
        self.reason = REASON_PHRASES.get(status, "") if reason is None else reason

    def start_line(self) -> str:
        """``SIP-Version SP Status-Code SP Reason-Phrase``."""
        return f"SIP/2.0 {self.status} {self.reason}"

    @property
    def is_provisional(self) -> bool:
        """True for 1xx."""
        return self.status < 200

    @property
    def is_success(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"
