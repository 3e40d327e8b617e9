"""The publisher: the publication state machine (RFC 3903, with DESIGN's
recovery rules), what turns answers and timers into its inputs, and its actions.

::

            UPDATE/REMOVE: coalesce            UPDATE/REMOVE/REFRESH_DUE: send
          +-----------+                    +--------------------------------+
          |           v        OK          |                                v
    (new)--> SENDING ------------------> PUBLISHED                       SENDING
              |  ^  |  412 (first): re-publish with the stored body
              |  |  +--+ 423: resend with Min-Expires
              |  |     |
              |  +-----+
              |  timeout/408/5xx/2xx without ETag: back off (Retry-After wins)
              v
           BACKOFF --RETRY_DUE: send--> SENDING
              |
              | LIFETIME_OVER                     REMOVED (2xx to Expires: 0),
              v                                   FATAL (4xx/6xx), LIFETIME_OVER
            DONE <----------------------------------------------------------+

The rules this file keeps:

- an answer becomes an input only in :func:`classify_answer`, and a fired
  deadline only in :func:`timer_input`: both pure, beside the table;
- every state change is :meth:`Publisher.step` looking the pair up in
  ``PUBLICATION_TABLE``; a missing pair is a LocalProtocolError;
- actions are dispatched in one place (``step``); an action may hand back
  one follow-up input (ACCEPT sends what waited), never recurse;
- what is sent is derived from the record (:func:`next_kind`): a removal
  when one is pending, an initial PUBLISH when the server holds no
  entity-tag, a modify when a newer body waits, otherwise a refresh.
"""

from __future__ import annotations

import enum

from pua.errors import LocalProtocolError

from .answers import Answer
from .context import EngineContext
from .events import PublicationFailed, PublicationRemoved, PublicationSucceeded
from .records import InFlight, Pending, PublicationRecord, PubState, RequestKind
from .requests import build_publish

__all__ = [
    "PUBLICATION_TABLE",
    "PubAction",
    "PubInput",
    "Publisher",
    "classify_answer",
    "failure_of",
    "next_kind",
    "timer_input",
]


class PubInput(enum.Enum):
    """What can happen to a publication."""

    UPDATE = "update from the API"
    REMOVE = "removal from the API (the server holds an entity-tag)"
    WITHDRAW = "removal with nothing on the server to remove"
    REFRESH_DUE = "refresh timer"
    RETRY_DUE = "retry timer"
    LIFETIME_OVER = "wanted lifetime over"
    OK = "2xx with SIP-ETag and Expires"
    REMOVED = "2xx to a removal, or 4xx to a removal, or 412 with a removal waiting"
    PRECONDITION_FAILED = "412, first in a row"
    INTERVAL_TOO_BRIEF = "423 with a usable Min-Expires"
    RETRYABLE = "timeout, 408, 5xx, 2xx without ETag, a repeated 412"
    FATAL = "other 4xx, 6xx; 412 with nothing to publish again"


class PubAction(enum.Enum):
    """What the engine does on a transition."""

    SEND = "send the request the record calls for"
    COALESCE = "keep the newest wish for after the request in flight"
    ACCEPT = "store ETag and expiry, schedule the refresh, send what waits"
    REPUBLISH = "forget the ETag, send an initial PUBLISH with the stored body"
    RESEND_LONGER = "adopt Min-Expires and send the same request again"
    SCHEDULE_RETRY = "arm the retry timer (Retry-After, else capped backoff)"
    DELETE = "delete the record (removed)"
    EXPIRE = "delete the record (lifetime over)"
    FAIL = "delete the record and report the failure"


_S = PubState
_I = PubInput
_A = PubAction

