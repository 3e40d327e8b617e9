"""Header storage and the typed header values.

A message keeps its header fields in order, exactly as received (names as
written, values with surrounding whitespace stripped).  Lookups go through
a lazily built index keyed by the lower-case full name, so compact forms
(RFC 3261 §7.3.3, RFC 6665 §8.2.1, ...) and case do not matter.  Typed values
(:class:`Via`, :class:`CSeq`, :class:`NameAddress`, ...) are parsed on first
access and cached until the header fields change.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import abnf
from .errors import RemoteProtocolError
from .uri import Params, Uri, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Challenge",
    "Event",
    "Headers",
    "NameAddress",
    "RetryAfter",
    "SubscriptionState",
    "Via",
    "canonical_name",
    "header_key",
    "parse_delta_seconds",
    "parse_header_params",
]

# Compact forms: RFC 3261 §7.3.3 (i m e l c f s k t v), RFC 6665 §8.2.1
# (o u), RFC 3515 (r), RFC 3892 (b), RFC 4028 (x), RFC 3841 (a j d),
# RFC 8224 (y), RFC 4474 (n).
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
    "y": "identity",
    "n": "identity-info",
}

# Canonical spelling used when pua itself writes a header.
_CANONICAL: dict[str, str] = {
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "www-authenticate": "WWW-Authenticate",
    "sip-etag": "SIP-ETag",
    "sip-if-match": "SIP-If-Match",
    "mime-version": "MIME-Version",
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1: only
# those whose grammar is #(values) may be combined on one line).
LIST_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "allow-events",
        "accept",
        "accept-encoding",
        "accept-language",
        "content-encoding",
        "in-reply-to",
        "path",
        "service-route",
        "warning",
        "error-info",
        "alert-info",
        "call-info",
        "p-asserted-identity",
        "accept-contact",
        "reject-contact",
        "request-disposition",
        "content-language",
    }
)


def _header_key(name: str) -> str:
    key = name.lower()
    if len(key) == 1:
        return COMPACT_FORMS.get(key, key)
    return key


# Name as written -> lookup key, for the spellings met so far: a message's
# dozen names are looked up in one dict each instead of being lower-cased
# and checked for compact forms one by one.  Bounded: names are chosen by
# peers, so past this many the cache starts afresh.
_KEY_CACHE_SIZE = 2048
_KEYS: dict[str, str] = {}


def header_keys() -> dict[str, str]:
    """The cache of :func:`header_key` (name as written -> key), read-only:
    ``header_keys().get(name) or header_key(name)`` saves a call in a loop."""
    return _KEYS


def header_key(name: str) -> str:
    """The lookup key of a header name: lower-case, compact forms expanded."""
    key = _KEYS.get(name)
    if key is None:
        key = _header_key(name)
        if len(_KEYS) >= _KEY_CACHE_SIZE:
            _KEYS.clear()
        _KEYS[name] = key
    return key


def canonical_name(name: str) -> str:
    """The conventional spelling of a header name (``call-id`` -> ``Call-ID``)."""
    key = header_key(name)
    special = _CANONICAL.get(key)
    if special is not None:
        return special
    return "-".join(part.capitalize() for part in key.split("-"))


T = TypeVar("T")
_MISSING = object()


class Headers:
    """Ordered header fields with case-insensitive, compact-form-aware access.

    Iterating gives ``(name, value)`` pairs in wire order.
    """

    __slots__ = ("_index", "_items", "_typed", "_version")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = list(items)
        self._index: dict[str, list[int]] | None = None
        self._typed: dict[str, Any] = {}
        self._version = 0

    @classmethod
    def adopt(
        cls, items: list[tuple[str, str]], index: dict[str, list[int]] | None = None
    ) -> Headers:
        """Headers over ``items`` without copying it (the parser's fast path;
        the caller hands the list over and must not touch it again).
        ``index``, when given, maps each lookup key (:func:`header_key`) to
        the positions of its fields, in order, as the parser found them."""
        headers = cls.__new__(cls)
        headers._items = items
        headers._index = index
        headers._typed = {}
        headers._version = 0
        return headers

    @property
    def version(self) -> int:
        """A number that changes whenever a field is added, set or removed
        (what a copy of the serialized text is checked against)."""
        return self._version

    # -- reading -------------------------------------------------------
    def _lookup(self) -> dict[str, list[int]]:
        index = self._index
        if index is None:
            index = {}
            keys = _KEYS
            for i, (name, _) in enumerate(self._items):
                key = keys.get(name) or header_key(name)
                found = index.get(key)
                if found is None:
                    index[key] = [i]
                else:
                    found.append(i)
            self._index = index
        return index

    def positions(self) -> dict[str, list[int]]:
        """Lookup key -> positions of its fields (read-only view)."""
        return self._lookup()

    def get(self, name: str, default: str | None = None) -> str | None:
        """The value of the first field called ``name``, or ``default``."""
        positions = self._lookup().get(header_key(name))
        if not positions:
            return default
        return self._items[positions[0]][1]

    def get_lines(self, name: str) -> list[str]:
        """The values of every field called ``name``, one per line."""
        positions = self._lookup().get(header_key(name), ())
        return [self._items[i][1] for i in positions]

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``; list headers are split on their commas."""
        key = header_key(name)
        lines = self.get_lines(key)
        if key not in LIST_HEADERS:
            return lines
        values: list[str] = []
        for line in lines:
            try:
                parts = abnf.split_quoted(line, ",")
            except ValueError as exc:
                raise RemoteProtocolError(f"bad {canonical_name(key)}: {exc}") from None
            values.extend(p.strip() for p in parts if p.strip())
        return values

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self._lookup().get(header_key(name)))

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self._items == other._items

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"

    def items(self) -> list[tuple[str, str]]:
        """A copy of the fields as ``(name, value)`` pairs."""
        return list(self._items)

    def typed(self, key: str, parse: Callable[[Headers], T]) -> T:
        """The typed value for ``key``, parsed once by ``parse`` and cached."""
        value = self._typed.get(key, _MISSING)
        if value is _MISSING:
            value = self._typed[key] = parse(self)
        return value  # type: ignore[no-any-return]

    # -- writing -------------------------------------------------------
    def remember(self, key: str, value: object) -> None:
        """Record the typed value of ``key`` that the caller already has
        (a builder that made the header from that value), sparing a parse."""
        self._typed[key] = value

    def _changed(self, key: str, appended: int | None = None) -> None:
        self._version += 1
        # Keep the index when a field was only appended; drop the typed
        # values of this header (a cache key is the header key, or the
        # header key and ":" and a qualifier, as in "via:top").
        if appended is not None and self._index is not None:
            self._index.setdefault(key, []).append(appended)
        else:
            self._index = None
        typed = self._typed
        if typed:
            prefix = key + ":"
            for cached in [k for k in typed if k == key or k.startswith(prefix)]:
                del typed[cached]

    def add(self, name: str, value: str) -> None:
        """Append a field."""
        self._items.append((name, str(value)))
        self._changed(header_key(name), len(self._items) - 1)

    def add_first(self, name: str, value: str) -> None:
        """Insert a field before every other (a new top Via)."""
        self._items.insert(0, (name, str(value)))
        self._changed(header_key(name))

    def set(self, name: str, value: str) -> None:
        """Replace every field called ``name`` with one, kept in the place of
        the first (or appended when there was none)."""
        key = header_key(name)
        positions = self._lookup().get(key)
        if not positions:
            self.add(name, value)
            return
        first = positions[0]
        old_name = self._items[first][0]
        self._items[first] = (old_name, str(value))
        for i in reversed(positions[1:]):
            del self._items[i]
        self._changed(key)

    def remove(self, name: str) -> int:
        """Remove every field called ``name``; returns how many were removed."""
        key = header_key(name)
        before = len(self._items)
        self._items = [(n, v) for n, v in self._items if header_key(n) != key]
        self._changed(key)
        return before - len(self._items)

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers(self._items)


