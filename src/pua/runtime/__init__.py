"""The asyncio runtime: the only layer with sockets, clocks and tasks."""

from __future__ import annotations

from .ids import SystemIds
from .engine import PresenceRuntime
from .stack import SipStack
from .transports import Listen, Transports

__all__ = ["Listen", "PresenceRuntime", "SipStack", "SystemIds", "Transports"]
