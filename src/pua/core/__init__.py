"""The sans-IO presence engine: the seed's pua.

:class:`PresenceAgent` offers the seed's API (``send_publish``,
``send_subscribe``, ``is_dialog``, ``register_callback``, ``add_event``) and
keeps every publication and subscription alive, driven by ``now``.
"""

from __future__ import annotations

from .agent import Callback, Destination, PresenceAgent
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
from .flags import DialogState, EventFlag, SourceFlag, UpdateType
from .info import PublishInfo, SubscribeInfo
from .packages import EventPackage, EventRegistry, default_registry
from .records import Publication, PubState, RecordKey, RecordTable, Subscription, SubState

__all__ = [
    "Callback",
    "CallbackFailed",
    "Destination",
    "DialogState",
    "EngineConfig",
    "EngineEvent",
    "EventFlag",
    "EventPackage",
    "EventRegistry",
    "NotifyReceived",
    "PresenceAgent",
    "PubState",
    "Publication",
    "PublicationFailed",
    "PublicationRemoved",
    "PublicationSucceeded",
    "PublishInfo",
    "RecordKey",
    "RecordTable",
    "SourceFlag",
    "SubState",
    "SubscribeInfo",
    "Subscription",
    "SubscriptionFailed",
    "SubscriptionStateChanged",
    "SubscriptionTerminated",
    "UpdateType",
    "default_registry",
]