PUBLICATION_TABLE: dict[tuple[PubState, PubInput], tuple[PubAction, PubState]] = {
    (_S.SENDING, _I.UPDATE): (_A.COALESCE, _S.SENDING),
    (_S.SENDING, _I.REMOVE): (_A.COALESCE, _S.SENDING),
    (_S.SENDING, _I.WITHDRAW): (_A.COALESCE, _S.SENDING),
    (_S.SENDING, _I.OK): (_A.ACCEPT, _S.PUBLISHED),
    (_S.SENDING, _I.REMOVED): (_A.DELETE, _S.DONE),
    (_S.SENDING, _I.PRECONDITION_FAILED): (_A.REPUBLISH, _S.SENDING),
    (_S.SENDING, _I.INTERVAL_TOO_BRIEF): (_A.RESEND_LONGER, _S.SENDING),
    (_S.SENDING, _I.RETRYABLE): (_A.SCHEDULE_RETRY, _S.BACKOFF),
    (_S.SENDING, _I.FATAL): (_A.FAIL, _S.DONE),
    (_S.PUBLISHED, _I.UPDATE): (_A.SEND, _S.SENDING),
    (_S.PUBLISHED, _I.REMOVE): (_A.SEND, _S.SENDING),
    (_S.PUBLISHED, _I.REFRESH_DUE): (_A.SEND, _S.SENDING),
    (_S.PUBLISHED, _I.LIFETIME_OVER): (_A.EXPIRE, _S.DONE),
    (_S.BACKOFF, _I.UPDATE): (_A.COALESCE, _S.BACKOFF),
    (_S.BACKOFF, _I.REMOVE): (_A.COALESCE, _S.BACKOFF),
    (_S.BACKOFF, _I.WITHDRAW): (_A.DELETE, _S.DONE),
    (_S.BACKOFF, _I.RETRY_DUE): (_A.SEND, _S.SENDING),
    (_S.BACKOFF, _I.LIFETIME_OVER): (_A.EXPIRE, _S.DONE),
    (_S.DONE, _I.UPDATE): (_A.SEND, _S.SENDING),
    (_S.DONE, _I.WITHDRAW): (_A.DELETE, _S.DONE),
}


def publication_step(state: PubState, event: PubInput) -> tuple[PubAction, PubState]:
    """Look up the transition; a missing pair is a LocalProtocolError."""
    try:
        return PUBLICATION_TABLE[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"publication in state {state.value} cannot take {event.value}"
        ) from None


def next_kind(pub: PublicationRecord) -> RequestKind:
    """The request the record calls for now."""
    pending = pub.pending
    if pending is not None and pending.remove:
        return RequestKind.REMOVE
    if pub.etag is None:
        return RequestKind.INITIAL
    if pending is not None and pending.body is not None:
        return RequestKind.MODIFY
    return RequestKind.REFRESH


def _has_document(pub: PublicationRecord) -> bool:
    flight_body = pub.flight.body if pub.flight is not None else None
    pending_body = pub.pending.body if pub.pending is not None else None
    return pub.body is not None or flight_body is not None or pending_body is not None


def classify_answer(
    pub: PublicationRecord, kind: RequestKind, answer: Answer, *, lifetime_over: bool
) -> PubInput:
    """The table's input for a final answer to a request of ``kind``."""
    event = _classify(pub, kind, answer)
    if event is _I.RETRYABLE and lifetime_over:
        return _I.FATAL  # no time left to try again
    return event


def _classify(pub: PublicationRecord, kind: RequestKind, answer: Answer) -> PubInput:
    status = answer.status
    removing = pub.pending is not None and pub.pending.remove
    if answer.success:
        if kind is RequestKind.REMOVE:
            return _I.REMOVED
        if answer.etag and answer.expires is not None and answer.expires > 0:
            return _I.OK
        return _I.RETRYABLE  # a 2xx without SIP-ETag and Expires is no success
    if kind is RequestKind.REMOVE and status < 500 and status not in (408, 480):
        # 412: the server no longer holds it; other 4xx/6xx: it refuses the
        # removal, and retrying would not change that.  Gone here.
        return _I.REMOVED
    if status == 412:
        if removing:
            return _I.REMOVED  # nothing to keep: the removal is what was wanted
        if kind is RequestKind.INITIAL and pub.etag is None and not pub.recovered_412:
            return _I.FATAL  # no SIP-If-Match was sent: no condition to recover
        if not _has_document(pub):
            return _I.FATAL  # resumed by its ETag alone: nothing to publish again
        return _I.RETRYABLE if pub.recovered_412 else _I.PRECONDITION_FAILED
    if status == 423:
        usable = answer.min_expires is not None and answer.min_expires > pub.requested
        return _I.INTERVAL_TOO_BRIEF if usable else _I.FATAL
    return _I.RETRYABLE if answer.retryable else _I.FATAL


def timer_input(pub: PublicationRecord, *, lifetime_over: bool) -> PubInput:
    """The table's input when the record's deadline fires."""
    state = pub.state
    if state is PubState.PUBLISHED:
        return _I.LIFETIME_OVER if lifetime_over else _I.REFRESH_DUE
    if state is PubState.BACKOFF:
        if pub.pending is not None and pub.pending.remove and pub.etag is None:
            return _I.WITHDRAW
        return _I.RETRY_DUE
    return _I.UPDATE  # DONE: a resumed record that must be published again


