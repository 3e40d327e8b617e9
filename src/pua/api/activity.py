"""What the API remembers of the engine's events: the recent history and
the last NOTIFY of each subscription.

The engine keeps only what its records need; a person looking at the status
page wants more: what happened lately (so a reload does not start from an
empty log) and what the notifier last said of each subscription (its
Subscription-State, a one-line summary of the body, the body itself on
demand).  :class:`Activity` keeps that, bounded, from the events the
runtime hands to its listeners; the runtime knows nothing of it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from pua.bodies import summarize
from pua.core import EngineEvent, NotifyReceived, RecordKey, SubscriptionTerminated
from pua.runtime import PresenceRuntime

from .views import EVENT_TYPES, record_id

__all__ = ["HISTORY_LIMIT", "NOTIFY_BODY_LIMIT", "Activity", "LastNotify"]

# Events kept for the page's "recent events" (each a dict of a few short
# fields: about 200 x 0.5 KiB).
HISTORY_LIMIT = 200
# Bytes of a NOTIFY body kept per subscription: presence documents are a
# few KiB; a larger body is kept cut, and says so.
NOTIFY_BODY_LIMIT = 64 * 1024

# Fields of an event that its history entry leaves out: the key is given as
# id and URIs, a body is shown only on demand, and the rest are derived.
_NOT_IN_HISTORY = frozenset({"key", "body", "document", "content_type", "expires_at"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LastNotify:
    """The last NOTIFY of one subscription, as the API shows it."""

    state: str  # Subscription-State: active, pending, terminated
    reason: str | None
    summary: str  # one line (pua.bodies.summarize)
    at: float  # Unix time it arrived
    content_type: str | None
    body: bytes  # at most NOTIFY_BODY_LIMIT bytes of it
    size: int  # bytes of the whole body

    @property
    def truncated(self) -> bool:
        """Whether ``body`` is only the start of what came."""
        return self.size > len(self.body)

    def view(self) -> dict[str, Any]:
        """As JSON (the body itself is served apart)."""
        return {
            "state": self.state,
            "reason": self.reason,
            "summary": self.summary,
            "at": self.at,
            "content_type": self.content_type,
            "size": self.size,
            "truncated": self.truncated,
        }


class Activity:
    """The recent history of engine events and the last NOTIFY of each
    subscription.  Feed it every engine event with :meth:`observe`."""

    def __init__(self, runtime: PresenceRuntime, limit: int = HISTORY_LIMIT) -> None:
        self._runtime = runtime
        # (event, when): the entries a reader sees are made when read
        # (recent), not for each of thousands of events a second.  A
        # NOTIFY's entry is made at once: its event holds the whole body.
        self._history: deque[tuple[EngineEvent, float] | dict[str, Any]] = deque(maxlen=limit)
        self._notifies: dict[RecordKey, LastNotify] = {}

    def observe(self, event: EngineEvent) -> dict[str, Any]:
        """Take one engine event; returns its history entry."""
        now, summary = self.note(event)
        return history_entry(event, now, summary)

    def note(self, event: EngineEvent) -> tuple[float, str | None]:
        """Take one engine event; returns when it came and, for a NOTIFY,
        the summary of its body (what :func:`history_entry` takes)."""
        now = self._runtime.now()
        key = event.key
        summary: str | None = None
        if isinstance(event, NotifyReceived):
            summary = summarize(event.content_type, event.body)
            if key is not None and self._runtime.record(key) is not None:
                self._notifies[key] = LastNotify(
                    state=event.state,
                    reason=event.reason,
                    summary=summary,
                    at=now,
                    content_type=event.content_type,
                    body=bytes(event.body[:NOTIFY_BODY_LIMIT]),
                    size=len(event.body),
                )
        # A subscription that is gone takes its last NOTIFY with it.
        if (
            key is not None
            and key.watcher_uri
            and (isinstance(event, SubscriptionTerminated) or self._runtime.record(key) is None)
        ):
            self._notifies.pop(key, None)
        if summary is None:
            self._history.append((event, now))
        else:
            self._history.append(history_entry(event, now, summary))
        return now, summary

    def last_notify(self, key: RecordKey) -> LastNotify | None:
        """The last NOTIFY of the subscription ``key``, or None."""
        return self._notifies.get(key)

    def recent(self) -> list[dict[str, Any]]:
        """The kept history, oldest first."""
        return [item if isinstance(item, dict) else history_entry(*item) for item in self._history]


def history_entry(event: EngineEvent, at: float, summary: str | None = None) -> dict[str, Any]:
    """A small dict of an event for the history: when, what, which record,
    its URIs, and the event's status, reason or state; ``detail`` is the
    line a person reads."""
    key = event.key
    entry: dict[str, Any] = {
        "at": at,
        "type": EVENT_TYPES.get(type(event), type(event).__name__),
        "id": record_id(key) if key is not None else None,
        "pres_uri": key.pres_uri if key is not None else None,
        "watcher_uri": (key.watcher_uri or None) if key is not None else None,
    }
    for name in getattr(event, "__slots__", ()):
        if name not in _NOT_IN_HISTORY:
            entry[name] = getattr(event, name)
    if summary is not None:
        entry["summary"] = summary
    entry["detail"] = _detail(entry, at)
    return entry


def _detail(entry: dict[str, Any], at: float) -> str:
    kind = entry["type"]
    parts: list[str] = []
    if kind == "publication.succeeded":
        parts = [f"{entry['status']} · ETag {entry['etag']} · expires {entry['expires']}s"]
        parts.append(entry.get("kind") or "")
    elif kind in ("publication.failed", "subscription.failed"):
        parts = [f"{entry['status']} {entry.get('reason') or ''}".strip()]
        retry_at = entry.get("retry_at")
        parts.append(f"retry in {max(0, round(retry_at - at))}s" if retry_at else "gave up")
    elif kind in ("publication.removed", "subscription.terminated"):
        parts = [entry.get("reason") or ""]
    elif kind == "subscription.state":
        parts = [entry.get("state") or ""]
    elif kind == "notify":
        reason = entry.get("reason")
        parts = [f"{entry.get('state')}" + (f" ({reason})" if reason else "")]
        parts.append(entry.get("summary") or "")
    elif kind == "callback.failed":
        parts = [entry.get("error") or ""]
    return " · ".join(p for p in parts if p)
