"""The subscription state machine (RFC 6665 §4.1, with DESIGN's rules) and
the pure functions that turn answers and deadlines into its inputs.

::

     (new) --> SUBSCRIBING --2xx--> ACTIVE --REFRESH_DUE/SUBSCRIBE--> REFRESHING
                 |   ^                |  ^                               |
       423: resend   |                |  +------------2xx----------------+
                 |   +--481 on refresh, terminated (deactivated/timeout)-+
                 |                    |
                 | timeout/408/5xx    | UNSUBSCRIBE
                 v                    v
              BACKOFF              UNSUBSCRIBING --any final--> DONE
                 |
                 +--RETRY_DUE--> SUBSCRIBING (no dialog) / REFRESHING (dialog kept)

NOTIFYs (pua.core.notify) with Subscription-State active or pending only
update the expiry and the remote target; terminated ones are inputs:
deactivated and timeout resubscribe at once, probation and giveup after
retry-after, rejected, noresource, invariant and unknown or missing reasons
end the subscription.  A refresh that fails with anything but 481 keeps the
subscription until its last known expiry, retrying (RFC 6665 §4.1.2.2).

As for publications: answers become inputs only in :func:`classify_answer`,
deadlines only in :func:`timer_input`; a missing pair in
``SUBSCRIPTION_TABLE`` is a LocalProtocolError.  The actions live in
:mod:`pua.core.subscriber`.
"""

from __future__ import annotations

import enum

from pua.errors import LocalProtocolError

from .answers import Answer
from .records import RequestKind, SubscriptionRecord, SubState

__all__ = [
    "SUBSCRIPTION_TABLE",
    "SubAction",
    "SubInput",
    "classify_answer",
    "failure_of",
    "subscription_step",
    "timer_input",
]


class SubInput(enum.Enum):
    """What can happen to a subscription."""

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

    SUBSCRIBE = "subscribe or refresh from the API"
    UNSUBSCRIBE = "unsubscribe from the API (a dialog to end, or one being made)"
    WITHDRAW = "unsubscribe from the API (no dialog to end)"
    REFRESH_DUE = "refresh timer"
    RETRY_INITIAL = "retry timer, no dialog"
    RETRY_REFRESH = "retry timer, dialog kept"
    LIFETIME_OVER = "wanted lifetime or last known expiry over"
    OK = "2xx"
    NO_DIALOG = "481 to an in-dialog request"
    INTERVAL_TOO_BRIEF = "423 with a usable Min-Expires"
    RETRYABLE = "timeout, 408, 5xx; any non-481 failure of a refresh"
    FATAL = "4xx/6xx to an initial SUBSCRIBE; any failure of an unsubscribe"
    RESUBSCRIBE_NOW = "terminated: deactivated or timeout"
    RESUBSCRIBE_LATER = "terminated: probation or giveup; or a repeated deactivation"
    TERMINATED = "terminated: rejected, noresource, invariant, no reason; 2xx with Expires 0"


class SubAction(enum.Enum):
    """What the engine does on a transition."""

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

    SEND_INITIAL = "send an initial SUBSCRIBE in a new dialog"
    SEND_REFRESH = "send an in-dialog SUBSCRIBE"
    SEND_UNSUBSCRIBE = "send an in-dialog SUBSCRIBE with Expires: 0"
    COALESCE = "keep the wish for after the request in flight"
    CONFIRM = "take the dialog and expiry from the 2xx, schedule the refresh"
    RESEND_LONGER = "adopt Min-Expires and send the same request again"
    SCHEDULE_RETRY = "arm the retry timer (Retry-After, else capped backoff)"
    SCHEDULE_RESUBSCRIBE = "start a new dialog after the notifier's retry-after"
    DELETE = "delete the record (unsubscribed)"
    EXPIRE = "delete the record (expired)"
    TERMINATE = "delete the record and report why"


_S = SubState
_I = SubInput
_A = SubAction

_ANY_LIVE = (_S.SUBSCRIBING, _S.ACTIVE, _S.REFRESHING, _S.BACKOFF)

