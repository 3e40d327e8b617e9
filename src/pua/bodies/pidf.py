"""PIDF presence documents (RFC 3863), with the data model's ``<person>``
(RFC 4479) and its RPID activities (RFC 4480).

:func:`parse_pidf` reads a document into :class:`Presence`;
:meth:`Presence.to_bytes` writes one; :func:`assign_ids` is the presence
event's ``process_body`` hook that gives ids to tuples and persons a
publisher left without one.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, cast

from lxml import etree

from pua.errors import BodyError

from ._common import (
    check_id,
    check_text,
    children,
    first_child,
    is_ncname,
    local_name,
    optional_attr,
    required_attr,
    text_of,
)
from .xml import parse_xml, to_bytes

__all__ = [
    "DM_NS",
    "PIDF_CONTENT_TYPE",
    "PIDF_NS",
    "RPID_ACTIVITIES",
    "RPID_NS",
    "Basic",
    "Person",
    "Presence",
    "Tuple",
    "assign_ids",
    "basic_pidf",
    "parse_pidf",
]

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
"""The PIDF namespace (RFC 3863 §4.1)."""
DM_NS = "urn:ietf:params:xml:ns:pidf:data-model"
"""The presence data model namespace of ``<person>`` (RFC 4479)."""
RPID_NS = "urn:ietf:params:xml:ns:pidf:rpid"
"""The RPID namespace of ``<activities>`` (RFC 4480)."""
PIDF_CONTENT_TYPE = "application/pidf+xml"
"""The PIDF media type (RFC 3863, registered with IANA)."""

_WHAT = "PIDF document"
_PRESENCE = f"{{{PIDF_NS}}}presence"
_TUPLE = f"{{{PIDF_NS}}}tuple"
_STATUS = f"{{{PIDF_NS}}}status"
_BASIC = f"{{{PIDF_NS}}}basic"
_CONTACT = f"{{{PIDF_NS}}}contact"
_NOTE = f"{{{PIDF_NS}}}note"
_TIMESTAMP = f"{{{PIDF_NS}}}timestamp"
_PERSON = f"{{{DM_NS}}}person"
_DM_NOTE = f"{{{DM_NS}}}note"
_ACTIVITIES = f"{{{RPID_NS}}}activities"
_RPID_NOTE = f"{{{RPID_NS}}}note"
_RPID_OTHER = f"{{{RPID_NS}}}other"

Basic = Literal["open", "closed"]
"""A tuple's basic status (RFC 3863 §4.1.4)."""

