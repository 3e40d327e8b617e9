"""SIP addresses and XMPP addresses of one another (the conventions of
Kamailio's ``xmpp`` module, with its parameter names).

A SIP user ``sip:alice@example.com`` is the JID
``alice*example.com@<xmpp_component>`` on the XMPP side; an XMPP user
``bob@jabber.example.org`` is ``sip:bob*jabber.example.org@<gateway_domain>``
on the SIP side (``*`` is ``domain_separator``).  Unlike Kamailio, a
mapped address is split at its *last* separator (a domain never holds
one), so a user part that contains the separator maps back whole; what
one side forbids is escaped for it: SIP user parts are percent-encoded
(RFC 3261 §25.1), JID localparts XEP-0106 escaped.

JIDs are case-insensitive in their localpart (XMPP servers fold it), SIP
user parts are not: ``sip:Alice@example.com`` reaches XMPP users as
``alice*example.com@...``, and their answers come back to
``sip:alice@example.com``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

from slixmpp.jid import JID, InvalidJID

from pua.errors import RemoteProtocolError
from pua.sip.uri import SipUri, parse_uri

__all__ = ["AddressError", "Addresses", "check_separator"]

# RFC 3261 §25.1: what a user part holds unescaped (unreserved and
# user-unreserved); everything else is %XX.
_SIP_USER_SAFE = "-_.!~*'()&=+$,;?/"

# XEP-0106: the characters a localpart may not hold, and their escapes.
_ESCAPES = {" ": r"\20", '"': r"\22", "&": r"\26", "'": r"\27", "/": r"\2f",
            ":": r"\3a", "<": r"\3c", ">": r"\3e", "@": r"\40", "\\": r"\5c"}  # fmt: skip
_UNESCAPES = {value: key for key, value in _ESCAPES.items()}
_ESCAPE_RE = re.compile(r"\\(20|22|26|27|2f|3a|3c|3e|40|5c)")

_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*[A-Za-z0-9-]+\.?")
_FORBIDDEN_SEPARATORS = set(".-_@/:\\\"<>&'[]% \t")


class AddressError(RemoteProtocolError):
    """An address that the other side cannot have.  ``condition`` is the
    XMPP stanza error condition (RFC 6120 §8.3.3), ``status`` the SIP
    status (400, or 404 for a user that is not the gateway's)."""

    def __init__(
        self, message: str, *, condition: str = "jid-malformed", status: int = 400
    ) -> None:
        super().__init__(
            message, status=status, reason="Bad Request" if status == 400 else "Not Found"
        )
        self.condition = condition


def check_separator(separator: str) -> str:
    """The separator if it can join a user and a domain in a SIP user part
    and a JID localpart alike; ValueError otherwise."""
    if (
        len(separator) != 1
        or not separator.isprintable()
        or separator.isalnum()
        or not separator.isascii()
        or separator in _FORBIDDEN_SEPARATORS
    ):
        raise ValueError(
            f"{separator!r} cannot separate a user from its domain: one punctuation "
            "character that host names, JIDs and SIP escapes do not use (such as *)"
        )
    return separator


def escape_localpart(text: str) -> str:
    """A localpart with XEP-0106 escapes for what JIDs forbid."""
    return "".join(_ESCAPES.get(char, char) for char in text)


def unescape_localpart(text: str) -> str:
    """The text a XEP-0106 escaped localpart stands for."""
    return _ESCAPE_RE.sub(lambda m: _UNESCAPES["\\" + m.group(1)], text)


def _jid(text: str, what: str) -> JID:
    """The JID in its canonical form: prepared again until it stays the
    same (stringprep's case folding before NFKC is not idempotent: U+1F110
    becomes "(A)", then "(a)")."""
    try:
        jid = JID(text)
        for _ in range(3):
            again = JID(str(jid))
            if str(again) == str(jid):
                return jid
            jid = again
    except InvalidJID as exc:
        raise AddressError(f"{what} {text!r} is not a JID: {exc}") from None
    raise AddressError(f"{what} {text!r} has no stable form")


def _host(host: str, what: str) -> str:
    host = host.lower().rstrip(".")
    if not host or not _HOST_RE.fullmatch(host):
        raise AddressError(f"{what}: {host!r} is not a domain")
    return host


@dataclass(frozen=True, slots=True)
class Addresses:
    """The two ways between SIP addresses and JIDs for one gateway."""

    component: str
    """The gateway's XMPP domain (``xmpp_component``): SIP users' JIDs end in it."""
    gateway_domain: str
    """The SIP domain of XMPP users' SIP addresses."""
    separator: str = "*"
    """Joins a user and its domain in one user part (``domain_separator``)."""

    def __post_init__(self) -> None:
        check_separator(self.separator)
        object.__setattr__(self, "component", self.component.lower())
        object.__setattr__(self, "gateway_domain", self.gateway_domain.lower())

    def _split(self, joined: str, what: str) -> tuple[str, str]:
        user, sep, domain = joined.rpartition(self.separator)
        if not sep or not user or not domain:
            raise AddressError(
                f"{what}: {joined!r} is not <user>{self.separator}<domain>",
                status=404,
            )
        return user, _host(domain, what)

    # -- SIP users ----------------------------------------------------------
    def sip_user_jid(self, uri: str) -> str:
        """The JID standing for the SIP user ``uri`` (sip: or sips:)."""
        parsed = _sip(uri, "SIP address")
        user = unquote(parsed.user or "")
        if not user:
            raise AddressError(f"SIP address {uri!r} has no user part")
        if parsed.host.lower() == self.gateway_domain:
            raise AddressError(f"{uri!r} is an XMPP user's SIP address, not a SIP user")
        node = escape_localpart(f"{user}{self.separator}{_host(parsed.host, 'SIP address')}")
        return str(_jid(f"{node}@{self.component}", "SIP user's JID"))

    def sip_user_uri(self, jid: str) -> str:
        """The SIP user a JID of the gateway's domain stands for."""
        parsed = _jid(jid, "JID")
        if parsed.domain != self.component:
            raise AddressError(
                f"{jid!r} is not of the gateway's domain {self.component}", status=404
            )
        if not parsed.local:
            raise AddressError(f"{jid!r} names the gateway, not a SIP user")
        user, host = self._split(unescape_localpart(parsed.local), f"JID {jid!r}")
        return f"sip:{quote(user, safe=_SIP_USER_SAFE)}@{host}"

    # -- XMPP users ---------------------------------------------------------
    def xmpp_user_uri(self, jid: str) -> str:
        """The SIP address standing for the XMPP user ``jid`` (its resource
        dropped)."""
        parsed = _jid(jid, "JID")
        if not parsed.local:
            raise AddressError(f"{jid!r} is a server, not an XMPP user")
        if parsed.domain == self.component:
            raise AddressError(f"{jid!r} is a SIP user's JID, not an XMPP user", status=404)
        joined = f"{unescape_localpart(parsed.local)}{self.separator}{parsed.domain}"
        return f"sip:{quote(joined, safe=_SIP_USER_SAFE)}@{self.gateway_domain}"

    def xmpp_user_jid(self, uri: str) -> str:
        """The XMPP user (bare JID) a SIP address of the gateway's domain
        stands for."""
        parsed = _sip(uri, "SIP address")
        if parsed.host.lower() != self.gateway_domain:
            raise AddressError(
                f"{uri!r} is not of the gateway's SIP domain {self.gateway_domain}", status=404
            )
        node, domain = self._split(unquote(parsed.user or ""), f"SIP address {uri!r}")
        return str(_jid(f"{escape_localpart(node)}@{domain}", "XMPP user's JID"))

    def is_xmpp_user_uri(self, uri: str) -> bool:
        """Whether a SIP address is of the gateway's SIP domain."""
        try:
            return _sip(uri, "SIP address").host.lower() == self.gateway_domain
        except AddressError:
            return False


def _sip(uri: str, what: str) -> SipUri:
    try:
        parsed = parse_uri(uri.strip().strip("<>"))
    except RemoteProtocolError as exc:
        raise AddressError(f"{what} {uri!r}: {exc}") from None
    if not isinstance(parsed, SipUri):
        raise AddressError(f"{what} {uri!r} is not a sip: URI")
    return parsed
