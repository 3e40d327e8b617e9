"""The pua table's bulk reads and writes on SQLite, in a thread of their own.

aiosqlite hands every call (BEGIN, each executemany, a query, COMMIT) to its
thread and waits for the answer: a write of a few rows costs the event loop
half a dozen hand-offs.  :class:`SqliteBulk` keeps one ``sqlite3``
connection in one thread and runs a whole write, or a whole read, there:
one hand-off each.  sqlite3 releases the GIL while SQLite works, so the
event loop goes on meanwhile.

A small write (at most INLINE_ROWS rows: what a group commit of API calls
makes) runs at once on the calling thread, the event loop's, on a second
connection of its own, when the thread has nothing to do: it takes SQLite
well under a millisecond, while handing it to the thread and back costs
more than the write itself and makes the two threads trade the GIL
(measured in ``pua serve`` under 50 concurrent ``pua.publish`` callers: 17%
less CPU a call, 30% more calls a second).  That connection never waits:
when another connection holds the database's write lock it gives up at
once and the write goes to the thread, which waits as long as the store's
timeout.  It never checkpoints either (a checkpoint syncs the database
file): every CHECKPOINT_EVERY small writes the thread runs a passive
checkpoint.

A write that is cancelled while its thread works is rolled back before its
COMMIT when the thread sees the cancellation in time; one that has already
committed stays written (its rows are written again by the next write,
which is harmless for updates).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from .statements import Statements

T = TypeVar("T")

__all__ = ["SqliteBulk"]

# Writes of at most INLINE_ROWS rows (and deletes) run on the event loop;
# the thread checkpoints the database after every CHECKPOINT_EVERY of them.
INLINE_ROWS = 64
CHECKPOINT_EVERY = 200


class SqliteBulk:
    """Bulk reads and writes of one table in the SQLite file at ``path``."""

    def __init__(self, path: str, statements: Statements, *, busy_ms: int, cache_kib: int) -> None:
        self._path = path
        self._sql = statements
        self._busy_ms = busy_ms
        self._cache_kib = cache_kib
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pua-sqlite")
        self._conn: sqlite3.Connection | None = None  # made and used in the thread only
        self._inline: sqlite3.Connection | None = None  # the event loop's
        self._jobs = 0  # jobs given to the thread and not yet done
        self._inline_writes = 0

    # -- on the event loop -----------------------------------------------------------
    async def load(self, sql: str, last: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows with an id above ``last``, by id: ``sql``
        is one of the statements' loads."""
        return await self._in_thread(self._load, sql, last, limit)

    async def write(
        self,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: Sequence[int],
    ) -> list[int]:
        """One transaction (see Store.write_values); the new ids."""
        small = len(inserts) + len(updates) + len(refreshes) + len(deletes) <= INLINE_ROWS
        if small and not self._jobs:
            ids = self._write_inline(inserts, updates, refreshes, deletes)
            if ids is not None:
                return ids
        cancelled = threading.Event()
        future = self._in_thread(self._write, inserts, updates, refreshes, deletes, cancelled)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            # The thread's outcome (often "cancelled") is nobody's to handle.
            future.add_done_callback(_consume)
            raise

    def _in_thread(self, call: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``call(*args)`` in the thread, counted in ``_jobs`` until done."""
        future = asyncio.get_running_loop().run_in_executor(self._thread, call, *args)
        self._jobs += 1
        future.add_done_callback(self._job_done)
        return future

    def _job_done(self, _: asyncio.Future[Any]) -> None:
        self._jobs -= 1

    def _write_inline(
        self,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: Sequence[int],
    ) -> list[int] | None:
        """The write on the event loop's connection; None (nothing done)
        when another connection holds the write lock."""
        conn = self._inline
        if conn is None:
            # No waiting for a lock, no checkpoints (the thread's).
            conn = self._inline = self._open(busy_ms=0, checkpoints=False)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                return None
            raise
        ids = self._write_in(conn, inserts, updates, refreshes, deletes, None)
        self._inline_writes += 1
        if not self._inline_writes % CHECKPOINT_EVERY:
            self._in_thread(self._checkpoint).add_done_callback(_consume)
        return ids

    async def close(self) -> None:
        """Close the connection and end the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)
        if self._inline is not None:
            self._inline.close()
            self._inline = None

    # -- in the thread ---------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            conn = self._conn = self._open(busy_ms=self._busy_ms, checkpoints=True)
        return conn

    def _open(self, *, busy_ms: int, checkpoints: bool) -> sqlite3.Connection:
        """A connection that waits up to ``busy_ms`` for another's lock.
        Autocommit: the transactions are ours (BEGIN IMMEDIATE ... COMMIT)."""
        conn = sqlite3.connect(self._path, timeout=busy_ms / 1000, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute(f"PRAGMA cache_size={self._cache_kib}")
        if not checkpoints:
            conn.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _load(self, sql: str, last: int, limit: int) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, (last, limit)).fetchall()

    def _checkpoint(self) -> None:
        # Passive: copies what it can without waiting for anyone.
        self._connection().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _write(
        self,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: Sequence[int],
        cancelled: threading.Event,
    ) -> list[int]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        return self._write_in(conn, inserts, updates, refreshes, deletes, cancelled)

    def _write_in(
        self,
        conn: sqlite3.Connection,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: Sequence[int],
        cancelled: threading.Event | None,
    ) -> list[int]:
        """The statements of a write in the transaction ``conn`` has begun:
        committed, or rolled back on any failure."""
        sql = self._sql
        try:
            if deletes:
                conn.executemany(sql.delete_one, [(i,) for i in deletes])
            if updates:
                conn.executemany(sql.update, updates)
            if refreshes:
                conn.executemany(sql.refresh, refreshes)
            ids: list[int] = []
            if inserts:
                conn.executemany(sql.insert, inserts)
                # SQLite gives a new row max(id) + 1 while the transaction
                # holds the write lock: the range ending at the last new id
                # holds just ours (counted in the same query, to be sure).
                last, counted = conn.execute(sql.last_ids, (len(inserts),)).fetchone()
                if counted != len(inserts):
                    raise sqlite3.IntegrityError(
                        f"the {len(inserts)} new rows did not get consecutive ids "
                        f"(ending at {last})"
                    )
                ids = list(range(last - len(inserts) + 1, last + 1))
            if cancelled is not None and cancelled.is_set():
                raise sqlite3.OperationalError("the write was cancelled")
            conn.execute("COMMIT")
            return ids
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
