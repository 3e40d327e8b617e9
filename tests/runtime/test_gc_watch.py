"""The collector's passes timed: one hook however often it is asked for,
each pass counted under the oldest generation it walked."""

from __future__ import annotations

import gc

from pua.runtime.loop import GcPauses, gc_pauses, watch_gc


def test_each_pass_is_timed_under_its_generation() -> None:
    watcher = watch_gc()
    assert watch_gc() is watcher and gc_pauses() is watcher
    assert sum(isinstance(hook, GcPauses) for hook in gc.callbacks) == 1
    before = [h.count for h in watcher.histograms]
    gc.collect(1)
    gc.collect(2)
    after = [h.count for h in watcher.histograms]
    assert after[1] == before[1] + 1 and after[2] == before[2] + 1
    assert watcher.histograms[2].total > 0