def failure_of(answer: Answer) -> tuple[int, str]:
    """Status and reason to report for a failed request."""
    if answer.success:
        return 500, "2xx without SIP-ETag and Expires"
    return answer.status, answer.reason


class Publisher:
    """Runs the publication machine over the engine's parts."""

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx

    # -- inputs ------------------------------------------------------------------
    def step(
        self, pub: PublicationRecord, event: PubInput, now: float, answer: Answer | None = None
    ) -> None:
        """Apply ``event`` and every follow-up input its actions hand back."""
        next_event: PubInput | None = event
        while next_event is not None:
            old = pub.state
            action, pub.state = publication_step(old, next_event)
            self._ctx.table.moved(pub, old)
            self._ctx.mark(pub)
            next_event = self._act(action, pub, now, answer)
            answer = None

    def on_answer(self, pub: PublicationRecord, answer: Answer, now: float) -> None:
        """A final answer to the request in flight."""
        flight = pub.flight
        assert flight is not None
        pub.last_answer = (answer.status, answer.reason)
        over = self._ctx.lifetimes.over(pub, now)
        event = classify_answer(pub, flight.kind, answer, lifetime_over=over)
        self.step(pub, event, now, answer)
        if pub.flight is None or pub.flight is not flight:
            # The request is over (a new one may carry the same wish: a
            # re-PUBLISH or a resend keeps the callback for its own answer).
            if pub.flight is not None and event in (_I.PRECONDITION_FAILED, _I.INTERVAL_TOO_BRIEF):
                return
            self._ctx.callbacks.queue(pub, answer.response, flight)

    def on_timer(self, pub: PublicationRecord, now: float) -> None:
        """The record's deadline fired."""
        over = self._ctx.lifetimes.over(pub, now)
        self.step(pub, timer_input(pub, lifetime_over=over), now)

    def wish(self, pub: PublicationRecord) -> Pending:
        """The record's pending wish (made when the API asks for something)."""
        if pub.pending is None:
            pub.pending = Pending()
        return pub.pending

    # -- actions -----------------------------------------------------------------
    def _act(
        self, action: PubAction, pub: PublicationRecord, now: float, answer: Answer | None
    ) -> PubInput | None:
        ctx = self._ctx
        flight = pub.flight
        if action is _A.SEND:
            self._send(pub, next_kind(pub), now)
        elif action is _A.COALESCE:
            pass  # the pending wish already holds the newest state
        elif action is _A.ACCEPT:
            assert answer is not None and flight is not None
            return self._accept(pub, answer, now)
        elif action is _A.REPUBLISH:
            ctx.counters.recoveries_412 += 1
            assert flight is not None
            if flight.kind in (RequestKind.INITIAL, RequestKind.MODIFY):
                refused = flight.body
                if refused is not None and (pub.pending is None or pub.pending.body is None):
                    self.wish(pub).body = refused  # publish again what was refused
            pub.etag = None
            pub.recovered_412 = True
            self._send(pub, RequestKind.INITIAL, now, carry=flight)
        elif action is _A.RESEND_LONGER:
            ctx.counters.recoveries_423 += 1
            assert answer is not None and flight is not None
            ctx.lifetimes.adopt_min_expires(pub, answer.min_expires, now)
            self._send(pub, flight.kind, now, carry=flight, body=flight.body)
        elif action is _A.SCHEDULE_RETRY:
            assert answer is not None
            self._schedule_retry(pub, answer, now)
        elif action is _A.DELETE:
            ctx.forget(pub)
            ctx.events.append(PublicationRemoved(key=pub.key, reason="removed"))
            pending = pub.pending
            if pending is not None and pending.body is not None and not pending.remove:
                # Published again while the removal was in flight.
                pub.etag = None
                ctx.table.put(pub)
                return _I.UPDATE
            pub.pending = None
        elif action is _A.EXPIRE:
            ctx.forget(pub)
            ctx.events.append(PublicationRemoved(key=pub.key, reason="expired"))
        elif action is _A.FAIL:
            status, reason = failure_of(answer) if answer else (0, "")
            ctx.forget(pub)
            ctx.events.append(
                PublicationFailed(key=pub.key, status=status, reason=reason, retry_at=None)
            )
        return None

    def _send(
        self,
        pub: PublicationRecord,
        kind: RequestKind,
        now: float,
        *,
        carry: InFlight | None = None,
        body: bytes | None = None,
    ) -> None:
        """Send a PUBLISH of ``kind``; the pending wish (or the request it
        repeats, ``carry``) gives its body and its callback."""
        ctx = self._ctx
        pending = pub.pending
        callback, cb_param, api = None, None, False
        if carry is not None:
            callback, cb_param, api = carry.callback, carry.cb_param, carry.api
        if pending is not None and body is None:
            if pending.api:
                callback, cb_param, api = pending.callback, pending.cb_param, True
            if kind in (RequestKind.INITIAL, RequestKind.MODIFY):
                body = pending.body
            pub.pending = None
        if kind is RequestKind.INITIAL and body is None:
            body = pub.body
        if kind in (RequestKind.INITIAL, RequestKind.MODIFY) and body is None:
            raise LocalProtocolError("an initial PUBLISH without a body")
        if kind is RequestKind.REFRESH:
            ctx.counters.refreshes += 1
        expires = 0 if kind is RequestKind.REMOVE else ctx.lifetimes.to_ask(pub, now)
        pub.publish_count += 1
        pub.cseq += 1
        options = pub.options
        package = ctx.registry.by_flag(pub.key.event)
        destination = ctx.router.destination(options.outbound_proxy, pub.key.pres_uri)
        request = build_publish(
            pres_uri=pub.key.pres_uri,
            event=package.name,
            expires=expires,
            via=ctx.router.via(destination.transport),
            ids=ctx.ids,
            call_id=pub.call_id,
            cseq=pub.cseq,
            etag=None if kind is RequestKind.INITIAL else pub.etag,
            body=body if kind in (RequestKind.INITIAL, RequestKind.MODIFY) else None,
            content_type=options.content_type or package.content_type,
            extra_headers=options.extra_headers,
            user_agent=ctx.config.user_agent,
        )
        flight = ctx.send(pub, request, destination, kind, body, now)
        flight.callback, flight.cb_param, flight.api = callback, cb_param, api
        ctx.counters.publish_sent += 1

    def _accept(self, pub: PublicationRecord, answer: Answer, now: float) -> PubInput | None:
        ctx = self._ctx
        flight = pub.flight
        assert flight is not None and answer.etag is not None and answer.expires is not None
        pub.etag = answer.etag
        pub.failures = 0
        pub.recovered_412 = False
        if flight.kind in (RequestKind.INITIAL, RequestKind.MODIFY):
            pub.body = flight.body
        pub.flight = None
        pub.expires_at = now + answer.expires
        ctx.events.append(
            PublicationSucceeded(
                key=pub.key,
                status=answer.status,
                etag=answer.etag,
                expires=answer.expires,
                expires_at=pub.expires_at,
                kind=flight.kind.value,
            )
        )
        pending = pub.pending
        if pending is not None:
            if pending.remove:
                return _I.REMOVE
            if pending.body is not None:
                return _I.UPDATE
            # A refresh the API asked for while this request was in flight:
            # this answer is its answer.
            if pending.api:
                flight.api = True
                flight.callback, flight.cb_param = pending.callback, pending.cb_param
            pub.pending = None
        if ctx.lifetimes.covers(pub, pub.expires_at):
            # The server's expiry covers what was wanted: no refresh.
            ctx.arm(pub, pub.expires_at)
        else:
            ctx.arm(pub, now + ctx.lifetimes.refresh_delay(answer.expires))
        return None

    def _schedule_retry(self, pub: PublicationRecord, answer: Answer, now: float) -> None:
        ctx = self._ctx
        flight = pub.flight
        pub.failures += 1
        ctx.counters.retries += 1
        retry_after = answer.retry_after if answer.response is not None else None
        delay = ctx.lifetimes.retry_delay(pub.failures, retry_after)
        if pub.etag is not None and pub.expires_at <= now + delay:
            pub.etag = None  # the server will have dropped it: start over
        sent_a_body = flight is not None and flight.body is not None
        if sent_a_body and (pub.pending is None or pub.pending.body is None):
            assert flight is not None and flight.body is not None
            self.wish(pub).body = flight.body  # published again when retried
        pub.flight = None
        status, reason = failure_of(answer)
        ctx.events.append(
            PublicationFailed(key=pub.key, status=status, reason=reason, retry_at=now + delay)
        )
        ctx.arm(pub, now + delay)