SUBSCRIPTION_TABLE: dict[tuple[SubState, SubInput], tuple[SubAction, SubState]] = {
    (_S.SUBSCRIBING, _I.SUBSCRIBE): (_A.COALESCE, _S.SUBSCRIBING),
    (_S.SUBSCRIBING, _I.UNSUBSCRIBE): (_A.COALESCE, _S.SUBSCRIBING),
    (_S.SUBSCRIBING, _I.OK): (_A.CONFIRM, _S.ACTIVE),
    (_S.SUBSCRIBING, _I.INTERVAL_TOO_BRIEF): (_A.RESEND_LONGER, _S.SUBSCRIBING),
    (_S.SUBSCRIBING, _I.RETRYABLE): (_A.SCHEDULE_RETRY, _S.BACKOFF),
    (_S.SUBSCRIBING, _I.FATAL): (_A.TERMINATE, _S.DONE),
    (_S.SUBSCRIBING, _I.NO_DIALOG): (_A.TERMINATE, _S.DONE),
    (_S.SUBSCRIBING, _I.LIFETIME_OVER): (_A.EXPIRE, _S.DONE),
    (_S.ACTIVE, _I.SUBSCRIBE): (_A.SEND_REFRESH, _S.REFRESHING),
    (_S.ACTIVE, _I.REFRESH_DUE): (_A.SEND_REFRESH, _S.REFRESHING),
    (_S.ACTIVE, _I.UNSUBSCRIBE): (_A.SEND_UNSUBSCRIBE, _S.UNSUBSCRIBING),
    (_S.ACTIVE, _I.LIFETIME_OVER): (_A.EXPIRE, _S.DONE),
    (_S.REFRESHING, _I.SUBSCRIBE): (_A.COALESCE, _S.REFRESHING),
    (_S.REFRESHING, _I.UNSUBSCRIBE): (_A.COALESCE, _S.REFRESHING),
    (_S.REFRESHING, _I.OK): (_A.CONFIRM, _S.ACTIVE),
    (_S.REFRESHING, _I.NO_DIALOG): (_A.SEND_INITIAL, _S.SUBSCRIBING),
    (_S.REFRESHING, _I.INTERVAL_TOO_BRIEF): (_A.RESEND_LONGER, _S.REFRESHING),
    (_S.REFRESHING, _I.RETRYABLE): (_A.SCHEDULE_RETRY, _S.BACKOFF),
    (_S.REFRESHING, _I.LIFETIME_OVER): (_A.EXPIRE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.SUBSCRIBE): (_A.COALESCE, _S.UNSUBSCRIBING),
    (_S.UNSUBSCRIBING, _I.UNSUBSCRIBE): (_A.COALESCE, _S.UNSUBSCRIBING),
    (_S.UNSUBSCRIBING, _I.OK): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.NO_DIALOG): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.INTERVAL_TOO_BRIEF): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.RETRYABLE): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.FATAL): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.RESUBSCRIBE_NOW): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.RESUBSCRIBE_LATER): (_A.DELETE, _S.DONE),
    (_S.UNSUBSCRIBING, _I.TERMINATED): (_A.DELETE, _S.DONE),
    (_S.BACKOFF, _I.SUBSCRIBE): (_A.COALESCE, _S.BACKOFF),
    (_S.BACKOFF, _I.UNSUBSCRIBE): (_A.SEND_UNSUBSCRIBE, _S.UNSUBSCRIBING),
    (_S.BACKOFF, _I.WITHDRAW): (_A.DELETE, _S.DONE),
    (_S.BACKOFF, _I.RETRY_INITIAL): (_A.SEND_INITIAL, _S.SUBSCRIBING),
    (_S.BACKOFF, _I.RETRY_REFRESH): (_A.SEND_REFRESH, _S.REFRESHING),
    (_S.BACKOFF, _I.LIFETIME_OVER): (_A.EXPIRE, _S.DONE),
    (_S.DONE, _I.SUBSCRIBE): (_A.SEND_INITIAL, _S.SUBSCRIBING),
    (_S.DONE, _I.WITHDRAW): (_A.DELETE, _S.DONE),
}
# A terminated NOTIFY can arrive in any live state.
for _state in _ANY_LIVE:
    SUBSCRIPTION_TABLE[(_state, _I.RESUBSCRIBE_NOW)] = (_A.SEND_INITIAL, _S.SUBSCRIBING)
    SUBSCRIPTION_TABLE[(_state, _I.RESUBSCRIBE_LATER)] = (_A.SCHEDULE_RESUBSCRIBE, _S.BACKOFF)
    SUBSCRIPTION_TABLE[(_state, _I.TERMINATED)] = (_A.TERMINATE, _S.DONE)


def subscription_step(state: SubState, event: SubInput) -> tuple[SubAction, SubState]:
    """Look up the transition; a missing pair is a LocalProtocolError."""
    try:
        return SUBSCRIPTION_TABLE[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"subscription in state {state.value} cannot take {event.value}"
        ) from None


def classify_answer(
    sub: SubscriptionRecord, kind: RequestKind, answer: Answer, *, lifetime_over: bool
) -> SubInput:
    """The table's input for a final answer to a request of ``kind``."""
    status = answer.status
    if answer.success:
        if kind is RequestKind.REMOVE:
            return _I.OK
        if kind is RequestKind.INITIAL and sub.to_tag is None and not answer.to_tag:
            return _I.LIFETIME_OVER if lifetime_over else _I.RETRYABLE  # no dialog made
        if answer.expires == 0:
            return _I.TERMINATED  # the notifier granted nothing
        return _I.OK
    if kind is RequestKind.REMOVE:
        return _I.FATAL
    if status == 481 and kind is RequestKind.REFRESH:
        return _I.NO_DIALOG
    if status == 423 and answer.min_expires is not None and answer.min_expires > sub.requested:
        return _I.INTERVAL_TOO_BRIEF
    if (answer.retryable or kind is RequestKind.REFRESH) and not lifetime_over:
        return _I.RETRYABLE
    return _I.FATAL if kind is RequestKind.INITIAL else _I.LIFETIME_OVER


def timer_input(sub: SubscriptionRecord, *, lifetime_over: bool) -> SubInput:
    """The table's input when the record's deadline fires."""
    state = sub.state
    if state is SubState.ACTIVE:
        return _I.LIFETIME_OVER if lifetime_over else _I.REFRESH_DUE
    if state is SubState.BACKOFF:
        return _I.RETRY_INITIAL if sub.to_tag is None else _I.RETRY_REFRESH
    return _I.SUBSCRIBE  # DONE: a resumed record without a live dialog


def failure_of(answer: Answer) -> tuple[int, str]:
    """Status and reason to report for a failed request."""
    if answer.success:
        return 500, "2xx without a To tag"
    return answer.status, answer.reason
