"""Registrations become presence and reg state: Kamailio's pua_usrloc and
pua_reginfo as a user of :class:`~pua.runtime.PresenceRuntime`.

REGISTERs reach :class:`Registrations` through the runtime's request hook
(copies a registrar sends with ``t_replicate``, or phones registering with
pua directly), only from the networks allowed; the API and the library
feed it with :meth:`Registrations.register`.  Each change of the bindings
is stored (when a store is attached) before it is answered, then published:
presence per REGISTER Call-ID (``UL_PUBLISH.<Call-ID>``, a tuple per
contact), and with ``reginfo`` the reg state of the address of record
(``REGINFO_PUBLISH.<aor>``).  A binding that expires, or that a REGISTER
ends, has its publication removed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from pua.adapters.answers import answer_of
from pua.bodies import RegInfo, parse_reginfo
from pua.core import (
    EngineEvent,
    IncomingRequest,
    NotifyReceived,
    PublishInfo,
    RecordKey,
    SourceFlag,
    SubscribeInfo,
)
from pua.errors import BodyError, PresenceError, RemoteProtocolError
from pua.runtime import PresenceRuntime
from pua.runtime.ids import SystemIds
from pua.runtime.timer import DeadlineTimer
from pua.sip import Request, Response, make_response
from pua.sip.ids import tag
from pua.sip.uri import SipUri, parse_uri
from pua.store import Store, StoreError

from . import documents
from .bindings import (
    Binding,
    BindingTable,
    Change,
    ContactSpec,
    Register,
    RegState,
    aor_of,
    read_register,
)

__all__ = ["Registrations", "RegistrationSettings"]

log = logging.getLogger("pua.registrations")

Job = tuple[PublishInfo, ...]
"""PUBLISHes sent one after the other's first answer."""
REGISTER_WAIT = 5.0
"""Seconds a REGISTER's answer waits at most for its PUBLISHes' answers."""
CLOSED_SECONDS = 30
"""Expires of a closed document sent before a removal."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
BindingListener = Callable[[list[Change], Request | None], None]
"""Told of each change of the bindings (see Registrations.add_binding_listener)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RegistrationSettings:
    """What the adapter does (the service's settings of the same names)."""

    usrloc: bool = True
    reginfo: bool = False
    allow: Sequence[str] = ("127.0.0.0/8", "::1/128")
    default_expires: int = 3600
    publish_closed: bool = False
    default_domain: str | None = None
    entity_prefix: str | None = None
    subscribe: Sequence[tuple[str, str | None]] = ()
    """(address of record, registrar URI or None for the outbound proxy):
    subscriptions to the reg event whose NOTIFYs feed the bindings."""
    subscribe_expires: int = 3600


