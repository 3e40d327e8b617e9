"""What goes wrong with records, in the service's log.

Every failed attempt, the start and end of each backoff and every record
given up are logged at WARNING with the record's URI, event, id, status and
reason.  A record that keeps failing (a dead server) is logged at the start
of its streak and then at most once per ``every`` seconds, with the number
of failures meanwhile, so a dead server does not flood the log.

Many records failing together (a server gone silent times out every
request in flight at once) would still make a line each: at most
``budget`` lines are written per ``window`` seconds, and the lines left out
are told in one line when the window is over, counted by what they would
have said ("1,000 failed: 408 Request Timeout (local)").
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
# Lines about records at most, per window of seconds; the rest counted.
BUDGET = 20
WINDOW = 10.0


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
        budget: int = BUDGET,
        window: float = WINDOW,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        later: Callable[[float, Callable[[], None]], object | None] | None = None,
    ) -> None:
        self._log = log
        self._event_name = event_name
        self._every = every
        self._budget = budget
        self._window = window
        self._clock = clock
        self._wall = wall  # the engine's clock, that retry times are on
        # later(delay, callback): calls back after delay seconds (the
        # runtime's loop; None when it cannot), so that lines left out are
        # told when no event follows; else they are told at the next line.
        self._later = later
        self._streaks: dict[RecordKey, _Streak] = {}
        self._window_start = clock()
        self._said = 0  # lines written in this window
        self._left_out: dict[str, int] = {}  # what the lines left out said
        self._flush_armed = False

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
            reason = event.reason
            asked = reason in ("unsubscribed", "expired", "expires 0 in 2xx")
            if not asked and self._may_say(f"ended: {reason}"):
                self._log.warning("%s ended: %s", self._what(key), reason)
        elif isinstance(event, PublicationRemoved):
            self._streaks.pop(key, None)

    def _failed(self, key: RecordKey, status: int, reason: str, retry_at: float | None) -> None:
        now = self._clock()
        answer = f"{status} {reason}" if status else reason
        if retry_at is None:
            streak = self._streaks.pop(key, None)
            failures = 1 + (streak.failures if streak is not None else 0)
            if self._may_say(f"given up: {answer}"):
                self._log.warning(
                    "%s failed: %s; given up after %d failure%s",
                    self._what(key),
                    answer,
                    failures,
                    "" if failures == 1 else "s",
                )
            return
        streak = self._streaks.get(key)
        if streak is None:
            streak = self._streaks[key] = _Streak(now)
            streak.failures = 1
            if self._may_say(f"failed: {answer}"):
                delay = max(0.0, retry_at - self._wall())
                self._log.warning(
                    "%s failed: %s; backing off, next try in %.1f s",
                    self._what(key),
                    answer,
                    delay,
                )
            return
        streak.failures += 1
        if now - streak.logged_at < self._every:
            streak.unlogged += 1
            return
        if self._may_say(f"still failing: {answer}"):
            self._log.warning(
                "%s still failing: %s; %d failures so far (%d not logged), next try in %.1f s",
                self._what(key),
                answer,
                streak.failures,
                streak.unlogged,
                max(0.0, retry_at - self._wall()),
            )
        streak.logged_at, streak.unlogged = now, 0

    def _recovered(self, key: RecordKey) -> None:
        streak = self._streaks.pop(key, None)
        if streak is not None and self._may_say("recovered"):
            self._log.warning(
                "%s recovered after %d failure%s: backoff over",
                self._what(key),
                streak.failures,
                "" if streak.failures == 1 else "s",
            )

    # -- the budget of lines ------------------------------------------------------
    def _may_say(self, gist: str) -> bool:
        """Whether a line may be written now; when not, it is counted
        under ``gist`` (what it would have said, without the record)."""
        now = self._clock()
        self._roll(now)
        if self._said < self._budget:
            self._said += 1
            return True
        self._left_out[gist] = self._left_out.get(gist, 0) + 1
        if not self._flush_armed:
            self._arm_flush(now)
        return False

    def _arm_flush(self, now: float) -> None:
        if self._later is not None:
            delay = self._window_start + self._window - now
            self._flush_armed = self._later(delay, self._flush_later) is not None

    def _flush_later(self) -> None:
        self._flush_armed = False
        now = self._clock()
        if not self._roll(now) and self._left_out:
            self._arm_flush(now)  # woken early

    def _roll(self, now: float) -> bool:
        """Start a new window when this one is over, telling what it left
        out; whether it was over."""
        if now - self._window_start < self._window:
            return False
        self.flush()
        self._window_start, self._said = now, 0
        return True

    def flush(self) -> None:
        """Write the line that tells the lines left out, if any."""
        left_out = self._left_out
        if not left_out:
            return
        self._left_out = {}
        total = sum(left_out.values())
        told = "; ".join(
            f"{count:,} {gist}"
            for gist, count in sorted(left_out.items(), key=lambda item: -item[1])
        )
        self._log.warning(
            "%d more line%s about records left out in the last %.0f s (at most %d a window): %s",
            total,
            "" if total == 1 else "s",
            self._window,
            self._budget,
            told,
        )
