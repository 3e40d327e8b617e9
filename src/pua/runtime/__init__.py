"""The asyncio runtime: the only layer with sockets, clocks and tasks."""

from __future__ import annotations

from .engine import PresenceRuntime
from .ids import SystemIds
from .stack import SipStack
from .transports import Listen, Transports

__all__ = ["Listen", "PresenceRuntime", "SipStack", "SystemIds", "Transports"]
