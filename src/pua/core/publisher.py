"""The publisher: the actions of the publication machine.

:meth:`Publisher.step` is the only place a publication's state changes: it
looks the (state, input) pair up in :mod:`pua.core.publication`'s table,
then dispatches the action; an action may hand back one follow-up input
(ACCEPT sends what waited), never recurse.  Callbacks are queued and run
once the step is complete.
"""

from __future__ import annotations

from collections.abc import Sequence

from pua.errors import LocalProtocolError

from .answers import Answer, status_line
from .context import EngineContext, refresh_step
from .events import PublicationFailed, PublicationRemoved, PublicationSucceeded
from .publication import (
    PubAction,
    PubInput,
    classify_answer,
    failure_of,
    next_kind,
    publication_step,
    timer_input,
)
from .records import InFlight, Pending, PublicationRecord, PubState, Record, RequestKind
from .requests import build_publish
from .work import answered_for

__all__ = ["Publisher"]

_I = PubInput
_A = PubAction


class Publisher:
    """Runs the publication machine over the engine's parts."""

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx

    # -- inputs ------------------------------------------------------------------
    def step(
        self, pub: PublicationRecord, event: PubInput, now: float, answer: Answer | None = None
    ) -> None:
        """Apply ``event`` and every follow-up input its actions hand back."""
        ctx = self._ctx
        next_event: PubInput | None = event
        while next_event is not None:
            old = pub.state
            action, pub.state = publication_step(old, next_event)
            if pub.state is not old:
                ctx.table.moved(pub, old)
            ctx.mark(
                pub,
                refreshed=refresh_step(
                    pub, due=next_event is _I.REFRESH_DUE, ok=next_event is _I.OK
                ),
            )
            next_event = self._act(action, pub, now, answer)
            answer = None

    def on_answer(self, pub: PublicationRecord, answer: Answer, now: float) -> None:
        """A final answer to the request in flight."""
        flight = pub.flight
        assert flight is not None
        pub.last_answer = status_line(answer.status, answer.reason)
        over = self._ctx.lifetimes.over(pub, now)
        event = classify_answer(pub, flight.kind, answer, lifetime_over=over)
        self.step(pub, event, now, answer)
        if event in (_I.PRECONDITION_FAILED, _I.INTERVAL_TOO_BRIEF) and pub.flight is not None:
            return  # a re-PUBLISH or a resend carries the callback to its own answer
        self._ctx.callbacks.queue(pub, answer.response, flight)

    def on_timer(self, pub: PublicationRecord, now: float) -> None:
        """The record's deadline fired."""
        over = self._ctx.lifetimes.over(pub, now)
        self.step(pub, timer_input(pub, lifetime_over=over), now)

    def wish(self, pub: PublicationRecord) -> Pending:
        """The record's pending wish (made when the API asks for something)."""
        pending = pub.pending
        if pending is None:
            pending = pub.pending = Pending()
        return pending

    def resume_all(
        self,
        pubs: Sequence[PublicationRecord],
        now: float,
        due_ats: Sequence[float],
        refused: list[Record],
    ) -> None:
        """Take back publications read from the store (see
        PresenceEngine.resume), each with the ``due_ats`` time of its rank:
        refreshed with its ETag while the server holds it, else published
        again from its body at its due time.  Those whose lifetime is over,
        whose key is held, or that have no body to publish again go to
        ``refused``, unchanged."""
        ctx = self._ctx
        lifetimes = ctx.lifetimes
        over = lifetimes.over
        published, done = PubState.PUBLISHED, PubState.DONE
        alive_after = now + 1
        taken: list[PublicationRecord] = []
        dues: list[float] = []
        was: list[PubState] = []
        for pub, due_at in zip(pubs, due_ats, strict=True):
            if over(pub, now):
                refused.append(pub)
                continue
            alive = pub.etag is not None and pub.expires_at > alive_after
            if not alive and pub.body is None:
                refused.append(pub)  # nothing to publish again
                continue
            was.append(pub.state)
            pub.state = published if alive else done
            taken.append(pub)
            dues.append(due_at)
        lost = ctx.table.claim_all(taken)  # their keys are held
        if lost:
            gone = {id(pub) for pub in lost}
            for pub, state in zip(taken, was, strict=True):
                if id(pub) in gone:
                    pub.state = state
            refused.extend(lost)
            kept = [(p, at) for p, at in zip(taken, dues, strict=True) if id(p) not in gone]
            taken, dues = [p for p, _ in kept], [at for _, at in kept]
        resume, resume_at = lifetimes.resume, lifetimes.resume_at
        ats: list[float] = []
        for pub, due_at in zip(taken, dues, strict=True):
            resume(pub, now)
            if pub.state is published:
                ats.append(resume_at(pub, now, due_at))
            else:  # dropped by the server: published again from its body
                pub.etag = None
                self.wish(pub).body = pub.body
                ats.append(due_at)
        ctx.arm_all(taken, ats)

    # -- actions -----------------------------------------------------------------
    def _act(
        self, action: PubAction, pub: PublicationRecord, now: float, answer: Answer | None
    ) -> PubInput | None:
        ctx = self._ctx
        if action is _A.SEND:
            self._send(pub, next_kind(pub), now)
        elif action is _A.COALESCE:
            pass  # the pending wish already holds the newest state
        elif action is _A.ACCEPT:
            assert answer is not None
            return self._accept(pub, answer, now)
        elif action is _A.REPUBLISH:
            ctx.counters.recoveries_412 += 1
            flight = pub.flight
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
            flight = pub.flight
            assert answer is not None and flight is not None
            ctx.lifetimes.adopt_min_expires(pub, answer.min_expires, now)
            self._send(pub, flight.kind, now, carry=flight, again=True)
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
        again: bool = False,
    ) -> None:
        """Send a PUBLISH of ``kind``.  Its body and callback come from the
        pending wish, which it takes; ``carry`` is the request it replaces
        (its callback waits for this one's answer).  ``again`` repeats
        ``carry`` as it was (a 423), leaving the wish waiting."""
        ctx = self._ctx
        pending = taken = pub.pending
        body = carry.body if carry is not None and again else None
        if pending is not None and not again:
            if kind in (RequestKind.INITIAL, RequestKind.MODIFY):
                body = pending.body
            pub.pending = None
        else:
            taken = None
        if kind is RequestKind.INITIAL and body is None:
            body = pub.body
        if kind in (RequestKind.INITIAL, RequestKind.MODIFY) and body is None:
            raise LocalProtocolError("an initial PUBLISH without a body")
        if kind is RequestKind.REFRESH:
            ctx.counters.refreshes += 1
        expires = 0 if kind is RequestKind.REMOVE else ctx.lifetimes.to_ask(pub, now)
        pub.cseq += 1
        options = pub.options
        package = ctx.registry.by_flag(pub.event)
        destination = ctx.router.destination(options.outbound_proxy, pub.pres_uri)
        request = build_publish(
            pres_uri=pub.pres_uri,
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
        ctx.send(pub, request, destination, kind, body, now, answered_for(carry, taken))
        ctx.counters.publish_sent += 1

    def _accept(self, pub: PublicationRecord, answer: Answer, now: float) -> PubInput | None:
        ctx = self._ctx
        flight = pub.land()
        assert answer.etag is not None and answer.expires is not None
        pub.etag = answer.etag
        pub.succeeded()
        if flight.kind in (RequestKind.INITIAL, RequestKind.MODIFY):
            pub.body = flight.body
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
