"""Bindings of addresses of record to contacts, as a registrar keeps them.

Pure (no IO, time passed in): :func:`read_register` turns a REGISTER into a
:class:`Register` (or raises RemoteProtocolError with the 4xx to answer),
and :meth:`BindingTable.apply` applies it by RFC 3261 §10.3 steps 6-8: all
of it or nothing, Call-ID/CSeq ordering per binding, ``expires`` parameter
then ``Expires`` header then the default, ``*`` with Expires 0.  Every
change comes back as a :class:`Change` with its RFC 3680 event, which is
what the publishers turn into PUBLISHes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pua.errors import RemoteProtocolError
from pua.sip.headers import NameAddress
from pua.sip.message import Request
from pua.sip.timers import DeadlineQueue, Timed
from pua.sip.uri import SipUri, parse_uri

__all__ = [
    "ACTIVE_EVENTS",
    "MAX_CONTACTS",
    "Binding",
    "BindingTable",
    "Change",
    "ContactSpec",
    "RegState",
    "Register",
    "aor_of",
    "read_register",
]

MAX_CONTACTS = 20
"""Bindings one address of record may hold (a REGISTER that would pass it
is refused whole)."""
_MAX_EXPIRES = 2**32 - 1  # delta-seconds (RFC 3261 §25.1)
ACTIVE_EVENTS = frozenset({"registered", "created", "refreshed", "shortened"})


def aor_of(uri: str, default_domain: str | None = None) -> str:
    """The address of record of ``uri`` as a key: ``sip:user@host`` with the
    host in lower case and no parameters.  A bare ``user`` (no scheme, no
    host) takes ``default_domain``.  RemoteProtocolError (400) otherwise."""
    text = uri.strip()
    if "@" not in text and ":" not in text and default_domain:
        text = f"sip:{text}@{default_domain}"
    parsed = parse_uri(text)
    if not isinstance(parsed, SipUri) or parsed.user is None:
        raise RemoteProtocolError(
            f"address of record {uri[:80]!r} is not a sip: URI with a user", status=400
        )
    return f"sip:{parsed.user}@{parsed.host.lower()}"


@dataclass(frozen=True, slots=True)
class ContactSpec:
    """One Contact of a REGISTER: its URI and what it asks."""

    uri: SipUri
    expires: int | None  # the contact's ``expires`` parameter
    q: str | None


@dataclass(frozen=True, slots=True)
class RegState:
    """One contact of an address of record as a registrar reports it (a
    reginfo ``<contact>``, RFC 3680)."""

    uri: SipUri
    active: bool
    event: str
    expires: int
    call_id: str
    cseq: int
    q: str | None = None


@dataclass(frozen=True, slots=True)
class Register:
    """What a REGISTER asks, read and checked."""

    aor: str
    call_id: str
    cseq: int
    contacts: tuple[ContactSpec, ...]
    wildcard: bool
    expires: int | None  # the Expires header


def _seconds(text: str | None, what: str) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10 or int(text) > _MAX_EXPIRES:
        raise RemoteProtocolError(f"bad {what}: {text[:40]!r}", status=400, reason="Bad Expires")
    return int(text)


def _q(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1 or len(text) > 5:
        raise RemoteProtocolError(f"bad q value {text[:20]!r}", status=400)
    return text


def read_register(request: Request, *, default_domain: str | None = None) -> Register:
    """The REGISTER ``request``, checked; RemoteProtocolError with the
    status to answer (400) when it is malformed."""
    if request.method != "REGISTER":
        raise RemoteProtocolError(f"{request.method} is not a REGISTER", status=400)
    aor = aor_of(str(request.to.uri), default_domain)
    values = request.headers.get_all("contact")
    expires = _seconds(request.headers.get("expires"), "Expires")
    if values == ["*"]:
        # §10.3 step 6: a wildcard alone, with Expires 0, or it is invalid.
        if expires != 0:
            raise RemoteProtocolError("Contact: * needs Expires: 0", status=400)
        return Register(aor, request.call_id, request.cseq.seq, (), True, expires)
    if "*" in (v.strip() for v in values):
        raise RemoteProtocolError("Contact: * must be the only Contact", status=400)
    contacts: list[ContactSpec] = []
    for value in values:
        address = NameAddress.parse(value)
        if not isinstance(address.uri, SipUri):
            raise RemoteProtocolError(f"contact {value[:80]!r} is not a SIP URI", status=400)
        contacts.append(
            ContactSpec(
                address.uri,
                _seconds(address.param("expires"), "contact expires"),
                _q(address.param("q")),
            )
        )
    return Register(aor, request.call_id, request.cseq.seq, tuple(contacts), False, expires)


def _token(*parts: str) -> str:
    """A short stable id (an XML ID: a letter first) made of ``parts``."""
    digest = hashlib.blake2s("\0".join(parts).encode(), digest_size=6).hexdigest()
    return f"b{digest}"


@dataclass(slots=True, eq=False)
class Binding(Timed):
    """One contact bound to an address of record."""

    spread = True

    aor: str
    contact: str
    call_id: str
    cseq: int
    expires_at: float
    q: str | None = None
    registered_at: float = 0.0
    event: str = "registered"
    """The last RFC 3680 event of this binding."""
    deadline: float | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        """A stable id for this binding (reginfo ``<contact id>``, tuple ids)."""
        return _token(self.aor, self.contact)

    @property
    def active(self) -> bool:
        return self.event in ACTIVE_EVENTS

    def remaining(self, now: float) -> int:
        """Whole seconds left (at least 0)."""
        return max(0, int(self.expires_at - now + 0.5))

    def as_row(self) -> dict[str, object]:
        """The fields a store keeps."""
        return {
            "aor": self.aor,
            "contact": self.contact,
            "call_id": self.call_id,
            "cseq": self.cseq,
            "expires": int(self.expires_at),
            "q": self.q,
            "registered": int(self.registered_at),
        }

    @classmethod
    def from_row(cls, row: dict[str, object]) -> Binding:
        """A binding from :meth:`as_row`'s fields."""
        return cls(
            aor=str(row["aor"]),
            contact=str(row["contact"]),
            call_id=str(row["call_id"]),
            cseq=int(row["cseq"]),  # type: ignore[call-overload]
            expires_at=float(row["expires"]),  # type: ignore[arg-type]
            q=None if row.get("q") is None else str(row["q"]),
            registered_at=float(row.get("registered") or 0),  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class Change:
    """What happened to a binding: ``event`` is RFC 3680's (registered,
    refreshed, shortened, expired, unregistered, deactivated)."""

    binding: Binding
    event: str
    moved_from: str | None = None
    """The Call-ID the binding had before this change, when it changed
    (a phone that restarted registers the same contact anew)."""

    @property
    def ended(self) -> bool:
        return self.event not in ACTIVE_EVENTS


class BindingTable:
    """Every binding, by address of record; expiries on one deadline queue."""

    def __init__(self, *, default_expires: int = 3600, max_contacts: int = MAX_CONTACTS) -> None:
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self._by_aor: dict[str, dict[SipUri, Binding]] = {}
        self._count = 0  # bindings held
        self._deadlines = DeadlineQueue()

    def __len__(self) -> int:
        return self._count

    @property
    def aor_count(self) -> int:
        """How many addresses of record hold bindings."""
        return len(self._by_aor)

    def aors(self) -> list[str]:
        """Addresses of record holding bindings."""
        return list(self._by_aor)

    def bindings(self, aor: str) -> list[Binding]:
        """The live bindings of ``aor``, oldest first."""
        return list(self._by_aor.get(aor, {}).values())

    def __iter__(self) -> Iterator[Binding]:
        for table in self._by_aor.values():
            yield from table.values()

    def next_expiry(self) -> float | None:
        """When the next binding expires."""
        return self._deadlines.next_deadline()

    # -- changes ------------------------------------------------------------------
    def apply(self, register: Register, now: float) -> list[Change]:
        """Apply ``register`` (RFC 3261 §10.3 steps 6-7), all or nothing.
        RemoteProtocolError with the status to answer when it cannot be:
        500 for a CSeq out of order, 403 past ``max_contacts``."""
        current = self._by_aor.get(register.aor, {})
        if register.wildcard:
            for binding in current.values():
                if binding.call_id == register.call_id and register.cseq <= binding.cseq:
                    raise _out_of_order()
            return [self._end(b, "unregistered") for b in list(current.values())]
        plan: list[tuple[SipUri, Binding | None, int, ContactSpec]] = []
        seen: set[SipUri] = set()
        for spec in register.contacts:
            key = spec.uri.without_params()
            if key in seen:
                continue  # the same contact twice: the first counts
            seen.add(key)
            found = current.get(key)
            same_call = found is not None and found.call_id == register.call_id
            if same_call and found is not None and register.cseq <= found.cseq:
                raise _out_of_order()
            expires = spec.expires if spec.expires is not None else register.expires
            plan.append((key, found, self.default_expires if expires is None else expires, spec))
        added = sum(1 for _, found, expires, _ in plan if found is None and expires > 0)
        if len(current) + added > self.max_contacts:
            raise RemoteProtocolError(
                f"{register.aor} would hold more than {self.max_contacts} contacts",
                status=403,
                reason="Too Many Contacts",
            )
        changes: list[Change] = []
        for key, found, expires, spec in plan:
            if expires == 0:
                if found is not None:
                    changes.append(self._end(found, "unregistered"))
                continue
            at = now + expires
            if found is None:
                binding = Binding(
                    register.aor,
                    str(spec.uri),
                    register.call_id,
                    register.cseq,
                    at,
                    spec.q,
                    now,
                )
                self._by_aor.setdefault(register.aor, {})[key] = binding
                self._count += 1
                changes.append(Change(binding, "registered"))
            else:
                event = "shortened" if at < found.expires_at - 1 else "refreshed"
                was = found.call_id
                found.contact, found.call_id = str(spec.uri), register.call_id
                found.cseq, found.expires_at = register.cseq, at
                found.q, found.event = spec.q, event
                binding = found
                changes.append(Change(found, event, was if was != register.call_id else None))
            self._deadlines.arm(binding, "deadline", binding.expires_at)
        return changes

    def apply_state(
        self, state: Iterable[RegState], aor: str, full: bool, now: float
    ) -> list[Change]:
        """Apply the reg state of ``aor`` a registrar reported (RFC 3680):
        an active contact is bound for its ``expires``, a terminated one
        ends with its event; with ``full`` state, bindings the registrar no
        longer lists end too (``deactivated``)."""
        current = self._by_aor.get(aor, {})
        listed: set[SipUri] = set()
        changes: list[Change] = []
        for entry in state:
            key = entry.uri.without_params()
            listed.add(key)
            found = current.get(key)
            if not entry.active or entry.expires <= 0:
                if found is not None:
                    event = entry.event if entry.event not in ACTIVE_EVENTS else "unregistered"
                    changes.append(self._end(found, event))
                continue
            at = now + entry.expires
            if found is None:
                if len(current) >= self.max_contacts:
                    continue  # beyond the limit: not kept, as a REGISTER would not be
                found = Binding(aor, str(entry.uri), entry.call_id, entry.cseq, at, entry.q, now)
                current = self._by_aor.setdefault(aor, current)
                current[key] = found
                self._count += 1
                changes.append(Change(found, "registered"))
            else:
                if abs(found.expires_at - at) < 1 and found.call_id == entry.call_id:
                    continue  # nothing new for this binding
                was = found.call_id
                event = "shortened" if at < found.expires_at - 1 else "refreshed"
                found.call_id, found.cseq, found.expires_at = entry.call_id, entry.cseq, at
                found.q, found.event = entry.q, event
                changes.append(Change(found, event, was if was != entry.call_id else None))
            self._deadlines.arm(found, "deadline", found.expires_at)
        if full:
            for key, binding in list(current.items()):
                if key not in listed:
                    changes.append(self._end(binding, "deactivated"))
        return changes

    def expire(self, now: float) -> list[Change]:
        """End every binding whose time has come (event ``expired``)."""
        due = self._deadlines.pop_due(now)
        changes = []
        for owner, _ in due:
            assert isinstance(owner, Binding)
            if self._held(owner):
                changes.append(self._end(owner, "expired", disarm=False))
        return changes

    def remove(self, aor: str, event: str = "deactivated") -> list[Change]:
        """End every binding of ``aor`` (an administrative removal)."""
        return [self._end(b, event) for b in list(self._by_aor.get(aor, {}).values())]

    def restore(self, bindings: Iterable[Binding], now: float) -> list[Change]:
        """Take back stored bindings; those already expired come back as
        ``expired`` changes (their publications must go), the rest as
        they were."""
        ended = []
        for binding in bindings:
            key = parse_uri(binding.contact)
            assert isinstance(key, SipUri)
            key = key.without_params()
            table = self._by_aor.setdefault(binding.aor, {})
            self._count += key not in table
            table[key] = binding
            if binding.expires_at <= now:
                ended.append(self._end(binding, "expired"))
            else:
                self._deadlines.arm(binding, "deadline", binding.expires_at)
        return ended

    def _held(self, binding: Binding) -> bool:
        table = self._by_aor.get(binding.aor)
        return table is not None and any(b is binding for b in table.values())

    def _end(self, binding: Binding, event: str, *, disarm: bool = True) -> Change:
        if disarm:
            self._deadlines.cancel(binding, "deadline")
        table = self._by_aor.get(binding.aor, {})
        for key, held in list(table.items()):
            if held is binding:
                del table[key]
                self._count -= 1
        if not table:
            self._by_aor.pop(binding.aor, None)
        binding.event = event
        return Change(binding, event)


def _out_of_order() -> RemoteProtocolError:
    return RemoteProtocolError(
        "CSeq not higher than the binding's (RFC 3261 §10.3 step 7)",
        status=500,
        reason="Out of Order",
    )