# ---------------------------------------------------------------------------
# Parameters.
#
#   generic-param  =  token [ EQUAL gen-value ]
#   gen-value      =  token / host / quoted-string
# ---------------------------------------------------------------------------

_GEN_VALUE_RE = re.compile(rf"(?:{abnf.TOKEN}|\[[0-9A-Fa-f:.]+\]|{abnf.QUOTED_STRING_RE.pattern})")


_PARAM = (
    rf"[ \t]*{abnf.TOKEN}[ \t]*"
    rf"(?:=[ \t]*(?:{abnf.TOKEN}|\[?[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*\]?)[ \t]*)?"
)
_SIMPLE_PARAMS_RE = re.compile(rf"{_PARAM}(?:;{_PARAM})*")


def parse_header_params(text: str, what: str) -> Params:
    """Parse ``;name=value`` pairs (the leading ``;`` already removed).

    Values stay as written (a quoted-string keeps its quotes) so that
    serialization round-trips; use :func:`param_value` to read them.
    """
    if '"' not in text and _SIMPLE_PARAMS_RE.fullmatch(text) is not None:
        # The common case: no quoted-string, grammar checked by one regex.
        simple: list[tuple[str, str | None]] = []
        for piece in text.split(";"):
            name, eq, value = piece.partition("=")
            simple.append((name.strip(), value.strip() if eq else None))
        return tuple(simple)
    if not text.strip():
        raise RemoteProtocolError(f"empty parameter in {what}")
    try:
        pieces = abnf.split_quoted(text, ";")
    except ValueError as exc:
        raise RemoteProtocolError(f"bad {what}: {exc}") from None
    params: list[tuple[str, str | None]] = []
    for piece in pieces:
        name, eq, value = piece.partition("=")
        name = name.strip()
        if abnf.TOKEN_RE.fullmatch(name) is None:
            raise RemoteProtocolError(f"bad parameter {piece.strip()!r} in {what}")
        if eq:
            value = value.strip()
            if _GEN_VALUE_RE.fullmatch(value) is None:
                raise RemoteProtocolError(f"bad parameter value {piece.strip()!r} in {what}")
            params.append((name, value))
        else:
            params.append((name, None))
    return tuple(params)


