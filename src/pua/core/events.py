"""What the presence engine tells its user (``PresenceEngine.next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .records import RecordKey

__all__ = [
    "CallbackFailed",
    "EngineEvent",
    "NotifyReceived",
    "PublicationFailed",
    "PublicationRemoved",
    "PublicationSucceeded",
    "SubscriptionAccepted",
    "SubscriptionFailed",
    "SubscriptionStateChanged",
    "SubscriptionTerminated",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicationSucceeded:
    """A PUBLISH got its 2xx: the server holds our state until ``expires_at``."""

    key: RecordKey
    status: int
    etag: str
    expires: int
    expires_at: float
    kind: str  # "initial", "modify", "refresh"


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicationFailed:
    """A PUBLISH failed.  ``retry_at`` is when the engine tries again, or
    None when it gave up (the record is gone)."""

    key: RecordKey
    status: int  # 408 for a local timeout
    reason: str
    retry_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class PublicationRemoved:
    """The publication is gone: removed on request, or its lifetime ended."""

    key: RecordKey
    reason: str  # "removed", "expired"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionAccepted:
    """A SUBSCRIBE got its 2xx: the notifier keeps the subscription until
    ``expires_at`` (its state, pending or active, comes with the NOTIFYs)."""

    key: RecordKey
    status: int
    expires: int
    expires_at: float
    kind: str  # "initial", "refresh"


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionStateChanged:
    """The subscription is now ``state`` (pending or active) until ``expires_at``."""

    key: RecordKey
    state: str
    expires_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyReceived:
    """A NOTIFY of one of our subscriptions, already answered 200."""

    key: RecordKey
    state: str  # Subscription-State: active, pending, terminated
    reason: str | None
    expires: int | None
    content_type: str | None
    body: bytes
    document: Any  # parsed body (pua.bodies value), or None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionFailed:
    """A SUBSCRIBE failed.  ``retry_at``: when the engine tries again, or None."""

    key: RecordKey
    status: int
    reason: str
    retry_at: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriptionTerminated:
    """The subscription ended for good: ``reason`` is the notifier's
    (rejected, noresource, invariant...), "unsubscribed", "expired" or the
    failure that ended it."""

    key: RecordKey
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallbackFailed:
    """A user callback raised; the engine went on."""

    key: RecordKey | None
    error: str


EngineEvent = (
    PublicationSucceeded
    | PublicationFailed
    | PublicationRemoved
    | SubscriptionAccepted
    | SubscriptionStateChanged
    | NotifyReceived
    | SubscriptionFailed
    | SubscriptionTerminated
    | CallbackFailed
)
