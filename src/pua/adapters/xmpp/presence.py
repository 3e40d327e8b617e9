"""XMPP presence and SIP presence documents, each into the other.

An XMPP user's available resources become the tuples of one PIDF document
(basic ``open``, the status text as the tuple's ``<note>``, the priority
scaled into PIDF's 0..1) with one data-model person carrying the RPID
activities of the resource that counts most (highest priority, then most
available) and its status text.  ``show`` maps to RPID (RFC 4480):

=========  ======================================
``away``   ``<rpid:away/>``
``xa``     ``<rpid:away/>`` + ``<rpid:other>extended away</rpid:other>``
``dnd``    ``<rpid:busy/>``
``chat``   ``<rpid:other>chat</rpid:other>``
=========  ======================================

A SIP user's NOTIFY becomes one XMPP presence: unavailable when nothing is
open, else available with a ``show`` read from the activities (any phone
or meeting activity is dnd, long absences xa), or, for publishers without
RPID, from the first note (the notes Kamailio's pua_xmpp writes: "Away",
"Busy (DND)", "On the phone"), and the first note as the status text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from pua.bodies.pidf import Person, Presence, Tuple

__all__ = [
    "SHOWS",
    "XmppPresence",
    "from_pidf",
    "priority_of",
    "to_pidf",
    "tuple_id",
]

SHOWS = ("away", "chat", "dnd", "xa")
"""The values of ``<show>`` (RFC 6121 §4.7.2.1)."""

_EXTENDED_AWAY = "extended away"
_CHAT = "chat"
_SHOW_ACTIVITIES: dict[str | None, tuple[str, ...]] = {
    None: (),
    "away": ("away",),
    "xa": ("away", _EXTENDED_AWAY),
    "dnd": ("busy",),
    "chat": (_CHAT,),
}
_XA = frozenset({_EXTENDED_AWAY, "permanent-absence", "vacation", "holiday", "sleeping"})
_DND = frozenset({"busy", "on-the-phone", "meeting", "appointment", "performance",
                  "presentation", "worship", "steering", "playing", "spectator", "tv"})  # fmt: skip
_AWAY = frozenset({"away", "breakfast", "dinner", "meal", "shopping", "travel", "in-transit"})
_NOTE_SHOWS = {"away": "away", "on the phone": "dnd", "busy (dnd)": "dnd", "dnd": "dnd",
               "busy": "dnd", "extended away": "xa"}  # fmt: skip
# How available each show says the resource is (the best resource leads).
_RANK = {"chat": 0, None: 1, "away": 2, "xa": 3, "dnd": 4}


@dataclass(frozen=True, slots=True)
class XmppPresence:
    """One available resource's presence (or, from SIP, a user's)."""

    show: str | None = None
    """``away``, ``chat``, ``dnd``, ``xa``, or None (plain available)."""
    status: str | None = None
    """The status text, or None."""
    priority: int = 0
    """-128..127 (RFC 6121 §4.7.2.3)."""

    def as_dict(self) -> dict[str, object]:
        """Plain data (stored, and shown by the API)."""
        return {"show": self.show, "status": self.status, "priority": self.priority}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> XmppPresence:
        """Back from :meth:`as_dict`; ValueError for data that is not one."""
        show, status, priority = data.get("show"), data.get("status"), data.get("priority", 0)
        if show is not None and show not in SHOWS:
            raise ValueError(f"show {show!r}")
        if status is not None and not isinstance(status, str):
            raise ValueError(f"status {status!r}")
        if not isinstance(priority, int) or isinstance(priority, bool):
            raise ValueError(f"priority {priority!r}")
        return cls(show=show, status=status, priority=priority)


def tuple_id(resource: str) -> str:
    """A tuple id (an XML ID) that stands for one resource, the same each
    time: watchers see that resource's tuple change."""
    return "x" + hashlib.sha1(resource.encode()).hexdigest()[:16]


def priority_of(priority: int) -> float:
    """An XMPP priority (-128..127) as a PIDF contact priority (0..1)."""
    return round(max(0, priority) / 127, 3)


def _lead(resources: Mapping[str, XmppPresence]) -> XmppPresence:
    return min(resources.values(), key=lambda p: (-p.priority, _RANK[p.show]))


def to_pidf(entity: str, resources: Mapping[str, XmppPresence]) -> Presence:
    """The PIDF document of an XMPP user with these available resources
    (at least one; resource name -> presence)."""
    if not resources:
        raise ValueError("an XMPP user without an available resource has no document")
    tuples = [
        Tuple(
            id=tuple_id(name),
            basic="open",
            contact=entity,
            priority=priority_of(presence.priority),
            notes=(presence.status,) if presence.status else (),
        )
        for name, presence in sorted(resources.items())
    ]
    lead = _lead(resources)
    person = Person(
        id="p" + tuple_id(entity)[1:],
        activities=_SHOW_ACTIVITIES[lead.show],
        notes=(lead.status,) if lead.status else (),
    )
    return Presence(entity=entity, tuples=tuple(tuples), persons=(person,))


def from_pidf(document: Presence) -> XmppPresence | None:
    """The XMPP presence of a SIP user's PIDF document; None when nothing
    in it is open (unavailable)."""
    if document.basic != "open":
        return None
    activities = {a.lower() for a in document.activities}
    notes = [n for p in document.persons for n in p.notes]
    notes += [n for t in document.tuples if t.basic == "open" for n in t.notes]
    notes += list(document.notes)
    show: str | None
    if activities & _XA:
        show = "xa"
    elif activities & _DND:
        show = "dnd"
    elif activities & _AWAY:
        show = "away"
    elif _CHAT in activities:
        show = "chat"
    elif not activities and notes:
        show = _NOTE_SHOWS.get(notes[0].strip().lower())
    else:
        show = None
    return XmppPresence(show=show, status=notes[0] if notes else None)