def param_value(params: Params, name: str) -> str | None:
    """The unquoted value of ``name`` in ``params``; ``""`` when it has no
    value, ``None`` when absent."""
    name = name.lower()
    for key, value in params:
        if key == name or key.lower() == name:
            if value is None:
                return ""
            return abnf.unquote(value) if value[:1] == '"' else value
    return None


def _format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _small_int(value: str | None, digits: int = 10) -> int | None:
    """An ASCII decimal of at most ``digits`` digits, else None."""
    if value and len(value) <= digits and value.isascii() and value.isdigit():
        return int(value)
    return None


# delta-seconds  =  1*DIGIT ; §20.19 caps expiry values at 2**32-1
MAX_DELTA_SECONDS = 2**32 - 1


def parse_delta_seconds(text: str, what: str) -> int:
    """Parse delta-seconds; values beyond 2**32-1 are clamped to it."""
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise RemoteProtocolError(f"bad {what}: {text[:40]!r}")
    return min(int(text), MAX_DELTA_SECONDS) if len(text) < 30 else MAX_DELTA_SECONDS


# ---------------------------------------------------------------------------
# name-addr / addr-spec (From, To, Contact, Route, Record-Route)
#
#   from-spec    =  ( name-addr / addr-spec ) *( SEMI from-param )
#   name-addr    =  [ display-name ] LAQUOT addr-spec RAQUOT
#   display-name =  *(token LWS)/ quoted-string
# ---------------------------------------------------------------------------

_DISPLAY_TOKENS_RE = re.compile(rf"(?:{abnf.TOKEN}(?:[ \t]+{abnf.TOKEN})*)?")


