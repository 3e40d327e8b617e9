"""The presence engine on real sockets: :class:`PresenceRuntime`.

The runtime feeds the sans-IO :class:`~pua.core.PresenceEngine` with what the
sockets receive and with timer ticks, sends what it produces, and hands its
events to listeners and to callers awaiting a result.  The engine's clock is
Unix time (expiry times are stored); one ``loop.call_at`` is armed at the
engine's next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import Any

from pua.core import (
    Callback,
    CallbackFailed,
    DialogState,
    EngineConfig,
    EngineEvent,
    EventPackage,
    EventRegistry,
    IncomingRequest,
    PresenceEngine,
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    PublishInfo,
    RecordKey,
    RequestHandler,
    SubscribeInfo,
    SubscriptionAccepted,
    SubscriptionFailed,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from pua.core.events import NotifyReceived
from pua.core.records import Record, SubscriptionRecord
from pua.core.requests import parse_next_hop
from pua.core.table import partition_of
from pua.errors import PublishError, StateError, SubscribeError, UsageError
from pua.sip.auth import Credentials
from pua.sip.ids import Ids
from pua.sip.locate import is_ip
from pua.sip.message import Message, Response
from pua.sip.timers import Histogram
from pua.sip.transaction import Address

from .failures import FailureLog
from .ids import SystemIds
from .resolver import Locator, Resolver
from .timer import DeadlineTimer, LoopLag
from .transports import Listen, Transports, route_source

__all__ = ["EventListener", "PresenceRuntime"]

log = logging.getLogger("pua.engine")

EventListener = Callable[[EngineEvent], None]
# run_timers' calls of the engine at most (each handles a slice of what is
# due): a million records, and a bound should a deadline keep falling due.
RUN_TIMERS_CALLS = 10_000


class PresenceRuntime:
    """A :class:`PresenceEngine` running on asyncio.

    ``async with PresenceRuntime(config, listen=[...]) as runtime:`` binds
    the sockets; ``await runtime.publish(info)`` returns the first success;
    ``runtime.send_subscribe(info)`` starts a subscription whose NOTIFYs
    reach the listeners added with :meth:`add_listener`.
    """

    def __init__(
        self,
        config: EngineConfig | None = None,
        *,
        listen: list[Listen] | None = None,
        ids: Ids | None = None,
        registry: EventRegistry | None = None,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
        engine: PresenceEngine | None = None,
        dns_servers: Sequence[str] = (),
        locator: Locator | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        # ``engine``: one made (and perhaps filled) elsewhere, e.g. by a
        # benchmark; by default a new one on the system's randomness.
        self._engine = engine or PresenceEngine(self.config, ids or SystemIds(), registry=registry)
        self.listen = listen or [Listen("udp", "127.0.0.1", 0)]
        # Host names are located by RFC 3263: ``dns_servers`` (IP[:PORT])
        # or the system's configuration, asked at the first name.
        if locator is None and dns_servers:
            locator = Locator(Resolver(dns_servers), self._engine.ids.uniform)
        timers = self.config.timers
        self.transports = Transports(
            self.listen,
            self._on_datagram,
            self._on_message,
            self._on_send_error,
            tls_server=tls_server,
            tls_client=tls_client,
            locator=locator,
            next_hop=self._engine.next_hop,
            flight_seconds=timers.timer_f + timers.t4,
        )
        self._failure_log = FailureLog(log, self._event_name, wall=self.now, later=self._later)
        self._listeners: list[EventListener] = [self._failure_log, self._learn_failures]
        self._waiters: dict[RecordKey, list[_Settle]] = {}
        self._deadlines: _Deadlines | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer = DeadlineTimer(self.now, self._on_timer)
        self.loop_lag = LoopLag()
        self._started = False

    async def __aenter__(self) -> PresenceRuntime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- life cycle --------------------------------------------------------
    async def start(self) -> None:
        """Bind the sockets and tell the engine where it listens."""
        self._loop = asyncio.get_running_loop()
        await self.transports.start()
        bound = self.transports.bound()
        for transport in ("udp", "tcp", "tls"):
            for family in (socket.AF_INET, socket.AF_INET6):
                address = bound.get((transport, family))
                if address is None:
                    continue
                host, port = address
                if host in ("0.0.0.0", "::"):
                    host = route_source(self._probe_target(family))
                self._engine.set_local_address(transport, host, port)
                break
        self.loop_lag.start(self._loop)
        self._started = True

    def _probe_target(self, family: int) -> Address:
        if self.config.outbound_proxy:
            hop = parse_next_hop(self.config.outbound_proxy)
            if is_ip(hop.host):  # a name would be resolved here, blocking the loop
                return (hop.host, hop.port)
        return ("192.0.2.1", 5060) if family == socket.AF_INET else ("2001:db8::1", 5060)

    def _later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle | None:
        """``callback`` after ``delay`` seconds on the loop; None before
        the runtime has started."""
        loop = self._loop
        if loop is None or not self._started:
            return None
        return loop.call_later(max(0.0, delay), callback)

    async def close(self) -> None:
        """Close the sockets (records stay as they are; see ``shutdown``)."""
        self._failure_log.flush()
        self._started = False
        self._timer.cancel()
        self.loop_lag.stop()
        await self.transports.close()

    # -- the seed's API --------------------------------------------------------
    def now(self) -> float:
        """The engine's clock: Unix time."""
        return time.time()

    def send_publish(self, info: PublishInfo) -> RecordKey | None:
        """The seed's send_publish: start or change a publication."""
        key = self._engine.send_publish(info, self.now())
        self._pump()
        return key

    def send_subscribe(self, info: SubscribeInfo) -> RecordKey | None:
        """The seed's send_subscribe: start, refresh or end a subscription."""
        key = self._engine.send_subscribe(info, self.now())
        self._pump()
        return key

    @property
    def answer_within(self) -> float:
        """How long :meth:`publish` and :meth:`subscribe` wait at most: the
        request's transaction (64·T1, timer F), one recovery the engine makes
        by itself (a re-PUBLISH after 412, a resend after 423, a new dialog
        after 481), and the NOTIFY that follows a SUBSCRIBE's 2xx (RFC 6665
        Timer N, 64·T1); plus T4.  The engine reports every transaction's end
        well before: this bound only guards against a wait that nothing ends."""
        timers = self.config.timers
        return 3 * timers.timer_f + timers.t4

    async def publish(self, info: PublishInfo) -> EngineEvent:
        """Send ``info`` and wait for the outcome of its first attempt:
        PublicationSucceeded, or PublicationRemoved for a removal.  A failure
        raises PublishError with the SIP status and reason (408 for a
        timeout, 503 for a transport failure) and ``retrying`` True when the
        engine keeps trying in the background.  Bounded by
        :attr:`answer_within`."""
        uri = info.pres_uri
        self._require_started()

        def outcome(event: EngineEvent, settle: _Settle) -> None:
            if isinstance(event, PublicationSucceeded | PublicationRemoved):
                settle.now(event)
            elif isinstance(event, PublicationFailed):
                settle.now(_failure(PublishError, f"PUBLISH for {uri}", event))

        def missing() -> Exception:
            return PublishError(
                f"nothing to remove for {uri}", status=404, reason="No such publication"
            )

        return await self._await(
            self._engine.send_publish(info, self.now()), outcome, missing, PublishError
        )

    async def subscribe(self, info: SubscribeInfo) -> EngineEvent:
        """Send ``info`` and wait for the outcome of its first attempt: the
        first NOTIFY (NotifyReceived or SubscriptionStateChanged), or the 2xx
        (SubscriptionAccepted) when no NOTIFY follows within Timer N (64·T1);
        SubscriptionTerminated for an unsubscribe.  A failure raises
        SubscribeError with the SIP status and reason and ``retrying`` True
        when the engine keeps trying.  Bounded by :attr:`answer_within`."""
        ending = info.expires == 0
        uri = info.pres_uri
        timer_n = self.config.timers.timer_f

        def outcome(event: EngineEvent, settle: _Settle) -> None:
            if isinstance(event, SubscriptionTerminated):
                if ending:
                    settle.now(event)
                else:
                    settle.now(
                        SubscribeError(
                            f"subscription to {uri} ended: {event.reason}",
                            status=0,
                            reason=event.reason,
                            key=event.key,
                        )
                    )
            elif isinstance(event, SubscriptionFailed):
                settle.now(_failure(SubscribeError, f"SUBSCRIBE to {uri}", event))
            elif ending:
                return
            elif isinstance(event, NotifyReceived | SubscriptionStateChanged):
                settle.now(event)
            elif isinstance(event, SubscriptionAccepted):
                settle.later(timer_n, event)  # unless a NOTIFY comes first

        def missing() -> Exception:
            return SubscribeError(
                f"no subscription to {uri}", status=404, reason="No such subscription"
            )

        self._require_started()
        return await self._await(
            self._engine.send_subscribe(info, self.now()), outcome, missing, SubscribeError
        )

    def refresh(self, key: RecordKey) -> bool:
        """Refresh the record of ``key`` now (PresenceEngine.refresh); the
        outcome comes as an event."""
        done = self._engine.refresh(key, self.now())
        self._pump()
        return done

    async def end(self, key: RecordKey) -> EngineEvent:
        """Remove the publication, or end the subscription, of ``key`` (a
        request with Expires: 0) and wait for the answer."""
        if key.watcher_uri:
            return await self.subscribe(
                SubscribeInfo(
                    pres_uri=key.pres_uri,
                    watcher_uri=key.watcher_uri,
                    event=key.event,
                    id=key.id,
                    source_flag=key.source_flag,
                    expires=0,
                )
            )
        return await self.publish(
            PublishInfo(
                pres_uri=key.pres_uri,
                event=key.event,
                id=key.id,
                source_flag=key.source_flag,
                expires=0,
            )
        )

    async def _await(
        self,
        key: RecordKey | None,
        outcome: Callable[[EngineEvent, _Settle], None],
        missing: Callable[[], Exception],
        error: type[PublishError] | type[SubscribeError],
    ) -> EngineEvent:
        """Wait until ``outcome``, shown each event of the record ``key``
        (that an API call on the engine has just made or changed), settles
        the wait with a result or an error; at most :attr:`answer_within`
        (and less than a second more).  Waiters are filed by record key: an
        event reaches only its own.  ``missing()`` is raised when ``key`` is
        None (the call had nothing to do)."""
        if key is None:
            raise missing()
        if self._deadlines is None:
            self._deadlines = _Deadlines(asyncio.get_running_loop())
        settle = _Settle(self._deadlines.loop, outcome)
        waiters = self._waiters.get(key)
        if waiters is None:
            waiters = self._waiters[key] = []
        waiters.append(settle)
        limit = self.answer_within
        second = self._deadlines.add(settle, limit)
        try:
            self._pump()  # events queued by the engine call reach the waiter now
            return await settle.future
        except _Expired:
            raise error(
                f"{key.pres_uri}: no outcome within {limit:g} s",
                status=408,
                reason=f"No outcome within {limit:g} s",
                retrying=self.record(key) is not None,
                key=key,
            ) from None
        finally:
            settle.cancel()
            self._deadlines.remove(settle, second)
            waiters.remove(settle)
            if not waiters:
                del self._waiters[key]

    def add_listener(self, listener: EventListener) -> None:
        """Call ``listener(event)`` for every engine event."""
        self._listeners.append(listener)

    def remove_listener(self, listener: EventListener) -> None:
        """Stop calling ``listener``."""
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _require_started(self) -> None:
        if not self._started:
            raise StateError("the runtime is not started")

    # -- what the layers above read (O(1) unless said otherwise) --------------------
    @property
    def registry(self) -> EventRegistry:
        """The event packages."""
        return self._engine.registry

    def package(self, event: str | int) -> EventPackage:
        """The package of an event name or flag (UnknownEventError names
        the known ones)."""
        return self._engine.package(event)

    def add_event(self, package: EventPackage) -> None:
        """Register an event package (the seed's add_event)."""
        self._engine.add_event(package)

    @property
    def credentials(self) -> Credentials:
        """The credentials digest challenges are answered with."""
        return self._engine.credentials

    def _event_name(self, flag: int) -> str:
        try:
            return self._engine.package(flag).name
        except UsageError:
            return str(flag)

    def register_callback(self, source_flags: int, fn: Callback, param: Any = None) -> None:
        """The seed's register_puacb (see PresenceEngine.register_callback)."""
        self._engine.register_callback(source_flags, fn, param)

    def add_request_handler(
        self, method: str, handler: RequestHandler, event: str | None = None
    ) -> None:
        """Hand requests of ``method`` (and ``event``; None: any) that are
        not NOTIFYs of pua's dialogs to ``handler`` (see
        :meth:`PresenceEngine.add_request_handler`).  The handler runs
        inside the engine's step: it must not call the runtime; it answers
        at once or returns None and calls :meth:`respond` later."""
        self._engine.add_request_handler(method, handler, event)

    def remove_request_handler(self, method: str, event: str | None = None) -> None:
        """Undo :meth:`add_request_handler`."""
        self._engine.remove_request_handler(method, event)

    def respond(self, incoming: IncomingRequest, response: Response) -> None:
        """Answer a request a handler kept."""
        self._engine.respond(incoming, response, self.now())
        self._pump()

    def is_dialog(self, call_id: str, to_tag: str | None, from_tag: str) -> DialogState:
        """The seed's is_dialog."""
        return self._engine.is_dialog(call_id, to_tag, from_tag)

    def record(self, key: RecordKey | Record) -> Record | None:
        """The record of ``key``, or None."""
        return self._engine.record(key)

    def records(self) -> Iterator[Record]:
        """Every record (a snapshot; O(records))."""
        return self._engine.records()

    def counts(self) -> dict[str, int]:
        """Records, publications, subscriptions, transactions, timers."""
        return self._engine.counts()

    def records_by_state(self) -> dict[tuple[str, str], int]:
        """Records by (kind, state)."""
        return self._engine.records_by_state()

    def counters(self) -> dict[str, int]:
        """The engine's counters (requests sent, refreshes, recoveries...)."""
        return self._engine.counters()

    def responses_by_status(self) -> dict[int, int]:
        """Final answers to our requests by status."""
        return self._engine.responses_by_status()

    def sip_counters(self) -> dict[str, int]:
        """The SIP layer's counters."""
        return self._engine.sip_counters()

    def timer_lateness(self) -> Histogram:
        """How late records' deadlines (refreshes, retries, expiries) were
        handled, in seconds (see :class:`~pua.sip.timers.DeadlineQueue`)."""
        return self._engine.timer_lateness()

    def run_timers(self) -> None:
        """Run every timer due now (what ``pua.cleanup`` asks for)."""
        engine, now = self._engine, self.now()
        for _ in range(RUN_TIMERS_CALLS):
            deadline = engine.get_timer()
            if deadline is None or deadline > now:
                break
            engine.handle_timer(now)  # a slice of what is due a call
            self._pump()
        self._pump()

    # -- what the store sync uses ---------------------------------------------------
    def track_changes(self) -> None:
        """Keep changed and deleted records for a store."""
        self._engine.track_changes()

    def take_store_changes(self) -> tuple[set[Record], set[Record], list[int]]:
        """Records changed whole, records only refreshed, and row ids
        deleted since the last call."""
        return self._engine.take_store_changes()

    def mark_changed(self, keys: Iterable[RecordKey | Record], *, refreshed: bool = False) -> None:
        """Mark records as changed again (a write that failed)."""
        self._engine.mark_changed(keys, refreshed=refreshed)

    def resume(self, record: Record, due_at: float) -> bool:
        """Take back a record read from the store (PresenceEngine.resume)."""
        return self._engine.resume(record, self.now(), due_at)

    def resume_all(self, records: Sequence[Record], due_ats: Sequence[float]) -> list[Record]:
        """Take back records read from the store, each due at the time of
        its rank in ``due_ats``; returns those not taken back
        (PresenceEngine.resume_all)."""
        return self._engine.resume_all(records, self.now(), due_ats)

    def release(self, records: Iterable[Record], *, force: bool = False) -> list[Record]:
        """Let go of records another node takes over, all or none; returns
        the busy ones when none went (PresenceEngine.release)."""
        kept = self._engine.release(records, force=force)
        self._arm_timer()
        return kept

    def receive(self, data: bytes, address: Address, transport: str) -> None:
        """Take a message as if it had come from ``address`` (a NOTIFY
        another node of a cluster received for one of our dialogs)."""
        self._on_datagram(data, address, transport)

    def partition(self, record: Record | RecordKey) -> int:
        """The partition of a record (0 .. 2^hash_size - 1)."""
        return partition_of(record.pres_uri, record.watcher_uri, self.config.hash_size)

    def jitter(self) -> float:
        """A float in [0, 1) from the engine's ids source."""
        return self._engine.ids.uniform()

    def flush_outputs(self) -> None:
        """Send what the engine produced, hand out its events, re-arm the timer."""
        self._pump()

    # -- the pump ----------------------------------------------------------------
    def _on_datagram(self, data: bytes, address: Address, transport: str) -> None:
        self._engine.receive_datagram(data, address, transport, self.now())
        self._pump()

    def _on_message(self, message: Message, address: Address, transport: str) -> None:
        self._engine.receive_message(message, address, transport, self.now())
        self._pump()

    def _on_send_error(self, address: Address, transport: str, exc: Exception) -> None:
        self._engine.fail_destination(address, transport, str(exc), self.now())
        self._pump()

    def _learn_failures(self, event: EngineEvent) -> None:
        """A timeout or a 503 from a located server: the engine's next try
        goes to the next target (RFC 3263 §4.3)."""
        if not isinstance(event, PublicationFailed | SubscriptionFailed):
            return
        if event.status not in (408, 503):
            return
        record = self._engine.record(event.key)
        if record is None:
            return
        target_uri = (
            record.remote_target if isinstance(record, SubscriptionRecord) else record.pres_uri
        )
        hop_text = record.outbound_proxy or self.config.outbound_proxy or target_uri
        try:
            hop = parse_next_hop(hop_text)
        except UsageError:
            return
        target = self.transports.target_of((hop.host, hop.port), hop.transport)
        if target is not None:
            log.info("%s answered %s; later requests try another server", target, event.status)
            self.transports.avoid(target)

    def _on_timer(self, now: float) -> None:
        self._engine.handle_timer(now)
        self._pump()

    def _pump(self) -> None:
        for datagram in self._engine.datagrams_to_send():
            self.transports.send(datagram.data, datagram.address, datagram.transport)
        while (event := self._engine.next_event()) is not None:
            if isinstance(event, CallbackFailed):
                log.error("callback failed for %s: %s", event.key, event.error)
            waiting = self._waiters.get(event.key) if event.key is not None else None
            for listener in [*self._listeners, *(waiting or ())]:
                try:
                    listener(event)
                except Exception:
                    log.exception("event listener failed")
        # Listeners may have called the API: send what that produced.
        for datagram in self._engine.datagrams_to_send():
            self.transports.send(datagram.data, datagram.address, datagram.transport)
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._loop is not None and self._started:
            self._timer.arm(self._loop, self._engine.get_timer())


