"""The table: made when missing, completed when it is Kamailio's, refused
when it is of another schema version."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from pua.store import Store, StoreError, normalize_db_url
from pua.store.schema import EXTRA_COLUMNS, INDEXES, KAMAILIO_COLUMNS

from .conftest import Backend
from .rows import BINARY, publication, subscription

KAMAILIO_ROW = (
    "INSERT INTO pua (pres_uri, pres_id, event, expires, desired_expires, flag, etag, "
    "tuple_id, watcher_uri, call_id, to_tag, from_tag, cseq, record_route, contact, "
    "remote_contact, version, extra_headers) VALUES ('sip:kam@example.com', 'kam-1', 1, "
    "1900000000, 0, 1024, 'kam-etag', 'kt', '', 'kam-call', '', '', 3, NULL, '', '', 2, "
    "'X-Kam: 1\r\n')"
)


async def _all(store: Store) -> list[dict[str, Any]]:
    return [row async for chunk in store.load() for row in chunk]


async def _schema(backend: Backend) -> tuple[list[str], set[tuple[tuple[str, ...], bool]]]:
    """The pua table's column names and (columns, unique) of its indexes."""
    engine = create_async_engine(normalize_db_url(backend.url, backend.data_dir))

    def read(conn: Any) -> tuple[list[str], set[tuple[tuple[str, ...], bool]]]:
        insp = inspect(conn)
        columns = [c["name"] for c in insp.get_columns("pua")]
        indexes = {
            (tuple(ix["column_names"]), bool(ix["unique"])) for ix in insp.get_indexes("pua")
        }
        indexes |= {(tuple(uc["column_names"]), True) for uc in insp.get_unique_constraints("pua")}
        return columns, indexes

    try:
        async with engine.connect() as conn:
            return await conn.run_sync(read)
    finally:
        await engine.dispose()


async def _versions(backend: Backend) -> list[tuple[Any, ...]]:
    return await backend.fetch(
        "SELECT table_name, table_version FROM version WHERE table_name = 'pua'"
    )


async def test_new_table_indexes_and_version_row(backend: Backend) -> None:
    """A new table has Kamailio's and pua's columns, Kamailio's indexes and version row 7."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    await store.write([publication(1)], [])
    await store.close()
    columns, indexes = await _schema(backend)
    assert columns == list(KAMAILIO_COLUMNS + EXTRA_COLUMNS)
    for _name, unique, cols in INDEXES:
        assert (cols, unique) in indexes
    assert await _versions(backend) == [("pua", 7)]
    again = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        assert await again.count() == 1
    finally:
        await again.close()
    assert await _versions(backend) == [("pua", 7)]


async def test_kamailio_table_gets_pua_columns(backend: Backend) -> None:
    """A table from Kamailio's own script gains pua's columns, keeps its rows, stores bodies."""
    await backend.run_kamailio_scripts("standard-create.sql", "presence-create.sql")
    await backend.execute(KAMAILIO_ROW)
    before, _ = await _schema(backend)
    assert before == list(KAMAILIO_COLUMNS)

    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        (kept,) = await _all(store)
        assert kept["pres_id"] == "kam-1" and kept["extra_headers"] == "X-Kam: 1\r\n"
        assert all(kept[c] is None for c in EXTRA_COLUMNS)
        rows = [publication(1, body=BINARY * 300), subscription(2)]
        ids = await store.write(rows, [])
        assert ids[0] > kept["id"]
        await store.write([{**kept, "body": b"\x00<doc/>", "content_type": "text/plain"}], [])
        loaded = await _all(store)
        assert loaded[0] == {**kept, "body": b"\x00<doc/>", "content_type": "text/plain"}
        assert loaded[1:] == [{"id": i, **row} for i, row in zip(ids, rows, strict=True)]
    finally:
        await store.close()
    after, _ = await _schema(backend)
    assert after == list(KAMAILIO_COLUMNS + EXTRA_COLUMNS)
    assert await _versions(backend) == [("pua", 7)]


async def test_kamailio_version_row_without_table(backend: Backend) -> None:
    """Kamailio's version table without a pua row gets one; it is not made twice."""
    await backend.run_kamailio_scripts("standard-create.sql")
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    await store.close()
    assert await _versions(backend) == [("pua", 7)]
    assert await backend.fetch(
        "SELECT table_version FROM version WHERE table_name = 'version'"
    ) == [(1,)]


async def test_other_schema_version_is_refused(backend: Backend) -> None:
    """A table of another schema version is a StoreError naming the version; data is kept."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    await store.write([publication(1)], [])
    await store.close()
    await backend.execute("UPDATE version SET table_version = 6 WHERE table_name = 'pua'")
    with pytest.raises(StoreError) as info:
        await Store.open(backend.url, data_dir=backend.data_dir)
    assert "version 6" in str(info.value)
    assert backend.url in str(info.value)
    assert await backend.fetch("SELECT count(*) FROM pua") == [(1,)]


async def test_table_missing_kamailio_columns_is_refused(tmp_path: Path) -> None:
    """A pua table lacking Kamailio's columns is a StoreError naming them."""
    path = tmp_path / "other.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE pua (id INTEGER PRIMARY KEY, pres_uri TEXT)")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="pres_id"):
        await Store.open(f"sqlite:///{path}", data_dir=tmp_path)


async def test_missing_index_is_made_again(backend: Backend) -> None:
    """An index dropped from an existing table is made again on open."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    await store.close()
    drop = {
        "sqlite": "DROP INDEX pua_expires_idx",
        "postgresql": "DROP INDEX pua_expires_idx",
        "mysql": "DROP INDEX expires_idx ON pua",
    }
    await backend.execute(drop[backend.name])
    _, indexes = await _schema(backend)
    assert (("expires",), False) not in indexes
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    await store.close()
    _, indexes = await _schema(backend)
    assert (("expires",), False) in indexes
