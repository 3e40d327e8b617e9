"""Timer values (RFC 3261 §17, table 4) and the one deadline queue.

Every timer of the stack (transaction timers E, F, K, J and each record's
refresh, retry or expiry) lives in one :class:`DeadlineQueue`: a heap of
``(deadline, owner, name)``.  The owner keeps the deadline it currently wants
in an attribute of that name; cancelling or re-arming does not search the
heap, and stale entries are skipped when they surface.
"""

from __future__ import annotations

import functools
import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["LATENESS_BOUNDS", "DeadlineQueue", "Histogram", "Timed", "TimerConfig"]


class Histogram:
    """Counts of observed durations (seconds) in fixed buckets, with their
    sum: what Prometheus calls a histogram, kept without allocating per
    observation.  ``bounds`` are the buckets' upper bounds, increasing; a
    last bucket holds what is above them."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        if list(bounds) != sorted(set(bounds)) or not bounds:
            raise ValueError("histogram bounds must increase")
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, seconds: float) -> None:
        """Add one observation."""
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative buckets in Prometheus' form (``le`` label, count)."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            running += count
            out.append(("+Inf" if bound == float("inf") else str(bound), running))
        return out

    def quantile(self, q: float) -> float | None:
        """The upper bound of the bucket holding quantile ``q`` (0 < q <= 1):
        an upper estimate, as precise as the buckets; the largest bound when
        the quantile falls above them.  None when nothing was observed."""
        if not 0 < q <= 1:
            raise ValueError("quantile must be in (0, 1]")
        if not self.count:
            return None
        rank = q * self.count
        running = 0
        for i, count in enumerate(self.counts):
            running += count
            if running >= rank:
                return self.bounds[min(i, len(self.bounds) - 1)]
        return self.bounds[-1]  # pragma: no cover - running reaches count

    def summary(self) -> dict[str, float | int | None]:
        """Count, mean, p50, p99 and p99.9 (bucket upper bounds)."""
        return {
            "count": self.count,
            "mean": self.total / self.count if self.count else None,
            "p50": self.quantile(0.5),
            "p99": self.quantile(0.99),
            "p999": self.quantile(0.999),
        }


# How late a record's deadline (refresh, retry, expiry) is handled: from a
# millisecond to a minute, fine where it matters (under a second).
LATENESS_BOUNDS = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
    1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class TimerConfig:
    """T1, T2 and T4 of RFC 3261 §17.1.1.1 (seconds); the others derive
    from them as table 4 says."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    def __post_init__(self) -> None:
        if not (0 < self.t1 <= self.t2) or self.t4 <= 0:
            raise ValueError("timers need 0 < T1 <= T2 and T4 > 0")

    @property
    def timer_f(self) -> float:
        """Non-INVITE client transaction timeout: 64*T1."""
        return 64 * self.t1

    @property
    def timer_j(self) -> float:
        """Wait for request retransmissions (unreliable): 64*T1."""
        return 64 * self.t1

    @property
    def timer_k(self) -> float:
        """Wait for response retransmissions (unreliable): T4."""
        return self.t4


class Timed:
    """Mixin for objects that own deadlines in a :class:`DeadlineQueue`.

    The owner holds the deadline it currently wants in the attribute the
    timer is named after.  ``spread`` says how its deadlines fall: a
    record's are jittered and rarely tie, so its heap entries are
    ``(at, owner, name)`` and a tie is broken by the owners' identity; a
    transaction's timers are armed in bursts at one ``now``, so theirs carry
    a sequence number that breaks ties without comparing owners.
    """

    __slots__ = ()

    spread = False

    def __lt__(self, other: object) -> bool:
        return id(self) < id(other)


