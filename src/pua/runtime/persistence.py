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
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, TypeVar

from pua.core import (
    PublicationRemoved,
    PublicationSucceeded,
    Record,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from pua.core.persist import (
    PUBLICATION_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    record_to_values,
    records_from_values,
    refresh_values,
)
from pua.sip.timers import Histogram
from pua.store import Store, StoreError

from .engine import PresenceRuntime

__all__ = ["StoreSync"]

log = logging.getLogger("pua.store")

T = TypeVar("T")

# Rows written per transaction at most, and records turned into a row's
# values between two turns of the event loop (a slice takes a few
# milliseconds: the loop must not stall for more than about 20 ms).
WRITE_ROWS = 10_000
BUILD_SLICE = 500
# Rows are updated in order of id, bucket by bucket of 2**BUCKET_BITS ids;
# a bucket is sorted in one go (16,384 records in hash order took 6 ms or
# more, 4,096 take 0.5 ms).
BUCKET_BITS = 12
# Writes of at least GC_PAUSE_ROWS records pause the collector (own_gc);
# records let go of between two turns of the loop once a write is done.
GC_PAUSE_ROWS = 50_000
DRAIN_SLICE = 10_000
# Rows read a query, and rows turned into records between two turns of
# the loop.
RESTORE_SLICE = 2000
RESUME_SLICE = 500
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
        own_gc: bool = False,
    ) -> None:
        """``own_gc`` (for a program that owns the process, as ``pua
        serve``): the cyclic collector is paused while a write of many
        records holds them (see :meth:`_write_pending`)."""
        if mode not in ("write-back", "write-through"):
            raise ValueError(f"db_mode must be write-back or write-through, not {mode!r}")
        self.runtime = runtime
        self.store = store
        self.mode = mode
        self.update_period = update_period
        self.own_gc = own_gc
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
    async def restore(
        self, *, freeze: bool = False, wanted: Callable[[str, str], bool] | None = None
    ) -> dict[str, int]:
        """Load every row and resume its record; rows whose records are over
        are deleted.  Due work is spread over a window that grows with the
        table.  Returns counts.

        ``freeze`` (for a program that owns the process, as ``pua serve``):
        the cyclic collector is paused while the rows are read, and the
        records made are moved out of its way (``gc.freeze``) a chunk at a
        time, so that no collection walks a million of them afterwards.  ``wanted(pres_uri,
        watcher_uri)``, when given, names the rows to take (a node of a
        cluster takes its partitions' only); the others are left alone."""
        runtime = self.runtime
        total = await self.store.count()
        window = max(SPREAD_MIN, total / SPREAD_RATE)
        started = time.monotonic()
        # What is made lives on and is frozen anyway: no collection walks it
        # meanwhile (a gen-0 pass every 20,000 new objects costs a restart
        # of a million rows about 5%).
        paused = freeze and gc.isenabled()
        if paused:
            gc.disable()
        try:
            counts = await self._resume_rows(window, wanted=wanted, freeze=freeze, total=total)
        finally:
            if paused:
                gc.enable()
        runtime.take_store_changes()  # what was just read needs no writing
        runtime.flush_outputs()
        async with self._lock:
            await self._write_pending()
        log.info(
            "restored %d records (%d rows dropped) in %.2f s",
            counts["resumed"],
            counts["dropped"],
            time.monotonic() - started,
        )
        return {"rows": total, "resumed": counts["resumed"], "dropped": counts["dropped"]}

    async def adopt(self, wanted: Callable[[str, str], bool]) -> dict[str, int]:
        """Take over the records of the rows ``wanted(pres_uri,
        watcher_uri)`` names that are not held here (the partitions of a
        node of the cluster that died or gave them up): each is resumed
        from its row, a publication with its stored ETag, a subscription
        in its dialog with this node's Contact.  Rows of records whose
        lifetime is over are deleted; rows held already, or not wanted,
        are left alone.  Returns counts."""
        counts = await self._resume_rows(SPREAD_MIN / 2, wanted=wanted, freeze=False, total=0)
        self.runtime.flush_outputs()
        return counts

    async def _resume_rows(
        self,
        window: float,
        *,
        wanted: Callable[[str, str], bool] | None,
        freeze: bool,
        total: int,
    ) -> dict[str, int]:
        """Read the table and resume the records of the rows ``wanted``
        names (every row when None); due work spread over ``window``."""
        runtime = self.runtime
        now = runtime.now()
        resumed = dropped = skipped = 0
        # The rows come as the driver's tuples and become records directly,
        # RESUME_SLICE at a time, each slice taken back at once; the loop
        # gets a turn between slices.  Publications and subscriptions are
        # read apart, each with the columns its kind has (a column costs the
        # driver a step per row).
        jitter = runtime.jitter
        deletes = self._pending_deletes

        def content_type_of(event: int) -> str | None:
            return runtime.package(event).content_type

        for kind, columns in (
            ("publication", PUBLICATION_COLUMNS),
            ("subscription", SUBSCRIPTION_COLUMNS),
        ):
            pres_at = 1 + columns.index("pres_uri")
            watcher_at = 1 + columns.index("watcher_uri") if "watcher_uri" in columns else None
            async for rows in _read_ahead(self.store.load_values(RESTORE_SLICE, kind=kind)):
                for start in range(0, len(rows), RESUME_SLICE):
                    if start:
                        await asyncio.sleep(0)
                    part = rows[start : start + RESUME_SLICE]
                    if wanted is not None:
                        taken = [
                            row
                            for row in part
                            if wanted(
                                str(row[pres_at]),
                                "" if watcher_at is None else str(row[watcher_at] or ""),
                            )
                        ]
                        skipped += len(part) - len(taken)
                        part = taken
                    records, bad = records_from_values(part, content_type_of, kind)
                    deletes.update(int(row_id) for row_id in bad)
                    dropped += len(bad)
                    if wanted is not None:
                        # Held here already (made since the claim): left alone.
                        free = [record for record in records if runtime.record(record) is None]
                        skipped += len(records) - len(free)
                        records = free
                    refused = runtime.resume_all(
                        records, [now + window * jitter() for _ in records]
                    )
                    resumed += len(records) - len(refused)
                    dropped += len(refused)
                    deletes.update(r.row_id for r in refused if r.row_id is not None)
                if freeze:
                    gc.freeze()
                done = resumed + dropped + skipped
                if total > 50_000 and done % 100_000 < RESTORE_SLICE:
                    log.info("restoring: %d of %d rows", done, total)
                await asyncio.sleep(0)  # let the loop breathe between chunks
        return {"resumed": resumed, "dropped": dropped, "skipped": skipped}

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
        changed, refreshed, deleted = runtime.take_store_changes()
        self._pending_deletes.update(deleted)
        if not changed and not refreshed and not self._pending_deletes:
            return
        deletes = sorted(self._pending_deletes)
        # A write sorts its records into lists of its own, young objects
        # that the collector would walk whole at its next pass (some 30 ms
        # for a million records): a process of pua's own pauses it while a
        # large write holds them.
        paused = self.own_gc and len(changed) + len(refreshed) >= GC_PAUSE_ROWS and gc.isenabled()
        if paused:
            gc.disable()
        try:
            await self._write(changed, refreshed, deletes)
        except (asyncio.CancelledError, StoreError) as exc:
            # Nothing is lost: every record of this write is marked again
            # (what was written already is written again, which is
            # harmless), deletes kept.
            runtime.mark_changed(changed)
            runtime.mark_changed(refreshed, refreshed=True)
            if isinstance(exc, StoreError):
                self._down = True
            raise
        else:
            # Let go of a slice at a time: a set of a million records let
            # go of at once holds the loop for some 20 ms.
            for written in (changed, refreshed):
                while written:
                    for _ in range(min(len(written), DRAIN_SLICE)):
                        written.pop()
                    await asyncio.sleep(0)
        finally:
            if paused:
                gc.enable()
        if self._down:
            self._down = False
            log.warning("database reachable again; pending changes written")

    async def _write(
        self, changed: set[Record], refreshed: set[Record], deletes: list[int]
    ) -> None:
        """Write ``changed`` records whole, ``refreshed`` ones' refresh
        columns, and the deletes.

        Rows are updated in the order of their ids, so the database walks
        its table once instead of jumping about it (five times faster on
        SQLite at 100,000 rows): the records are first put in buckets of
        ids, a BUILD_SLICE at a time, and each bucket is sorted as it is
        written.  Transactions hold up to WRITE_ROWS rows; between two
        slices of work the event loop gets a turn, so it never waits long."""
        runtime = self.runtime
        new: list[Record] = []
        # Records only (no tuple a record: at a million records, a million
        # new objects for the collector to walk would stall the loop).
        whole_buckets: dict[int, list[Record]] = {}
        refresh_buckets: dict[int, list[Record]] = {}
        count = 0
        for marked, buckets in ((changed, whole_buckets), (refreshed, refresh_buckets)):
            for item in marked:
                count += 1
                if not count % BUILD_SLICE:
                    await asyncio.sleep(0)
                # The record held now under the marked one's key (the
                # marked one may have been removed and made again).
                record = runtime.record(item)
                if record is None:
                    continue  # deleted since; its delete is pending
                row_id = record.row_id
                if row_id is None:
                    new.append(record)
                else:
                    buckets.setdefault(row_id >> BUCKET_BITS, []).append(record)
        types: dict[int, str | None] = {}
        batch = _Batch()

        def in_order() -> Iterator[tuple[Record, bool]]:
            # New rows first, then rows by id.  What changed since the
            # records were gathered is left to the next write: a record
            # gone is not written, and one removed and held again (it lost
            # its row id, whose delete the next write takes first) is
            # marked changed again.
            for record in new:
                if record.row_id is None and runtime.record(record) is record:
                    yield record, True
            for bucket in sorted(whole_buckets.keys() | refresh_buckets.keys()):
                for whole, records in (
                    (True, whole_buckets.pop(bucket, [])),
                    (False, refresh_buckets.pop(bucket, [])),
                ):
                    records.sort(key=_row_id_of)
                    for record in records:
                        if record.row_id is not None:
                            yield record, whole

        for n, (record, whole) in enumerate(in_order(), 1):
            batch.add(record, whole, self._type_of(record, types) if whole else None)
            if len(batch) >= WRITE_ROWS:
                await self._flush_batch(batch, deletes)
                deletes = []
            elif not n % BUILD_SLICE:
                await asyncio.sleep(0)
        if len(batch) or deletes:
            await self._flush_batch(batch, deletes)

    def _type_of(self, record: Record, types: dict[int, str | None]) -> str | None:
        """The default Content-Type of ``record``'s package (looked up once
        per event in a write)."""
        event = record.event
        if event not in types:
            types[event] = self.runtime.package(event).content_type
        return types[event]

    async def _flush_batch(self, batch: _Batch, deletes: list[int]) -> None:
        """Write ``batch`` and ``deletes`` in one transaction, then empty it."""
        runtime = self.runtime
        began = time.perf_counter()
        new_ids = await self.store.write_values(
            inserts=batch.inserts,
            updates=batch.updates,
            refreshes=batch.refreshes,
            deleted_ids=deletes,
        )
        self.timer.observe(time.perf_counter() - began)
        if deletes:
            self._pending_deletes.difference_update(deletes)
        for record, ident in zip(batch.inserted, new_ids, strict=True):
            if runtime.record(record) is record and record.row_id is None:
                record.row_id = ident
            else:
                self._pending_deletes.add(ident)  # gone while it was written
        batch.clear()
        await asyncio.sleep(0)

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


