"""Running a coroutine on the best event loop available."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

from pua.sip.timers import LATENESS_BOUNDS, Histogram

__all__ = [
    "GC_THRESHOLDS",
    "GcPauses",
    "gc_pauses",
    "run",
    "tune_gc",
    "uvloop_available",
    "watch_gc",
]

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
    """Freeze the objects made so far, raise the collection thresholds and
    time each collection (:func:`watch_gc`)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    watch_gc()


class GcPauses:
    """How long each pass of the cyclic collector held the thread, by the
    oldest generation it walked (a ``gc.callbacks`` hook: two clock reads
    a pass)."""

    def __init__(self) -> None:
        self.histograms = tuple(Histogram(LATENESS_BOUNDS) for _ in range(3))
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.histograms[info["generation"]].observe(time.perf_counter() - self._started)


def watch_gc() -> GcPauses:
    """Time every collection from now on (once; later calls return the same
    watcher)."""
    pauses = gc_pauses()
    if pauses is None:
        pauses = GcPauses()
        gc.callbacks.append(pauses)
    return pauses


def gc_pauses() -> GcPauses | None:
    """The collection timings, when :func:`watch_gc` was called."""
    return next((hook for hook in gc.callbacks if isinstance(hook, GcPauses)), None)


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
