"""The presence engine: the seed's pua, sans-IO.

:class:`PresenceEngine` holds the seed's API (``send_publish``,
``send_subscribe``, ``is_dialog``, ``register_callback``, ``add_event``) and
feeds the machines beneath it:

- :mod:`pua.core.publisher` and :mod:`pua.core.subscriber`: the state
  tables, what turns answers and timers into their inputs, their actions;
- :mod:`pua.core.notify`: the NOTIFY server;
- :mod:`pua.core.lifetimes`: expires, refresh and retry times;
- :mod:`pua.core.requests`: routing and request building;
- :mod:`pua.core.context`: the shared parts (table, one deadline queue,
  SIP endpoint, callbacks queued until a transition is complete, change
  tracking for the store, counters).

Like the SIP endpoint it does no IO: feed it API calls, datagrams and timer
ticks, each with ``now`` (seconds; the runtime passes Unix time so that
expiry times can be stored); take ``datagrams_to_send()``, ``next_event()``
and ``get_timer()``.  Identifiers and jitter come from the ``ids`` source.
Work per tick is O(due timers): one heap holds every transaction timer and
each record's one deadline.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pua.errors import BodyError, StateError, UsageError
from pua.sip import MessageDropped, RequestReceived, ResponseReceived, SipUri
from pua.sip.auth import Credentials
from pua.sip.endpoint import Datagram, TransactionTimedOut, TransportFailed
from pua.sip.ids import Ids
from pua.sip.message import Response
from pua.sip.timers import Histogram
from pua.sip.transaction import Address, ClientTransaction

from .answers import Answer, read_answer
from .auth import Authenticator
from .config import EngineConfig
from .context import Callback, ChangeTracker, EngineContext
from .events import EngineEvent
from .flags import DialogState, UpdateType
from .info import PublishInfo, SubscribeInfo, as_body
from .notify import IncomingRequest, NotifyServer, RequestHandler
from .packages import EventPackage, EventRegistry, default_registry, prepare_body
from .publication import PubInput
from .publisher import Publisher
from .records import (
    PublicationRecord,
    PubState,
    Record,
    RecordKey,
    RecordOptions,
    SubscriptionRecord,
    SubscriptionRoute,
    SubState,
    intern_text,
    new_dialog_id,
)
from .requests import Destination, check_uri, parse_extra_headers, parse_next_hop
from .subscriber import Subscriber
from .subscription import SubInput

__all__ = ["Callback", "PresenceEngine"]


# States in which a record waits for its deadline (a refresh or a retry).
_PUB_WAITING = frozenset({PubState.PUBLISHED, PubState.BACKOFF})
_SUB_WAITING = frozenset({SubState.ACTIVE, SubState.BACKOFF})


# Records whose deadline is handled in one call of handle_timer at most
# (each may build and send a request: 200 held the loop for about 10 ms
# after a restart of a million records, when the due work is dense).
TIMER_BATCH = 100
# Transactions' timers (retransmissions, timeouts) handled in one call at
# most: a server gone silent times out every request in flight at once
# (max_in_flight, 1,000 by default), and each timeout fails its record,
# which logs and schedules its retry.
TIMER_BURST_BATCH = 100


class PresenceEngine:
    """The seed's pua API over a sans-IO SIP endpoint."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        ids: Ids | None = None,
        *,
        registry: EventRegistry | None = None,
    ) -> None:
        if ids is None:
            raise UsageError("PresenceEngine needs an ids source (pua.sip.CountingIds in tests)")
        self.config = config or EngineConfig()
        self.ids = ids
        self._ctx = ctx = EngineContext(self.config, ids, registry or default_registry())
        self.registry = ctx.registry
        self._publisher = Publisher(ctx)
        self._subscriber = Subscriber(ctx)
        self._notify = NotifyServer(ctx, self._subscriber)

    # -- set-up ----------------------------------------------------------------
    def set_local_address(self, transport: str, host: str, port: int) -> None:
        """Where we listen on ``transport`` (Via sent-by, default Contact)."""
        self._ctx.router.set_local_address(transport, host, port)

    def add_event(self, package: EventPackage) -> None:
        """Register an event package (the seed's ``add_event``)."""
        self.registry.add(package)

    def register_callback(self, source_flags: int, fn: Callback, param: Any = None) -> None:
        """Call ``fn(record, message, param)`` on final replies to requests
        the API started and on NOTIFYs, for records whose source flag shares
        a bit with ``source_flags`` (any bit, high ones too).  Calls are
        made once the transition that caused them is complete, so ``fn``
        may call the engine."""
        if source_flags <= 0:
            raise UsageError("source_flags must name at least one flag bit")
        self._ctx.callbacks.register(int(source_flags), fn, param)

    def add_request_handler(
        self, method: str, handler: RequestHandler, event: str | None = None
    ) -> None:
        """Hand requests of ``method`` (and ``event``; None: any) that are
        not NOTIFYs of our own dialogs to ``handler`` (the adapters' hook;
        see :mod:`pua.core.notify`).  UsageError if one is registered."""
        self._notify.add_handler(method, handler, event)

    def remove_request_handler(self, method: str, event: str | None = None) -> None:
        """Undo :meth:`add_request_handler`."""
        self._notify.remove_handler(method, event)

    def respond(self, incoming: IncomingRequest, response: Response, now: float) -> None:
        """Answer a request a handler kept (it returned None)."""
        self._notify.respond(incoming, response, now)
        self._settle(now)

    def is_dialog(self, call_id_value: str, to_tag: str | None, from_tag: str) -> DialogState:
        """Whether a stored subscription has this dialog: CONFIRMED, TEMPORARY
        (our SUBSCRIBE is not answered yet: ``to_tag`` unknown) or NONE.
        ``from_tag`` is ours, ``to_tag`` the notifier's (as in the record)."""
        sub = self._ctx.table.by_dialog(call_id_value, from_tag, to_tag)
        return DialogState.NONE if sub is None else sub.dialog_state

    def track_changes(self) -> None:
        """Keep the keys of changed and deleted records for a store (see
        :meth:`take_store_changes`).  Without a store nothing is kept."""
        if self._ctx.changes is None:
            self._ctx.changes = ChangeTracker()

    # -- queries -----------------------------------------------------------------
    def record(self, key: RecordKey | Record) -> Record | None:
        """The record of ``key``, or None."""
        return self._ctx.table.get(key)

    def records(self) -> Iterator[Record]:
        """Every record (a snapshot: the table may change meanwhile)."""
        return iter(list(self._ctx.table))

    def records_by_state(self) -> dict[tuple[str, str], int]:
        """Records held by (kind, state), kept as the engine goes: O(1)."""
        return {
            ("publication" if isinstance(state, PubState) else "subscription", state.value): n
            for state, n in self._ctx.table.by_state().items()
        }

    def counts(self) -> dict[str, int]:
        """Records held, publications, subscriptions and transactions alive:
        kept as the engine goes, O(1)."""
        table, endpoint = self._ctx.table, self._ctx.endpoint
        return {
            "records": len(table),
            "publications": table.publications,
            "subscriptions": table.subscriptions,
            "client_transactions": endpoint.client_transactions,
            "server_transactions": endpoint.server_transactions,
            "timers": len(self._ctx.deadlines),
        }

    def requests_in_flight(self) -> list[ClientTransaction]:
        """Our requests still waiting for their final answer."""
        return self._ctx.endpoint.waiting()

    def counters(self) -> dict[str, int]:
        """Requests sent, NOTIFYs received, refreshes, recoveries, retries,
        challenges answered and nonces used again."""
        auth = self._ctx.auth
        return {
            **self._ctx.counters.as_dict(),
            "challenges_answered": auth.challenges_answered,
            "nonces_reused": auth.nonces_reused,
        }

    @property
    def credentials(self) -> Credentials:
        """The credentials digest challenges are answered with (add to it:
        ``engine.credentials.add(Credential(...))``)."""
        return self._ctx.auth.credentials

    def responses_by_status(self) -> dict[int, int]:
        """Final answers to our requests by status (408 and 503 for local
        timeouts and transport failures)."""
        return dict(self._ctx.counters.responses)

    def sip_counters(self) -> dict[str, int]:
        """The SIP layer's counters."""
        return dict(self._ctx.endpoint.counters)

    def package(self, event: str | int) -> EventPackage:
        """The package of an event name or flag; UnknownEventError otherwise."""
        return self.registry.lookup(event)

    # -- outputs -----------------------------------------------------------------
    def datagrams_to_send(self) -> list[Datagram]:
        """Datagrams to transmit (data, address, transport)."""
        return self._ctx.endpoint.datagrams_to_send()

    def next_event(self) -> EngineEvent | None:
        """The oldest engine event not yet taken."""
        events = self._ctx.events
        return events.popleft() if events else None

    def timer_lateness(self) -> Histogram:
        """How late records' deadlines were handled (seconds after their
        time, by the ``now`` the runtime passed)."""
        return self._ctx.deadlines.lateness

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run.  While ``max_in_flight``
        requests wait for their answer, records' deadlines wait too: only
        the transactions' timers count until an answer makes room."""
        return self._ctx.deadlines.next_deadline(spread_too=self._room() != 0)

    def _room(self) -> int | None:
        """How many more records' deadlines may be handled now (each sends
        at most one request); None: no limit."""
        limit = self.config.max_in_flight
        if not limit:
            return None
        return max(0, limit - self._ctx.endpoint.in_flight)

    def take_store_changes(self) -> tuple[set[Record], set[Record], list[int]]:
        """Records changed (the whole row to write), records only refreshed
        (their REFRESH_COLUMNS to write), and row ids of records deleted,
        since the last call (handed over, not copied).  Look the current
        records up with :meth:`record` (one may be gone, or made again
        under the same key, by then)."""
        changes = self._ctx.changes
        if changes is None:
            return set(), set(), []
        return changes.take()

    def mark_changed(self, keys: Iterable[RecordKey | Record], *, refreshed: bool = False) -> None:
        """Mark records as changed again (a store write that failed);
        ``refreshed``: only their refresh columns."""
        changes = self._ctx.changes
        if changes is None:
            return
        table = self._ctx.table
        for key in keys:
            record = table.get(key)
            if record is not None:
                changes.mark(record, refreshed=refreshed)

    def receive_datagram(self, data: bytes, address: Address, transport: str, now: float) -> None:
        """Bytes from the network."""
        self._ctx.endpoint.receive_datagram(data, address, transport, now)
        self._settle(now)

    def receive_message(self, message: Any, address: Address, transport: str, now: float) -> None:
        """A message cut from a stream by the runtime's framer."""
        self._ctx.endpoint.receive_message(message, address, transport, now)
        self._settle(now)

    def fail_destination(self, address: Address, transport: str, reason: str, now: float) -> None:
        """The runtime could not send to ``address``: every request waiting
        on it fails at once (answered as 503 Transport failed)."""
        self._ctx.endpoint.fail_destination(address, transport, reason, now)
        self._settle(now)

    def next_hop(self, address: Address, transport: str) -> str | None:
        """The URI by which requests to the host name in ``address`` were
        routed (an outbound proxy or a Request-URI), for the runtime to
        locate by RFC 3263; None for an address the engine never used."""
        return self._ctx.router.next_hop(address, transport)

    def handle_timer(self, now: float) -> None:
        """Run the timers due at ``now``, a slice a call: at most TIMER_BATCH
        records and TIMER_BURST_BATCH transaction timers.  The rest stay
        due, and get_timer() says so at once, so that a caller on an event
        loop lets other work run between two slices."""
        ctx = self._ctx
        room = self._room()
        batch = TIMER_BATCH if room is None else min(room, TIMER_BATCH)
        for owner, name in ctx.deadlines.pop_due(now, batch, TIMER_BURST_BATCH):
            if isinstance(owner, PublicationRecord):
                if ctx.table.holds(owner):
                    self._publisher.on_timer(owner, now)
            elif isinstance(owner, SubscriptionRecord):
                if ctx.table.holds(owner):
                    self._subscriber.on_timer(owner, now)
            else:
                ctx.endpoint.fire(owner, name, now)
            self._settle(now)
        self._settle(now)

    def send_publish(self, info: PublishInfo, now: float) -> RecordKey | None:
        """Publish, modify, refresh or remove (the seed's ``send_publish``).

        Returns the record's key, or None when there was nothing to do (a
        removal of a publication we do not hold).  Raises UsageError (a
        ValueError) for what cannot be sent: an unknown or subscribe-only
        event, a bad URI, a new publication without a body.
        """
        ctx = self._ctx
        package = self.registry.lookup(info.event)
        if not package.publishable:
            raise UsageError(f"event {package.name!r} cannot be published (subscribe only)")
        self._check_route(info.pres_uri, "pres_uri", info.outbound_proxy, info.expires)
        body = info.body if type(info.body) is bytes else as_body(info.body)
        extra = parse_extra_headers(info.extra_headers) if info.extra_headers else ()
        key = RecordKey(info.pres_uri, int(package.flag), info.id, int(info.source_flag))
        record = ctx.table.get(key)
        if record is not None and not isinstance(record, PublicationRecord):
            raise StateError("the key names a subscription")
        if info.expires == 0:
            if record is None:
                return None
            self._publisher.wish(record).asked(
                remove=True, callback=info.callback, cb_param=info.cb_param
            )
            event = PubInput.REMOVE if record.etag is not None else PubInput.WITHDRAW
            self._publisher.step(record, event, now)
            self._settle(now)
            return key
        created = record is None
        if record is None:
            if body is None and info.etag is None:
                raise UsageError("a new publication needs a body")
            record = PublicationRecord(key, etag=info.etag)
        content_type = info.content_type
        if content_type is None and not created:
            content_type = record.options.content_type
        if body is not None:
            # Checked before anything is kept: a refused body changes nothing.
            try:
                body = prepare_body(
                    package,
                    body,
                    content_type=content_type,
                    version=record.publish_count,
                    tuple_id=record.tuple_id,
                )
            except BodyError as exc:
                raise BodyError(f"body rejected: {exc}") from None
        if content_type == package.content_type:
            content_type = None
        record.options = RecordOptions.of(extra, info.outbound_proxy, content_type)
        if created:
            ctx.table.put(record)
        ctx.lifetimes.apply(record, info.expires, now)
        if info.flag == UpdateType.INSERT_TYPE:
            record.etag = None  # a new initial PUBLISH, whatever we hold
        wish = self._publisher.wish(record)
        wish.asked(remove=False, callback=info.callback, cb_param=info.cb_param)
        if body is not None:
            wish.body = body
        self._publisher.step(record, PubInput.UPDATE, now)
        self._settle(now)
        return key

    def send_subscribe(self, info: SubscribeInfo, now: float) -> RecordKey | None:
        """Subscribe, refresh or unsubscribe (the seed's ``send_subscribe``).

        Returns the record's key, or None when there was nothing to do.
        Raises UsageError (a ValueError) for an unknown event or a bad URI.
        """
        ctx = self._ctx
        package = self.registry.lookup(info.event)
        check_uri(info.watcher_uri, "watcher_uri")
        target = info.remote_target or info.pres_uri
        if info.remote_target:
            check_uri(info.pres_uri, "pres_uri")
            self._check_route(target, "remote_target", info.outbound_proxy, info.expires)
        else:  # the request goes to pres_uri itself: one check of it
            self._check_route(target, "pres_uri", info.outbound_proxy, info.expires)
        if info.contact is not None:
            check_uri(info.contact, "contact")
        extra = parse_extra_headers(info.extra_headers)
        key = RecordKey(
            info.pres_uri,
            int(package.flag),
            info.id,
            int(info.source_flag),
            intern_text(info.watcher_uri),
        )
        record = ctx.table.get(key)
        if record is not None and not isinstance(record, SubscriptionRecord):
            raise StateError("the key names a publication")
        if info.expires == 0:
            if record is None:
                return None
            self._subscriber.wish(record).asked(
                remove=True, callback=info.callback, cb_param=info.cb_param
            )
            dialog = record.to_tag is not None or record.state is SubState.SUBSCRIBING
            if record.state is SubState.DONE:
                dialog = False  # resumed, nothing sent yet: nothing to end
            self._subscriber.step(
                record, SubInput.UNSUBSCRIBE if dialog else SubInput.WITHDRAW, now
            )
            self._settle(now)
            return key
        if record is None or info.flag == UpdateType.INSERT_TYPE:
            if record is not None:
                ctx.forget(record)
            record = SubscriptionRecord(key, new_dialog_id(self.ids))
            initial = None if target == info.pres_uri else intern_text(target)
            contact = intern_text(info.contact) if info.contact else None
            record.route = SubscriptionRoute.of(initial_target=initial, contact=contact)
            ctx.router.default_contact(target)  # our address must be known
            ctx.table.put(record)
        record.options = RecordOptions.of(extra, info.outbound_proxy)
        ctx.lifetimes.apply(record, info.expires, now)
        self._subscriber.wish(record).asked(
            remove=False, callback=info.callback, cb_param=info.cb_param
        )
        self._subscriber.step(record, SubInput.SUBSCRIBE, now)
        self._settle(now)
        return key

    def refresh(self, key: RecordKey, now: float) -> bool:
        """Refresh the record of ``key`` now, as if its refresh (or, backing
        off, its retry) were due: a "refresh now" from the API; its wanted
        lifetime stays as it is.  False when there is nothing to do now (no
        such record, or a request of it in flight)."""
        ctx = self._ctx
        record = ctx.table.get(key)
        if isinstance(record, PublicationRecord) and record.state in _PUB_WAITING:
            ctx.disarm(record)
            self._publisher.on_timer(record, now)
        elif isinstance(record, SubscriptionRecord) and record.state in _SUB_WAITING:
            ctx.disarm(record)
            self._subscriber.on_timer(record, now)
        else:
            return False
        self._settle(now)
        return True

    # -- restart -----------------------------------------------------------------
    def resume(self, record: Record, now: float, due_at: float) -> bool:
        """Take back a record read from the store (see pua.core.persist).

        A publication the server still holds is refreshed with its ETag, a
        subscription still alive is refreshed in its dialog, each at its
        usual time or, when that is already past, at ``due_at`` (the caller
        spreads these so that a restart is no storm).  A publication the
        server has dropped is published again from its stored body; a
        subscription without a live dialog starts a new one.  Returns False
        for a record whose lifetime is over, whose key is held already or
        that cannot be resumed (no body to publish again): the caller
        deletes its row.
        """
        return not self.resume_all((record,), now, (due_at,))

    def resume_all(
        self, records: Sequence[Record], now: float, due_ats: Sequence[float]
    ) -> list[Record]:
        """:meth:`resume` each of ``records``, in their order, with the
        ``due_ats`` time of its rank (a restart takes back a million at
        once); returns those not taken back, whose rows the caller
        deletes."""
        if len(records) != len(due_ats):
            raise ValueError("resume_all needs one due time per record")
        pubs = [r for r in records if isinstance(r, PublicationRecord)]
        subs = (
            [r for r in records if isinstance(r, SubscriptionRecord)]
            if len(pubs) < len(records)
            else []
        )
        pub_dues, sub_dues = due_ats, due_ats  # one kind (a restart reads each apart)
        if pubs and subs:
            kinds = [isinstance(r, PublicationRecord) for r in records]
            pub_dues = [at for pub, at in zip(kinds, due_ats, strict=True) if pub]
            sub_dues = [at for pub, at in zip(kinds, due_ats, strict=True) if not pub]
        # A publication's key never names a subscription (the watcher
        # tells them apart): each kind taken in its own order is the same.
        refused: list[Record] = []
        if pubs:
            self._publisher.resume_all(pubs, now, pub_dues, refused)
        if subs:
            self._subscriber.resume_all(subs, now, sub_dues, refused)
        return refused

    def release(self, records: Iterable[Record], *, force: bool = False) -> list[Record]:
        """Let go of records another node takes over (several nodes on one
        database): each leaves the table, its deadline and its dialog, and
        its row is left as it is; nothing is sent.

        Without ``force`` it is all or nothing: when a record waits for an
        answer, has a wish waiting, or has a change not yet written (the
        new owner would read a stale row), none goes, and the busy ones
        are returned for the caller to try again.  With ``force`` (the
        records are already another node's) every record goes."""
        ctx = self._ctx
        changes = ctx.changes
        held = [r for r in records if r.held and ctx.table.get(r) is r]
        if not force:
            busy = [
                r
                for r in held
                if r.flight is not None
                or r.pending is not None
                or (changes is not None and changes.pending(r))
            ]
            if busy:
                return busy
        for record in held:
            ctx.deadlines.cancel(record, "deadline")
            record.flight = None
            ctx.table.remove(record.key)
            if changes is not None:
                changes.forget(record)
        return []

    # -- plumbing ----------------------------------------------------------------
    def _check_route(self, uri: str, what: str, proxy: str | None, expires: int) -> None:
        """What every request of the API needs: a URI that parses, a way to
        reach it (a non-SIP URI needs a next hop), an expires of -1 or more."""
        parsed = check_uri(uri, what)
        if proxy is not None:
            parse_next_hop(proxy)
        elif self.config.outbound_proxy is None and not isinstance(parsed, SipUri):
            raise UsageError(
                f"{what}: a {parsed.scheme}: URI needs an outbound_proxy to be reached"
            )
        self._ctx.router.check_reachable(proxy, uri, what)
        if expires < -1:
            raise UsageError(f"expires must be -1, 0 or positive, not {expires}")

    def _settle(self, now: float) -> None:
        """Act on every event the endpoint produced, then make the callback
        calls the transitions queued."""
        ctx = self._ctx
        endpoint = ctx.endpoint
        while (event := endpoint.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                response = event.response
                if response.is_provisional:
                    continue
                status = response.status
                if status in (401, 407) and self._authenticate(event, now):
                    continue  # sent again with our answer to the challenge
                publish = event.transaction.key[1] == "PUBLISH"
                answer = read_answer(response, status, response.reason, publish=publish)
                if status in (401, 407) and (realm := Authenticator.realm_of(response)):
                    answer = answer._replace(reason=f'{answer.reason} (realm "{realm}")')
                self._on_final(event.transaction.owner, event.transaction.key, answer, now)
            elif isinstance(event, TransactionTimedOut):
                answer = Answer(status=408, reason="Request Timeout (local)")
                self._on_final(event.transaction.owner, event.transaction.key, answer, now)
            elif isinstance(event, TransportFailed):
                answer = Answer(status=503, reason=f"Transport failed: {event.reason}")
                self._on_final(event.transaction.owner, event.transaction.key, answer, now)
            elif isinstance(event, RequestReceived):
                self._notify.on_request(event.transaction, event.request, now)
            elif isinstance(event, MessageDropped):
                pass
        ctx.callbacks.drain()

    def _authenticate(self, event: ResponseReceived, now: float) -> bool:
        """Answer a 401 or 407 to a record's request in flight: the request
        goes again at once as a new transaction (pua.core.auth); True when
        it went."""
        ctx = self._ctx
        owner, tx, request = event.transaction.owner, event.transaction, event.request
        if request is None or not ctx.auth.credentials:
            return False
        if not isinstance(owner, (PublicationRecord, SubscriptionRecord)) or not owner.held:
            return False
        flight = owner.flight
        if flight is None or flight.tx_key != tx.key:
            return False
        host, port = tx.address
        hop = Destination(host, port, tx.transport)
        if not ctx.auth.answer(owner, request, event.response, hop, flight.auth_tries):
            return False
        via = ctx.router.via(tx.transport)  # a new transaction: a new branch
        request.headers.set("Via", str(via))
        request.headers.remember("via:top", via)
        again = ctx.endpoint.send_request(request, tx.address, tx.transport, now)
        again.owner = owner
        flight.tx_key = again.key
        flight.auth_tries += 1
        counts = ctx.counters.responses
        counts[event.response.status] = counts.get(event.response.status, 0) + 1
        return True

    def _on_final(self, owner: object, tx_key: tuple[str, str], answer: Answer, now: float) -> None:
        counts = self._ctx.counters.responses
        counts[answer.status] = counts.get(answer.status, 0) + 1
        if not isinstance(owner, (PublicationRecord, SubscriptionRecord)):
            return
        flight = owner.flight
        if flight is None or flight.tx_key != tx_key or not owner.held:
            return  # an answer to a request the record no longer waits for
        if isinstance(owner, PublicationRecord):
            self._publisher.on_answer(owner, answer, now)
        else:
            self._subscriber.on_answer(owner, answer, now)