@dataclass(frozen=True, slots=True)
class NameAddress:
    """An address with an optional display name and header parameters."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (From/To), or None."""
        return param_value(self.params, "tag")

    def param(self, name: str) -> str | None:
        """The unquoted value of header parameter ``name``."""
        return param_value(self.params, name)

    def with_tag(self, tag: str) -> NameAddress:
        """A copy carrying ``tag``."""
        kept = tuple((k, v) for k, v in self.params if k.lower() != "tag")
        return NameAddress(self.uri, self.display_name, (*kept, ("tag", tag)))

    def __str__(self) -> str:
        display = ""
        if self.display_name is not None:
            name = self.display_name
            if _DISPLAY_TOKENS_RE.fullmatch(name) and name:
                display = name + " "
            else:
                display = abnf.quote(name) + " "
        return f"{display}<{self.uri}>{_format_params(self.params)}"

    @classmethod
    def parse(cls, text: str) -> NameAddress:
        """Parse a name-addr or addr-spec with parameters."""
        text = text.strip()
        display: str | None = None
        if text.startswith('"'):
            match = abnf.QUOTED_STRING_RE.match(text)
            if match is None:
                raise RemoteProtocolError(f"unterminated display name in {text[:80]!r}")
            display = abnf.unquote(match.group(0))
            text = text[match.end() :].lstrip()
            if not text.startswith("<"):
                raise RemoteProtocolError(f"display name without <URI> in {text[:80]!r}")
        lt = text.find("<")
        first_semi = text.find(";")
        if lt >= 0 and (display is not None or first_semi < 0 or lt < first_semi):
            if display is None:
                words = text[:lt].strip()
                if _DISPLAY_TOKENS_RE.fullmatch(words) is None:
                    raise RemoteProtocolError(f"bad display name {words[:80]!r}")
                display = " ".join(words.split()) if words else None
            gt = text.find(">", lt)
            if gt < 0:
                raise RemoteProtocolError(f"missing > in {text[:80]!r}")
            # LAQUOT = SWS "<" and RAQUOT = ">" SWS: no space inside.
            uri = parse_uri(text[lt + 1 : gt])
            rest = text[gt + 1 :].strip()
        else:
            addr, semi, after = text.partition(";")
            addr = addr.strip()
            if any(c in addr for c in " \t,?"):
                raise RemoteProtocolError(f"bad addr-spec {addr[:80]!r}")
            uri = parse_uri(addr)
            rest = semi + after
        params: Params = ()
        if rest:
            if rest[0] != ";":
                raise RemoteProtocolError(f"junk after address: {rest[:80]!r}")
            params = parse_header_params(rest[1:], "address parameters")
        return cls(uri, display, params)


# ---------------------------------------------------------------------------
# Via
#
#   via-parm       =  sent-protocol LWS sent-by *( SEMI via-params )
#   sent-protocol  =  protocol-name SLASH protocol-version SLASH transport
#   sent-by        =  host [ COLON port ]
# ---------------------------------------------------------------------------

_VIA_RE = re.compile(
    rf"({abnf.TOKEN})[ \t]*/[ \t]*({abnf.TOKEN})[ \t]*/[ \t]*({abnf.TOKEN})[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-]+)(?:[ \t]*:[ \t]*([0-9]{1,5}))?[ \t]*(?:;(.*))?",
    re.DOTALL,
)

# What nearly every Via looks like: SIP/2.0, a single space after the
# transport, no other whitespace, parameters that are ;token or
# ;token=token (a branch, received= an IPv4 address, rport= a number).
# A value of this shape is parsed without the general grammar's steps.
_PLAIN_VIA_RE = re.compile(
    rf"SIP/2\.0/({abnf.TOKEN}) ([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(?::([0-9]{{1,5}}))?"
    rf"((?:;{abnf.TOKEN}(?:={abnf.TOKEN})?)*)"
)


def _plain_param(piece: str) -> tuple[str, str | None]:
    name, eq, value = piece.partition("=")
    return (name, value) if eq else (name, None)


# RFC 3261 §8.1.1.7: every branch we create starts with this cookie.
MAGIC_COOKIE = "z9hG4bK"


