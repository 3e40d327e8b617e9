"""SQLite's small writes on the event loop: they run there when nothing
waits in the store's thread, never wait for another connection's lock (the
write goes to the thread then), and the thread checkpoints what they add to
the log."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from pua.core.persist import ROW_COLUMNS
from pua.store import Store, sqlite_bulk

from .rows import publication


def _values(n: int) -> tuple[object, ...]:
    row = publication(n)
    return tuple(row[c] for c in ROW_COLUMNS)


@pytest.fixture
def threads_of_writes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of the thread each write ran its statements in."""
    seen: list[str] = []
    write_in = sqlite_bulk.SqliteBulk._write_in

    def watched(self: sqlite_bulk.SqliteBulk, *args: object) -> list[int]:
        seen.append(threading.current_thread().name)
        return write_in(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_bulk.SqliteBulk, "_write_in", watched)
    return seen


async def test_small_writes_run_on_the_loop_and_large_ones_in_the_thread(
    tmp_path: Path, threads_of_writes: list[str]
) -> None:
    store = await Store.open(None, data_dir=tmp_path)
    small = [_values(n) for n in range(sqlite_bulk.INLINE_ROWS)]
    large = [_values(n) for n in range(1000, 1000 + sqlite_bulk.INLINE_ROWS + 1)]
    first = await store.write_values(inserts=small)
    second = await store.write_values(inserts=large)
    await store.write_values(deleted_ids=first[:3])
    here = threading.current_thread().name
    assert threads_of_writes[0] == here
    assert threads_of_writes[1].startswith("pua-sqlite")
    assert threads_of_writes[2] == here
    assert second == list(range(first[-1] + 1, first[-1] + 1 + len(large)))
    rows = [row async for chunk in store.load() for row in chunk]
    assert len(rows) == len(small) + len(large) - 3
    await store.close()


async def test_a_small_write_never_waits_on_the_loop_for_a_locked_database(
    tmp_path: Path, threads_of_writes: list[str]
) -> None:
    """Another connection holds the write lock: the loop goes on, the write
    waits in the thread and lands once the lock is let go."""
    store = await Store.open(None, data_dir=tmp_path, timeout=10.0)
    await store.write_values(inserts=[_values(0)])  # tables made, inline connection open
    written = len(threads_of_writes)
    other = sqlite3.connect(tmp_path / "pua.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.ensure_future(store.write_values(inserts=[_values(1)]))
        # The loop is free (this task runs) while the write waits in the
        # thread for the lock, for as long as the lock is held.
        done, _ = await asyncio.wait({write}, timeout=0.1)
        assert not done
        assert len(threads_of_writes) == written  # nothing written meanwhile
    finally:
        other.execute("COMMIT")
        other.close()
    async with asyncio.timeout(10):
        ids = await write
    assert len(ids) == 1
    assert threads_of_writes[written:] == [threads_of_writes[-1]]
    assert threads_of_writes[-1].startswith("pua-sqlite")
    rows = [row async for chunk in store.load() for row in chunk]
    assert {r["pres_uri"] for r in rows} == {publication(0)["pres_uri"], publication(1)["pres_uri"]}
    await store.close()


async def _log_size_after_writes(tmp_path: Path, writes: int) -> int:
    store = await Store.open(None, data_dir=tmp_path)
    for n in range(writes):
        await store.write_values(inserts=[_values(n)])
    # Let the last checkpoint the writes asked for finish.
    await store.write_values(inserts=[_values(n) for n in range(writes, writes + 100)])
    size = (tmp_path / "pua.db-wal").stat().st_size
    rows = [row async for chunk in store.load() for row in chunk]
    assert len(rows) == writes + 100
    await store.close()
    return size


async def test_the_thread_checkpoints_what_small_writes_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loop's connection never checkpoints; the thread does, every
    CHECKPOINT_EVERY small writes, so the log is used again instead of
    growing with every write."""
    monkeypatch.setattr(sqlite_bulk, "CHECKPOINT_EVERY", 10**9)
    unchecked = await _log_size_after_writes(tmp_path / "unchecked", 300)
    monkeypatch.setattr(sqlite_bulk, "CHECKPOINT_EVERY", 20)
    checked = await _log_size_after_writes(tmp_path / "checked", 300)
    assert checked * 3 < unchecked
