"""Timer values (RFC 3261 §17, table 4) and the one deadline queue.

Every timer of the stack (transaction timers E, F, K, J and each record's
refresh, retry or expiry) lives in one :class:`DeadlineQueue`: a heap of
``(deadline, owner, name)``.  The owner keeps the deadline it currently wants
in an attribute of that name; cancelling or re-arming does not search the
heap, and stale entries are skipped when they surface.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

__all__ = ["DeadlineQueue", "Timed", "TimerConfig"]


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

    Heap entries that share a deadline are ordered by the owners' identity
    (any stable order will do); the owner itself holds the deadline it
    currently wants, in the attribute the timer is named after.
    """

    __slots__ = ()

    def __lt__(self, other: object) -> bool:
        return id(self) < id(other)


class DeadlineQueue:
    """One heap of deadlines for the whole stack, with lazy cancellation.

    A timer is an attribute of its owner (``tx.timer_e``, ``record.deadline``)
    holding the time it fires, or None.  ``arm(owner, name, at)`` sets the
    attribute and pushes ``(at, owner, name)``; ``cancel`` sets it to None.
    An entry is live while the owner's attribute still equals its time, so
    cancelling or re-arming never searches the heap: stale entries are
    skipped when they surface, and dropped in one pass when they outnumber
    a quarter of the live ones (so a record that is re-armed often, or an
    owner that is gone, holds no memory for long; compaction is O(n) once
    per n/4 stale entries).  Work per tick is O(due timers · log n).
    """

    __slots__ = ("_heap", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, Timed, str]] = []
        self._live = 0

    def __len__(self) -> int:
        """Timers armed."""
        return self._live

    def arm(self, owner: Timed, name: str, at: float) -> None:
        """Set timer ``name`` of ``owner`` to fire at ``at``."""
        if getattr(owner, name) is None:
            self._live += 1
        setattr(owner, name, at)
        heapq.heappush(self._heap, (at, owner, name))
        if len(self._heap) > self._live + (self._live >> 2) + 64:
            self._compact()

    def cancel(self, owner: Timed, name: str) -> None:
        """Forget timer ``name`` of ``owner`` (no error when not armed)."""
        if getattr(owner, name) is not None:
            self._live -= 1
            setattr(owner, name, None)

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap:
            at, owner, name = heap[0]
            if getattr(owner, name) == at:
                return at
            heapq.heappop(heap)
        if not self._live:
            self._heap = []  # give back what a burst of timers grew
        return None

    def pop_due(self, now: float) -> list[tuple[Timed, str]]:
        """Disarm and return every live timer due at ``now``, earliest first."""
        heap = self._heap
        due: list[tuple[Timed, str]] = []
        while heap and heap[0][0] <= now:
            at, owner, name = heapq.heappop(heap)
            if getattr(owner, name) == at:
                setattr(owner, name, None)
                self._live -= 1
                due.append((owner, name))
        if len(heap) > self._live + (self._live >> 2) + 64:
            self._compact()
        return due

    def _compact(self) -> None:
        # In place: pop_due's caller may hold the list.
        self._heap[:] = [e for e in self._heap if getattr(e[1], e[2]) == e[0]]
        heapq.heapify(self._heap)
