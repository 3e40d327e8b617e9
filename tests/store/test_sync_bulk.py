"""StoreSync's bulk paths on every backend: a restore read in many chunks,
and write-backs cut into many transactions and id buckets, leave the table
matching memory row for row."""

from __future__ import annotations

import gc
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pua.core import EngineConfig
from pua.core.persist import REFRESH_COLUMNS, record_to_row
from pua.core.records import PublicationRecord, Record
from pua.runtime import Listen, PresenceRuntime, persistence
from pua.runtime.persistence import StoreSync
from pua.store import Store

from .conftest import Backend
from .rows import publication, subscription

ROWS = 3000


@pytest.fixture
def small_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Slices, transactions and buckets far smaller than the table, so that
    every boundary is crossed many times."""
    monkeypatch.setattr(persistence, "RESTORE_SLICE", 170)
    monkeypatch.setattr(persistence, "WRITE_ROWS", 230)
    monkeypatch.setattr(persistence, "BUILD_SLICE", 40)
    monkeypatch.setattr(persistence, "BUCKET_BITS", 5)
    # Nothing resumed comes due during the test: the records stay as the
    # test left them.
    monkeypatch.setattr(persistence, "SPREAD_MIN", 3600.0)


@pytest.fixture
def silent_hop() -> Iterator[str]:
    """A next hop that never answers: resumed records send and wait."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield f"sip:127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


async def _table(store: Store) -> dict[int, dict[str, object]]:
    return {row["id"]: row async for chunk in store.load() for row in chunk}  # type: ignore[misc]


def _expected(runtime: PresenceRuntime) -> dict[int, dict[str, object]]:
    rows = {}
    for record in list(runtime.records()):
        assert record.row_id is not None
        rows[record.row_id] = {
            "id": record.row_id,
            **record_to_row(record, runtime.package(record.key.event).content_type),
        }
    return rows


@pytest.mark.usefixtures("small_slices")
async def test_restore_and_write_back_in_many_pieces(backend: Backend, silent_hop: str) -> None:
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    future = int(time.time()) + 3000
    rows = [
        publication(n, expires=future, extra_headers="X-N: {n}\r\n".replace("{n}", str(n)))
        if n % 4 else subscription(n, expires=future)
        for n in range(ROWS)
    ]
    await store.write(rows, [])
    runtime = PresenceRuntime(EngineConfig(outbound_proxy=silent_hop),
                              listen=[Listen("udp", "127.0.0.1", 0)])
    async with runtime:
        runtime.jitter = lambda: 0.5  # type: ignore[method-assign]
        sync = StoreSync(runtime, store)
        counts = await sync.restore()
        assert counts == {"rows": ROWS, "resumed": ROWS, "dropped": 0}
        records = list(runtime.records())
        assert {r.key.pres_uri for r in records} == {row["pres_uri"] for row in rows}

        # Every record written whole: rows now read as pua writes them (a
        # publication's Call-ID is made from its tuple id, for one).
        runtime.mark_changed(r.key for r in records)
        await sync.flush()
        assert await _table(store) == _expected(runtime)

        # Every record refreshed: only the refresh columns change.
        for record in records:
            record.expires_at += 7
            record.cseq += 3
            if hasattr(record, "etag"):
                record.etag = f"new-{record.row_id}"
        runtime.mark_changed((r.key for r in records), refreshed=True)
        await sync.flush()
        table = await _table(store)
        assert table == _expected(runtime)

        # Every record changed in a column a refresh does not write; half
        # marked whole, half refreshed: one write of both kinds.
        before = await _table(store)
        for record in records:
            record.expires_at += 11
            if isinstance(record, PublicationRecord):
                record.body = b"<presence-changed-in-memory/>"
            else:
                record.to_tag = f"moved-{record.row_id}"
        runtime.mark_changed(r.key for r in records[::2])
        runtime.mark_changed((r.key for r in records[1::2]), refreshed=True)
        await sync.flush()
        table, expected = await _table(store), _expected(runtime)
        for record in records[::2]:
            assert record.row_id is not None
            assert table[record.row_id] == expected[record.row_id]
        for record in records[1::2]:
            assert record.row_id is not None
            fresh = {c: expected[record.row_id][c] for c in REFRESH_COLUMNS}
            assert table[record.row_id] == {**before[record.row_id], **fresh}
            assert table[record.row_id] != expected[record.row_id]
        await sync.close()


