"""The sans-IO presence engine: the seed's pua.

:class:`PresenceEngine` offers the seed's API (``send_publish``,
``send_subscribe``, ``is_dialog``, ``register_callback``, ``add_event``) and
keeps every publication and subscription alive, driven by ``now``.
"""

from __future__ import annotations

from .config import EngineConfig
from .context import Callback
from .engine import PresenceEngine
from .events import (
    CallbackFailed,
    EngineEvent,
    NotifyReceived,
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    SubscriptionAccepted,
    SubscriptionFailed,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from .flags import DialogState, EventFlag, SourceFlag, UpdateType
from .info import Body, Document, PublishInfo, SubscribeInfo
from .notify import IncomingRequest, RequestHandler
from .packages import EventPackage, EventRegistry, default_registry
from .records import (
    PublicationRecord,
    PubState,
    Record,
    RecordKey,
    RequestKind,
    SubscriptionRecord,
    SubState,
)
from .requests import Destination, parse_extra_headers, parse_next_hop
from .table import RecordTable

__all__ = [
    "Body",
    "Callback",
    "CallbackFailed",
    "Destination",
    "DialogState",
    "Document",
    "EngineConfig",
    "EngineEvent",
    "EventFlag",
    "EventPackage",
    "EventRegistry",
    "IncomingRequest",
    "NotifyReceived",
    "PresenceEngine",
    "PubState",
    "PublicationFailed",
    "PublicationRecord",
    "PublicationRemoved",
    "PublicationSucceeded",
    "PublishInfo",
    "Record",
    "RecordKey",
    "RecordTable",
    "RequestHandler",
    "RequestKind",
    "SourceFlag",
    "SubState",
    "SubscribeInfo",
    "SubscriptionFailed",
    "SubscriptionRecord",
    "SubscriptionAccepted",
    "SubscriptionStateChanged",
    "SubscriptionTerminated",
    "UpdateType",
    "default_registry",
    "parse_extra_headers",
    "parse_next_hop",
]