RPID_ACTIVITIES = frozenset(
    {
        "appointment", "away", "breakfast", "busy", "dinner", "holiday",
        "in-transit", "looking-for-work", "meal", "meeting", "on-the-phone",
        "other", "performance", "permanent-absence", "playing", "presentation",
        "shopping", "sleeping", "spectator", "steering", "travel", "tv",
        "unknown", "vacation", "working", "worship",
    }
)  # fmt: skip
"""The activity elements RFC 4480 enumerates (``other`` carries text)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tuple:
    """One ``<tuple>``: a communication address and its status (RFC 3863 §4.1.2)."""

    id: str
    """The tuple's id, stable across updates so watchers see one tuple change."""
    basic: Basic | None = None
    """``open`` or ``closed``; None when the tuple has no ``<basic>``."""
    contact: str | None = None
    """The ``<contact>`` URI (§4.1.5)."""
    priority: float | None = None
    """The contact's ``priority``, 0 to 1 with at most three decimals (§4.1.5)."""
    notes: tuple[str, ...] = ()
    """The tuple's ``<note>`` texts (§4.1.6)."""
    timestamp: str | None = None
    """The ``<timestamp>``, an xs:dateTime kept as written (§4.1.7)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "notes", tuple(self.notes))


@dataclass(frozen=True, slots=True, kw_only=True)
class Person:
    """One data-model ``<dm:person>`` (RFC 4479) with its RPID activities."""

    id: str
    """The person's id (an xs:ID, like tuple ids)."""
    activities: tuple[str, ...] = ()
    """RPID activities (RFC 4480): element names such as ``on-the-phone``;
    any other text stands for an ``<rpid:other>`` carrying that text."""
    notes: tuple[str, ...] = ()
    """The person's ``<dm:note>`` texts."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "activities", tuple(self.activities))
        object.__setattr__(self, "notes", tuple(self.notes))


@dataclass(frozen=True, slots=True, kw_only=True)
class Presence:
    """A PIDF ``<presence>`` document (RFC 3863 §4.1)."""

    entity: str
    """The presentity's URI (§4.1.1)."""
    tuples: tuple[Tuple, ...] = ()
    """The tuples, in document order."""
    persons: tuple[Person, ...] = ()
    """The data-model persons, in document order."""
    notes: tuple[str, ...] = ()
    """The document-level ``<note>`` texts (§4.1.6)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tuples", tuple(self.tuples))
        object.__setattr__(self, "persons", tuple(self.persons))
        object.__setattr__(self, "notes", tuple(self.notes))

    @property
    def basic(self) -> Basic | None:
        """``open`` if any tuple is open, else ``closed`` if any is closed, else None."""
        statuses = {t.basic for t in self.tuples}
        if "open" in statuses:
            return "open"
        if "closed" in statuses:
            return "closed"
        return None

    @property
    def activities(self) -> tuple[str, ...]:
        """Every person's activities, in order, without repeats."""
        return tuple(dict.fromkeys(a for p in self.persons for a in p.activities))

    def to_bytes(self) -> bytes:
        """The document as UTF-8 XML.  ValueError if a value cannot be written
        (a bad id or basic, a priority outside 0..1, text XML cannot carry)."""
        return to_bytes(_build(self))


def _build(presence: Presence) -> etree._Element:
    check_text(presence.entity, "entity", attribute=True)
    if not presence.entity:
        raise ValueError("entity must not be empty (RFC 3863 §4.1.1)")
    ids = [t.id for t in presence.tuples] + [p.id for p in presence.persons]
    for id_ in ids:
        check_id(id_, "tuple and person ids")
    if len(set(ids)) != len(ids):
        # Tuple and person ids share one xs:ID space (RFC 4479's schema types both xs:ID).
        raise ValueError(f"tuple and person ids must be unique: {ids}")
    nsmap: dict[str | None, str] = {None: PIDF_NS}
    if presence.persons:
        nsmap["dm"] = DM_NS
    if any(p.activities for p in presence.persons):
        nsmap["rpid"] = RPID_NS
    root = etree.Element(_PRESENCE, nsmap=nsmap)  # type: ignore[arg-type]
    root.set("entity", presence.entity)
    # Schema order (RFC 3863's XML schema): tuple*, note*, then extensions (person).
    for tuple_ in presence.tuples:
        _build_tuple(root, tuple_)
    for note in presence.notes:
        check_text(note, "note")
        etree.SubElement(root, _NOTE).text = note
    for person in presence.persons:
        _build_person(root, person)
    return root


def _build_tuple(root: etree._Element, tuple_: Tuple) -> None:
    element = etree.SubElement(root, _TUPLE, id=tuple_.id)
    # Tuple schema order: status, extensions, contact?, note*, timestamp?.
    status = etree.SubElement(element, _STATUS)
    if tuple_.basic is not None:
        if tuple_.basic not in ("open", "closed"):
            raise ValueError(f"basic must be 'open' or 'closed', not {tuple_.basic!r}")
        etree.SubElement(status, _BASIC).text = tuple_.basic
    if tuple_.contact is not None:
        check_text(tuple_.contact, "contact")
        contact = etree.SubElement(element, _CONTACT)
        contact.text = tuple_.contact
        if tuple_.priority is not None:
            contact.set("priority", _format_priority(tuple_.priority))
    elif tuple_.priority is not None:
        raise ValueError("priority is an attribute of <contact>: give a contact too")
    for note in tuple_.notes:
        check_text(note, "note")
        etree.SubElement(element, _NOTE).text = note
    if tuple_.timestamp is not None:
        check_text(tuple_.timestamp, "timestamp")
        etree.SubElement(element, _TIMESTAMP).text = tuple_.timestamp


