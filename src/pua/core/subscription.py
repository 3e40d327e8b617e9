"""The subscription state machine (RFC 6665 §4.1, with DESIGN's rules).

States (SubState) x inputs (SubInput) -> (action, next state); a missing
pair cannot happen and raises LocalProtocolError.

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

NOTIFYs with Subscription-State active or pending only update the expiry
and the remote target; terminated ones are inputs: deactivated and timeout
resubscribe at once, probation and giveup after retry-after, rejected,
noresource, invariant and unknown or missing reasons end the subscription.
A refresh that fails with anything but 481 keeps the subscription until its
last known expiry, retrying (RFC 6665 §4.1.2.2).
"""

from __future__ import annotations

import enum

from pua.sip.errors import LocalProtocolError

from .records import SubState

__all__ = ["SUBSCRIPTION_TABLE", "SubAction", "SubInput", "subscription_step"]


class SubInput(enum.Enum):
    """What can happen to a subscription."""

    SUBSCRIBE = "subscribe or refresh from the API"
    UNSUBSCRIBE = "unsubscribe from the API (dialog confirmed)"
    WITHDRAW = "unsubscribe from the API (no dialog to end)"
    REFRESH_DUE = "refresh timer"
    RETRY_INITIAL = "retry timer, no dialog"
    RETRY_REFRESH = "retry timer, dialog kept"
    LIFETIME_OVER = "wanted lifetime or last known expiry over"
    OK = "2xx"
    NO_DIALOG = "481 to an in-dialog request"
    INTERVAL_TOO_BRIEF = "423 with a usable Min-Expires"
    RETRYABLE = "timeout, 408, 5xx; any non-481 failure of a refresh"
    FATAL = "4xx/6xx to an initial SUBSCRIBE"
    RESUBSCRIBE_NOW = "terminated: deactivated or timeout"
    RESUBSCRIBE_LATER = "terminated: probation or giveup; or a repeated deactivation"
    TERMINATED = "terminated: rejected, noresource, invariant, no reason"


class SubAction(enum.Enum):
    """What the engine does on a transition."""

    SEND_INITIAL = "send an initial SUBSCRIBE in a new dialog"
    SEND_REFRESH = "send an in-dialog SUBSCRIBE"
    SEND_UNSUBSCRIBE = "send an in-dialog SUBSCRIBE with Expires: 0"
    COALESCE = "keep the wish for after the request in flight"
    CONFIRM = "take the dialog and expiry from the 2xx, schedule the refresh"
    RESEND_LONGER = "adopt Min-Expires and send the same request again"
    SCHEDULE_RETRY = "arm the retry timer"
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
    (_S.SUBSCRIBING, _I.WITHDRAW): (_A.COALESCE, _S.SUBSCRIBING),
    (_S.SUBSCRIBING, _I.OK): (_A.CONFIRM, _S.ACTIVE),
    (_S.SUBSCRIBING, _I.INTERVAL_TOO_BRIEF): (_A.RESEND_LONGER, _S.SUBSCRIBING),
    (_S.SUBSCRIBING, _I.RETRYABLE): (_A.SCHEDULE_RETRY, _S.BACKOFF),
    (_S.SUBSCRIBING, _I.FATAL): (_A.TERMINATE, _S.DONE),
    (_S.SUBSCRIBING, _I.NO_DIALOG): (_A.TERMINATE, _S.DONE),
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
}
# A terminated NOTIFY can arrive in any live state.
for _state in _ANY_LIVE:
    SUBSCRIPTION_TABLE[(_state, _I.RESUBSCRIBE_NOW)] = (_A.SEND_INITIAL, _S.SUBSCRIBING)
    SUBSCRIPTION_TABLE[(_state, _I.RESUBSCRIBE_LATER)] = (_A.SCHEDULE_RETRY, _S.BACKOFF)
    SUBSCRIPTION_TABLE[(_state, _I.TERMINATED)] = (_A.TERMINATE, _S.DONE)


def subscription_step(state: SubState, event: SubInput) -> tuple[SubAction, SubState]:
    """Look up the transition; a missing pair is a LocalProtocolError."""
    try:
        return SUBSCRIPTION_TABLE[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"subscription in state {state.value} cannot take {event.value}"
        ) from None