def _row_id_of(record: Record) -> int:
    row_id = record.row_id
    return -1 if row_id is None else row_id


class _Batch:
    """The values of one write: rows to insert (with their records), rows
    to write whole, rows to write the refresh columns of."""

    __slots__ = ("inserted", "inserts", "refreshes", "updates")

    def __init__(self) -> None:
        self.inserts: list[tuple[Any, ...]] = []
        self.inserted: list[Record] = []
        self.updates: list[tuple[Any, ...]] = []
        self.refreshes: list[tuple[Any, ...]] = []

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates) + len(self.refreshes)

    def add(self, record: Record, whole: bool, content_type: str | None) -> None:
        row_id = record.row_id
        if row_id is None:
            self.inserts.append(record_to_values(record, content_type))
            self.inserted.append(record)
        elif whole:
            self.updates.append((*record_to_values(record, content_type), row_id))
        else:
            self.refreshes.append((*refresh_values(record), row_id))

    def clear(self) -> None:
        self.inserts, self.inserted, self.updates, self.refreshes = [], [], [], []


async def _read_ahead(chunks: AsyncIterator[T]) -> AsyncIterator[T]:
    """``chunks``, each next one asked for before the one at hand is given
    out: the driver reads it while the caller works on this one."""
    ahead = asyncio.ensure_future(anext(chunks, None))
    try:
        while (chunk := await ahead) is not None:
            ahead = asyncio.ensure_future(anext(chunks, None))
            yield chunk
    finally:
        if not ahead.done():
            ahead.cancel()
            with contextlib.suppress(asyncio.CancelledError, StoreError):
                await ahead