def _format_priority(priority: float) -> str:
    # RFC 3863 §4.1.5: a qvalue, "0" to "1" with up to three decimals (as
    # RFC 3261's q).  Refuse what would be rounded: a round trip must not
    # change the value.
    if isinstance(priority, bool) or not isinstance(priority, int | float):
        raise ValueError(f"priority must be a number, not {priority!r}")
    if not 0.0 <= priority <= 1.0 or round(priority, 3) != priority:
        raise ValueError(f"priority must be 0..1 with at most 3 decimals, not {priority!r}")
    return f"{priority:.3f}".rstrip("0").rstrip(".")


def _build_person(root: etree._Element, person: Person) -> None:
    element = etree.SubElement(root, _PERSON, id=person.id)
    if person.activities:
        activities = etree.SubElement(element, _ACTIVITIES)
        for activity in person.activities:
            check_text(activity, "activity")
            if not activity:
                raise ValueError("an activity must not be empty")
            if activity in RPID_ACTIVITIES:
                etree.SubElement(activities, f"{{{RPID_NS}}}{activity}")
            else:
                # RFC 4480: an activity without an element of its own
                # is written as <other> with the text.
                etree.SubElement(activities, _RPID_OTHER).text = activity
    for note in person.notes:
        check_text(note, "note")
        etree.SubElement(element, _DM_NOTE).text = note


def parse_pidf(body: bytes) -> Presence:
    """Read a PIDF document.  BodyError if it is not one (bad XML, a DTD, the
    wrong root, a tuple or person without an id, a bad basic or priority)."""
    root = parse_xml(body, what=_WHAT, root=_PRESENCE)
    entity = required_attr(root, "entity", what=_WHAT)
    return Presence(
        entity=entity,
        tuples=tuple(_parse_tuple(t) for t in children(root, _TUPLE)),
        persons=tuple(_parse_person(p) for p in children(root, _PERSON)),
        notes=tuple(text_of(n) for n in children(root, _NOTE)),
    )


def _parse_tuple(element: etree._Element) -> Tuple:
    # RFC 3863 §4.1.2: the id attribute is mandatory.
    id_ = required_attr(element, "id", what=_WHAT)
    basic: Basic | None = None
    status = first_child(element, _STATUS)
    basic_element = None if status is None else first_child(status, _BASIC)
    if basic_element is not None:
        value = text_of(basic_element)
        if value not in ("open", "closed"):
            raise BodyError(f"{_WHAT}: tuple {id_!r} has basic {value!r}, not open or closed")
        basic = cast(Basic, value)
    contact: str | None = None
    priority: float | None = None
    contact_element = first_child(element, _CONTACT)
    if contact_element is not None:
        contact = text_of(contact_element)
        raw = optional_attr(contact_element, "priority")
        if raw is not None:
            priority = _parse_priority(raw, id_)
    timestamp_element = first_child(element, _TIMESTAMP)
    return Tuple(
        id=id_,
        basic=basic,
        contact=contact,
        priority=priority,
        notes=tuple(text_of(n) for n in children(element, _NOTE)),
        timestamp=None if timestamp_element is None else text_of(timestamp_element),
    )


def _parse_priority(raw: str, tuple_id: str) -> float:
    # A qvalue (RFC 3863 §4.1.5); be lenient about the number of decimals
    # but not about the range or about non-numbers (float() would take
    # "nan", "1e0" and non-ASCII digits).
    if (
        not raw
        or len(raw) > 16
        or raw.count(".") > 1
        or not all(c in "0123456789." for c in raw)
        or raw == "."
    ):
        raise BodyError(f"{_WHAT}: tuple {tuple_id!r} has priority {raw!r}, not a number")
    value = float(raw)
    if not 0.0 <= value <= 1.0:
        raise BodyError(f"{_WHAT}: tuple {tuple_id!r} has priority {raw}, outside 0..1")
    return value


