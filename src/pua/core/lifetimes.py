"""Lifetimes: the Expires to ask for, Min-Expires, and when to refresh or retry.

Pure arithmetic over the engine's settings, a record and ``now``; jitter
comes from the ``ids`` source.  The rules (DESIGN, "Behaviour that the best
peers get wrong"):

- refresh at max(expires/2, expires - refresh_margin), made up to 10% (at
  most 10 s) earlier by jitter, so a refresh never lands after expiry even
  when its UDP transaction takes all of timer F (32 s);
- after a failure, Retry-After wins (capped); otherwise capped exponential
  backoff with "equal jitter" (between half and all of the delay);
- expires -1 means for ever: ask for default_expires until removed;
- 423 Interval Too Brief: adopt the answer's Min-Expires (RFC 3261 §21.4.18).
"""

from __future__ import annotations

import math

from pua.sip.ids import Ids

from .config import EngineConfig
from .records import Record

__all__ = ["Lifetimes"]


class Lifetimes:
    """The engine's timing rules, over its settings and jitter source."""

    __slots__ = ("_config", "_ids")

    def __init__(self, config: EngineConfig, ids: Ids) -> None:
        self._config = config
        self._ids = ids

    def apply(self, record: Record, expires: int, now: float) -> None:
        """Take the caller's ``expires`` (-1: for ever) as the wanted lifetime."""
        if expires < 0:
            record.desired_until = None
            record.requested = self._config.default_expires
        else:
            record.requested = max(expires, self._config.min_expires)
            record.desired_until = now + record.requested

    def resume(self, record: Record, now: float) -> None:
        """The Expires to ask for of a record read back from the store."""
        if record.desired_until is None:
            record.requested = self._config.default_expires
        else:
            record.requested = max(1, int(record.desired_until - now))

    def to_ask(self, record: Record, now: float) -> int:
        """The Expires of the next request: what was asked for, cut to what
        is left of the wanted lifetime (never below min_expires or 1)."""
        if record.desired_until is None:
            return record.requested
        remaining = math.ceil(record.desired_until - now)
        return max(1, min(record.requested, max(remaining, self._config.min_expires)))

    @staticmethod
    def over(record: Record, now: float) -> bool:
        """Whether the wanted lifetime has ended."""
        return record.desired_until is not None and record.desired_until <= now + 1

    @staticmethod
    def covers(record: Record, end: float) -> bool:
        """Whether a server expiry at ``end`` covers all that was wanted."""
        return record.desired_until is not None and record.desired_until <= end + 1

    @staticmethod
    def adopt_min_expires(record: Record, minimum: int | None, now: float) -> bool:
        """After a 423: ask for ``minimum`` from now on.  False when the
        answer named none larger than what we asked."""
        if minimum is None or minimum <= record.requested:
            return False
        record.requested = minimum
        if record.desired_until is not None:
            record.desired_until = max(record.desired_until, now + minimum)
        return True

    def refresh_delay(self, expires: float) -> float:
        """Seconds after a 2xx to refresh (see the module's rules)."""
        # max(half, early) - min(expires / 10, 10) * jitter, at least 0
        # (without the builtins' calls: a restart asks this a million times).
        half, early = expires / 2.0, expires - self._config.refresh_margin
        spread = expires / 10.0
        delay = (half if half >= early else early) - (
            spread if spread <= 10.0 else 10.0
        ) * self._ids.uniform()
        return delay if delay > 0.0 else 0.0

    def resume_at(self, record: Record, now: float, due_at: float) -> float:
        """When a resumed record is refreshed: by the refresh rule over the
        life it has left (so one refreshed a moment ago elsewhere is not
        refreshed again at once), or ``due_at`` when that is later."""
        at = now + self.refresh_delay(record.expires_at - now)
        return at if at > due_at else due_at

    def retry_delay(self, failures: int, retry_after: int | None) -> float:
        """Seconds to wait after the ``failures``-th failure in a row."""
        if retry_after is not None:
            return float(min(retry_after, self._config.retry_after_cap))
        cap = float(min(self._config.retry_cap, self._config.retry_base * 2 ** (failures - 1)))
        return cap / 2.0 + cap / 2.0 * self._ids.uniform()
