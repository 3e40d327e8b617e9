"""The publication state machine (RFC 3903, with DESIGN's recovery rules).

States (PubState) x inputs (PubInput) -> (action, next state).  A pair not in
the table cannot happen; the engine raises LocalProtocolError if it does.

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

What is sent is derived from the record: a removal when one is pending and
the server holds an entity-tag; an initial PUBLISH (with the body) when it
holds none; a modify when a newer body waits; otherwise a refresh.
"""

from __future__ import annotations

import enum

from pua.sip.errors import LocalProtocolError

from .records import PubState

__all__ = ["PUBLICATION_TABLE", "PubAction", "PubInput", "publication_step"]


class PubInput(enum.Enum):
    """What can happen to a publication."""

    UPDATE = "update from the API"
    REMOVE = "removal from the API (the server holds an entity-tag)"
    WITHDRAW = "removal from the API (nothing on the server yet)"
    REFRESH_DUE = "refresh timer"
    RETRY_DUE = "retry timer"
    LIFETIME_OVER = "wanted lifetime over"
    OK = "2xx with SIP-ETag and Expires"
    REMOVED = "2xx to a removal, or 412 to a removal"
    PRECONDITION_FAILED = "412, first in a row"
    INTERVAL_TOO_BRIEF = "423 with a usable Min-Expires"
    RETRYABLE = "timeout, 408, 5xx, 2xx without ETag, a repeated 412"
    FATAL = "other 4xx, 6xx"


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
}


def publication_step(state: PubState, event: PubInput) -> tuple[PubAction, PubState]:
    """Look up the transition; a missing pair is a LocalProtocolError."""
    try:
        return PUBLICATION_TABLE[(state, event)]
    except KeyError:
        raise LocalProtocolError(
            f"publication in state {state.value} cannot take {event.value}"
        ) from None
