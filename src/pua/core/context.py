"""What the publisher, the subscriber and the NOTIFY server share.

:class:`EngineContext` holds the engine's parts (table, deadline queue, SIP
endpoint, timing rules, event and callback queues, change tracking,
counters) and the few operations every machine needs: mark a record
changed, forget it, arm its deadline, send a request for it.  It does no
IO; the :class:`~pua.core.engine.PresenceEngine` owns it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pua.errors import StateError, UsageError
from pua.sip.builder import new_via
from pua.sip.endpoint import SipEndpoint
from pua.sip.headers import Via
from pua.sip.ids import Ids
from pua.sip.message import Request, Response
from pua.sip.timers import DeadlineQueue
from pua.sip.transaction import Address

from .auth import Authenticator
from .config import EngineConfig
from .events import CallbackFailed, EngineEvent
from .lifetimes import Lifetimes
from .packages import EventRegistry
from .records import InFlight, Pending, Record, RequestKind
from .requests import Destination, parse_next_hop
from .table import RecordTable

__all__ = ["Callback", "CallbackQueue", "ChangeTracker", "Counters", "EngineContext", "Router"]

# register_callback's function: (record, message, param).  ``message`` is the
# final Response, the NOTIFY Request, or None after a local timeout.
Callback = Callable[[Record, Request | Response | None, Any], None]


class Counters:
    """What the engine counts as it goes (read by metrics and stats)."""

    __slots__ = (
        "notify_received",
        "publish_sent",
        "recoveries_412",
        "recoveries_423",
        "refreshes",
        "responses",
        "retries",
        "subscribe_sent",
    )

    def __init__(self) -> None:
        self.publish_sent = 0
        self.subscribe_sent = 0
        self.notify_received = 0
        self.refreshes = 0
        self.recoveries_412 = 0
        self.recoveries_423 = 0
        self.retries = 0
        self.responses: dict[int, int] = {}  # final answers by status

    def as_dict(self) -> dict[str, int]:
        """The counters by name (answers by status apart)."""
        return {name: getattr(self, name) for name in self.__slots__ if name != "responses"}


class ChangeTracker:
    """Records changed and deleted since the store last looked.  Exists
    only while a store is attached: without one nothing is kept.

    A record whose change was a refresh (a new ETag, expiry, CSeq: the
    store's REFRESH_COLUMNS) is kept apart, so that only those columns are
    written for it; any other change writes the whole row.  The sets hold
    the records themselves (a record is equal to its key): no object is
    made per change, so a million refreshes leave nothing new for the
    cyclic collector to walk.  Look the current record up by them: one
    removed and made again under the same key is a new object."""

    __slots__ = ("_changed", "_deleted", "_refreshed")

    def __init__(self) -> None:
        self._changed: set[Record] = set()
        self._refreshed: set[Record] = set()
        self._deleted: list[int] = []

    def changed(self, record: Record) -> None:
        self._changed.add(record)

    def refreshed(self, record: Record) -> None:
        """Only what a refresh changes changed (a row not yet written is
        written whole)."""
        if record.row_id is None:
            self._changed.add(record)
        else:
            self._refreshed.add(record)

    def deleted(self, record: Record) -> None:
        self._changed.discard(record)
        self._refreshed.discard(record)
        if record.row_id is not None:
            self._deleted.append(record.row_id)
            record.row_id = None

    def mark(self, record: Record, *, refreshed: bool = False) -> None:
        """Mark ``record`` changed again (a write that failed)."""
        (self._refreshed if refreshed else self._changed).add(record)

    def pending(self, record: Record) -> bool:
        """Whether a change of ``record`` waits to be written."""
        return record in self._changed or record in self._refreshed

    def forget(self, record: Record) -> None:
        """Keep nothing of ``record``: its row stays as it is (another
        node writes it from now on)."""
        self._changed.discard(record)
        self._refreshed.discard(record)

    def take(self) -> tuple[set[Record], set[Record], list[int]]:
        """Records changed whole, records only refreshed, and row ids
        deleted since the last call (handed over, not copied)."""
        changed, self._changed = self._changed, set()
        refreshed, self._refreshed = self._refreshed, set()
        deleted, self._deleted = self._deleted, []
        if refreshed and changed:
            refreshed -= changed
        return changed, refreshed, deleted


def refresh_step(record: Record, *, due: bool, ok: bool) -> bool:
    """Whether a step changes only what a refresh changes (ETag, expiry,
    CSeq): the refresh timer (``due``) with no wish waiting, or the 2xx
    (``ok``) to a refresh.  A waiting wish goes on in a step of its own,
    marked whole."""
    if due:
        return record.pending is None
    flight = record.flight
    return ok and flight is not None and flight.kind is RequestKind.REFRESH


class CallbackQueue:
    """Registered callbacks and the calls waiting for them.  Calls are
    queued during a transition and made once it is complete (``drain``),
    so a callback may call the engine again."""

    __slots__ = ("_calls", "_registered", "events")

    def __init__(self, events: deque[EngineEvent]) -> None:
        self._registered: list[tuple[int, Callback, Any]] = []
        self._calls: deque[tuple[Record, Any, InFlight | None]] = deque()
        self.events = events

    def register(self, mask: int, fn: Callback, param: Any) -> None:
        self._registered.append((mask, fn, param))

    def queue(self, record: Record, message: Any, flight: InFlight | None) -> None:
        """Call back for ``message``: the request's own callback (from
        ``flight``) and every registered one whose flags match."""
        if flight is not None and not flight.api:
            return  # callbacks are for what the API asked (the seed's REQ_OTHER)
        if self._registered or (flight is not None and flight.callback is not None):
            self._calls.append((record, message, flight))

    def drain(self) -> None:
        """Make every queued call (user code runs here, outside transitions)."""
        while self._calls:
            record, message, flight = self._calls.popleft()
            if flight is not None and flight.callback is not None:
                self._call(record, flight.callback, message, flight.cb_param)
            flag = record.source_flag
            for mask, fn, param in self._registered:
                if mask & flag:
                    self._call(record, fn, record, message, param)

    def _call(self, record: Record, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:
            self.events.append(CallbackFailed(key=record.key, error=repr(exc)))


class Router:
    """Where requests go and where we are: the configured next hop, our
    listen address per transport (Via sent-by, default Contact)."""

    __slots__ = ("_contacts", "_hops", "_ids", "_local", "outbound_proxy")

    def __init__(self, outbound_proxy: str | None, ids: Ids) -> None:
        self.outbound_proxy = outbound_proxy
        self._ids = ids
        self._local: dict[str, Address] = {}
        self._contacts: dict[str, str] = {}
        # (host name, port, transport) -> the URI it came from: the runtime
        # locates a name by the URI (RFC 3263 reads the port and transport
        # as written, which the Destination has filled in).
        self._hops: dict[tuple[str, int, str], str] = {}

    def set_local_address(self, transport: str, host: str, port: int) -> None:
        self._local[transport.lower()] = (host, port)
        self._contacts.clear()

    def destination(self, proxy: str | None, target: str) -> Destination:
        """The next hop: the record's proxy, else the configured one, else the target."""
        text = proxy or self.outbound_proxy or target
        hop = parse_next_hop(text)
        if not _numeric(hop.host):
            key = (hop.host, hop.port, hop.transport)
            if self._hops.get(key) != text:
                if len(self._hops) >= MAX_HOPS:
                    self._hops.clear()
                self._hops[key] = text
        return hop

    def next_hop(self, address: Address, transport: str) -> str | None:
        """The URI a request to the host name in ``address`` was routed by
        (the last one, should two URIs give the same address), or None."""
        return self._hops.get((address[0], address[1], transport))

    def check_reachable(self, proxy: str | None, target: str, what: str) -> None:
        """A UsageError, before anything is sent or kept, when the next hop
        toward ``target`` needs a transport we do not listen on (the Via
        and Contact need our address on it)."""
        transport = self.destination(proxy, target).transport
        if transport not in self._local and self._local:
            listening = ", ".join(sorted(self._local))
            raise UsageError(
                f"{what}: the next hop is reached over {transport}, and pua listens on"
                f" {listening} only: add a {transport} listen address"
            )

    def local(self, transport: str) -> Address:
        try:
            return self._local[transport]
        except KeyError:
            raise StateError(f"no local {transport} address: call set_local_address") from None

    def via(self, transport: str) -> Via:
        host, port = self.local(transport)
        return new_via(self._ids, transport, f"[{host}]" if ":" in host else host, port)

    def default_contact(self, target: str) -> str:
        """Our own address toward ``target``'s next hop (one string per transport)."""
        transport = self.destination(None, target).transport
        contact = self._contacts.get(transport)
        if contact is None:
            host, port = self.local(transport)
            contact = self._contacts[transport] = Destination(host, port, transport).uri
        return contact


