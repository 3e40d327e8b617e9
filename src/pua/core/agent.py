"""The presence engine: the seed's pua, sans-IO.

:class:`PresenceAgent` keeps every publication and subscription alive on top
of a :class:`~pua.sip.SipEndpoint`.  Like the endpoint it does no IO: feed it
``send_publish``/``send_subscribe`` calls, datagrams and timer ticks, each
with ``now`` (seconds; the runtime passes Unix time so that expiry times can
be stored); take ``datagrams_to_send()``, ``next_event()`` and
``get_timer()``.  Identifiers and jitter come from the ``ids`` source.

Work per tick is O(due timers): every record has at most one deadline in the
engine's heap (refresh, retry or end of lifetime), and the endpoint keeps its
own for transactions.
"""

from __future__ import annotations

import functools
import math
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pua.sip import (
    MessageDropped,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    SipEndpoint,
    SipUri,
    TransactionTimedOut,
    TransportFailed,
    make_response,
    parse_uri,
)
from pua.sip.builder import new_via
from pua.sip.endpoint import warning_value
from pua.sip.errors import BodyError, LocalProtocolError, RemoteProtocolError
from pua.sip.headers import CSeq, Headers
from pua.sip.ids import Ids, call_id, tag
from pua.sip.timers import DeadlineQueue
from pua.sip.transaction import Address, ServerTransaction

