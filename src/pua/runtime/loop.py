"""Running a coroutine on the best event loop available."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    """True when uvloop is installed (the ``speed`` extra)."""
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    if uvloop_available():
        import uvloop  # noqa: PLC0415

        return uvloop.run(main)
    return asyncio.run(main)