async def test_a_frozen_restore_pauses_the_collector(
    tmp_path: Path, silent_hop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """restore(freeze=True): no collection runs while the rows become
    records (what is made is frozen anyway); the collector runs again after,
    and also when the restore fails."""
    store = await Store.open(None, data_dir=tmp_path)
    await store.write([publication(n, expires=int(time.time()) + 3000) for n in range(50)], [])
    runtime = PresenceRuntime(EngineConfig(outbound_proxy=silent_hop),
                              listen=[Listen("udp", "127.0.0.1", 0)])
    seen: list[bool] = []
    resume_all = runtime.resume_all

    def watched(records: list[Record], due_ats: list[float]) -> list[Record]:
        seen.append(gc.isenabled())
        return resume_all(records, due_ats)

    try:
        async with runtime:
            sync = StoreSync(runtime, store)
            monkeypatch.setattr(runtime, "resume_all", lambda *_: 1 / 0)
            with pytest.raises(ZeroDivisionError):
                await sync.restore(freeze=True)
            assert gc.isenabled()
            monkeypatch.setattr(runtime, "resume_all", watched)
            assert (await sync.restore(freeze=True))["resumed"] == 50
            assert seen == [False] and gc.isenabled()
            await store.close()
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("small_slices")
async def test_a_large_write_pauses_the_collector_and_lets_go_in_slices(
    tmp_path: Path, silent_hop: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """own_gc: a write of GC_PAUSE_ROWS records or more runs with the
    collector paused (its lists of records are never walked), a smaller one
    does not, the collector runs again after, also when the write fails, and
    the records a write was handed are let go of afterwards; a StoreSync
    without own_gc never touches the collector."""
    monkeypatch.setattr(persistence, "GC_PAUSE_ROWS", 100)
    monkeypatch.setattr(persistence, "DRAIN_SLICE", 30)
    store = await Store.open(None, data_dir=tmp_path)
    await store.write([publication(n, expires=int(time.time()) + 3000) for n in range(150)], [])
    seen: list[bool] = []
    handed: list[set[Record]] = []
    for own_gc in (True, False):
        seen.clear()
        handed.clear()
        runtime = PresenceRuntime(EngineConfig(outbound_proxy=silent_hop),
                                  listen=[Listen("udp", "127.0.0.1", 0)])
        async with runtime:
            sync = StoreSync(runtime, store, own_gc=own_gc)
            await sync.restore()
            records = list(runtime.records())
            write = sync._write

            async def watched(changed: set[Record], refreshed: set[Record],
                              deletes: list[int], write=write) -> None:  # type: ignore[no-untyped-def]
                seen.append(gc.isenabled())
                handed[:] = [changed, refreshed]
                await write(changed, refreshed, deletes)

            monkeypatch.setattr(sync, "_write", watched)
            runtime.mark_changed(r.key for r in records)  # 150: a large write
            await sync.flush()
            runtime.mark_changed(r.key for r in records[:50])  # a small one
            await sync.flush()
            assert seen == [not own_gc, True] and gc.isenabled()
            assert len(handed) == 2 and not any(handed)  # let go of

            async def failing(*_: object) -> None:
                seen.append(gc.isenabled())
                raise persistence.StoreError("down")

            monkeypatch.setattr(sync, "_write", failing)
            runtime.mark_changed(r.key for r in records)
            with pytest.raises(persistence.StoreError):
                await sync.flush()
            assert seen[-1] is (not own_gc) and gc.isenabled()
            # Nothing lost: the failed write's records are pending again.
            monkeypatch.setattr(sync, "_write", write)
            await sync.flush()
            assert await _table(store) == _expected(runtime)
    await store.close()
