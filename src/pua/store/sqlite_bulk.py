"""The pua table's bulk reads and writes on SQLite, in a thread of their own.

aiosqlite hands every call (BEGIN, each executemany, a query, COMMIT) to its
thread and waits for the answer: a write of a few rows costs the event loop
half a dozen hand-offs.  :class:`SqliteBulk` keeps one ``sqlite3``
connection in one thread and runs a whole write, or a whole read, there:
one hand-off each.  sqlite3 releases the GIL while SQLite works, so the
event loop goes on meanwhile.

A write that is cancelled while its thread works is rolled back before its
COMMIT when the thread sees the cancellation in time; one that has already
committed stays written (its rows are written again by the next write,
which is harmless for updates).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .statements import Statements

__all__ = ["SqliteBulk"]


class SqliteBulk:
    """Bulk reads and writes of one table in the SQLite file at ``path``."""

    def __init__(self, path: str, statements: Statements, *, busy_ms: int, cache_kib: int) -> None:
        self._path = path
        self._sql = statements
        self._busy_ms = busy_ms
        self._cache_kib = cache_kib
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pua-sqlite")
        self._conn: sqlite3.Connection | None = None  # made and used in the thread only

    # -- on the event loop -----------------------------------------------------------
    async def load(self, sql: str, last: int, limit: int) -> list[tuple[Any, ...]]:
        """Up to ``limit`` rows with an id above ``last``, by id: ``sql``
        is one of the statements' loads."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self._load, sql, last, limit)

    async def write(
        self,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: Sequence[int],
    ) -> list[int]:
        """One transaction (see Store.write_values); the new ids."""
        loop = asyncio.get_running_loop()
        cancelled = threading.Event()
        future = loop.run_in_executor(
            self._thread, self._write, inserts, updates, refreshes, deletes, cancelled
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            cancelled.set()
            # The thread's outcome (often "cancelled") is nobody's to handle.
            future.add_done_callback(_consume)
            raise

    async def close(self) -> None:
        """Close the connection and end the thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    # -- in the thread ---------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            # Autocommit: the transactions are ours (BEGIN IMMEDIATE ... COMMIT).
            conn = sqlite3.connect(self._path, timeout=self._busy_ms / 1000, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA cache_size={self._cache_kib}")
            self._conn = conn
        return conn

    def _load(self, sql: str, last: int, limit: int) -> list[tuple[Any, ...]]:
        return self._connection().execute(sql, (last, limit)).fetchall()

    def _write(
        self,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: Sequence[int],
        cancelled: threading.Event,
    ) -> list[int]:
        conn = self._connection()
        sql = self._sql
        conn.execute("BEGIN IMMEDIATE")
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
            if cancelled.is_set():
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
