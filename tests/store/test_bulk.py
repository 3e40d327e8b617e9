"""Many rows: chunked loading, batched writes."""

from __future__ import annotations

import time

from pua.store import Store

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