class _Expired(Exception):
    """A wait that reached its deadline (see :class:`_Deadlines`)."""


class _Settle:
    """How a waiting call ends: ``now`` with a result or an error, or
    ``later`` with a result unless something settles it first.  Called
    with each event of its record, it hands the event to ``outcome``
    until the wait is settled."""

    __slots__ = ("_loop", "_outcome", "_timer", "future")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        outcome: Callable[[EngineEvent, _Settle], None],
    ) -> None:
        self._loop = loop
        self._outcome = outcome
        self.future: asyncio.Future[EngineEvent] = loop.create_future()
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self, event: EngineEvent) -> None:
        if not self.future.done():
            self._outcome(event, self)

    def now(self, result: EngineEvent | Exception) -> None:
        if self.future.done():
            return
        if isinstance(result, Exception):
            self.future.set_exception(result)
        else:
            self.future.set_result(result)

    def later(self, delay: float, result: EngineEvent) -> None:
        if self._timer is None:
            self._timer = self._loop.call_later(delay, self.now, result)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()


class _Deadlines:
    """The bound on every wait (PresenceRuntime.answer_within), kept with
    one loop timer per second that has waits ending in it, instead of one
    timer (and one asyncio.timeout) per call: a wait is filed under the
    whole second after its deadline and taken out when it ends."""

    __slots__ = ("_seconds", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._seconds: dict[int, set[_Settle]] = {}

    def add(self, settle: _Settle, within: float) -> int:
        """File ``settle`` to end ``within`` seconds from now (rounded up to
        the second); returns what :meth:`remove` takes."""
        second = math.ceil(self.loop.time() + within)
        waits = self._seconds.get(second)
        if waits is None:
            waits = self._seconds[second] = set()
            self.loop.call_at(second, self._expire, second)
        waits.add(settle)
        return second

    def remove(self, settle: _Settle, second: int) -> None:
        waits = self._seconds.get(second)
        if waits is not None:
            waits.discard(settle)

    def _expire(self, second: int) -> None:
        for settle in self._seconds.pop(second, ()):
            settle.now(_Expired())


def _failure(
    error: type[PublishError] | type[SubscribeError],
    what: str,
    event: PublicationFailed | SubscriptionFailed,
) -> PublishError | SubscribeError:
    """The error a waiting caller gets for a failed attempt."""
    retrying = event.retry_at is not None
    tail = "; pua keeps retrying" if retrying else ""
    return error(
        f"{what} failed: {event.status} {event.reason}{tail}",
        status=event.status,
        reason=event.reason,
        retrying=retrying,
        retry_at=event.retry_at,
        key=event.key,
    )