from .config import EngineConfig
from .events import (
    CallbackFailed,
    EngineEvent,
    NotifyReceived,
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    SubscriptionFailed,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from .flags import DialogState, UpdateType
from .info import PublishInfo, SubscribeInfo
from .packages import EventPackage, EventRegistry, default_registry
from .publication import PubAction, PubInput, publication_step
from .records import (
    Publication,
    PubState,
    Record,
    RecordKey,
    RecordTable,
    Subscription,
    SubState,
)
from .subscription import SubAction, SubInput, subscription_step

__all__ = ["Callback", "Destination", "PresenceAgent"]

# register_callback's function: (record, message, param).  ``message`` is the
# final Response, the NOTIFY Request, or None after a local timeout.
Callback = Callable[[Record, Request | Response | None, Any], None]

# Retryable answers (RFC 3261 §21): the server may do better later.
_RETRYABLE = frozenset({408, 480, 500, 502, 503, 504, 580})
# CSeq step over a stored one when a dialog is resumed after a restart:
# more than the refreshes a write-back period can leave unwritten.
CSEQ_RESUME_STEP = 1000
# Terminated reasons (RFC 6665 §4.1.3).
_RESUBSCRIBE_NOW = frozenset({"deactivated", "timeout"})
_RESUBSCRIBE_LATER = frozenset({"probation", "giveup"})


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a request goes: the next hop's host (a name or an address, the
    runtime resolves it), port and transport."""

    host: str
    port: int
    transport: str

    @classmethod
    def from_uri(cls, text: str) -> Destination:
        """The next hop a sip:/sips: URI names (RFC 3263 without DNS SRV:
        the port defaults to 5060, or 5061 for sips)."""
        return _destination_of(text)

    @classmethod
    def _parse(cls, text: str) -> Destination:
        try:
            uri = parse_uri(text)
        except RemoteProtocolError as exc:
            raise ValueError(f"bad next hop {text!r}: {exc}") from None
        if not isinstance(uri, SipUri):
            raise ValueError(f"cannot route to a non-SIP URI: {text}")
        transport = (uri.param("transport") or ("tls" if uri.secure else "udp")).lower()
        host = uri.param("maddr") or uri.host
        if host.startswith("["):
            host = host[1:-1]
        return cls(host, uri.port or (5061 if uri.secure else 5060), transport)


@functools.lru_cache(maxsize=4096)
def _destination_of(text: str) -> Destination:
    # The same few next hops are looked up for every request.
    return Destination._parse(text)


class PresenceAgent:
    """The seed's pua API over a sans-IO SIP endpoint."""

    def __init__(
        self,
        config: EngineConfig | None = None,
        ids: Ids | None = None,
        *,
        registry: EventRegistry | None = None,
    ) -> None:
        if ids is None:
            raise ValueError("PresenceAgent needs an ids source (pua.sip.CountingIds in tests)")
        self.config = config or EngineConfig()
        self.ids = ids
        self.endpoint = SipEndpoint(timers=self.config.timers)
        self.registry = registry or default_registry()
        self.table = RecordTable(self.config.hash_size)
        self._deadlines = DeadlineQueue()
        self._due: dict[RecordKey, PubInput | SubInput] = {}
        self._tx_owner: dict[tuple[str, str], tuple[RecordKey, str]] = {}
        self._events: deque[EngineEvent] = deque()
        self._callbacks: list[tuple[int, Callback, Any]] = []
        self._local: dict[str, Address] = {}
        self.responses_by_status: dict[int, int] = {}
        self._dirty: set[RecordKey] = set()
        self._deleted: set[RecordKey] = set()
        self.counters: dict[str, int] = {
            "publish_sent": 0,
            "subscribe_sent": 0,
            "notify_received": 0,
            "refreshes": 0,
            "recoveries_412": 0,
            "recoveries_423": 0,
            "retries": 0,
        }

    # ------------------------------------------------------------------
    # Set-up
    # ------------------------------------------------------------------
    def set_local_address(self, transport: str, host: str, port: int) -> None:
        """Where we listen on ``transport`` (Via sent-by, default Contact)."""
        self._local[transport.lower()] = (host, port)

    def add_event(self, package: EventPackage) -> None:
        """Register an event package (the seed's ``add_event``)."""
        self.registry.add(package)

    def register_callback(self, source_flags: int, fn: Callback, param: Any = None) -> None:
        """Call ``fn(record, message, param)`` on final replies to requests
        the API started and on NOTIFYs, for records whose source flag shares
        a bit with ``source_flags`` (any bit, high ones too)."""
        if source_flags <= 0:
            raise ValueError("source_flags must name at least one flag bit")
        self._callbacks.append((int(source_flags), fn, param))

    def is_dialog(self, call_id_value: str, to_tag: str | None, from_tag: str) -> DialogState:
        """Whether a stored subscription has this dialog: CONFIRMED, TEMPORARY
        (our SUBSCRIBE is not answered yet: ``to_tag`` unknown) or NONE.
        ``from_tag`` is ours, ``to_tag`` the notifier's (as in the record)."""
        sub = self.table.by_dialog(call_id_value, from_tag, to_tag)
        if sub is None:
            return DialogState.NONE
        return sub.dialog_state

    # ------------------------------------------------------------------
    # Outputs
    # ------------------------------------------------------------------
    def datagrams_to_send(self) -> list[Any]:
        """Datagrams to transmit (pua.sip.Datagram: data, address, transport)."""
        return self.endpoint.datagrams_to_send()

    def next_event(self) -> EngineEvent | None:
        """The oldest engine event not yet taken."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next run."""
        mine = self._deadlines.next_deadline()
        theirs = self.endpoint.get_timer()
        if mine is None:
            return theirs
        if theirs is None:
            return mine
        return min(mine, theirs)

    def take_store_changes(self) -> tuple[set[RecordKey], set[RecordKey]]:
        """Keys of records changed, and of records deleted, since the last
        call (for the store).  O(1): the sets are handed over, not copied;
        look the records up with ``table.get`` (one may be gone by then)."""
        changed, self._dirty = self._dirty, set()
        deleted, self._deleted = self._deleted, set()
        return changed, deleted

    def mark_changed(self, keys: Iterable[RecordKey]) -> None:
        """Mark records as changed again (a store write that failed)."""
        for key in keys:
            if self.table.get(key) is not None:
                self._dirty.add(key)

    # ------------------------------------------------------------------
    # Inputs
    # ------------------------------------------------------------------
    def receive_datagram(self, data: bytes, address: Address, transport: str, now: float) -> None:
        """Bytes from the network."""
        self.endpoint.receive_datagram(data, address, transport, now)
        self._drain(now)

    def receive_message(self, message: Any, address: Address, transport: str, now: float) -> None:
        """A message cut from a stream by the runtime's framer."""
        self.endpoint.receive_message(message, address, transport, now)
        self._drain(now)

    def handle_timer(self, now: float) -> None:
        """Run every timer due at ``now``."""
        self.endpoint.handle_timer(now)
        self._drain(now)
        for owner, _name in self._deadlines.pop_due(now):
            key: RecordKey = owner  # type: ignore[assignment]
            event = self._due.pop(key, None)
            record = self.table.get(key)
            if event is None or record is None:
                continue
            if isinstance(record, Publication):
                assert isinstance(event, PubInput)
                self._pub_input(record, event, now)
            else:
                assert isinstance(event, SubInput)
                self._sub_input(record, event, now)
            self._drain(now)

    # ------------------------------------------------------------------
    # Restart
    # ------------------------------------------------------------------
    def resume(self, record: Publication | Subscription, now: float, due_at: float) -> bool:
        """Take back a record read from the store (see pua.core.persist).

        A publication the server still holds is refreshed with its ETag, a
        subscription still alive is refreshed in its dialog, each at its
        usual time or, when that is already past, at ``due_at`` (the caller
        spreads these so that a restart is no storm).  A publication the
        server has dropped is published again from its stored body; a
        subscription without a live dialog starts a new one.  Returns False
        for a record whose lifetime is over or that cannot be resumed (no
        body to publish again): the caller deletes its row.
        """
        if record.desired_until is not None and record.desired_until <= now + 1:
            return False
        if self.table.get(record.key) is not None:
            return False
        alive = record.expires_at > now + 1
        if isinstance(record, Publication):
            if not record.tuple_id:
                record.tuple_id = self._tuple_id()
            if not record.call_id:
                record.call_id = call_id(self.ids)
            if record.desired_until is None:
                record.requested = self.config.default_expires
            else:
                record.requested = max(1, int(record.desired_until - now))
            if record.etag is not None and alive:
                record.state = PubState.PUBLISHED
                self.table.put(record)
                self._arm(record.key, PubInput.REFRESH_DUE, self._resume_at(record, now, due_at))
                return True
            if record.body is None:
                return False
            record.etag = None
            record.state = PubState.DONE
            record.pending_body = record.body
            self.table.put(record)
            self._arm(record.key, PubInput.UPDATE, due_at)
            return True
        record.requested = (
            self.config.default_expires
            if record.desired_until is None
            else max(1, int(record.desired_until - now))
        )
        contact = _check_uri(record.contact, "contact") if record.contact else None
        if contact is None or (isinstance(contact, SipUri) and contact.user is None):
            # Our own address (no user part) may have changed since the record
            # was written: refreshes carry the current one, which moves the
            # notifier's target (RFC 6665 §4.1.2.1, a target refresh).
            record.contact = self._default_contact(record.initial_target)
        # In write-back mode the stored CSeq may lag what was sent before a
        # crash; a lower CSeq in the dialog would be refused (RFC 3261
        # §12.2.2), so the count goes on from safely above it.
        record.cseq += CSEQ_RESUME_STEP
        if record.to_tag is not None and alive:
            record.state = SubState.ACTIVE
            self.table.put(record)
            self._arm(record.key, SubInput.REFRESH_DUE, self._resume_at(record, now, due_at))
            return True
        record.state = SubState.DONE
        self.table.put(record)
        self._arm(record.key, SubInput.SUBSCRIBE, due_at)
        return True

    def _resume_at(self, record: Publication | Subscription, now: float, due_at: float) -> float:
        """When a resumed record is refreshed: a margin before its expiry,
        or ``due_at`` when that moment is already gone."""
        at = record.expires_at - self.config.refresh_margin - 10.0 * self.ids.uniform()
        return at if at > due_at else due_at

    # ------------------------------------------------------------------
    # send_publish
    # ------------------------------------------------------------------
    def send_publish(self, info: PublishInfo, now: float) -> RecordKey | None:
        """Publish, modify, refresh or remove (the seed's ``send_publish``).

        Returns the record's key, or None when there was nothing to do (a
        removal of a publication we do not hold).  Raises ValueError for
        what cannot be sent: an unknown or subscribe-only event, a bad URI,
        a new publication without a body.
        """
        package = self._package(info.event)
        if not package.publishable:
            raise ValueError(f"event {package.name!r} cannot be published (subscribe only)")
        pres = _check_uri(info.pres_uri, "pres_uri")
        if info.outbound_proxy is not None:
            Destination.from_uri(info.outbound_proxy)
        elif self.config.outbound_proxy is None:
            _require_sip(pres, "pres_uri")
        if info.expires < -1:
            raise ValueError(f"expires must be -1, 0 or positive, not {info.expires}")
        key = RecordKey(info.pres_uri, int(package.flag), info.id, int(info.source_flag))
        record = self.table.get(key)
        if record is not None and not isinstance(record, Publication):
            raise LocalProtocolError("key of a subscription")
        if info.expires == 0:
            if record is None:
                return None
            record.callback, record.cb_param = info.callback, info.cb_param
            record.api_request = True
            record.pending_remove = True
            record.pending_body = None
            self._pub_input(
                record, PubInput.REMOVE if record.etag is not None else PubInput.WITHDRAW, now
            )
            self._drain(now)
            return key
        if record is None:
            if info.body is None and info.etag is None:
                raise ValueError("a new publication needs a body")
            record = Publication(
                key=key,
                event_name=package.name,
                content_type=info.content_type or package.content_type,
                call_id=call_id(self.ids),
                tuple_id=self._tuple_id(),
                state=PubState.DONE,
                etag=info.etag,
            )
            created = True
        else:
            created = False
            if info.content_type:
                record.content_type = info.content_type
        body = info.body
        if body is not None and package.process_body is not None:
            try:
                body = package.process_body(body, record.version, record.tuple_id)
            except BodyError as exc:
                raise ValueError(f"body rejected: {exc}") from None
        if created:
            self.table.put(record)
        self._apply_lifetime(record, info.expires, now)
        record.extra_headers = list(info.extra_headers)
        record.outbound_proxy = info.outbound_proxy
        record.callback, record.cb_param = info.callback, info.cb_param
        record.api_request = True
        record.pending_remove = False
        if info.flag == UpdateType.INSERT_TYPE:
            record.etag = None  # a new initial PUBLISH, whatever we hold
        if body is not None:
            record.pending_body = body
        if record.state is PubState.DONE and record.etag is not None:
            # Resuming a publication by its entity-tag (e.g. after a restart).
            record.state = PubState.PUBLISHED
        self._mark(key)
        self._pub_input(record, PubInput.UPDATE, now)
        self._drain(now)
        return key

    def _tuple_id(self) -> str:
        # An XML ID must start with a letter (RFC 3863 §4.1.2).
        return "t" + self.ids.token(10)

    def _apply_lifetime(self, record: Publication | Subscription, expires: int, now: float) -> None:
        if expires < 0:
            record.desired_until = None
            record.requested = self.config.default_expires
        else:
            record.requested = max(expires, self.config.min_expires)
            record.desired_until = now + record.requested

    # ------------------------------------------------------------------
    # Publication machine
    # ------------------------------------------------------------------
    def _pub_input(self, pub: Publication, event: PubInput, now: float) -> None:
        action, pub.state = publication_step(pub.state, event)
        self._mark(pub.key)
        if action is PubAction.SEND:
            self._pub_send(pub, now)
        elif action is PubAction.COALESCE:
            pass  # pending_body / pending_remove already hold the newest wish
        elif action is PubAction.REPUBLISH:
            self.counters["recoveries_412"] += 1
            pub.etag = None
            pub.recovered_412 = True
            self._pub_send(pub, now)
        elif action is PubAction.RESEND_LONGER:
            self.counters["recoveries_423"] += 1
            self._pub_send(pub, now, again=True)
        elif action is PubAction.SCHEDULE_RETRY:
            pass  # armed by the caller, which knows the answer's Retry-After
        elif action is PubAction.ACCEPT:
            if pub.pending_remove:
                self._pub_input(pub, PubInput.REMOVE, now)
            elif pub.pending_body is not None:
                self._pub_input(pub, PubInput.UPDATE, now)
        elif action in (PubAction.DELETE, PubAction.EXPIRE, PubAction.FAIL):
            self._forget(pub.key)
            if action is PubAction.DELETE:
                self._events.append(PublicationRemoved(key=pub.key, reason="removed"))
                if pub.pending_body is not None and not pub.pending_remove:
                    # Published again while the removal was in flight.
                    pub.etag = None
                    self.table.put(pub)
                    self._pub_input(pub, PubInput.UPDATE, now)
            elif action is PubAction.EXPIRE:
                self._events.append(PublicationRemoved(key=pub.key, reason="expired"))

    def _pub_send(self, pub: Publication, now: float, *, again: bool = False) -> None:
        """Send the request the record calls for (see pua.core.publication)."""
        self._cancel_due(pub.key)
        if again and pub.in_flight is not None:
            kind = pub.in_flight
        elif pub.pending_remove:
            kind = "remove"
        elif pub.etag is None:
            kind = "initial"
        elif pub.pending_body is not None:
            kind = "modify"
        else:
            kind = "refresh"
        if kind == "remove" and pub.etag is None:
            # Nothing on the server to remove.
            pub.state = PubState.DONE
            self._forget(pub.key)
            self._events.append(PublicationRemoved(key=pub.key, reason="removed"))
            return
        body: bytes | None = None
        if kind in ("initial", "modify"):
            if not again:
                if pub.pending_body is not None:
                    pub.sent_body = pub.pending_body
                    pub.pending_body = None
                else:
                    pub.sent_body = pub.body
            body = pub.sent_body
            if body is None:
                raise LocalProtocolError("an initial PUBLISH without a body")
        expires = 0 if kind == "remove" else self._expires_to_ask(pub, now)
        if kind == "refresh":
            self.counters["refreshes"] += 1
        pub.in_flight = kind
        pub.version += 1
        pub.cseq += 1
        destination = self._destination(pub.outbound_proxy, pub.key.pres_uri)
        request = self._new_request(
            "PUBLISH",
            pub.key.pres_uri,
            pub.key.pres_uri,
            pub.key.pres_uri,
            destination,
            call_id_value=pub.call_id,
            cseq=pub.cseq,
        )
        headers = request.headers
        headers.add("Event", pub.event_name)
        headers.add("Expires", str(expires))
        if kind != "initial":
            headers.add("SIP-If-Match", str(pub.etag))
        for name, value in pub.extra_headers:
            headers.add(name, value)
        if body is not None:
            headers.add("Content-Type", pub.content_type or "application/octet-stream")
            request.body = body
        tx = self.endpoint.send_request(
            request, (destination.host, destination.port), destination.transport, now
        )
        pub.in_flight_tx = tx.key
        self._tx_owner[tx.key] = (pub.key, kind)
        self.counters["publish_sent"] += 1

    def _expires_to_ask(self, record: Publication | Subscription, now: float) -> int:
        if record.desired_until is None:
            return record.requested
        remaining = math.ceil(record.desired_until - now)
        return max(1, min(record.requested, max(remaining, self.config.min_expires)))

    def _on_publish_answer(
        self,
        pub: Publication,
        kind: str,
        response: Response | None,
        now: float,
        status: int,
        reason: str,
    ) -> None:
        api = self._take_answer(pub, status, reason)
        if response is not None and response.is_success:
            if kind == "remove":
                self._pub_input(pub, PubInput.REMOVED, now)
                self._fire(pub, response, api)
                return
            etag = _safe(lambda: response.sip_etag)
            expires = _safe(lambda: response.expires)
            if etag and expires is not None and expires > 0:
                pub.etag = etag
                pub.failures = 0
                pub.recovered_412 = False
                if kind in ("initial", "modify"):
                    pub.body = pub.sent_body
                pub.in_flight = None
                pub.expires_at = now + expires
                self._events.append(
                    PublicationSucceeded(
                        key=pub.key,
                        status=status,
                        etag=etag,
                        expires=expires,
                        expires_at=pub.expires_at,
                        kind=kind,
                    )
                )
                self._pub_input(pub, PubInput.OK, now)
                if pub.state is PubState.PUBLISHED:
                    self._schedule_refresh(pub, expires, now)
                self._fire(pub, response, api)
                return
            status, reason = 500, "2xx without SIP-ETag and Expires"
            event = PubInput.RETRYABLE
        elif kind == "remove" and status < 500 and status not in _RETRYABLE:
            # 412: the server no longer holds it; other 4xx/6xx: it refuses
            # the removal, and retrying would not change that.  Gone here.
            self._pub_input(pub, PubInput.REMOVED, now)
            self._fire(pub, response, api)
            return
        elif status == 412 and kind == "initial" and pub.etag is None and not pub.recovered_412:
            # No SIP-If-Match was sent: there is no condition to recover.
            event = PubInput.FATAL
        elif (
            status == 412
            and pub.body is None
            and pub.pending_body is None
            and pub.sent_body is None
        ):
            # Resumed by its ETag alone: there is no document to publish again.
            event = PubInput.FATAL
        elif status == 412 and not pub.recovered_412:
            event = PubInput.PRECONDITION_FAILED
            if kind in ("initial", "modify") and pub.pending_body is None:
                pub.pending_body = pub.sent_body  # re-publish what was refused
        elif status == 412:
            event = PubInput.RETRYABLE
        elif status == 423:
            adopted = self._adopt_min_expires(pub, response, now)
            event = PubInput.INTERVAL_TOO_BRIEF if adopted else PubInput.FATAL
        elif status in _RETRYABLE or status == 500 or 500 <= status < 600:
            event = PubInput.RETRYABLE
        else:
            event = PubInput.FATAL
        if event is PubInput.RETRYABLE and self._lifetime_over(pub, now):
            event = PubInput.FATAL
        if event is PubInput.FATAL:
            self._events.append(
                PublicationFailed(key=pub.key, status=status, reason=reason, retry_at=None)
            )
            pub.in_flight = None
            self._pub_input(pub, event, now)
        elif event is PubInput.RETRYABLE:
            pub.failures += 1
            self.counters["retries"] += 1
            delay = self._retry_delay(pub.failures, response)
            if pub.etag is not None and pub.expires_at <= now + delay:
                pub.etag = None  # the server will have dropped it: start over
            if kind in ("initial", "modify") and pub.pending_body is None:
                pub.pending_body = pub.sent_body
            pub.in_flight = None
            self._events.append(
                PublicationFailed(
                    key=pub.key,
                    status=status,
                    reason=reason,
                    retry_at=now + delay,
                )
            )
            self._pub_input(pub, event, now)
            self._arm(pub.key, PubInput.RETRY_DUE, now + delay)
        else:
            self._pub_input(pub, event, now)
            return  # a new request is in flight; callbacks wait for its answer
        self._fire(pub, response, api)

    @staticmethod
    def _take_answer(record: Publication | Subscription, status: int, reason: str) -> bool:
        """Note a final answer; returns whether the API asked for the request."""
        record.in_flight_tx = None
        record.last_status, record.last_reason = status, reason
        api = record.api_request
        record.api_request = False
        return api

    @staticmethod
    def _adopt_min_expires(
        record: Publication | Subscription, response: Response | None, now: float
    ) -> bool:
        """After a 423 (RFC 3261 §21.4.18): ask for the answer's Min-Expires
        from now on.  False when it names none larger than what we asked."""
        minimum = _safe(lambda: response.min_expires) if response is not None else None
        if minimum is None or minimum <= record.requested:
            return False
        record.requested = minimum
        if record.desired_until is not None:
            record.desired_until = max(record.desired_until, now + minimum)
        return True

    def _lifetime_over(self, record: Publication | Subscription, now: float) -> bool:
        return record.desired_until is not None and record.desired_until <= now + 1

    def _schedule_refresh(
        self, record: Publication | Subscription, expires: int, now: float
    ) -> None:
        end = now + expires
        if record.desired_until is not None and record.desired_until <= end + 1:
            # The server's expiry covers what was wanted: no refresh.
            self._arm(
                record.key,
                PubInput.LIFETIME_OVER
                if isinstance(record, Publication)
                else SubInput.LIFETIME_OVER,
                end,
            )
            return
        self._arm(
            record.key,
            PubInput.REFRESH_DUE if isinstance(record, Publication) else SubInput.REFRESH_DUE,
            now + self.refresh_delay(expires),
        )

    def refresh_delay(self, expires: float) -> float:
        """Seconds after a 2xx to refresh: max(expires/2, expires - margin),
        made up to 10% (at most 10 s) earlier by jitter, so that refreshes of
        records made together spread out and never land after expiry."""
        base = max(expires / 2.0, expires - self.config.refresh_margin)
        jitter = min(expires / 10.0, 10.0) * self.ids.uniform()
        return max(0.0, base - jitter)

    def _retry_delay(self, failures: int, response: Response | None) -> float:
        if response is not None:
            retry_after = _safe(lambda: response.retry_after)
            if retry_after is not None:
                return float(min(retry_after.seconds, self.config.retry_after_cap))
        cap = float(min(self.config.retry_cap, self.config.retry_base * 2 ** (failures - 1)))
        # "Equal jitter": between half and all of the capped exponential delay.
        return cap / 2.0 + cap / 2.0 * self.ids.uniform()

    # ------------------------------------------------------------------
    # send_subscribe
    # ------------------------------------------------------------------
    def send_subscribe(self, info: SubscribeInfo, now: float) -> RecordKey | None:
        """Subscribe, refresh or unsubscribe (the seed's ``send_subscribe``).

        Returns the record's key, or None when there was nothing to do.
        Raises ValueError for an unknown event or a bad URI.
        """
        package = self._package(info.event)
        _check_uri(info.pres_uri, "pres_uri")
        _check_uri(info.watcher_uri, "watcher_uri")
        target = info.remote_target or info.pres_uri
        target_uri = _check_uri(target, "remote_target")
        if info.outbound_proxy is not None:
            Destination.from_uri(info.outbound_proxy)
        elif self.config.outbound_proxy is None:
            _require_sip(target_uri, "remote_target")
        if info.contact is not None:
            _check_uri(info.contact, "contact")
        if info.expires < -1:
            raise ValueError(f"expires must be -1, 0 or positive, not {info.expires}")
        key = RecordKey(
            info.pres_uri, int(package.flag), info.id, int(info.source_flag), info.watcher_uri
        )
        record = self.table.get(key)
        if record is not None and not isinstance(record, Subscription):
            raise LocalProtocolError("key of a publication")
        if info.expires == 0:
            if record is None:
                return None
            record.callback, record.cb_param = info.callback, info.cb_param
            record.api_request = True
            record.pending_unsubscribe = True
            confirmed = record.to_tag is not None and record.state is not SubState.SUBSCRIBING
            self._sub_input(
                record,
                SubInput.UNSUBSCRIBE
                if confirmed or record.state is SubState.SUBSCRIBING
                else SubInput.WITHDRAW,
                now,
            )
            self._drain(now)
            return key
        if record is None or info.flag == UpdateType.INSERT_TYPE:
            if record is not None:
                self._forget(record.key)
            record = Subscription(
                key=key,
                event_name=package.name,
                remote_target=target,
                initial_target=target,
                contact=info.contact or self._default_contact(target),
                call_id=call_id(self.ids),
                from_tag=tag(self.ids),
                state=SubState.DONE,
            )
            self.table.put(record)
        self._apply_lifetime(record, info.expires, now)
        record.outbound_proxy = info.outbound_proxy
        record.extra_headers = list(info.extra_headers)
        record.callback, record.cb_param = info.callback, info.cb_param
        record.api_request = True
        record.pending_unsubscribe = False
        self._mark(key)
        self._sub_input(record, SubInput.SUBSCRIBE, now)
        self._drain(now)
        return key

    def _default_contact(self, target: str) -> str:
        destination = self._destination(None, target)
        host, port = self._local_for(destination.transport)
        host = f"[{host}]" if ":" in host else host
        suffix = "" if destination.transport == "udp" else f";transport={destination.transport}"
        return f"sip:{host}:{port}{suffix}"

    # ------------------------------------------------------------------
    # Subscription machine
    # ------------------------------------------------------------------
    def _sub_input(self, sub: Subscription, event: SubInput, now: float) -> None:
        action, sub.state = subscription_step(sub.state, event)
        self._mark(sub.key)
        if action is SubAction.SEND_INITIAL:
            self._new_dialog(sub)
            self._sub_send(sub, now, initial=True)
        elif action is SubAction.SEND_REFRESH:
            self.counters["refreshes"] += 1
            self._sub_send(sub, now, initial=False)
        elif action is SubAction.SEND_UNSUBSCRIBE:
            self._sub_send(sub, now, initial=False, expires=0)
        elif action is SubAction.RESEND_LONGER:
            self.counters["recoveries_423"] += 1
            self._sub_send(sub, now, initial=sub.to_tag is None)
        elif action is SubAction.CONFIRM:
            if sub.pending_unsubscribe:
                self._sub_input(sub, SubInput.UNSUBSCRIBE, now)
        elif action in (SubAction.DELETE, SubAction.EXPIRE, SubAction.TERMINATE):
            self._forget(sub.key)
            if action is SubAction.DELETE:
                self._events.append(SubscriptionTerminated(key=sub.key, reason="unsubscribed"))
                if not sub.pending_unsubscribe:
                    # Subscribed again while the unsubscribe was in flight.
                    self.table.put(sub)
                    self._sub_input(sub, SubInput.SUBSCRIBE, now)
            elif action is SubAction.EXPIRE:
                self._events.append(SubscriptionTerminated(key=sub.key, reason="expired"))
        # COALESCE and SCHEDULE_RETRY: the caller did what is needed.

    def _new_dialog(self, sub: Subscription) -> None:
        self.table.unindex_dialog(sub)
        sub.in_flight_tx = None  # an answer in the old dialog no longer matters
        sub.call_id = call_id(self.ids)
        sub.from_tag = tag(self.ids)
        sub.to_tag = None
        sub.cseq = 0
        sub.remote_cseq = None
        sub.route_set = []
        sub.remote_target = sub.initial_target
        sub.notify_until = 0.0
        self.table.index_dialog(sub)

    def _sub_send(
        self, sub: Subscription, now: float, *, initial: bool, expires: int | None = None
    ) -> None:
        self._cancel_due(sub.key)
        sub.cseq += 1
        if initial:
            destination = self._destination(sub.outbound_proxy, sub.remote_target)
        elif sub.route_set:
            destination = self._destination(str(sub.route_set[0].uri), sub.remote_target)
        else:
            destination = self._destination(sub.outbound_proxy, sub.remote_target)
        request = self._new_request(
            "SUBSCRIBE",
            sub.remote_target,
            sub.key.watcher_uri,
            sub.key.pres_uri,
            destination,
            call_id_value=sub.call_id,
            cseq=sub.cseq,
            from_tag=sub.from_tag,
            to_tag=None if initial else sub.to_tag,
        )
        headers = request.headers
        for route in [] if initial else sub.route_set:
            headers.add("Route", str(route))
        headers.add("Contact", f"<{sub.contact}>")
        headers.add("Event", sub.event_name)
        value = self._expires_to_ask(sub, now) if expires is None else expires
        headers.add("Expires", str(value))
        package = self.registry.by_name(sub.event_name)
        if package is not None and package.parse_body:
            headers.add("Accept", ", ".join(package.parse_body))
        for name, field_value in sub.extra_headers:
            headers.add(name, field_value)
        tx = self.endpoint.send_request(
            request, (destination.host, destination.port), destination.transport, now
        )
        sub.in_flight_tx = tx.key
        kind = "initial" if initial else ("unsubscribe" if value == 0 else "refresh")
        self._tx_owner[tx.key] = (sub.key, kind)
        self.counters["subscribe_sent"] += 1

    def _on_subscribe_answer(
        self,
        sub: Subscription,
        kind: str,
        response: Response | None,
        now: float,
        status: int,
        reason: str,
    ) -> None:
        api = self._take_answer(sub, status, reason)
        if response is not None and response.is_success:
            if kind == "unsubscribe":
                self._sub_input(sub, SubInput.OK, now)
                self._fire(sub, response, api)
                return
            expires = _safe(lambda: response.expires)
            if expires is None:
                expires = self._expires_to_ask(sub, now)
            if kind == "initial" and sub.to_tag is None:
                to_tag = _safe(lambda: response.to.tag)
                if not to_tag:
                    status, reason = 500, "2xx without a To tag"
                    self._sub_retry(sub, response, now, status, reason, kind)
                    self._fire(sub, response, api)
                    return
                self.table.unindex_dialog(sub)
                sub.to_tag = to_tag
                self.table.index_dialog(sub)
            if kind == "initial":
                records = _safe(lambda: response.record_routes) or []
                sub.route_set = list(reversed(records))  # §12.1.2: reversed
                contacts = _safe(lambda: response.contacts) or []
                if contacts:
                    sub.remote_target = str(contacts[0].uri)
            sub.failures = 0
            if expires == 0:
                # The notifier granted nothing: the subscription is over.
                self._events.append(SubscriptionTerminated(key=sub.key, reason="expires 0 in 2xx"))
                self._sub_input(sub, SubInput.TERMINATED, now)
                self._fire(sub, response, api)
                return
            # The refresh follows the sooner of the 2xx and the NOTIFYs.
            until = now + expires
            if sub.notify_until > now:
                until = min(until, sub.notify_until)
            sub.expires_at = until
            self._sub_input(sub, SubInput.OK, now)
            if sub.state is SubState.ACTIVE:
                self._schedule_refresh(sub, until - now, now)
                if sub.sub_state == "init":
                    sub.sub_state = "pending" if status == 202 else "accepted"
            self._fire(sub, response, api)
            return
        if kind == "unsubscribe":
            self._sub_input(sub, SubInput.FATAL, now)
            self._fire(sub, response, api)
            return
        if status == 481 and kind == "refresh":
            self._sub_input(sub, SubInput.NO_DIALOG, now)
            self._fire(sub, response, api)
            return
        if status == 423 and self._adopt_min_expires(sub, response, now):
            self._sub_input(sub, SubInput.INTERVAL_TOO_BRIEF, now)
            return
        retryable = status in _RETRYABLE or 500 <= status < 600 or kind == "refresh"
        if retryable and not self._lifetime_over(sub, now):
            self._sub_retry(sub, response, now, status, reason, kind)
        else:
            self._events.append(
                SubscriptionFailed(key=sub.key, status=status, reason=reason, retry_at=None)
            )
            if kind == "initial":
                self._events.append(
                    SubscriptionTerminated(key=sub.key, reason=f"{status} {reason}")
                )
                self._sub_input(sub, SubInput.FATAL, now)
            else:
                self._sub_input(sub, SubInput.LIFETIME_OVER, now)
        self._fire(sub, response, api)

    def _sub_retry(
        self,
        sub: Subscription,
        response: Response | None,
        now: float,
        status: int,
        reason: str,
        kind: str,
    ) -> None:
        sub.failures += 1
        self.counters["retries"] += 1
        delay = self._retry_delay(sub.failures, response)
        if kind == "refresh" and sub.expires_at <= now + delay:
            # The subscription will be gone by then: a new dialog is needed.
            self._new_dialog(sub)
        self._events.append(
            SubscriptionFailed(key=sub.key, status=status, reason=reason, retry_at=now + delay)
        )
        self._sub_input(sub, SubInput.RETRYABLE, now)
        retry = SubInput.RETRY_REFRESH if sub.to_tag is not None else SubInput.RETRY_INITIAL
        self._arm(sub.key, retry, now + delay)

    # ------------------------------------------------------------------
    # NOTIFY
    # ------------------------------------------------------------------
    def _on_request(self, tx: ServerTransaction, request: Request, now: float) -> None:
        if request.method != "NOTIFY":
            response = make_response(request, 405, to_tag=tag(self.ids))
            response.headers.add("Allow", "NOTIFY")
            self.endpoint.respond(tx, response, now)
            return
        self.counters["notify_received"] += 1
        try:
            self._on_notify(tx, request, now)
        except RemoteProtocolError as exc:
            self._answer(tx, request, exc.status, exc.reason, now, warning=str(exc))

    def _answer(
        self,
        tx: ServerTransaction,
        request: Request,
        status: int,
        reason: str | None,
        now: float,
        *,
        warning: str | None = None,
    ) -> None:
        response = make_response(request, status, reason)
        if warning:
            response.headers.add("Warning", warning_value(warning))
        self.endpoint.respond(tx, response, now)

    def _on_notify(self, tx: ServerTransaction, request: Request, now: float) -> None:
        local_tag = request.to.tag
        remote_tag = request.from_.tag
        sub = None
        if local_tag is not None:
            sub = self.table.by_dialog(request.call_id, local_tag, remote_tag)
        if sub is None or sub.state is SubState.DONE:
            self._answer(tx, request, 481, None, now)
            return
        event = request.event
        package = self.registry.by_name(sub.event_name)
        wanted = sub.event_name.split(";", 1)[0].strip().lower()
        if event is None or event.name.lower() != wanted:
            self._answer(tx, request, 489, None, now)
            return
        state = request.subscription_state
        if state is None:
            self._answer(tx, request, 400, "Missing Subscription-State", now)
            return
        seq = request.cseq.seq
        if sub.remote_cseq is not None and seq <= sub.remote_cseq and sub.to_tag == remote_tag:
            # §12.2.2: an out-of-order request in a dialog gets a 500.
            self._answer(tx, request, 500, "CSeq out of order", now)
            return
        content_type = request.content_type
        document: Any = None
        if request.body and package is not None and package.parse_body and content_type:
            parser = package.parse_body.get(content_type)
            if parser is not None:
                try:
                    document = parser(request.body)
                except BodyError as exc:
                    self._answer(tx, request, 400, "Bad Body", now, warning=str(exc))
                    return
        # Read every header the dialog needs before answering: a malformed
        # one is a 400 (raised to _on_request), never a 200 followed by a fault.
        contacts = request.contacts
        creates_dialog = sub.to_tag is None and remote_tag is not None
        route_set = list(request.record_routes) if creates_dialog else sub.route_set
        # The NOTIFY is acceptable: answer, then update the dialog.
        self._answer(tx, request, 200, None, now)
        if creates_dialog:
            # A NOTIFY that beat the 2xx creates the dialog (RFC 6665 §4.1.2.4).
            self.table.unindex_dialog(sub)
            sub.to_tag = remote_tag
            sub.route_set = route_set
            self.table.index_dialog(sub)
        sub.remote_cseq = seq
        if contacts:
            sub.remote_target = str(contacts[0].uri)
        sub.version += 1
        self._mark(sub.key)
        self._events.append(
            NotifyReceived(
                key=sub.key,
                state=state.state,
                reason=state.reason,
                expires=state.expires,
                content_type=content_type,
                body=request.body,
                document=document,
            )
        )
        self._fire(sub, request, True)
        if state.state in ("active", "pending"):
            if state.state != sub.sub_state:
                sub.sub_state = state.state
            if state.state == "active":
                sub.resubscribes = 0
            if state.expires is not None:
                at = now + state.expires
                sub.notify_until = at
                if sub.state is SubState.ACTIVE and (sub.expires_at <= now or at < sub.expires_at):
                    sub.expires_at = at
                    self._schedule_refresh(sub, state.expires, now)
            self._events.append(
                SubscriptionStateChanged(
                    key=sub.key,
                    state=state.state,
                    expires_at=sub.expires_at,
                )
            )
            return
        sub.sub_state = "terminated"
        reason = state.reason or ""
        if sub.state is SubState.UNSUBSCRIBING or sub.pending_unsubscribe:
            self._cancel_due(sub.key)
            self._sub_input(sub, SubInput.TERMINATED, now)
            return
        # A notifier that terminates again before ever saying "active" is
        # not answered at once a second time: that would be a loop.
        sub.resubscribes += 1
        if reason in _RESUBSCRIBE_NOW and sub.resubscribes == 1:
            self._sub_input(sub, SubInput.RESUBSCRIBE_NOW, now)
        elif reason in _RESUBSCRIBE_NOW or reason in _RESUBSCRIBE_LATER:
            if state.retry_after is not None:
                delay = float(min(state.retry_after, self.config.retry_after_cap))
            else:
                delay = self._retry_delay(sub.resubscribes, None)
            self._new_dialog(sub)
            self._events.append(
                SubscriptionFailed(
                    key=sub.key,
                    status=0,
                    reason=f"terminated: {reason}",
                    retry_at=now + delay,
                )
            )
            self._sub_input(sub, SubInput.RESUBSCRIBE_LATER, now)
            self._arm(sub.key, SubInput.RETRY_INITIAL, now + delay)
        else:
            self._cancel_due(sub.key)
            self._events.append(SubscriptionTerminated(key=sub.key, reason=reason or "terminated"))
            self._sub_input(sub, SubInput.TERMINATED, now)

    # ------------------------------------------------------------------
    # Plumbing
    # ------------------------------------------------------------------
    def _drain(self, now: float) -> None:
        """Act on every event the endpoint produced."""
        while (event := self.endpoint.next_event()) is not None:
            if isinstance(event, ResponseReceived):
                if not event.response.is_provisional:
                    self._on_final(
                        event.transaction.key,
                        event.response,
                        now,
                        event.response.status,
                        event.response.reason,
                    )
            elif isinstance(event, TransactionTimedOut):
                self._on_final(event.transaction.key, None, now, 408, "Request Timeout (local)")
            elif isinstance(event, TransportFailed):
                self._on_final(
                    event.transaction.key, None, now, 503, f"Transport failed: {event.reason}"
                )
            elif isinstance(event, RequestReceived):
                self._on_request(event.transaction, event.request, now)
            elif isinstance(event, MessageDropped):
                pass

    def _on_final(
        self,
        tx_key: tuple[str, str],
        response: Response | None,
        now: float,
        status: int,
        reason: str,
    ) -> None:
        self.responses_by_status[status] = self.responses_by_status.get(status, 0) + 1
        owner = self._tx_owner.pop(tx_key, None)
        if owner is None:
            return
        key, kind = owner
        record = self.table.get(key)
        if record is None:
            return
        if isinstance(record, Publication):
            if record.in_flight_tx != tx_key:
                return  # an answer to a request the record no longer waits for
            self._on_publish_answer(record, kind, response, now, status, reason)
        else:
            if record.in_flight_tx != tx_key:
                return
            self._on_subscribe_answer(record, kind, response, now, status, reason)

    def _fire(self, record: Record, message: Request | Response | None, api: bool) -> None:
        if not api:
            return  # callbacks are for what the API asked (the seed's REQ_OTHER)
        if record.callback is not None and isinstance(message, Response | None):
            try:
                record.callback(message, record.cb_param)
            except Exception as exc:
                self._events.append(CallbackFailed(key=record.key, error=repr(exc)))
        flag = record.key.source_flag
        for mask, fn, param in self._callbacks:
            if mask & flag:
                try:
                    fn(record, message, param)
                except Exception as exc:
                    self._events.append(CallbackFailed(key=record.key, error=repr(exc)))

    def _arm(self, key: RecordKey, event: PubInput | SubInput, at: float) -> None:
        self._due[key] = event
        self._deadlines.arm(key, "due", at)

    def _cancel_due(self, key: RecordKey) -> None:
        self._due.pop(key, None)
        self._deadlines.cancel(key, "due")

    def _forget(self, key: RecordKey) -> None:
        self._cancel_due(key)
        if self.table.remove(key) is not None:
            self._deleted.add(key)
            self._dirty.discard(key)

    def _mark(self, key: RecordKey) -> None:
        self._dirty.add(key)
        self._deleted.discard(key)

    def _package(self, flag: int) -> EventPackage:
        try:
            return self.registry.by_flag(int(flag))
        except KeyError as exc:
            raise ValueError(str(exc.args[0])) from None

    def _destination(self, proxy: str | None, target: str) -> Destination:
        hop = proxy or self.config.outbound_proxy or target
        return Destination.from_uri(hop)

    def _local_for(self, transport: str) -> Address:
        try:
            return self._local[transport]
        except KeyError:
            raise LocalProtocolError(
                f"no local {transport} address: call set_local_address"
            ) from None

    def _new_request(
        self,
        method: str,
        request_uri: str,
        from_uri: str,
        to_uri: str,
        destination: Destination,
        *,
        call_id_value: str,
        cseq: int,
        from_tag: str | None = None,
        to_tag: str | None = None,
    ) -> Request:
        host, port = self._local_for(destination.transport)
        via = new_via(self.ids, destination.transport, f"[{host}]" if ":" in host else host, port)
        # The URIs were checked when the API call was made: written as they
        # are, inside angle brackets (RFC 3261 §20.10), without a re-parse.
        to = f"<{to_uri}>" if to_tag is None else f"<{to_uri}>;tag={to_tag}"
        headers = Headers(
            [
                ("Via", str(via)),
                ("Max-Forwards", "70"),
                ("From", f"<{from_uri}>;tag={from_tag or tag(self.ids)}"),
                ("To", to),
                ("Call-ID", call_id_value),
                ("CSeq", f"{cseq} {method}"),
            ]
        )
        headers.remember("via:top", via)
        headers.remember("cseq", CSeq(cseq, method))
        if self.config.user_agent:
            headers.add("User-Agent", self.config.user_agent)
        return Request(method, request_uri, headers)


def _check_uri(text: str, what: str) -> Any:
    try:
        return parse_uri(text)
    except RemoteProtocolError as exc:
        raise ValueError(f"{what}: {exc}") from None


def _require_sip(uri: Any, what: str) -> None:
    if not isinstance(uri, SipUri):
        raise ValueError(f"{what}: a {uri.scheme}: URI needs an outbound_proxy to be reached")


def _safe(read: Callable[[], Any]) -> Any:
    """A typed header value, or None when the peer sent it malformed."""
    try:
        return read()
    except RemoteProtocolError:
        return None
