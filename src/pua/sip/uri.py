"""SIP and SIPS URIs (RFC 3261 §19.1), and other absolute URIs.

::

    SIP-URI   =  "sip:" [ userinfo ] hostport uri-parameters [ headers ]
    SIPS-URI  =  "sips:" [ userinfo ] hostport uri-parameters [ headers ]
    userinfo  =  ( user / telephone-subscriber ) [ ":" password ] "@"
    hostport  =  host [ ":" port ]
    host      =  hostname / IPv4address / IPv6reference
    uri-parameters  =  *( ";" uri-parameter)
    headers   =  "?" header *( "&" header )

Equality follows the comparison rules of §19.1.4, not string equality.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, replace

from . import abnf
from .errors import RemoteProtocolError

__all__ = ["AbsoluteUri", "SipUri", "Uri", "parse_uri"]

Params = tuple[tuple[str, str | None], ...]

# §19.1.4: "A URI omitting any component with a default value will not match
# a URI explicitly containing that component with its default value", and
# these parameters must match when present in either URI.
_MUST_MATCH_PARAMS = frozenset({"user", "ttl", "method", "maddr", "transport"})


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, status=400, reason="Bad Request")


@dataclass(frozen=True, slots=True, eq=False)
class SipUri:
    """A ``sip:`` or ``sips:`` URI.

    ``user``, ``password`` and parameter values are kept as written (still
    escaped) so that serialization gives back the same text; comparison
    normalises them.
    """

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = ()
    headers: Params = ()
    scheme: str = "sip"

    @property
    def secure(self) -> bool:
        """True for a sips: URI."""
        return self.scheme == "sips"

    def param(self, name: str, default: str | None = None) -> str | None:
        """The value of URI parameter ``name`` (case-insensitive); a
        parameter without a value gives ``""``; a missing one ``default``."""
        name = name.lower()
        for key, value in self.params:
            if key.lower() == name:
                return "" if value is None else value
        return default

    def has_param(self, name: str) -> bool:
        """True when parameter ``name`` is present, with or without value."""
        name = name.lower()
        return any(key.lower() == name for key, _ in self.params)

    def with_params(self, **params: str | None) -> SipUri:
        """A copy with the given parameters set (``None`` = valueless)."""
        kept = [(k, v) for k, v in self.params if k.lower() not in params]
        kept.extend(params.items())
        return replace(self, params=tuple(kept))

    def without_params(self) -> SipUri:
        """A copy without parameters and headers."""
        return replace(self, params=(), headers=())

    @property
    def hostport(self) -> str:
        """host[:port] as it appears in the URI."""
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def aor(self) -> str:
        """scheme:user@host, the address-of-record form used as a key."""
        user = f"{self.user}@" if self.user is not None else ""
        return f"{self.scheme}:{user}{self.host.lower()}"

    def __str__(self) -> str:
        parts = [self.scheme, ":"]
        if self.user is not None:
            parts.append(self.user)
            if self.password is not None:
                parts.append(":")
                parts.append(self.password)
            parts.append("@")
        parts.append(self.hostport)
        for key, value in self.params:
            parts.append(f";{key}" if value is None else f";{key}={value}")
        if self.headers:
            parts.append("?")
            parts.append("&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(parts)

    def _key(self) -> tuple[str, str | None, str | None, str, int | None]:
        user = abnf.normalize_escapes(self.user) if self.user is not None else None
        password = abnf.normalize_escapes(self.password) if self.password is not None else None
        return (self.scheme, user, password, self.host.lower(), self.port)

    def __hash__(self) -> int:
        return hash(self._key())

    def __eq__(self, other: object) -> bool:
        """Equality by RFC 3261 §19.1.4."""
        if not isinstance(other, SipUri):
            return NotImplemented
        if self._key() != other._key():
            return False
        mine = _norm_params(self.params)
        theirs = _norm_params(other.params)
        for name in mine.keys() | theirs.keys():
            in_both = name in mine and name in theirs
            if in_both:
                if mine[name] != theirs[name]:
                    return False
            elif name in _MUST_MATCH_PARAMS:
                return False
        return _norm_params(self.headers) == _norm_params(other.headers)


def _norm_params(params: Params) -> dict[str, str | None]:
    return {
        k.lower(): (abnf.normalize_escapes(v).lower() if v is not None else None) for k, v in params
    }


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """A URI of another scheme (tel:, urn:, mailto:, im:, pres:...), kept as text.

    RFC 3261 allows any absoluteURI in To, From and the Request-URI; we
    carry it without interpreting it.
    """

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"

    def param(self, name: str, default: str | None = None) -> str | None:
        """Absolute URIs have no parameters we interpret."""
        return default

    @property
    def aor(self) -> str:
        """The URI itself; non-SIP URIs are keys as written."""
        return str(self)


Uri = SipUri | AbsoluteUri


def _parse_params(text: str, what: str, *, headers: bool = False) -> Params:
    pairs: list[tuple[str, str | None]] = []
    pattern = abnf.HNV_RE if headers else abnf.PARAMCHARS_RE
    for piece in text.split("&" if headers else ";"):
        name, eq, value = piece.partition("=")
        if headers:
            # header = hname "=" hvalue
            if (
                not eq
                or not name
                or pattern.fullmatch(name) is None
                or pattern.fullmatch(value) is None
            ):
                raise _bad(f"bad header {piece!r} in {what}")
            pairs.append((name, value))
            continue
        if not name or pattern.fullmatch(name) is None:
            raise _bad(f"bad parameter {piece!r} in {what}")
        if eq:
            if not value or pattern.fullmatch(value) is None:
                raise _bad(f"bad parameter value {piece!r} in {what}")
            pairs.append((name, value))
        else:
            pairs.append((name, None))
    return tuple(pairs)


def _check_host(host: str, what: str) -> str:
    if host.startswith("["):
        if not host.endswith("]"):
            raise _bad(f"bad IPv6 reference in {what}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(f"bad IPv6 address in {what}") from None
        return host
    if abnf.HOSTNAME_RE.fullmatch(host) is None:
        raise _bad(f"bad host {host!r} in {what}")
    return host


def parse_uri(text: str) -> Uri:
    """Parse a URI; a sip:/sips: URI strictly, any other absolute URI loosely.

    Raises :class:`RemoteProtocolError` (400) when the text is not a URI.
    """
    scheme, colon, rest = text.partition(":")
    if not colon or abnf.SCHEME_RE.fullmatch(scheme) is None:
        raise _bad(f"not a URI: {text[:80]!r}")
    lowered = scheme.lower()
    if lowered not in ("sip", "sips"):
        if not rest or any(c in rest for c in ' \t\r\n<>"'):
            raise _bad(f"bad {lowered}: URI {text[:80]!r}")
        return AbsoluteUri(lowered, rest)
    return _parse_sip(lowered, rest, text)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    user: str | None = None
    password: str | None = None
    at = rest.find("@")
    if at >= 0:
        # Neither user nor password may hold an unescaped "@" (§25.1), so the
        # first one ends the userinfo.
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_part, colon, pw = userinfo.partition(":")
        if abnf.USER_RE.fullmatch(user_part) is None:
            raise _bad(f"bad user part in {text[:80]!r}")
        user = user_part
        if colon:
            if abnf.PASSWORD_RE.fullmatch(pw) is None:
                raise _bad(f"bad password in {text[:80]!r}")
            password = pw
    headers: Params = ()
    rest, qmark, header_text = rest.partition("?")
    if qmark:
        headers = _parse_params(header_text, text[:80], headers=True)
    hostport, semi, param_text = rest.partition(";")
    params: Params = _parse_params(param_text, text[:80]) if semi else ()
    port: int | None = None
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            raise _bad(f"bad IPv6 reference in {text[:80]!r}")
        host, port_text = hostport[: close + 1], hostport[close + 1 :]
        if port_text:
            if port_text[0] != ":":
                raise _bad(f"bad host in {text[:80]!r}")
            port_text = port_text[1:]
            port = _parse_port(port_text, text)
    else:
        host, colon, port_text = hostport.partition(":")
        if colon:
            port = _parse_port(port_text, text)
    _check_host(host, text[:80])
    return SipUri(
        host=host,
        user=user,
        password=password,
        port=port,
        params=params,
        headers=headers,
        scheme=scheme,
    )


def _parse_port(port_text: str, text: str) -> int:
    if abnf.PORT_RE.fullmatch(port_text) is None or int(port_text) > 65535:
        raise _bad(f"bad port in {text[:80]!r}")
    return int(port_text)