class DeadlineQueue:
    """One queue of deadlines for the whole stack, with lazy cancellation.

    A timer is an attribute of its owner (``tx.timer_e``, ``record.deadline``)
    holding the time it fires, or None.  ``arm(owner, name, at)`` sets the
    attribute and adds an entry (see :class:`Timed`: ``spread`` owners on a
    compact heap, the others with a sequence number, below); ``cancel``
    sets it to None.  An entry is live while the owner's attribute still
    equals its time, so cancelling or re-arming never searches: stale
    entries are skipped when they surface, and dropped in one pass when
    they outnumber a quarter of the live ones of the compact heap (so a
    record that is re-armed often, or an owner that is gone, holds no
    memory for long; compaction is O(n) once per n/4 stale entries).

    The short-lived timers (a transaction's E, F, J, K: at most 64·T1 away)
    are armed at ``now`` plus a fixed interval, so those of one name come
    in the order they fire: each name has a FIFO lane, where arming and
    popping cost O(1) however many transactions are alive (a heap of a
    hundred thousand entries costs a cache-missing sift per push and per
    pop).  An entry that would fire before the last one of its lane (timer
    E after a retransmission doubled its interval) goes to a heap instead.
    Their stale entries surface and go within 64·T1; they are compacted
    only when they outnumber the live ones, so answering a transaction
    (which cancels E and F) costs no pass over them.  Entries that tie on
    time come out in the order they were armed.  Work per tick is O(due
    timers · log n).

    ``lateness`` is a :class:`Histogram` of how long after its time each
    ``spread`` deadline (a record's refresh, retry or expiry) was popped:
    the delay a busy process adds to its refreshes.
    """

    __slots__ = (
        "_burst",
        "_heap",
        "_lane_entries",
        "_lanes",
        "_live_burst",
        "_live_spread",
        "_seq",
        "lateness",
    )

    def __init__(self) -> None:
        self.lateness = Histogram(LATENESS_BOUNDS)
        self._heap: list[tuple[float, Timed, str]] = []
        self._burst: list[tuple[float, int, Timed, str]] = []
        self._lanes: dict[str, deque[tuple[float, int, Timed, str]]] = {}
        self._lane_entries = 0
        self._live_spread = 0
        self._live_burst = 0
        self._seq = 0

    def __len__(self) -> int:
        """Timers armed."""
        return self._live_spread + self._live_burst

    def arm(self, owner: Timed, name: str, at: float) -> None:
        """Set timer ``name`` of ``owner`` to fire at ``at``."""
        armed = getattr(owner, name) is not None
        setattr(owner, name, at)
        if owner.spread:
            if not armed:
                self._live_spread += 1
            heap = self._heap
            heapq.heappush(heap, (at, owner, name))
            live = self._live_spread
            if len(heap) > live + (live >> 2) + 64:
                self._compact_spread()
            return
        if not armed:
            self._live_burst += 1
        self._seq += 1
        entry = (at, self._seq, owner, name)
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = deque()
        if not lane or lane[-1][0] <= at:
            lane.append(entry)
            self._lane_entries += 1
        else:
            heapq.heappush(self._burst, entry)
        if len(self._burst) + self._lane_entries > 2 * self._live_burst + 1024:
            self._compact_burst()

    def arm_all(self, owners: Sequence[Timed], name: str, ats: Sequence[float]) -> None:
        """``arm(owner, name, at)`` for each of ``owners`` and the time of
        the same rank in ``ats``, in one call: a restart arms a million
        records.  A batch at least as large as the compact heap is added
        to it with one heapify; a smaller one is pushed entry by entry (a
        heapify costs the whole heap)."""
        if len(owners) != len(ats):
            raise ValueError("arm_all needs one time per owner")
        heap = self._heap
        whole = len(owners) >= len(heap)
        add = heap.append if whole else functools.partial(heapq.heappush, heap)
        added = 0
        for owner, at in zip(owners, ats):  # noqa: B905 - the lengths are checked
            if not owner.spread:
                self.arm(owner, name, at)  # its own lane or heap: see arm
                continue
            if getattr(owner, name) is None:
                added += 1
            setattr(owner, name, at)
            add((at, owner, name))
        if whole:
            heapq.heapify(heap)
        self._live_spread += added
        live = self._live_spread
        if len(heap) > live + (live >> 2) + 64:
            self._compact_spread()

    def cancel(self, owner: Timed, name: str) -> None:
        """Forget timer ``name`` of ``owner`` (no error when not armed)."""
        if getattr(owner, name) is not None:
            if owner.spread:
                self._live_spread -= 1
            else:
                self._live_burst -= 1
            setattr(owner, name, None)

    def _spread_top(self) -> float | None:
        """The earliest live deadline of the compact heap (stale tops dropped)."""
        heap = self._heap
        while heap and getattr(heap[0][1], heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def _burst_top(
        self,
    ) -> tuple[tuple[float, int, Timed, str] | None, deque[tuple[float, int, Timed, str]] | None]:
        """The earliest live short-lived entry and the lane holding it (None
        for the heap), stale heads dropped on the way."""
        best: tuple[float, int, Timed, str] | None = None
        where: deque[tuple[float, int, Timed, str]] | None = None
        burst = self._burst
        while burst and getattr(burst[0][2], burst[0][3]) != burst[0][0]:
            heapq.heappop(burst)
        if burst:
            best = burst[0]
        for lane in self._lanes.values():
            while lane:
                head = lane[0]
                if getattr(head[2], head[3]) == head[0]:
                    # (time, sequence) order, without building tuples.
                    if (
                        best is None
                        or head[0] < best[0]
                        or (head[0] == best[0] and head[1] < best[1])
                    ):
                        best, where = head, lane
                    break
                lane.popleft()
                self._lane_entries -= 1
        return best, where

    def next_deadline(self, *, spread_too: bool = True) -> float | None:
        """The earliest live deadline (of the short-lived timers alone when
        not ``spread_too``), or None."""
        spread = self._spread_top()
        entry, _ = self._burst_top()
        burst = entry[0] if entry is not None else None
        if not spread_too:
            spread = None
        if spread is None and burst is None:
            if not self._live_spread and not self._live_burst:
                # give back what a burst grew
                self._heap, self._burst, self._lanes = [], [], {}
                self._lane_entries = 0
            return None
        if spread is None:
            return burst
        return spread if burst is None or spread <= burst else burst

    def pop_due(
        self, now: float, spread_limit: int | None = None, burst_limit: int | None = None
    ) -> list[tuple[Timed, str]]:
        """Disarm and return every live timer due at ``now``, earliest first;
        at most ``spread_limit`` spread ones and ``burst_limit`` short-lived
        ones (the others stay due, and the spread ones' lateness goes on
        growing until they are popped)."""
        due: list[tuple[Timed, str]] = []
        spread_left = -1 if spread_limit is None else spread_limit
        burst_left = -1 if burst_limit is None else burst_limit
        while True:
            spread = self._spread_top() if spread_left != 0 else None
            entry, lane = self._burst_top() if burst_left != 0 else (None, None)
            burst = entry[0] if entry is not None else None
            if spread is not None and spread <= now and (burst is None or spread <= burst):
                at, owner, name = heapq.heappop(self._heap)
                self._live_spread -= 1
                spread_left -= 1
                self.lateness.observe(now - at)
            elif entry is not None and entry[0] <= now:
                if lane is None:
                    heapq.heappop(self._burst)
                else:
                    lane.popleft()
                    self._lane_entries -= 1
                _at, _seq, owner, name = entry
                self._live_burst -= 1
                burst_left -= 1
            else:
                break
            setattr(owner, name, None)
            due.append((owner, name))
        if not self._live_burst and (self._burst or self._lanes):
            # Every short-lived entry left is stale: give back what a burst
            # grew (a deque keeps blocks it once needed).
            self._burst, self._lanes, self._lane_entries = [], {}, 0
        # Timers cancelled in bulk (records removed) are let go here too.
        live = self._live_spread
        if len(self._heap) > live + (live >> 2) + 64:
            self._compact_spread()
        if len(self._burst) + self._lane_entries > 2 * self._live_burst + 1024:
            self._compact_burst()
        return due

    def _compact_spread(self) -> None:
        # In place, in case a caller holds a list.
        self._heap[:] = [e for e in self._heap if getattr(e[1], e[2]) == e[0]]
        heapq.heapify(self._heap)

    def _compact_burst(self) -> None:
        self._burst[:] = [e for e in self._burst if getattr(e[2], e[3]) == e[0]]
        heapq.heapify(self._burst)
        entries = 0
        for name, lane in self._lanes.items():
            kept = deque([e for e in lane if getattr(e[2], e[3]) == e[0]])
            self._lanes[name] = kept
            entries += len(kept)
        self._lane_entries = entries
