"""Timer values (RFC 3261 §17, table 4) and the one deadline queue.

Every timer of the stack (transaction timers, and later refreshes and
expiries) lives in one :class:`DeadlineQueue`: a heap of ``(deadline, seq,
owner, name)``.  Cancelling or re-arming does not search the heap; the owner
keeps the deadline it currently wants per timer name and stale heap entries
are skipped when they surface.  Work per tick is O(due timers · log n).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ["DeadlineQueue", "TimerConfig"]


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


class DeadlineQueue:
    """A heap of deadlines with lazy cancellation.

    ``arm(owner, name, at)`` replaces any earlier deadline of that owner and
    name; ``cancel`` forgets it; ``pop_due(now)`` returns the ``(owner,
    name)`` pairs whose current deadline is ``<= now``, earliest first.
    """

    __slots__ = ("_armed", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Hashable, str]] = []
        self._armed: dict[tuple[Hashable, str], tuple[float, int]] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._armed)

    def arm(self, owner: Hashable, name: str, at: float) -> None:
        """Set timer ``name`` of ``owner`` to fire at ``at``."""
        self._seq += 1
        self._armed[(owner, name)] = (at, self._seq)
        heapq.heappush(self._heap, (at, self._seq, owner, name))
        # Keep stale entries from piling up when timers are re-armed often.
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._armed):
            self._compact()

    def cancel(self, owner: Hashable, name: str) -> None:
        """Forget timer ``name`` of ``owner`` (no error when not armed)."""
        self._armed.pop((owner, name), None)

    def cancel_all(self, owner: Hashable, names: tuple[str, ...]) -> None:
        """Forget the named timers of ``owner``."""
        for name in names:
            self._armed.pop((owner, name), None)

    def deadline(self, owner: Hashable, name: str) -> float | None:
        """When timer ``name`` of ``owner`` fires, or None."""
        entry = self._armed.get((owner, name))
        return None if entry is None else entry[0]

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None."""
        heap = self._heap
        while heap:
            at, seq, owner, name = heap[0]
            if self._armed.get((owner, name)) == (at, seq):
                return at
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[tuple[Hashable, str]]:
        """Remove and return every live timer due at ``now``."""
        heap = self._heap
        due: list[tuple[Hashable, str]] = []
        while heap and heap[0][0] <= now:
            at, seq, owner, name = heapq.heappop(heap)
            if self._armed.get((owner, name)) == (at, seq):
                del self._armed[(owner, name)]
                due.append((owner, name))
        return due

    def _compact(self) -> None:
        self._heap = [(at, seq, owner, name) for (owner, name), (at, seq) in self._armed.items()]
        heapq.heapify(self._heap)
