"""The deadline queue's lateness histogram and the histogram itself."""

from __future__ import annotations

import asyncio
import random

import pytest

from pua.runtime.timer import LoopLag
from pua.sip.timers import LATENESS_BOUNDS, DeadlineQueue, Histogram, Timed


class Record(Timed):
    __slots__ = ("deadline",)
    spread = True

    def __init__(self) -> None:
        self.deadline: float | None = None


class Tx(Timed):
    __slots__ = ("timer_e",)

    def __init__(self) -> None:
        self.timer_e: float | None = None


def test_histogram_buckets_and_quantiles() -> None:
    h = Histogram((0.01, 0.1, 1.0))
    assert h.quantile(0.5) is None
    assert h.summary()["count"] == 0
    for value in [0.005] * 90 + [0.05] * 9 + [5.0]:
        h.observe(value)
    assert h.count == 100
    assert h.total == pytest.approx(0.45 + 0.45 + 5.0)
    assert h.buckets() == [("0.01", 90), ("0.1", 99), ("1.0", 99), ("+Inf", 100)]
    assert h.quantile(0.5) == 0.01
    assert h.quantile(0.99) == 0.1
    # above the last bound: the largest bound, an honest "at least"
    assert h.quantile(1.0) == 1.0
    assert h.summary()["p99"] == 0.1
    with pytest.raises(ValueError):
        h.quantile(0)
    with pytest.raises(ValueError):
        Histogram((1.0, 0.5))


def test_queue_records_how_late_record_deadlines_were_popped() -> None:
    q = DeadlineQueue()
    early, late = Record(), Record()
    q.arm(early, "deadline", 100.0)
    q.arm(late, "deadline", 103.0)
    tx = Tx()
    q.arm(tx, "timer_e", 100.5)
    due = q.pop_due(103.25)
    assert {id(o) for o, _ in due} == {id(early), id(late), id(tx)}
    lateness = q.lateness
    # transaction timers are not records' refreshes: two observations
    assert lateness.count == 2
    assert lateness.total == pytest.approx(3.25 + 0.25)
    assert lateness.quantile(0.5) == 0.5  # 0.25 s falls in the 0.5 s bucket
    assert lateness.quantile(1.0) == 5.0  # 3.25 s in the 5 s bucket
    # a cancelled deadline is never popped, so never counted
    gone = Record()
    q.arm(gone, "deadline", 104.0)
    q.cancel(gone, "deadline")
    assert q.pop_due(200.0) == []
    assert lateness.count == 2


def test_loop_lag_observes_a_late_tick() -> None:
    async def run() -> Histogram:
        loop = asyncio.get_running_loop()
        lag = LoopLag(period=60.0)
        lag.start(loop)
        # a tick that was due 0.3 s ago runs now: 0.3 s late
        lag._tick(loop, loop.time() - 0.3)
        lag.stop()
        return lag.histogram

    histogram = asyncio.run(run())
    assert histogram.count == 1
    assert 0.3 <= histogram.total < 5
    assert histogram.bounds == LATENESS_BOUNDS
    assert histogram.quantile(1.0) == 0.5


def test_queue_pops_at_most_spread_limit_record_deadlines() -> None:
    """Held record deadlines stay due (transaction timers still fire), and
    their lateness counts until they are popped."""
    q = DeadlineQueue()
    records = [Record() for _ in range(3)]
    for n, record in enumerate(records):
        q.arm(record, "deadline", 100.0 + n)
    tx = Tx()
    q.arm(tx, "timer_e", 101.5)
    first = q.pop_due(110.0, spread_limit=1)
    assert [id(o) for o, _ in first] == [id(records[0]), id(tx)]
    assert q.pop_due(110.0, spread_limit=0) == []
    # Only the transaction timers count while records are held.
    assert q.next_deadline(spread_too=False) is None
    assert q.next_deadline() == 101.0
    q.arm(tx, "timer_e", 130.0)
    assert q.next_deadline(spread_too=False) == 130.0
    rest = q.pop_due(120.0)
    assert [id(o) for o, _ in rest] == [id(records[1]), id(records[2])]
    assert q.lateness.count == 3
    assert q.lateness.total == pytest.approx(10.0 + 19.0 + 18.0)


def test_queue_pops_at_most_burst_limit_transaction_timers() -> None:
    """Short-lived timers past the limit stay due, earliest first, for the
    next call; records' deadlines are not held back by them."""
    q = DeadlineQueue()
    txs = [Tx() for _ in range(5)]
    for n, tx in enumerate(txs):
        q.arm(tx, "timer_e", 10.0 + n)
    record = Record()
    q.arm(record, "deadline", 12.5)
    first = q.pop_due(20.0, burst_limit=2)
    assert [id(o) for o, _ in first] == [id(txs[0]), id(txs[1]), id(record)]
    assert q.next_deadline() == 12.0  # the rest due at once
    assert [id(o) for o, _ in q.pop_due(20.0, burst_limit=2)] == [id(txs[2]), id(txs[3])]
    assert [id(o) for o, _ in q.pop_due(20.0, burst_limit=2)] == [id(txs[4])]
    assert len(q) == 0


