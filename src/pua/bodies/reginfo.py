"""Registration state documents (RFC 3680, ``application/reginfo+xml``).

:func:`parse_reginfo` reads one into :class:`RegInfo`;
:meth:`RegInfo.to_bytes` writes one; :func:`set_version` is the reg event's
``process_body`` hook that stamps the document version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from lxml import etree

from pua.errors import BodyError

from ._common import (
    check_choice,
    check_text,
    check_unsigned,
    children,
    first_child,
    optional_attr,
    optional_unsigned,
    required_attr,
    required_choice,
    text_of,
    version_and_state,
)
from .xml import parse_xml, to_bytes

__all__ = [
    "CONTACT_EVENTS",
    "CONTACT_STATES",
    "REGINFO_CONTENT_TYPE",
    "REGINFO_NS",
    "REGISTRATION_STATES",
    "Contact",
    "ContactState",
    "DocumentState",
    "RegInfo",
    "Registration",
    "RegistrationState",
    "parse_reginfo",
    "set_version",
]

REGINFO_NS = "urn:ietf:params:xml:ns:reginfo"
"""The reginfo namespace (RFC 3680 §5)."""
REGINFO_CONTENT_TYPE = "application/reginfo+xml"
"""The reginfo media type (RFC 3680, registered with IANA)."""
REGISTRATION_STATES = ("init", "active", "terminated")
"""A registration's ``state`` values (RFC 3680 §5)."""
CONTACT_STATES = ("active", "terminated")
"""A contact's ``state`` values (RFC 3680 §5)."""
CONTACT_EVENTS = (
    "registered", "created", "refreshed", "shortened", "expired",
    "deactivated", "probation", "unregistered", "rejected",
)  # fmt: skip
"""The ``event`` values: what last happened to a contact (RFC 3680 §5)."""

DocumentState = Literal["full", "partial"]
"""A document's ``state``: every registration, or only changes (RFC 3680 §5)."""
RegistrationState = Literal["init", "active", "terminated"]
"""The type of :attr:`Registration.state`."""
ContactState = Literal["active", "terminated"]
"""The type of :attr:`Contact.state`."""

_WHAT = "reginfo document"
_ROOT = f"{{{REGINFO_NS}}}reginfo"
_REGISTRATION = f"{{{REGINFO_NS}}}registration"
_CONTACT = f"{{{REGINFO_NS}}}contact"
_URI = f"{{{REGINFO_NS}}}uri"
_DISPLAY_NAME = f"{{{REGINFO_NS}}}display-name"
_UNKNOWN_PARAM = f"{{{REGINFO_NS}}}unknown-param"


@dataclass(frozen=True, slots=True, kw_only=True)
class Contact:
    """One registered ``<contact>`` (RFC 3680 §5)."""

    id: str
    """The registrar's id for this binding."""
    state: ContactState
    """``active`` or ``terminated``."""
    event: str
    """What last happened: ``registered``, ``refreshed``, ``expired``..."""
    uri: str
    """The contact URI (``<uri>``)."""
    expires: int | None = None
    """Seconds until the binding expires."""
    duration_registered: int | None = None
    """Seconds since the binding was made (``duration-registered``)."""
    retry_after: int | None = None
    """After ``probation``: seconds before the UA should register again."""
    q: str | None = None
    """The binding's q value, as written."""
    callid: str | None = None
    """The Call-ID of the REGISTER that made the binding."""
    cseq: int | None = None
    """The CSeq of that REGISTER."""
    display_name: str | None = None
    """The ``<display-name>``."""
    params: tuple[tuple[str, str], ...] = ()
    """``<unknown-param name=...>value`` pairs: Contact header parameters the
    registrar has no attribute for."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(tuple(p) for p in self.params))


@dataclass(frozen=True, slots=True, kw_only=True)
class Registration:
    """One ``<registration>``: the bindings of one address of record."""

    aor: str
    """The address of record."""
    id: str
    """The registrar's id for this registration."""
    state: RegistrationState
    """``init`` (no bindings yet), ``active`` or ``terminated``."""
    contacts: tuple[Contact, ...] = ()
    """The contacts, in document order."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "contacts", tuple(self.contacts))


@dataclass(frozen=True, slots=True, kw_only=True)
class RegInfo:
    """A ``<reginfo>`` document (RFC 3680 §5)."""

    version: int
    """The document version, counting up from 0 per subscription."""
    state: DocumentState
    """``full`` or ``partial``."""
    registrations: tuple[Registration, ...] = ()
    """The registrations, in document order."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "registrations", tuple(self.registrations))

    def to_bytes(self) -> bytes:
        """The document as UTF-8 XML.  ValueError if a value cannot be written."""
        return to_bytes(_build(self))