@dataclass(frozen=True, slots=True)
class Via:
    """One Via header value."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        """The branch parameter."""
        return param_value(self.params, "branch")

    @property
    def received(self) -> str | None:
        """The received parameter (the source address the server saw)."""
        return param_value(self.params, "received")

    @property
    def rport(self) -> int | None:
        """The rport value (RFC 3581); None when absent or empty."""
        return _small_int(param_value(self.params, "rport"), 5)

    @property
    def sent_by(self) -> str:
        """host[:port] of the sender."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by}{_format_params(self.params)}"

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one via-parm."""
        match = _PLAIN_VIA_RE.fullmatch(text)
        if match is not None:
            # The common shape, checked whole by the regex: the parameters
            # are ;token or ;token=token, so splitting is all that is left.
            transport, host, port, rest = match.groups()
            params = tuple([_plain_param(piece) for piece in rest[1:].split(";")]) if rest else ()
            if param_value(params, "branch") == "":
                raise RemoteProtocolError(f"bad Via branch: {text[:80]!r}")
            if port is None:
                return cls(transport.upper(), host, None, params)
            if len(port) == 5 and int(port) > 65535:
                raise RemoteProtocolError(f"bad Via port: {text[:80]!r}")
            return cls(transport.upper(), host, int(port), params)
        match = _VIA_RE.fullmatch(text.strip())
        if match is None:
            raise RemoteProtocolError(f"bad Via: {text[:80]!r}")
        name, version, transport, host, port, rest = match.groups()
        params = parse_header_params(rest, "Via") if rest is not None else ()
        port_no = int(port) if port is not None else None
        if port_no is not None and port_no > 65535:
            raise RemoteProtocolError(f"bad Via port: {text[:80]!r}")
        branch = param_value(params, "branch")
        if branch is not None and abnf.TOKEN_RE.fullmatch(branch) is None:
            raise RemoteProtocolError(f"bad Via branch: {text[:80]!r}")
        return cls(transport.upper(), host, port_no, params, f"{name}/{version}")


# ---------------------------------------------------------------------------
# CSeq  =  "CSeq" HCOLON 1*DIGIT LWS Method
# ---------------------------------------------------------------------------

# §8.1.1.5: the sequence number MUST be less than 2**31.
MAX_CSEQ = 2**31 - 1


@dataclass(frozen=True, slots=True)
class CSeq:
    """The CSeq header: sequence number and method."""

    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse ``1*DIGIT LWS Method``."""
        known = _CSEQS.get(text)
        if known is not None and cls is CSeq:
            return known
        pieces = text.split(None, 1)
        number, method = (pieces[0], pieces[1].strip()) if len(pieces) == 2 else (text, "")
        if not number.isdigit() or not number.isascii() or abnf.TOKEN_RE.fullmatch(method) is None:
            raise RemoteProtocolError(f"bad CSeq: {text[:80]!r}")
        if len(number) > 10 or int(number) > MAX_CSEQ:
            raise RemoteProtocolError(f"CSeq number out of range: {text[:80]!r}")
        cseq = cls(int(number), method)
        if cls is CSeq:
            if len(_CSEQS) >= _CSEQ_CACHE_SIZE:
                _CSEQS.clear()
            _CSEQS[text] = cseq
        return cseq


# CSeq text -> parsed value.  Answers to requests outside a dialog carry
# the same few values ("1 PUBLISH") again and again, and a CSeq is
# immutable, so one parse serves them all.  Bounded: the text comes from
# peers, so past this many the cache starts afresh.
_CSEQ_CACHE_SIZE = 1024
_CSEQS: dict[str, CSeq] = {}


# ---------------------------------------------------------------------------
# Event (RFC 6665 §8.4)
#
#   Event          =  ( "Event" / "o" ) HCOLON event-type *( SEMI event-param )
#   event-type     =  event-package *( "." event-template )
#   event-param    =  generic-param / ( "id" EQUAL token )
# ---------------------------------------------------------------------------

_EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9\-!%*_+`'~]+(?:\.[A-Za-z0-9\-!%*_+`'~]+)*")


@dataclass(frozen=True, slots=True)
class Event:
    """An Event header value: ``presence``, ``presence.winfo``, ``dialog;sla``."""

    name: str
    params: Params = ()

    @property
    def package(self) -> str:
        """The event package, without templates."""
        return self.name.split(".", 1)[0]

    @property
    def id(self) -> str | None:
        """The ``id`` parameter."""
        return param_value(self.params, "id")

    def param(self, name: str) -> str | None:
        """The unquoted value of parameter ``name``."""
        return param_value(self.params, name)

    def matches(self, other: Event) -> bool:
        """RFC 6665 §8.2.1: same event type (case-insensitive) and same id."""
        return self.name.lower() == other.name.lower() and self.id == other.id

    def __str__(self) -> str:
        return f"{self.name}{_format_params(self.params)}"

    @classmethod
    def parse(cls, text: str) -> Event:
        """Parse an Event header value."""
        name, semi, rest = text.strip().partition(";")
        name = name.strip()
        if _EVENT_TYPE_RE.fullmatch(name) is None:
            raise RemoteProtocolError(f"bad Event: {text[:80]!r}", status=489, reason="Bad Event")
        params = parse_header_params(rest, "Event") if semi else ()
        return cls(name, params)


