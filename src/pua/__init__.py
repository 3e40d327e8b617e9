"""pua: a SIP Presence User Agent.

It sends PUBLISH (RFC 3903) and SUBSCRIBE (RFC 6665) on behalf of others
and keeps each publication and subscription alive.  Applications use
:class:`Agent`; the layers beneath are :mod:`pua.runtime` (asyncio),
:mod:`pua.core` (the sans-IO engine with the seed's API), :mod:`pua.sip`
(the sans-IO SIP stack) and :mod:`pua.bodies` (event documents).
"""

from __future__ import annotations

__version__ = "0.1.0"

from pua.agent import Agent, Notification, Publication, Subscription
from pua.errors import (
    BodyError,
    PresenceError,
    PuaError,
    PublishError,
    SipError,
    StateError,
    SubscribeError,
    UnknownEventError,
    UsageError,
)
from pua.sip.auth import Credential

__all__ = [
    "Agent",
    "BodyError",
    "Credential",
    "Notification",
    "PresenceError",
    "PuaError",
    "Publication",
    "PublishError",
    "SipError",
    "StateError",
    "SubscribeError",
    "Subscription",
    "UnknownEventError",
    "UsageError",
    "__version__",
]