def _build(info: RegInfo) -> etree._Element:
    check_unsigned(info.version, "version")
    check_choice(info.state, ("full", "partial"), "state")
    root = etree.Element(_ROOT, nsmap={None: REGINFO_NS})  # type: ignore[dict-item]
    root.set("version", str(info.version))
    root.set("state", info.state)
    for registration in info.registrations:
        for name, value in (("aor", registration.aor), ("registration id", registration.id)):
            check_text(value, name, attribute=True)
            if not value:
                raise ValueError(f"{name} must not be empty")
        check_choice(registration.state, REGISTRATION_STATES, "registration state")
        element = etree.SubElement(
            root, _REGISTRATION, aor=registration.aor, id=registration.id, state=registration.state
        )
        for contact in registration.contacts:
            _build_contact(element, contact)
    return root


def _build_contact(parent: etree._Element, contact: Contact) -> None:
    check_text(contact.id, "contact id", attribute=True)
    if not contact.id:
        raise ValueError("a contact id must not be empty")
    check_choice(contact.state, CONTACT_STATES, "contact state")
    check_choice(contact.event, CONTACT_EVENTS, "contact event")
    element = etree.SubElement(
        parent, _CONTACT, id=contact.id, state=contact.state, event=contact.event
    )
    for attribute, number in (
        ("duration-registered", contact.duration_registered),
        ("expires", contact.expires),
        ("retry-after", contact.retry_after),
        ("cseq", contact.cseq),
    ):
        check_unsigned(number, attribute)
        if number is not None:
            element.set(attribute, str(number))
    for attribute, text in (("q", contact.q), ("callid", contact.callid)):
        if text is not None:
            check_text(text, attribute, attribute=True)
            element.set(attribute, text)
    # Schema order (RFC 3680's XML schema): uri, display-name?, unknown-param*.
    check_text(contact.uri, "uri")
    etree.SubElement(element, _URI).text = contact.uri
    if contact.display_name is not None:
        check_text(contact.display_name, "display name")
        etree.SubElement(element, _DISPLAY_NAME).text = contact.display_name
    for name, value in contact.params:
        check_text(name, "param name", attribute=True)
        check_text(value, "param value")
        etree.SubElement(element, _UNKNOWN_PARAM, name=name).text = value


def parse_reginfo(body: bytes) -> RegInfo:
    """Read a reginfo document.  BodyError if it is not one (bad XML, a DTD,
    the wrong root, a missing or bad attribute, a contact without a URI)."""
    root = parse_xml(body, what=_WHAT, root=_ROOT)
    version, state = version_and_state(root, what=_WHAT)
    return RegInfo(
        version=version,
        state=cast(DocumentState, state),
        registrations=tuple(_parse_registration(r) for r in children(root, _REGISTRATION)),
    )


def _parse_registration(element: etree._Element) -> Registration:
    aor = required_attr(element, "aor", what=_WHAT)
    id_ = required_attr(element, "id", what=_WHAT)
    state = required_choice(
        element, "state", REGISTRATION_STATES, what=_WHAT, where=f"registration {aor}"
    )
    return Registration(
        aor=aor,
        id=id_,
        state=cast(RegistrationState, state),
        contacts=tuple(_parse_contact(c, aor) for c in children(element, _CONTACT)),
    )


def _parse_contact(element: etree._Element, aor: str) -> Contact:
    id_ = required_attr(element, "id", what=_WHAT)
    where = f"contact {id_!r} of {aor}"
    state = required_choice(element, "state", CONTACT_STATES, what=_WHAT, where=where)
    event = required_choice(element, "event", CONTACT_EVENTS, what=_WHAT, where=where)
    uri_element = first_child(element, _URI)
    if uri_element is None:
        # RFC 3680 §5: every contact carries its URI.
        raise BodyError(f"{_WHAT}: {where} has no <uri>")
    display_element = first_child(element, _DISPLAY_NAME)
    params = tuple(
        (required_attr(p, "name", what=_WHAT), text_of(p))
        for p in children(element, _UNKNOWN_PARAM)
    )
    return Contact(
        id=id_,
        state=cast(ContactState, state),
        event=event,
        uri=text_of(uri_element),
        expires=optional_unsigned(element, "expires", what=_WHAT),
        duration_registered=optional_unsigned(element, "duration-registered", what=_WHAT),
        retry_after=optional_unsigned(element, "retry-after", what=_WHAT),
        q=optional_attr(element, "q"),
        callid=optional_attr(element, "callid"),
        cseq=optional_unsigned(element, "cseq", what=_WHAT),
        display_name=None if display_element is None else text_of(display_element),
        params=params,
    )


def set_version(body: bytes, version: int) -> bytes:
    """The reg event's ``process_body`` hook: set the root ``version``.

    RFC 3680 §5 has ``version`` count the documents sent; Kamailio's
    ``reginfo_increase_version`` makes each PUBLISH carry the record's own
    counter.  The attribute is replaced whatever it held, or added if the
    root had none; nothing else changes.  The result is UTF-8 XML.

    BodyError if ``body`` is not a reginfo document; ValueError if
    ``version`` is not a non-negative int.
    """
    check_unsigned(version, "version")
    root = parse_xml(body, what=_WHAT, root=_ROOT)
    root.set("version", str(version))
    return to_bytes(root)