# ---------------------------------------------------------------------------
# Subscription-State (RFC 6665 §8.4)
#
#   Subscription-State  = "Subscription-State" HCOLON substate-value
#                         *( SEMI subexp-params )
#   substate-value      = "active" / "pending" / "terminated" / extension-substate
#   subexp-params       = ("reason" EQUAL event-reason-value)
#                       / ("expires" EQUAL delta-seconds)
#                       / ("retry-after" EQUAL delta-seconds) / generic-param
# ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    """A Subscription-State value."""

    state: str
    reason: str | None = None
    expires: int | None = None
    retry_after: int | None = None
    params: Params = ()

    def __str__(self) -> str:
        return f"{self.state}{_format_params(self.params)}"

    @classmethod
    def parse(cls, text: str) -> SubscriptionState:
        """Parse a Subscription-State value."""
        state, semi, rest = text.strip().partition(";")
        state = state.strip().lower()
        if abnf.TOKEN_RE.fullmatch(state) is None:
            raise RemoteProtocolError(f"bad Subscription-State: {text[:80]!r}")
        params = parse_header_params(rest, "Subscription-State") if semi else ()
        reason = param_value(params, "reason")
        expires = param_value(params, "expires")
        retry = param_value(params, "retry-after")
        return cls(
            state=state,
            reason=reason.lower() if reason else None,
            expires=parse_delta_seconds(expires, "expires") if expires is not None else None,
            retry_after=parse_delta_seconds(retry, "retry-after") if retry is not None else None,
            params=params,
        )


# ---------------------------------------------------------------------------
# Retry-After  =  "Retry-After" HCOLON delta-seconds [ comment ] *( SEMI retry-param )
# ---------------------------------------------------------------------------

_RETRY_SECONDS_RE = re.compile(r"[ \t]*([0-9]+)[ \t]*")


def _split_comment(text: str) -> tuple[str | None, str]:
    """Cut a leading comment (nested parentheses allowed, RFC 3261 §25.1:
    comment = LPAREN *(ctext / quoted-pair / comment) RPAREN)."""
    if not text.startswith("("):
        return None, text
    depth = 0
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 1
        elif c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return text[1:i], text[i + 1 :].lstrip(" \t")
        i += 1
    raise RemoteProtocolError(f"unterminated comment in {text[:80]!r}")


@dataclass(frozen=True, slots=True)
class RetryAfter:
    """A Retry-After value."""

    seconds: int
    comment: str | None = None
    params: Params = ()

    @property
    def duration(self) -> int | None:
        """The ``duration`` parameter."""
        return _small_int(param_value(self.params, "duration"))

    @classmethod
    def parse(cls, text: str) -> RetryAfter:
        """Parse a Retry-After value."""
        match = _RETRY_SECONDS_RE.match(text)
        if match is None:
            raise RemoteProtocolError(f"bad Retry-After: {text[:80]!r}")
        comment, rest = _split_comment(text[match.end() :])
        params: Params = ()
        if rest:
            if not rest.startswith(";"):
                raise RemoteProtocolError(f"bad Retry-After: {text[:80]!r}")
            params = parse_header_params(rest[1:], "Retry-After")
        return cls(parse_delta_seconds(match.group(1), "Retry-After"), comment, params)


# ---------------------------------------------------------------------------
# WWW-Authenticate / Proxy-Authenticate (RFC 3261 §25.1, RFC 7616)
#
#   challenge   =  ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
#   auth-param  =  auth-param-name EQUAL ( token / quoted-string )
# ---------------------------------------------------------------------------

_AUTH_PARAM_RE = re.compile(
    rf"[ \t]*({abnf.TOKEN})[ \t]*=[ \t]*({abnf.TOKEN}|{abnf.QUOTED_STRING_RE.pattern})[ \t]*(?:,|$)"
)


@dataclass(frozen=True, slots=True)
class Challenge:
    """An authentication challenge: its scheme and parameters (unquoted,
    names lower-cased)."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def realm(self) -> str | None:
        """The realm parameter."""
        return self.params.get("realm")

    @classmethod
    def parse(cls, text: str) -> Challenge:
        """Parse one challenge."""
        scheme, _, rest = text.strip().partition(" ")
        if abnf.TOKEN_RE.fullmatch(scheme) is None:
            raise RemoteProtocolError(f"bad challenge: {text[:80]!r}")
        params: dict[str, str] = {}
        pos = 0
        rest = rest.strip()
        while pos < len(rest):
            match = _AUTH_PARAM_RE.match(rest, pos)
            if match is None:
                raise RemoteProtocolError(f"bad challenge parameter in {text[:80]!r}")
            params[match.group(1).lower()] = abnf.unquote(match.group(2))
            pos = match.end()
        return cls(scheme, params)
