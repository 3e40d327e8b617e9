"""What goes wrong with records, in the service's log.

Every failed attempt, the start and end of each backoff and every record
given up are logged at WARNING with the record's URI, event, id, status and
reason.  A record that keeps failing (a dead server) is logged at the start
of its streak and then at most once per ``every`` seconds, with the number
of failures meanwhile, so a dead server does not flood the log.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from pua.core import (
    EngineEvent,
    NotifyReceived,
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    RecordKey,
    SubscriptionAccepted,
    SubscriptionFailed,
    SubscriptionTerminated,
)

__all__ = ["FailureLog"]

# Seconds between two lines about one record that keeps failing.
EVERY = 60.0


class _Streak:
    __slots__ = ("failures", "logged_at", "unlogged")

    def __init__(self, now: float) -> None:
        self.failures = 0
        self.logged_at = now
        self.unlogged = 0


class FailureLog:
    """An event listener of the runtime that logs failures (see the module)."""

    def __init__(
        self,
        log: logging.Logger,
        event_name: Callable[[int], str],
        *,
        every: float = EVERY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._log = log
        self._event_name = event_name
        self._every = every
        self._clock = clock
        self._wall = wall  # the engine's clock, that retry times are on
        self._streaks: dict[RecordKey, _Streak] = {}

    def __len__(self) -> int:
        """Records in a streak of failures."""
        return len(self._streaks)

    def _what(self, key: RecordKey) -> str:
        kind = "SUBSCRIBE" if key.watcher_uri else "PUBLISH"
        text = f"{kind} {key.pres_uri} event={self._event_name(key.event)}"
        if key.id:
            text += f" id={key.id}"
        if key.watcher_uri:
            text += f" watcher={key.watcher_uri}"
        return text

    def __call__(self, event: EngineEvent) -> None:
        key = event.key
        if key is None:
            return
        if isinstance(event, PublicationFailed | SubscriptionFailed):
            self._failed(key, event.status, event.reason, event.retry_at)
        elif isinstance(event, PublicationSucceeded | SubscriptionAccepted) or (
            isinstance(event, NotifyReceived) and event.state == "active"
        ):
            self._recovered(key)
        elif isinstance(event, SubscriptionTerminated):
            self._streaks.pop(key, None)
            if event.reason not in ("unsubscribed", "expired", "expires 0 in 2xx"):
                self._log.warning("%s ended: %s", self._what(key), event.reason)
        elif isinstance(event, PublicationRemoved):
            self._streaks.pop(key, None)

    def _failed(self, key: RecordKey, status: int, reason: str, retry_at: float | None) -> None:
        now = self._clock()
        answer = f"{status} {reason}" if status else reason
        if retry_at is None:
            streak = self._streaks.pop(key, None)
            failures = 1 + (streak.failures if streak is not None else 0)
            self._log.warning(
                "%s failed: %s; given up after %d failure%s",
                self._what(key),
                answer,
                failures,
                "" if failures == 1 else "s",
            )
            return
        delay = max(0.0, retry_at - self._wall())
        streak = self._streaks.get(key)
        if streak is None:
            streak = self._streaks[key] = _Streak(now)
            streak.failures = 1
            self._log.warning(
                "%s failed: %s; backing off, next try in %.1f s", self._what(key), answer, delay
            )
            return
        streak.failures += 1
        if now - streak.logged_at < self._every:
            streak.unlogged += 1
            return
        self._log.warning(
            "%s still failing: %s; %d failures so far (%d not logged), next try in %.1f s",
            self._what(key),
            answer,
            streak.failures,
            streak.unlogged,
            delay,
        )
        streak.logged_at, streak.unlogged = now, 0

    def _recovered(self, key: RecordKey) -> None:
        streak = self._streaks.pop(key, None)
        if streak is not None:
            self._log.warning(
                "%s recovered after %d failure%s: backoff over",
                self._what(key),
                streak.failures,
                "" if streak.failures == 1 else "s",
            )
