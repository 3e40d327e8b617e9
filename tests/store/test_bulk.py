"""Many rows: chunked loading, batched writes."""

from __future__ import annotations

import asyncio
import contextlib
import time

from pua.core.persist import PUBLICATION_COLUMNS, ROW_COLUMNS, SUBSCRIPTION_COLUMNS
from pua.store import Store, StoreError

from .conftest import Backend
from .rows import publication, subscription


async def test_chunked_load_and_bulk_update(backend: Backend) -> None:
    """12,000 rows load in chunks, ordered by id; updating and deleting thousands is one write."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        rows = [publication(n) if n % 3 else subscription(n) for n in range(12_000)]
        ids = await store.write(rows, [])
        chunks = [chunk async for chunk in store.load(chunk_size=5000)]
        assert [len(c) for c in chunks] == [5000, 5000, 2000]
        assert [row["id"] for c in chunks for row in c] == ids

        updated = [
            {**row, "id": i, "cseq": row["cseq"] + 1, "body": b"v2"}
            for i, row in zip(ids, rows, strict=True)
            if i % 2
        ]
        gone = [i for i in ids if not i % 2][:1000]
        assert await store.write(updated, gone) == []
        loaded = {row["id"]: row async for c in store.load(chunk_size=4000) for row in c}
        assert len(loaded) == 11_000
        assert all(loaded[row["id"]] == row for row in updated)
        assert not set(gone) & loaded.keys()
    finally:
        await store.close()


async def test_hundred_thousand_rows(backend: Backend) -> None:
    """100,000 rows are written in one call and loaded back (time printed with -s, not asserted)."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        rows = [
            publication(n, body=b"<presence entity='sip:u@example.com'/>" * 8)
            for n in range(100_000)
        ]
        started = time.perf_counter()
        ids = await store.write(rows, [])
        wrote = time.perf_counter() - started
        assert len(set(ids)) == 100_000
        started = time.perf_counter()
        count = 0
        last = 0
        async for chunk in store.load():
            assert chunk[0]["id"] > last
            last = chunk[-1]["id"]
            count += len(chunk)
        loaded = time.perf_counter() - started
        assert count == 100_000 == await store.count()
        assert last == ids[-1]
        print(f"\n{backend.name}: wrote 100,000 rows in {wrote:.2f} s, loaded in {loaded:.2f} s")
    finally:
        await store.close()


async def test_refreshes_write_only_their_columns(backend: Backend) -> None:
    """write_values: refreshes change expires, desired_expires, version,
    etag and cseq and nothing else; whole updates, inserts and deletes go
    in the same transaction, and the ids come back in the order of the
    inserts."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        rows = [publication(n) if n % 2 else subscription(n) for n in range(6)]
        ids = await store.write(rows, [])
        before = {row["id"]: row async for c in store.load() for row in c}
        refreshes = [(2_000_000_000 + i, 0, 9, f"fresh{i}", 77, i) for i in ids[:3]]
        whole = {**rows[3], "body": b"<changed/>", "cseq": 5}
        updates = [(*(whole[c] for c in ROW_COLUMNS), ids[3])]
        inserts = [tuple(publication(100 + n)[c] for c in ROW_COLUMNS) for n in range(3)]
        new_ids = await store.write_values(
            inserts=inserts, updates=updates, refreshes=refreshes, deleted_ids=[ids[5]]
        )
        assert len(set(new_ids)) == 3 and not set(new_ids) & set(ids[:5])
        after = {row["id"]: row async for c in store.load() for row in c}
        assert ids[5] not in set(after) - set(new_ids)  # SQLite may give its id again
        for expires, desired, version, etag, cseq, ident in refreshes:
            changed = {"expires": expires, "desired_expires": desired, "version": version,
                       "etag": etag, "cseq": cseq}
            assert after[ident] == {**before[ident], **changed}
        assert after[ids[3]]["body"] == b"<changed/>" and after[ids[3]]["cseq"] == 5
        assert after[ids[4]] == before[ids[4]]
        for n, ident in enumerate(new_ids):
            assert after[ident]["pres_uri"] == publication(100 + n)["pres_uri"]
    finally:
        await store.close()


async def test_a_cancelled_write_is_all_or_nothing(backend: Backend) -> None:
    """A write cancelled while the database works leaves all of its rows
    or none (never a part), and the next write goes through."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        rows = [tuple(publication(n)[c] for c in ROW_COLUMNS) for n in range(20_000)]
        task = asyncio.ensure_future(store.write_values(inserts=rows))
        for _ in range(3):  # a few turns of the loop: the write is handed to the driver
            await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StoreError):
            await task
        assert await store.count() in (0, 20_000)
        more = [tuple(publication(100_000 + n)[c] for c in ROW_COLUMNS) for n in range(10)]
        assert len(await store.write_values(inserts=more)) == 10
        assert await store.count() in (10, 20_010)
    finally:
        await store.close()


async def test_rows_of_one_kind_load_with_that_kind_s_columns(backend: Backend) -> None:
    """load_values(kind=...): the rows of publications (an empty
    watcher_uri; one of blanks is a watcher's) or of subscriptions, by id,
    in chunks, each as that kind's columns: what the whole row holds."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        rows = [publication(n) if n % 3 else subscription(n) for n in range(1000)]
        rows[7]["watcher_uri"] = " "  # MySQL compares it equal to ''
        await store.write(rows, [])
        whole = [tuple(row) for chunk in [c async for c in store.load_values(300)] for row in chunk]
        for kind, columns in (
            ("publication", PUBLICATION_COLUMNS),
            ("subscription", SUBSCRIPTION_COLUMNS),
        ):
            chunks = [[tuple(r) for r in c] async for c in store.load_values(170, kind=kind)]
            assert all(len(c) == 170 for c in chunks[:-1])
            got = [row for chunk in chunks for row in chunk]
            positions = [0, *(1 + ROW_COLUMNS.index(c) for c in columns)]
            watcher = 1 + ROW_COLUMNS.index("watcher_uri")
            mine = [r for r in whole if bool(r[watcher]) is (kind == "subscription")]
            assert got == [tuple(r[p] for p in positions) for r in mine]
        assert len(got) == 335 and any(r[0] == whole[7][0] for r in got)
    finally:
        await store.close()