def _parse_person(element: etree._Element) -> Person:
    id_ = required_attr(element, "id", what=_WHAT)
    activities: list[str] = []
    for group in children(element, _ACTIVITIES):
        for child in group:
            if not isinstance(child.tag, str) or child.tag == _RPID_NOTE:
                continue  # comments, processing instructions, the note
            if child.tag == _RPID_OTHER:
                activities.append(text_of(child) or "other")
            else:
                # An RFC 4480 activity, or another namespace's extension
                # activity (RFC 4480 allows those): its element name.
                activities.append(local_name(child))
    notes = [text_of(n) for n in element if n.tag in (_DM_NOTE, _NOTE)]
    return Person(id=id_, activities=tuple(activities), notes=tuple(notes))


def assign_ids(body: bytes, tuple_id: str) -> bytes:
    """The presence event's ``process_body`` hook: give ids to the tuples and
    persons that have none, as Kamailio's pua does before a PUBLISH.

    Every ``<tuple>`` child of ``<presence>`` without an ``id`` (or with a
    blank one) takes the next unused name of ``tuple_id``, ``tuple_id-2``,
    ``tuple_id-3``...; every ``<dm:person>`` child the next unused of
    ``p{tuple_id}``, ``p{tuple_id}-2``...  "Unused" means no element of the
    document already has it as its ``id``.  Elements that have an id keep it;
    everything else in the document (namespaces, extensions) is kept.

    The result depends only on ``body`` and ``tuple_id``, so a refresh of the
    same record publishes the same ids.  When nothing needs an id the body is
    returned unchanged (same bytes); otherwise it is re-serialized as UTF-8.

    BodyError if ``body`` is not a PIDF document; ValueError if ``tuple_id``
    cannot start an XML ID (it must begin with a letter or ``_``).
    """
    if not isinstance(tuple_id, str) or not is_ncname(tuple_id):
        raise ValueError(
            f"tuple_id must be an XML ID (a letter or '_' first, RFC 3863 §4.1.2), not {tuple_id!r}"
        )
    root = parse_xml(body, what=_WHAT, root=_PRESENCE)
    used: set[str] | None = None  # every id in the document, read once needed
    changed = False
    for tag, base in ((_TUPLE, tuple_id), (_PERSON, f"p{tuple_id}")):
        names: Iterator[str] | None = None
        for element in root.iterchildren(tag):
            if (element.get("id") or "").strip():
                continue
            if used is None:
                used = {str(v).strip() for e in root.iter() if (v := e.get("id")) is not None}
            if names is None:
                names = _names(base, used)
            name = next(names)
            used.add(name)
            element.set("id", name)
            changed = True
    return to_bytes(root) if changed else bytes(body)


def _names(base: str, used: set[str]) -> Iterator[str]:
    # base, base-2, base-3, ... skipping names the document already uses.
    for n in itertools.count(1):
        name = base if n == 1 else f"{base}-{n}"
        if name not in used:
            yield name


def basic_pidf(entity: str, basic: str, *, tuple_id: str, note: str | None = None) -> bytes:
    """The smallest valid PIDF document: one tuple with a basic status.

    ``basic`` is ``open`` or ``closed`` (RFC 3863 §4.1.4); ``tuple_id`` must
    be an XML ID (a letter first), and stays the same across updates of one
    publication so that watchers see one tuple change, not a new one.
    """
    if basic not in ("open", "closed"):
        raise ValueError(f"basic status must be 'open' or 'closed', not {basic!r}")
    presence = etree.Element(f"{{{PIDF_NS}}}presence", nsmap={None: PIDF_NS})  # type: ignore[dict-item]
    presence.set("entity", entity)
    tuple_ = etree.SubElement(presence, f"{{{PIDF_NS}}}tuple", id=tuple_id)
    status = etree.SubElement(tuple_, f"{{{PIDF_NS}}}status")
    etree.SubElement(status, f"{{{PIDF_NS}}}basic").text = basic
    if note is not None:
        etree.SubElement(presence, f"{{{PIDF_NS}}}note").text = note
    return bytes(etree.tostring(presence, xml_declaration=True, encoding="UTF-8"))
