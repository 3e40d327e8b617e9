"""What names a record and where it stands: the key, the states of the
two machines, the kinds of request."""

from __future__ import annotations

import enum
import sys
from typing import NamedTuple

__all__ = ["PubState", "RecordKey", "RequestKind", "SubState", "intern_text"]


class RecordKey(NamedTuple):
    """What identifies a record (empty ``watcher_uri`` for publications).
    A tuple: hashing and comparing it costs what a dict key costs."""

    pres_uri: str
    event: int
    id: str
    source_flag: int
    watcher_uri: str = ""

    @property
    def is_subscription(self) -> bool:
        """True for a subscription's key."""
        return bool(self.watcher_uri)


def intern_text(text: str) -> str:
    """One shared copy of a string that many records hold (URIs of one
    server, watcher URIs, reason phrases)."""
    return sys.intern(text)


class PubState(enum.Enum):
    """Where a publication stands (see pua.core.publisher for the table)."""

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

    SENDING = "sending"  # a PUBLISH is in flight
    PUBLISHED = "published"  # the server holds it; a refresh is scheduled
    BACKOFF = "backoff"  # a retry is scheduled after a failure
    DONE = "done"  # removed, expired or failed for good


class SubState(enum.Enum):
    """Where a subscription stands (see pua.core.subscriber)."""

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

    SUBSCRIBING = "subscribing"  # initial SUBSCRIBE in flight (temporary dialog)
    ACTIVE = "active"  # dialog confirmed, refresh scheduled
    REFRESHING = "refreshing"  # in-dialog SUBSCRIBE in flight
    UNSUBSCRIBING = "unsubscribing"  # SUBSCRIBE with Expires: 0 in flight
    BACKOFF = "backoff"  # a retry is scheduled
    DONE = "done"  # terminated for good


class RequestKind(enum.Enum):
    """What a request in flight is for."""

    # Members are singletons: hashed by identity, at C speed (the state
    # tables and counts look them up on every step).
    __hash__ = object.__hash__

    INITIAL = "initial"  # PUBLISH without SIP-If-Match; SUBSCRIBE out of dialog
    MODIFY = "modify"  # PUBLISH with SIP-If-Match and a body
    REFRESH = "refresh"  # PUBLISH with SIP-If-Match and no body; in-dialog SUBSCRIBE
    REMOVE = "remove"  # PUBLISH or SUBSCRIBE with Expires: 0