# Host names remembered by Router.next_hop; past this the table starts over
# (a name in use is remembered again at its next request).
MAX_HOPS = 4096


@functools.lru_cache(maxsize=4096)
def _numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class EngineContext:
    """The engine's parts, and what every machine does with them."""

    def __init__(self, config: EngineConfig, ids: Ids, registry: EventRegistry) -> None:
        self.config = config
        self.ids = ids
        self.registry = registry
        self.auth = Authenticator(ids)
        self.deadlines = DeadlineQueue()
        self.endpoint = SipEndpoint(timers=config.timers, deadlines=self.deadlines)
        self.table = RecordTable(config.hash_size)
        self.lifetimes = Lifetimes(config, ids)
        self.router = Router(config.outbound_proxy, ids)
        self.events: deque[EngineEvent] = deque()
        self.callbacks = CallbackQueue(self.events)
        self.changes: ChangeTracker | None = None
        self.counters = Counters()

    def mark(self, record: Record, *, refreshed: bool = False) -> None:
        """The record changed (only as a refresh changes it, when
        ``refreshed``): the store writes it (when one is attached)."""
        changes = self.changes
        if changes is not None:
            if refreshed:
                changes.refreshed(record)
            else:
                changes.changed(record)

    def forget(self, record: Record) -> None:
        """Take ``record`` out of the table, its deadline and its dialog."""
        self.deadlines.cancel(record, "deadline")
        record.flight = None
        if self.table.holds(record):
            self.table.remove(record.key)
            if self.changes is not None:
                self.changes.deleted(record)

    def arm(self, record: Record, at: float) -> None:
        self.deadlines.arm(record, "deadline", at)

    def arm_all(self, records: Sequence[Record], ats: Sequence[float]) -> None:
        self.deadlines.arm_all(records, "deadline", ats)

    def disarm(self, record: Record) -> None:
        if record.deadline is not None:
            self.deadlines.cancel(record, "deadline")

    def send(
        self,
        record: Record,
        request: Request,
        destination: Destination,
        kind: RequestKind,
        body: bytes | None,
        now: float,
        answers: InFlight | Pending | None = None,
    ) -> InFlight:
        """Start a client transaction for ``record``'s request; its answer
        goes to the callback of ``answers`` (see work.answered_for)."""
        self.disarm(record)
        self.auth.prepare(record, request, destination)
        tx = self.endpoint.send_request(
            request, (destination.host, destination.port), destination.transport, now
        )
        tx.owner = record
        flight = InFlight(kind, tx.key, body)
        if answers is not None:
            flight.api, flight.callback, flight.cb_param = (
                answers.api,
                answers.callback,
                answers.cb_param,
            )
        record.flight = flight
        return flight
