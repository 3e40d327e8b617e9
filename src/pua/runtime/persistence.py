"""Keeping the store in step with the engine: restore, write-back,
write-through, durability before acknowledgements, and database outages.

The engine marks what changed (``take_store_changes``); :class:`StoreSync`
turns those records into rows of the ``pua`` table and writes them:

- ``write-back`` (the seed's behaviour): every ``update_period`` seconds
  and at shutdown;
- ``write-through``: as soon as something changed.

Either way :meth:`StoreSync.flush` writes everything pending now; the API
calls it before acknowledging a change, so an acknowledged publication is
in the database.  Concurrent flushes share one transaction (group commit).
When the database is unreachable nothing is lost: changes stay pending, the
engine keeps working from memory, and the writes are retried with backoff;
the outage and its end are logged once each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from typing import Any

from pua.core import (
    PublicationRemoved,
    PublicationSucceeded,
    Record,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from pua.core.persist import record_from_row, record_to_row
from pua.sip.timers import Histogram
from pua.store import Store, StoreError

from .engine import PresenceRuntime

__all__ = ["StoreSync"]

log = logging.getLogger("pua.store")

# Rows written per transaction: building rows and the driver's parameter
# work run on the event loop, so they are cut into slices of a few
# milliseconds each (the loop must not stall for more than about 20 ms).
WRITE_SLICE = 500
# Retry delays while the database is unreachable.
RETRY_FIRST, RETRY_CAP = 1.0, 30.0
# Due work after a restart is spread over at least this long (and more for
# large tables: see restore), so a restart is no storm.
SPREAD_MIN = 2.0
SPREAD_RATE = 1000.0  # records per second


URGENT = (
    PublicationSucceeded,
    PublicationRemoved,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)


class WriteTimer(Histogram):
    """Time spent writing, as a histogram for /metrics."""

    BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0)

    def __init__(self) -> None:
        super().__init__(self.BOUNDS)


class StoreSync:
    """Writes the engine's changes to a :class:`~pua.store.Store`."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        store: Store,
        *,
        mode: str = "write-back",
        update_period: float = 30.0,
    ) -> None:
        if mode not in ("write-back", "write-through"):
            raise ValueError(f"db_mode must be write-back or write-through, not {mode!r}")
        self.runtime = runtime
        self.store = store
        self.mode = mode
        self.update_period = update_period
        self._pending_deletes: set[int] = set()
        self._lock = asyncio.Lock()
        self._kick = asyncio.Event()
        self._stopping = False
        self._flush_waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self._down = False
        self.timer = WriteTimer()
        runtime.track_changes()
        runtime.add_listener(self._on_event)

    def _on_event(self, event: object) -> None:
        if self.mode == "write-through":
            self._kick.set()
            return
        # What a restart could not rebuild by itself is written at once even
        # in write-back mode: a new publication's first ETag, a confirmed
        # dialog, an ending.  Refreshes (new ETag, expiry, CSeq) wait.
        if isinstance(event, PublicationSucceeded) and event.kind == "refresh":
            return
        if isinstance(event, URGENT):
            self._kick.set()

    # -- start and stop ---------------------------------------------------------
    async def restore(self) -> dict[str, int]:
        """Load every row and resume its record; rows whose records are over
        are deleted.  Due work is spread over a window that grows with the
        table.  Returns counts."""
        runtime = self.runtime
        now = runtime.now()
        total = await self.store.count()
        window = max(SPREAD_MIN, total / SPREAD_RATE)
        resumed = dropped = 0
        started = time.monotonic()
        async for rows in self.store.load():
            for row in rows:
                try:
                    package = runtime.package(int(row["event"]))
                    record = record_from_row(row, package.content_type)
                except (KeyError, ValueError):
                    self._pending_deletes.add(int(row["id"]))
                    dropped += 1
                    continue
                due_at = now + window * runtime.jitter()
                if runtime.resume(record, due_at):
                    resumed += 1
                else:
                    self._pending_deletes.add(int(row["id"]))
                    dropped += 1
            if total > 50_000:
                log.info("restoring: %d of %d rows", resumed + dropped, total)
            await asyncio.sleep(0)  # let the loop breathe between chunks
        runtime.take_store_changes()  # what was just read needs no writing
        runtime.flush_outputs()
        async with self._lock:
            await self._write_pending()
        log.info(
            "restored %d records (%d rows dropped) in %.2f s",
            resumed,
            dropped,
            time.monotonic() - started,
        )
        return {"rows": total, "resumed": resumed, "dropped": dropped}

    def start(self) -> None:
        """Start writing in the background."""
        self._task = asyncio.ensure_future(self._run())

    async def close(self) -> None:
        """Stop the background writer after a last flush."""
        if self._task is not None:
            # Let a write in progress finish: the writer stops at its next turn.
            self._stopping = True
            self._kick.set()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await self._task
            self._task = None
        for waiter in self._flush_waiters:
            if not waiter.done():
                waiter.set_exception(StoreError("the store is closing"))
        try:
            async with self._lock:
                await self._write_pending()
        except StoreError as exc:
            log.error("final write failed, changes since the last write are lost: %s", exc)
        await self.store.close()

    # -- writing ------------------------------------------------------------------
    async def flush(self) -> None:
        """Write everything pending now and return once it is in the
        database.  Callers that arrive while a write runs share the next
        one (group commit).  Raises StoreError when the database cannot be
        reached; nothing is lost then."""
        if self._task is None or self._task.done():
            async with self._lock:
                await self._write_pending()
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append(future)
        self._kick.set()
        await future

    async def _write_pending(self) -> None:
        runtime = self.runtime
        changed, deleted = runtime.take_store_changes()
        self._pending_deletes.update(deleted)
        if not changed and not self._pending_deletes:
            return
        # Written in slices, each its own short transaction, so that neither
        # building rows nor the driver's work on them holds the event loop
        # for long.  Slices already written stay written if a later one
        # fails: their records are not marked again.
        deletes = sorted(self._pending_deletes)
        # The keys are taken a slice at a time from the set the engine
        # handed over: no list of a million keys is built in one go.
        remaining = iter(changed)
        first = True
        while True:
            part = list(itertools.islice(remaining, WRITE_SLICE))
            if not part and not first:
                break
            rows: list[dict[str, Any]] = []
            inserted: list[Record] = []
            for key in part:
                record = runtime.record(key)
                if record is None:
                    continue  # deleted since; its delete is pending
                row = record_to_row(record, runtime.package(key.event).content_type)
                if record.row_id is None:
                    inserted.append(record)
                else:
                    row["id"] = record.row_id
                rows.append(row)
            began = time.perf_counter()
            try:
                new_ids = await self.store.write(rows, deletes if first else [])
            except (asyncio.CancelledError, StoreError) as exc:
                # Nothing is lost: the records not yet written are marked
                # again, deletes kept.
                runtime.mark_changed(itertools.chain(part, remaining))
                if isinstance(exc, StoreError):
                    self._down = True
                raise
            self.timer.observe(time.perf_counter() - began)
            if first:
                self._pending_deletes.difference_update(deletes)
                first = False
            for record, ident in zip(inserted, new_ids, strict=True):
                if runtime.record(record.key) is record:
                    record.row_id = ident
                else:
                    self._pending_deletes.add(ident)  # gone while it was written
            await asyncio.sleep(0)
        if self._down:
            self._down = False
            log.warning("database reachable again; pending changes written")

    async def _run(self) -> None:
        """The one writer: waits for a flush request, a change (write-through),
        an urgent change or the period (write-back), then writes all that is
        pending and answers every flush that was waiting."""
        delay = RETRY_FIRST
        while not self._stopping:
            period = None if self.mode == "write-through" else (self.update_period or None)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._kick.wait()
            self._kick.clear()
            if self._stopping:
                return
            waiters, self._flush_waiters = self._flush_waiters, []
            try:
                async with self._lock:
                    await self._write_pending()
            except StoreError as exc:
                for waiter in waiters:
                    if not waiter.done():
                        waiter.set_exception(exc)
                if delay == RETRY_FIRST:
                    log.error("database unreachable, working from memory: %s", exc)
                await asyncio.sleep(delay)
                delay = min(RETRY_CAP, delay * 2)
                self._kick.set()
                continue
            delay = RETRY_FIRST
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)