class Tx2(Timed):
    __slots__ = ("timer_e", "timer_f")

    def __init__(self) -> None:
        self.timer_e: float | None = None
        self.timer_f: float | None = None


def test_transaction_timers_fire_in_time_order_whatever_order_they_were_armed() -> None:
    """Short-lived timers armed in and out of time order (a retransmission
    interval that doubled), cancelled and re-armed, pop earliest first;
    ties in the order they were armed; cancelled ones never."""
    q = DeadlineQueue()
    txs = [Tx2() for _ in range(6)]
    for n, tx in enumerate(txs):
        q.arm(tx, "timer_e", 10.0 + n)  # in order
        q.arm(tx, "timer_f", 50.0)  # ties
    q.arm(txs[0], "timer_e", 12.5)  # re-armed later than some already armed
    q.arm(txs[5], "timer_e", 10.5)  # earlier than the last one armed
    q.cancel(txs[2], "timer_e")
    q.cancel(txs[3], "timer_f")
    assert len(q) == 10
    assert q.next_deadline() == 10.5
    popped = q.pop_due(13.0)
    assert [(txs.index(o), name) for o, name in popped] == [
        (5, "timer_e"), (1, "timer_e"), (0, "timer_e"), (3, "timer_e"),
    ]  # fmt: skip
    assert q.next_deadline() == 14.0
    rest = q.pop_due(60.0)
    assert [(txs.index(o), name) for o, name in rest] == [
        (4, "timer_e"), (0, "timer_f"), (1, "timer_f"), (2, "timer_f"), (4, "timer_f"), (5, "timer_f"),
    ]  # fmt: skip
    assert len(q) == 0 and q.next_deadline() is None


def test_many_cancelled_transaction_timers_are_let_go() -> None:
    """Transactions answered at once leave stale entries that are dropped
    in passes: the queue holds O(live) entries, not one per timer ever armed."""
    q = DeadlineQueue()
    keep = Tx2()
    q.arm(keep, "timer_f", 1_000.0)
    for n in range(20_000):
        tx = Tx2()
        q.arm(tx, "timer_e", float(n))
        q.arm(tx, "timer_f", 64.0 + n)
        q.cancel(tx, "timer_e")
        q.cancel(tx, "timer_f")
    held = len(q._burst) + q._lane_entries  # what the queue holds
    assert len(q) == 1 and held <= 2 * len(q) + 1024 + 2
    assert q.pop_due(999.0) == [] and q.pop_due(1_000.0) == [(keep, "timer_f")]


def _fire_all(q: DeadlineQueue, until: float) -> list[tuple[float, Timed, str]]:
    """Pop every deadline up to ``until`` one time step at a time; each
    with the time it was due (read before popping)."""
    fired: list[tuple[float, Timed, str]] = []
    while (at := q.next_deadline()) is not None and at <= until:
        due = {id(owner): getattr(owner, name) for owner, name in _armed(q)}
        for owner, name in q.pop_due(at):
            fired.append((due[id(owner)], owner, name))
    return fired


def _armed(q: DeadlineQueue) -> list[tuple[Timed, str]]:
    return [(owner, name) for _, owner, name in q._heap if getattr(owner, name) is not None]


@pytest.mark.parametrize("already", [0, 3, 500])
def test_arm_all_fires_every_deadline_in_time_order(already: int) -> None:
    """Deadlines armed in bulk fire as if each had been armed alone: in
    time order, mixed with those armed before (a batch larger than the
    heap is heapified into it, a smaller one pushed)."""
    rng = random.Random(already)
    q = DeadlineQueue()
    singles = [Record() for _ in range(already)]
    for record in singles:
        q.arm(record, "deadline", rng.uniform(0, 100))
    batch = [Record() for _ in range(200)]
    times = [rng.uniform(0, 100) for _ in batch]
    times[7] = times[8]  # a tie
    q.arm_all(batch, "deadline", times)
    assert len(q) == already + 200
    assert [r.deadline for r in batch] == times
    fired = _fire_all(q, 100.0)
    assert len(fired) == already + 200 and len(q) == 0
    assert [at for at, _, _ in fired] == sorted(at for at, _, _ in fired)
    assert {id(owner) for _, owner, _ in fired} == {id(r) for r in (*singles, *batch)}
    assert all(r.deadline is None for r in batch)


def test_arm_all_re_arms_and_leaves_the_old_entry_stale() -> None:
    """An owner armed already and armed again in bulk fires once, at its
    new time; owners that are not spread go to their lanes."""
    q = DeadlineQueue()
    moved, fresh = Record(), Record()
    q.arm(moved, "deadline", 5.0)
    q.arm_all([moved, fresh], "deadline", [20.0, 10.0])
    assert len(q) == 2
    tx = Tx()
    q.arm_all([tx], "timer_e", [15.0])
    assert len(q) == 3
    assert q.pop_due(9.0) == []
    assert q.pop_due(10.0) == [(fresh, "deadline")]
    assert q.pop_due(15.0) == [(tx, "timer_e")]
    assert q.pop_due(20.0) == [(moved, "deadline")]
    assert len(q) == 0 and q.next_deadline() is None
    with pytest.raises(ValueError):
        q.arm_all([Record()], "deadline", [])
