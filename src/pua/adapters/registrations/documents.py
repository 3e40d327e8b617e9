"""What bindings are published as: presence per REGISTER Call-ID (Kamailio's
pua_usrloc) and reg state per address of record (pua_reginfo).  Pure."""

from __future__ import annotations

from collections.abc import Iterable

from pua.bodies import Contact, Presence, RegInfo, Registration, Tuple
from pua.core import EventFlag, PublishInfo, SourceFlag

from .bindings import ACTIVE_EVENTS, Binding, Change, _token

__all__ = [
    "REGINFO_ID_PREFIX",
    "UL_ID_PREFIX",
    "entity_of",
    "presence_info",
    "reginfo_document",
    "reginfo_info",
]

UL_ID_PREFIX = "UL_PUBLISH."
REGINFO_ID_PREFIX = "REGINFO_PUBLISH."


def entity_of(aor: str, entity_prefix: str | None) -> str:
    """The PIDF ``entity`` for ``aor`` (``sip:user@host``): ``entity_prefix``
    replaces the scheme when set, as in Kamailio's pua_usrloc (the request
    itself still goes to the AOR)."""
    if not entity_prefix:
        return aor
    return f"{entity_prefix}:{aor.partition(':')[2]}"


def _priority(q: str | None) -> float | None:
    return None if q is None else round(float(q), 3)


def presence_info(
    aor: str,
    call_id: str,
    bindings: Iterable[Binding],
    now: float,
    *,
    entity_prefix: str | None = None,
    basic: str = "open",
) -> PublishInfo:
    """The PUBLISH for the bindings made by one REGISTER Call-ID: a tuple
    per contact (its q as priority), Expires the longest remaining life."""
    held = list(bindings)
    entity = entity_of(aor, entity_prefix)
    presence = Presence(
        entity=entity,
        tuples=tuple(
            Tuple(id=b.id, basic=basic, contact=b.contact, priority=_priority(b.q))  # type: ignore[arg-type]
            for b in held
        ),
    )
    expires = max((b.remaining(now) for b in held), default=0)
    return PublishInfo(
        pres_uri=aor,
        event=EventFlag.PRESENCE_EVENT,
        body=presence.to_bytes(),
        expires=max(1, expires),
        id=UL_ID_PREFIX + call_id,
        source_flag=SourceFlag.UL_PUBLISH,
    )


def presence_removal(aor: str, call_id: str) -> PublishInfo:
    """The removal (Expires 0) of one Call-ID's publication."""
    return PublishInfo(
        pres_uri=aor,
        event=EventFlag.PRESENCE_EVENT,
        expires=0,
        id=UL_ID_PREFIX + call_id,
        source_flag=SourceFlag.UL_PUBLISH,
    )


def _contact(binding: Binding, event: str, now: float) -> Contact:
    active = event in ACTIVE_EVENTS
    return Contact(
        id=binding.id,
        state="active" if active else "terminated",
        event=event,
        uri=binding.contact,
        expires=binding.remaining(now) if active else 0,
        duration_registered=max(0, int(now - binding.registered_at)),
        q=binding.q,
        callid=binding.call_id,
        cseq=binding.cseq,
    )


def reginfo_document(
    aor: str, live: Iterable[Binding], ended: Iterable[Change], version: int, now: float
) -> RegInfo:
    """The full reg state of ``aor``: every live binding (with its last
    event) and the ones that just ended (terminated, with why)."""
    contacts = [_contact(b, b.event, now) for b in live]
    contacts += [_contact(c.binding, c.event, now) for c in ended]
    active = any(c.state == "active" for c in contacts)
    return RegInfo(
        version=version,
        state="full",
        registrations=(
            Registration(
                aor=aor,
                id=_token(aor),
                state="active" if active else "terminated",
                contacts=tuple(contacts),
            ),
        ),
    )


def reginfo_info(aor: str, document: RegInfo | None, expires: int) -> PublishInfo:
    """The ``reg`` PUBLISH of ``aor`` carrying ``document`` (None with
    expires 0: the removal)."""
    return PublishInfo(
        pres_uri=aor,
        event=EventFlag.REGINFO_EVENT,
        body=None if document is None else document.to_bytes(),
        expires=expires,
        id=REGINFO_ID_PREFIX + aor,
        source_flag=SourceFlag.UL_PUBLISH,
    )
