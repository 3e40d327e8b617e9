"""The asyncio runtime: the only layer with sockets, clocks and tasks."""

from __future__ import annotations

from .ids import SystemIds
from .stack import Listen, SipStack

__all__ = ["Listen", "SipStack", "SystemIds"]