class Registrations:
    """The bindings of every address of record, and their publications."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        settings: RegistrationSettings | None = None,
        *,
        store: Store | None = None,
        durable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.runtime = runtime
        # The store sync's flush: a change is answered once the publications
        # it made are in the database (their first ETags follow as the store
        # sync writes them at once).
        self._durable = durable
        self.settings = settings or RegistrationSettings()
        self.table = BindingTable(default_expires=self.settings.default_expires)
        self.store = store
        self._allow: list[Network] = [
            ipaddress.ip_network(n, strict=False) for n in self.settings.allow
        ]
        self._timer = DeadlineTimer(runtime.now, self._on_expiry)
        self._ids = SystemIds()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._dirty: set[str] = set()
        self._write: asyncio.Lock = asyncio.Lock()
        self.counters = {"registers": 0, "refused": 0, "publications": 0, "reginfo_notifies": 0}
        self._watching: dict[RecordKey, int] = {}  # reg subscriptions: last version
        self._versions: dict[str, int] = {}  # last reginfo version made, by AOR
        self._binding_listeners: list[BindingListener] = []

    def add_binding_listener(self, listener: BindingListener) -> None:
        """Call ``listener(changes, request)`` for every change of the
        bindings (``request``: the REGISTER that made it, or None for the
        API, a reg NOTIFY or an expiry), before its PUBLISHes are made."""
        self._binding_listeners.append(listener)

    def remove_binding_listener(self, listener: BindingListener) -> None:
        """Stop calling ``listener``."""
        self._binding_listeners.remove(listener)

    # -- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Take back the stored bindings (ending those that expired while
        pua was down) and take REGISTERs."""
        if self.store is not None:
            rows = await self.store.load_bindings()
            ended = self.table.restore((Binding.from_row(r) for r in rows), self.runtime.now())
            if ended:
                log.info("%d bindings expired while pua was down", len(ended))
                self._start(self._changed(ended))
                await self.flush()
        self.runtime.add_request_handler("REGISTER", self._on_register)
        self._arm()
        if self.settings.subscribe:
            self.runtime.add_listener(self._on_event)
        for aor, registrar in self.settings.subscribe:
            key = self.runtime.send_subscribe(
                SubscribeInfo(
                    pres_uri=self._aor(aor),
                    watcher_uri=f"sip:pua@{self._aor(aor).partition('@')[2]}",
                    event="reg",
                    expires=self.settings.subscribe_expires,
                    outbound_proxy=registrar,
                    source_flag=SourceFlag.UL_PUBLISH,
                )
            )
            if key is not None:
                self._watching[key] = -1

    async def stop(self) -> None:
        """Stop taking REGISTERs; store what is left to store."""
        self.runtime.remove_request_handler("REGISTER")
        if self.settings.subscribe:
            self.runtime.remove_listener(self._on_event)
        self._timer.cancel()
        await self.flush()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- queries ------------------------------------------------------------------
    def bindings(self, aor: str | None = None) -> list[dict[str, Any]]:
        """The live bindings (of ``aor``, or all), as plain data."""
        now = self.runtime.now()
        chosen = self.table.bindings(self._aor(aor)) if aor else list(self.table)
        return [
            {
                "aor": b.aor,
                "contact": b.contact,
                "expires": b.remaining(now),
                "q": b.q,
                "call_id": b.call_id,
                "cseq": b.cseq,
                "event": b.event,
                "registered_at": b.registered_at,
            }
            for b in chosen
        ]

    def _aor(self, aor: str) -> str:
        return aor_of(aor, self.settings.default_domain)

    # -- the feeds ----------------------------------------------------------------
    def allowed(self, host: str) -> bool:
        """Whether REGISTERs from ``host`` are taken."""
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self._allow)

    def _on_register(self, incoming: IncomingRequest, now: float) -> Response | None:
        request = incoming.request
        if not self.allowed(incoming.source[0]):
            self.counters["refused"] += 1
            log.warning("REGISTER from %s refused: not in usrloc_allow", incoming.source[0])
            return make_response(
                request, 403, "Forbidden (not in usrloc_allow)", to_tag=tag(self._ids)
            )
        register = read_register(request, default_domain=self.settings.default_domain)
        changes = self.table.apply(register, now)
        self.counters["registers"] += 1
        # Only pure work here, inside the engine's step: the publishing,
        # storing and answering run once the step is over.
        jobs = self._changed(changes, request)
        self._spawn(self._answer_register(incoming, register.aor, jobs))
        return None

    async def _answer_register(self, incoming: IncomingRequest, aor: str, jobs: list[Job]) -> None:
        """Publish what the REGISTER changed, store it, then answer 200 with
        the bindings: an answered REGISTER is in the database with the
        first answers to its PUBLISHes (at most REGISTER_WAIT seconds are
        waited for those, so a presence server that is down does not
        leave the registrar without an answer)."""
        self._arm()
        try:
            await self._complete(jobs, REGISTER_WAIT)
        except StoreError as exc:
            log.error("bindings not stored: %s", exc)
        response = make_response(incoming.request, 200, to_tag=tag(self._ids))
        now = self.runtime.now()
        for binding in self.table.bindings(aor):
            response.headers.add("Contact", f"<{binding.contact}>;expires={binding.remaining(now)}")
        response.headers.add("Date", formatdate(usegmt=True))
        self.runtime.respond(incoming, response)

    async def _complete(self, jobs: list[Job], wait: float) -> list[dict[str, Any]]:
        """Send ``jobs``, wait (``wait`` seconds at most) for the first
        answer to each, and store the bindings and the records; what each
        job's last PUBLISH got."""
        results = [asyncio.ensure_future(self._run(job)) for job in jobs]
        if results:
            await asyncio.wait(results, timeout=wait)
        await self.flush()
        if self._durable is not None:
            await self._durable()
        outcomes = []
        for job, result in zip(jobs, results, strict=True):
            status, reason = answer_of(result)
            info = job[-1]
            outcomes.append(
                {"pres_uri": info.pres_uri, "id": info.id, "status": status, "reason": reason}
            )
        return outcomes

    async def register(
        self,
        aor: str,
        contact: str,
        expires: int | None = None,
        *,
        call_id: str | None = None,
        cseq: int | None = None,
        q: str | None = None,
    ) -> dict[str, Any]:
        """Bind (or with expires 0 unbind) ``contact`` to ``aor`` as a
        REGISTER would, from a platform's own feed.  Answers once the
        bindings and the first answers to their PUBLISHes are stored:
        ``{"bindings": [...], "publications": [...]}``, the latter saying
        what each PUBLISH the change made got (``status`` 200, the
        failure's status and reason, or None when no answer came within
        the bound; pua keeps trying then).  RemoteProtocolError (its
        status says why) for what a registrar would refuse."""
        key = self._aor(aor)
        uri = parse_uri(contact.strip().strip("<>"))
        if not isinstance(uri, SipUri):
            raise RemoteProtocolError(f"contact {contact!r} is not a SIP URI", status=400)
        current = {b.contact: b for b in self.table.bindings(key)}
        held = current.get(str(uri))
        if call_id is None:
            call_id = held.call_id if held is not None else f"api-{self._ids.token(12)}"
        if cseq is None:
            cseq = held.cseq + 1 if held is not None and held.call_id == call_id else 1
        if expires is not None and expires < 0:
            raise RemoteProtocolError("expires must be 0 or more", status=400)
        register = Register(key, call_id, cseq, (ContactSpec(uri, expires, q),), False, None)
        changes = self.table.apply(register, self.runtime.now())
        self.counters["registers"] += 1
        jobs = self._changed(changes)
        self._arm()
        outcomes = await self._complete(jobs, self.runtime.answer_within)
        return {"bindings": self.bindings(key), "publications": outcomes}

    # -- the reg event --------------------------------------------------------------
    def _on_event(self, event: EngineEvent) -> None:
        if not isinstance(event, NotifyReceived) or event.key not in self._watching:
            return
        if isinstance(event.document, RegInfo):
            # Acted on once the engine's step that delivered it is over.
            asyncio.get_running_loop().call_soon(self._on_reginfo, event.key, event.document)

    def _on_reginfo(self, key: RecordKey, document: RegInfo) -> None:
        """Apply a reginfo NOTIFY: a full document always (Kamailio sends
        every one with version 0), a partial one only when it is newer
        than the last one seen."""
        last = self._watching.get(key)
        if last is None:
            return
        if document.state == "partial" and document.version <= last:
            log.info("reginfo version %d after %d ignored", document.version, last)
            return
        if document.state == "partial" and document.version > last + 1:
            # A partial state after a gap (RFC 3680 §4.4): changes were
            # missed; a refresh makes the registrar send the full state.
            log.info("reginfo version %d after %d: asking for full state", document.version, last)
            self._watching[key] = -1
            self.runtime.refresh(key)
            return
        self._watching[key] = max(last, document.version)
        self.counters["reginfo_notifies"] += 1
        now = self.runtime.now()
        changes: list[Change] = []
        for registration in document.registrations:
            try:
                aor = self._aor(registration.aor)
            except RemoteProtocolError as exc:
                log.warning("reginfo for %r ignored: %s", registration.aor, exc)
                continue
            entries = []
            for contact in registration.contacts:
                try:
                    uri = parse_uri(contact.uri.strip().strip("<>"))
                except RemoteProtocolError:
                    continue
                if not isinstance(uri, SipUri):
                    continue
                entries.append(
                    RegState(
                        uri,
                        contact.state == "active" and registration.state != "terminated",
                        contact.event,
                        contact.expires or 0,
                        contact.callid or contact.id,
                        contact.cseq or 0,
                        contact.q,
                    )
                )
            full = document.state == "full" or registration.state == "terminated"
            changes += self.table.apply_state(entries, aor, full, now)
        self._start(self._changed(changes))
        self._arm()
        if changes and self.store is not None:
            self._spawn(self._store_quietly())

    async def _store_quietly(self) -> None:
        try:
            await self.flush()
        except StoreError as exc:
            log.error("bindings not stored: %s", exc)

    # -- expiry -------------------------------------------------------------------
    def _arm(self) -> None:
        self._timer.arm(asyncio.get_running_loop(), self.table.next_expiry())

    def _on_expiry(self, now: float) -> None:
        changes = self.table.expire(now)
        self._start(self._changed(changes))
        self._arm()
        if changes and self.store is not None:
            self._spawn(self._store_quietly())

    # -- what a change does -------------------------------------------------------
    def _changed(self, changes: list[Change], request: Request | None = None) -> list[Job]:
        """The PUBLISHes ``changes`` call for (each job a chain: a closed
        document, then the removal), in order; marks the AORs to store;
        tells the binding listeners."""
        if not changes:
            return []
        for listener in self._binding_listeners:
            try:
                listener(changes, request)
            except Exception:
                log.exception("a binding listener failed")
        now = self.runtime.now()
        calls: dict[tuple[str, str], list[Change]] = {}
        aors: dict[str, list[Change]] = {}
        for change in changes:
            binding = change.binding
            calls.setdefault((binding.aor, binding.call_id), []).append(change)
            if change.moved_from is not None:
                calls.setdefault((binding.aor, change.moved_from), [])
            aors.setdefault(binding.aor, []).append(change)
            self._dirty.add(binding.aor)
        jobs: list[Job] = []
        if self.settings.usrloc:
            for (aor, call_id), group in calls.items():
                jobs.append(self._presence_job(aor, call_id, group, now))
        if self.settings.reginfo:
            for aor, group in aors.items():
                jobs.append(self._reginfo_job(aor, [c for c in group if c.ended], now))
        return jobs

    def _presence_job(self, aor: str, call_id: str, group: list[Change], now: float) -> Job:
        prefix = self.settings.entity_prefix
        live = [b for b in self.table.bindings(aor) if b.call_id == call_id]
        if live:
            info = documents.presence_info(aor, call_id, live, now, entity_prefix=prefix)
            refresh_only = group and all(
                c.event in ("refreshed", "shortened") and c.moved_from is None for c in group
            )
            held = self.runtime.record(
                RecordKey(info.pres_uri, int(info.event), info.id, int(info.source_flag))
            )
            if refresh_only and held is not None:
                info.body = None
            return (info,)
        removal = documents.presence_removal(aor, call_id)
        if self.settings.publish_closed and group:
            closed = documents.presence_info(
                aor, call_id, [c.binding for c in group], now, entity_prefix=prefix, basic="closed"
            )
            closed.expires = CLOSED_SECONDS
            return (closed, removal)
        return (removal,)

    def _reginfo_job(self, aor: str, ended: list[Change], now: float) -> Job:
        live = self.table.bindings(aor)
        version = self._next_version(aor)
        document = documents.reginfo_document(aor, live, ended, version, now)
        if live:
            expires = max(b.remaining(now) for b in live)
            return (documents.reginfo_info(aor, document, max(1, expires)),)
        final = documents.reginfo_info(aor, document, CLOSED_SECONDS)
        return (final, documents.reginfo_info(aor, None, 0))

    def _next_version(self, aor: str) -> int:
        """The next reginfo version of ``aor``: one more than the last one
        made (after a restart: than the stored publication's)."""
        last = self._versions.get(aor)
        if last is None:
            info = documents.reginfo_info(aor, None, 0)
            key = RecordKey(info.pres_uri, int(info.event), info.id, int(info.source_flag))
            record = self.runtime.record(key)
            body = getattr(record, "body", None) if record is not None else None
            last = -1
            if body:
                with contextlib.suppress(BodyError):
                    last = parse_reginfo(body).version
        self._versions[aor] = last + 1
        if len(self._versions) > 4 * self.table.aor_count + 1024:
            # forget the versions of AORs without bindings (their
            # publication is gone or going; a new one may start anew)
            held = set(self.table.aors())
            self._versions = {a: v for a, v in self._versions.items() if a in held}
            self._versions[aor] = last + 1
        return last + 1

    def _start(self, jobs: list[Job]) -> None:
        """Send ``jobs`` without waiting for their answers."""
        for job in jobs:
            if len(job) == 1:
                self._send(job[0])
            else:
                self._spawn(self._run(job))

    async def _run(self, job: Job) -> None:
        """Send a job's PUBLISHes one after the other's first answer; the
        last one's failure is raised."""
        for info in job[:-1]:
            with contextlib.suppress(PresenceError, TimeoutError):
                await self.runtime.publish(info)
                self.counters["publications"] += 1
        self.counters["publications"] += 1
        await self.runtime.publish(job[-1])

    def _send(self, info: PublishInfo) -> None:
        try:
            self.runtime.send_publish(info)
            self.counters["publications"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot publish %s for %s: %s", info.id, info.pres_uri, exc)

    # -- storing ------------------------------------------------------------------
    async def flush(self) -> None:
        """Store the bindings of every address of record changed so far."""
        if self.store is None:
            self._dirty.clear()
            return
        async with self._write:
            if not self._dirty:
                return
            dirty, self._dirty = self._dirty, set()
            rows = {aor: [b.as_row() for b in self.table.bindings(aor)] for aor in dirty}
            try:
                await self.store.save_bindings(rows)
            except StoreError:
                self._dirty |= dirty
                raise

    def _spawn(self, job: Any) -> None:
        task = asyncio.ensure_future(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
