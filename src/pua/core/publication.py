"""The publication state machine (RFC 3903, with DESIGN's recovery rules)
and the pure functions that turn answers and deadlines into its inputs.

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
- every state change is a lookup in ``PUBLICATION_TABLE``
  (:func:`publication_step`); a missing pair is a LocalProtocolError;
- what is sent is derived from the record (:func:`next_kind`): a removal
  when one is pending, an initial PUBLISH when the server holds no
  entity-tag, a modify when a newer body waits, otherwise a refresh.

The actions live in :mod:`pua.core.publisher`.
"""

from __future__ import annotations

import enum

from pua.errors import LocalProtocolError

from .answers import Answer
from .records import PublicationRecord, PubState, RequestKind

__all__ = [
    "PUBLICATION_TABLE",
    "PubAction",
    "PubInput",
    "classify_answer",
    "failure_of",
    "next_kind",
    "publication_step",
    "timer_input",
]


class PubInput(enum.Enum):
    """What can happen to a publication."""

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

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

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

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
