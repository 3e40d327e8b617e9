"""Running a coroutine on the best event loop available."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["GC_THRESHOLDS", "run", "tune_gc", "uvloop_available"]

T = TypeVar("T")


def uvloop_available() -> bool:
    """True when uvloop is installed (the ``speed`` extra)."""
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


# A SIP agent allocates many small objects per message that die young; the
# default first-generation threshold (700) makes the collector run every few
# messages.  pua's own programs (the CLI, the service, the benchmarks) move
# what exists at start-up out of the collector's way and collect less often.
# Each pass walks what its generations hold: 10,000 new objects, or (every
# second pass) those and the survivors of the two before, so that no pass
# holds the loop long while records are being made (a middle generation
# 50 passes deep took 90-130 ms at 200,000 publications made through the
# API; now at most about 12 ms, at the same rate).  The oldest generation
# is looked at as rarely as before (every 100 million objects made).
GC_THRESHOLDS = (10_000, 2, 5_000)


def tune_gc() -> None:
    """Freeze the objects made so far and raise the collection thresholds."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def run(main: Coroutine[Any, Any, T], *, tuned_gc: bool = True) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed, with the
    collector tuned by :func:`tune_gc` unless ``tuned_gc`` is false.  For
    programs; a library embedding pua keeps its own loop and GC settings."""
    if tuned_gc:
        tune_gc()
    if uvloop_available():
        import uvloop  # noqa: PLC0415

        return uvloop.run(main)
    return asyncio.run(main)
