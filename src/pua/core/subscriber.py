"""The subscriber: the actions of the subscription machine.

:meth:`Subscriber.step` is the only place a subscription's state changes:
it looks the (state, input) pair up in :mod:`pua.core.subscription`'s table,
then dispatches the action; an action may hand back one follow-up input,
never recurse.  Dialog bookkeeping (new dialogs, the 2xx's route set and
remote target) and the refresh schedule are here too.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

from pua.errors import RemoteProtocolError
from pua.sip.headers import NameAddress

from .answers import Answer, status_line
from .context import EngineContext, refresh_step
from .events import (
    SubscriptionAccepted,
    SubscriptionFailed,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from .records import (
    InFlight,
    Pending,
    Record,
    RequestKind,
    SubscriptionRecord,
    SubState,
    intern_text,
    new_dialog_id,
)
from .requests import build_subscribe
from .subscription import (
    SubAction,
    SubInput,
    classify_answer,
    failure_of,
    subscription_step,
    timer_input,
)
from .work import answered_for

__all__ = ["CSEQ_RESUME_STEP", "Subscriber"]

# CSeq step over a stored one when a dialog is resumed after a restart:
# more than the refreshes a write-back period can leave unwritten.
CSEQ_RESUME_STEP = 1000
# Seconds after timer F that a resumed subscription is refreshed again.
RECHECK_SLACK = 2.0

_I = SubInput
_A = SubAction


@functools.lru_cache(maxsize=1024)
def _route_uri(route: str) -> str:
    try:
        return str(NameAddress.parse(route).uri)
    except RemoteProtocolError:
        return route.strip("<>")


class Subscriber:
    """Runs the subscription machine over the engine's parts."""

    def __init__(self, ctx: EngineContext) -> None:
        self._ctx = ctx

    def wish(self, sub: SubscriptionRecord) -> Pending:
        """The record's pending wish (made when the API asks for something)."""
        pending = sub.pending
        if pending is None:
            pending = sub.pending = Pending()
        return pending

    # -- inputs ------------------------------------------------------------------
    def step(
        self,
        sub: SubscriptionRecord,
        event: SubInput,
        now: float,
        answer: Answer | None = None,
        *,
        reason: str = "",
        delay: float = 0.0,
    ) -> None:
        """Apply ``event`` and every follow-up input its actions hand back.
        ``reason`` and ``delay`` come with a terminated NOTIFY."""
        ctx = self._ctx
        next_event: SubInput | None = event
        while next_event is not None:
            old = sub.state
            action, sub.state = subscription_step(old, next_event)
            if sub.state is not old:
                ctx.table.moved(sub, old)
            ctx.mark(
                sub,
                refreshed=refresh_step(
                    sub, due=next_event is SubInput.REFRESH_DUE, ok=next_event is SubInput.OK
                ),
            )
            next_event = self._act(action, sub, now, answer, reason, delay)
            answer, reason = None, ""

    def on_answer(self, sub: SubscriptionRecord, answer: Answer, now: float) -> None:
        """A final answer to the request in flight."""
        flight = sub.flight
        assert flight is not None
        sub.last_answer = status_line(answer.status, answer.reason)
        over = self._ctx.lifetimes.over(sub, now)
        event = classify_answer(sub, flight.kind, answer, lifetime_over=over)
        self.step(sub, event, now, answer)
        if event is _I.INTERVAL_TOO_BRIEF and sub.flight is not None:
            return  # a new request carries the wish; callbacks wait for its answer
        self._ctx.callbacks.queue(sub, answer.response, flight)

    def on_timer(self, sub: SubscriptionRecord, now: float) -> None:
        """The record's deadline fired."""
        over = self._ctx.lifetimes.over(sub, now)
        self.step(sub, timer_input(sub, lifetime_over=over), now)

    def new_dialog(self, sub: SubscriptionRecord) -> None:
        """Forget the dialog: the next SUBSCRIBE starts a new one."""
        ctx = self._ctx
        ctx.table.unindex_dialog(sub)
        sub.flight = None  # an answer in the old dialog no longer matters
        sub.recheck = False  # a new dialog has no NOTIFY of the old one to fear
        sub.start_dialog(new_dialog_id(ctx.ids))
        ctx.table.index_dialog(sub)

    def resume_all(
        self,
        subs: Sequence[SubscriptionRecord],
        now: float,
        due_ats: Sequence[float],
        refused: list[Record],
    ) -> None:
        """Take back subscriptions read from the store (see
        PresenceEngine.resume), each with the ``due_ats`` time of its rank:
        refreshed in its dialog at its due time while it is alive, else a
        new dialog then.  Those whose lifetime is over or whose key is held
        go to ``refused``, unchanged.

        A live dialog is refreshed at once (the due time is soon, spread by
        the caller) rather than at its usual time: while pua was down the
        notifier may have dropped it, as RFC 6665 §4.2.2 lets a notifier do
        when a NOTIFY goes unanswered, and the refresh finds out (481: a new
        dialog) instead of leaving the watcher blind until then.

        The refresh after that one comes once timer F is over (or sooner at
        its usual time): a NOTIFY the notifier sent to us (or, in a cluster,
        to the node that held the subscription) just before our refresh
        fails only when its timer F runs out, and a notifier that ends the
        subscription then (Kamailio does) would leave the watcher without
        NOTIFYs until the usual refresh, an hour later with the usual
        lifetimes; the second refresh finds the 481 and starts anew."""
        ctx = self._ctx
        lifetimes = ctx.lifetimes
        over = lifetimes.over
        active, done = SubState.ACTIVE, SubState.DONE
        alive_after = now + 1
        taken: list[SubscriptionRecord] = []
        dues: list[float] = []
        was: list[SubState] = []
        for sub, due_at in zip(subs, due_ats, strict=True):
            if over(sub, now):
                refused.append(sub)
                continue
            was.append(sub.state)
            sub.state = active if sub.to_tag is not None and sub.expires_at > alive_after else done
            taken.append(sub)
            dues.append(due_at)
        lost = ctx.table.claim_all(taken)  # their keys are held
        if lost:
            gone = {id(sub) for sub in lost}
            for sub, state in zip(taken, was, strict=True):
                if id(sub) in gone:
                    sub.state = state
            refused.extend(lost)
            kept = [(s, at) for s, at in zip(taken, dues, strict=True) if id(s) not in gone]
            taken, dues = [s for s, _ in kept], [at for _, at in kept]
        resume = lifetimes.resume
        for sub in taken:
            resume(sub, now)
            # In write-back mode the stored CSeq may lag what was sent before a
            # crash; a lower CSeq in the dialog would be refused (RFC 3261
            # §12.2.2), so the count goes on from safely above it.
            sub.cseq += CSEQ_RESUME_STEP
            if sub.state is active:
                sub.recheck = True
        ctx.arm_all(taken, dues)

    # -- actions -----------------------------------------------------------------
    def _act(
        self,
        action: SubAction,
        sub: SubscriptionRecord,
        now: float,
        answer: Answer | None,
        reason: str,
        delay: float,
    ) -> SubInput | None:
        ctx = self._ctx
        if action is _A.SEND_INITIAL:
            self.new_dialog(sub)
            self._send(sub, RequestKind.INITIAL, now)
        elif action is _A.SEND_REFRESH:
            ctx.counters.refreshes += 1
            self._send(sub, RequestKind.REFRESH, now)
        elif action is _A.SEND_UNSUBSCRIBE:
            self._send(sub, RequestKind.REMOVE, now)
        elif action is _A.COALESCE:
            pass  # the pending wish holds it
        elif action is _A.CONFIRM:
            assert answer is not None
            return self._confirm(sub, answer, now)
        elif action is _A.RESEND_LONGER:
            ctx.counters.recoveries_423 += 1
            assert answer is not None and sub.flight is not None
            ctx.lifetimes.adopt_min_expires(sub, answer.min_expires, now)
            kind = RequestKind.INITIAL if sub.to_tag is None else RequestKind.REFRESH
            self._send(sub, kind, now, again=sub.flight)
        elif action is _A.SCHEDULE_RETRY:
            assert answer is not None
            self._schedule_retry(sub, answer, now)
        elif action is _A.SCHEDULE_RESUBSCRIBE:
            self.new_dialog(sub)
            ctx.events.append(
                SubscriptionFailed(
                    key=sub.key, status=0, reason=f"terminated: {reason}", retry_at=now + delay
                )
            )
            ctx.arm(sub, now + delay)
        elif action is _A.DELETE:
            ctx.forget(sub)
            ctx.events.append(SubscriptionTerminated(key=sub.key, reason="unsubscribed"))
            pending = sub.pending
            if pending is not None and not pending.remove:
                # Subscribed again while the unsubscribe was in flight.
                ctx.table.put(sub)
                return _I.SUBSCRIBE
            sub.pending = None
        elif action is _A.EXPIRE:
            if answer is not None:
                status, why = failure_of(answer)
                ctx.events.append(
                    SubscriptionFailed(key=sub.key, status=status, reason=why, retry_at=None)
                )
            ctx.forget(sub)
            ctx.events.append(SubscriptionTerminated(key=sub.key, reason="expired"))
        elif action is _A.TERMINATE:
            ctx.forget(sub)
            if answer is not None and answer.success:
                reason = "expires 0 in 2xx"
            elif answer is not None:
                status, why = failure_of(answer)
                ctx.events.append(
                    SubscriptionFailed(key=sub.key, status=status, reason=why, retry_at=None)
                )
                reason = f"{status} {why}"
            ctx.events.append(SubscriptionTerminated(key=sub.key, reason=reason or "terminated"))
        return None

    def _send(
        self,
        sub: SubscriptionRecord,
        kind: RequestKind,
        now: float,
        *,
        again: InFlight | None = None,
    ) -> None:
        """Send a SUBSCRIBE of ``kind``; it takes the pending wish (and its
        callback), unless it repeats ``again`` (a 423), whose callback it
        keeps while the wish waits."""
        ctx = self._ctx
        taken = sub.pending if again is None else None
        if taken is not None:
            sub.pending = None
        sub.cseq += 1
        route = sub.route
        initial = kind is RequestKind.INITIAL
        target = sub.remote_target
        if not initial and route.route_set:
            destination = ctx.router.destination(_route_uri(route.route_set[0]), target)
        else:
            destination = ctx.router.destination(sub.options.outbound_proxy, target)
        expires = 0 if kind is RequestKind.REMOVE else ctx.lifetimes.to_ask(sub, now)
        package = ctx.registry.by_flag(sub.event)
        request = build_subscribe(
            request_uri=target,
            pres_uri=sub.pres_uri,
            watcher_uri=sub.watcher_uri,
            event=package.name,
            expires=expires,
            via=ctx.router.via(destination.transport),
            call_id=sub.call_id,
            from_tag=sub.from_tag,
            cseq=sub.cseq,
            contact=route.contact or ctx.router.default_contact(sub.initial_target),
            to_tag=None if initial else sub.to_tag,
            route_set=() if initial else route.route_set,
            accept=package.parse_body or (),
            extra_headers=sub.options.extra_headers,
            user_agent=ctx.config.user_agent,
        )
        ctx.send(sub, request, destination, kind, None, now, answered_for(again, taken))
        ctx.counters.subscribe_sent += 1

    def _confirm(self, sub: SubscriptionRecord, answer: Answer, now: float) -> SubInput | None:
        ctx = self._ctx
        flight = sub.land()
        assert answer.response is not None
        response = answer.response
        if flight.kind is RequestKind.INITIAL:
            if sub.to_tag is None:
                ctx.table.unindex_dialog(sub)
                sub.to_tag = answer.to_tag
                ctx.table.index_dialog(sub)
            try:
                routes = tuple(intern_text(str(r)) for r in reversed(response.record_routes))
                contacts = response.contacts
            except RemoteProtocolError:
                routes, contacts = (), []
            remote = intern_text(str(contacts[0].uri)) if contacts else None
            sub.route = sub.route.replace(route_set=routes, remote_target=remote)  # §12.1.2
        sub.succeeded()
        expires = answer.expires if answer.expires is not None else ctx.lifetimes.to_ask(sub, now)
        # The refresh follows the sooner of the 2xx and the NOTIFYs.
        until = now + expires
        if flight.notify_until > now:
            until = min(until, flight.notify_until)
        sub.expires_at = until
        ctx.events.append(
            SubscriptionAccepted(
                key=sub.key,
                status=answer.status,
                expires=expires,
                expires_at=until,
                kind=flight.kind.value,
            )
        )
        if sub.authorized is None and answer.status == 202:
            sub.authorized = False
        pending = sub.pending
        if pending is not None and pending.remove:
            return _I.UNSUBSCRIBE
        if pending is not None and pending.api:
            flight.api = True  # an API refresh asked for meanwhile: this is its answer
            flight.callback, flight.cb_param = pending.callback, pending.cb_param
        sub.pending = None
        self.schedule_refresh(sub, until - now, now)
        if sub.recheck:
            sub.recheck = False
            check_at = now + ctx.config.timers.timer_f + RECHECK_SLACK
            if sub.deadline is not None and check_at < sub.deadline:
                ctx.arm(sub, check_at)
        return None

    def schedule_refresh(self, sub: SubscriptionRecord, expires: float, now: float) -> None:
        """Arm the refresh (or the end, when the server's expiry covers
        all that was wanted)."""
        ctx = self._ctx
        end = now + expires
        if ctx.lifetimes.covers(sub, end):
            ctx.arm(sub, end)
        else:
            ctx.arm(sub, now + ctx.lifetimes.refresh_delay(expires))

    def _schedule_retry(self, sub: SubscriptionRecord, answer: Answer, now: float) -> None:
        ctx = self._ctx
        flight = sub.flight
        sub.failures += 1
        ctx.counters.retries += 1
        retry_after = answer.retry_after if answer.response is not None else None
        delay = ctx.lifetimes.retry_delay(sub.failures, retry_after)
        refresh = flight is not None and flight.kind is RequestKind.REFRESH
        if refresh and sub.expires_at <= now + delay:
            self.new_dialog(sub)  # the subscription will be gone by then
        sub.flight = None
        status, reason = failure_of(answer)
        ctx.events.append(
            SubscriptionFailed(key=sub.key, status=status, reason=reason, retry_at=now + delay)
        )
        ctx.arm(sub, now + delay)

    def state_changed(
        self, sub: SubscriptionRecord, state: str, expires: int | None, now: float
    ) -> None:
        """A NOTIFY said active or pending (with the notifier's expiry)."""
        sub.authorized = state == "active"
        if state == "active":
            sub.resubscribes = 0
        if expires is not None:
            # The latest NOTIFY's expiry is the subscription's (RFC 6665
            # §4.1.3), longer or shorter: a NOTIFY the notifier built before
            # it took our refresh can arrive after the refresh's 2xx with
            # the old, shorter expiry, and the next one puts it right.  A
            # second's difference is the notifier's whole-second clock.
            at = now + expires
            if sub.flight is not None:
                sub.flight.notify_until = at
            if sub.state is SubState.ACTIVE and abs(at - sub.expires_at) > 1.0:
                sub.expires_at = at
                self.schedule_refresh(sub, expires, now)
        self._ctx.mark(sub, refreshed=True)
        self._ctx.events.append(
            SubscriptionStateChanged(key=sub.key, state=state, expires_at=sub.expires_at)
        )
