"""Writing and reading rows on SQLite, PostgreSQL and MariaDB/MySQL."""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from pua.store import Store, StoreError
from pua.store.schema import EXTRA_COLUMNS, KAMAILIO_COLUMNS

from .conftest import Backend
from .rows import BINARY, publication, subscription


async def _all(store: Store) -> list[dict[str, Any]]:
    return [row async for chunk in store.load() for row in chunk]


async def test_round_trip(backend: Backend) -> None:
    """Insert, load, update by id, delete: ids come back in order and values as written."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        assert store.columns == KAMAILIO_COLUMNS + EXTRA_COLUMNS
        rows = [
            publication(1, body=BINARY),
            subscription(2, extra_headers="X-Name: Zoë 😀\r\nX-Other: 1\r\n"),
            publication(3, body=BINARY * 1200, outbound_proxy="sip:proxy.example.com;lr"),
        ]
        ids = await store.write(rows, [])
        assert len(ids) == 3
        assert ids == sorted(ids) and len(set(ids)) == 3
        loaded = await _all(store)
        assert loaded == [{"id": i, **row} for i, row in zip(ids, rows, strict=True)]
        assert await store.count() == 3

        changed = {
            **rows[0],
            "id": ids[0],
            "etag": "etag-new",
            "version": 7,
            "body": b"\xff\xfe<presence/>",
            "expires": 2_000_000_000,
        }
        new = publication(4, tuple_id=None, body=None, content_type=None)
        assert await store.write([changed, new], [ids[1]]) != []
        loaded = await _all(store)
        assert [row["id"] for row in loaded][:2] == [ids[0], ids[2]]
        assert loaded[0] == changed
        assert loaded[1] == {"id": ids[2], **rows[2]}
        assert {k: v for k, v in loaded[2].items() if k != "id"} == new
        assert loaded[2]["id"] > ids[2]
        assert await store.count() == 3
    finally:
        await store.close()


async def test_ids_follow_row_order_in_a_mixed_write(backend: Backend) -> None:
    """The ids returned follow the order of the rows without an id in a mixed write."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        (first,) = await store.write([publication(0)], [])
        rows = [
            publication(1),
            {**publication(0), "id": first, "cseq": 99},
            subscription(2),
            publication(3),
        ]
        ids = await store.write(rows, [])
        loaded = {row["id"]: row for row in await _all(store)}
        assert [loaded[i]["pres_id"] for i in ids] == ["pub-1", "pub-2", "pub-3"]
        assert loaded[first]["cseq"] == 99
    finally:
        await store.close()


async def test_write_is_one_transaction(backend: Backend) -> None:
    """A write that fails part-way changes nothing: its delete and update roll back too."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        ids = await store.write([publication(1), publication(2)], [])
        bad = publication(3)
        del bad["pres_uri"]  # written as NULL into a NOT NULL column
        with pytest.raises(StoreError) as info:
            await store.write([{**publication(1), "id": ids[0], "cseq": 42}, bad], [ids[1]])
        assert store.url in str(info.value)
        loaded = await _all(store)
        assert [row["id"] for row in loaded] == ids
        assert loaded[0]["cseq"] == 1
    finally:
        await store.close()


async def test_unknown_column_is_refused(backend: Backend) -> None:
    """A row with a column the table does not have is a StoreError."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        with pytest.raises(StoreError, match="no_such_column"):
            await store.write([publication(1, no_such_column=1)], [])
        assert await store.count() == 0
    finally:
        await store.close()


async def test_update_of_a_missing_id_changes_nothing(backend: Backend) -> None:
    """Updating an id that is not in the table writes nothing and fails not."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        assert await store.write([{**publication(1), "id": 12345}], [999]) == []
        assert await store.count() == 0
    finally:
        await store.close()


async def test_delete_expired(backend: Backend) -> None:
    """delete_expired removes rows whose expires and wanted end are past; keeps the others."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    now = 1_800_000_000
    try:
        await store.write(
            [
                publication(1, expires=now - 10, desired_expires=now - 5),  # over
                subscription(2, expires=now - 10, desired_expires=now - 20),  # over
                publication(3, expires=now - 10, desired_expires=0),  # for ever
                publication(4, expires=now - 10, desired_expires=now + 60),  # still wanted
                publication(5, expires=now + 10, desired_expires=now - 5),  # live until expires
                publication(6, expires=now, desired_expires=now - 1),  # expires not < now
            ],
            [],
        )
        assert await store.delete_expired(now) == 2
        left = sorted(row["pres_id"] for row in await _all(store))
        assert left == ["pub-3", "pub-4", "pub-5", "pub-6"]
        assert await store.delete_expired(now) == 0
    finally:
        await store.close()


async def test_two_tables_in_one_database(backend: Backend) -> None:
    """A table of another name lives beside pua with its own indexes and version row."""
    one = await Store.open(backend.url, data_dir=backend.data_dir)
    two = await Store.open(backend.url, data_dir=backend.data_dir, table="pua_second")
    try:
        await one.write([publication(1)], [])
        await two.write([publication(1), publication(2)], [])
        assert (await one.count(), await two.count()) == (1, 2)
        versions = await backend.fetch(
            "SELECT table_name, table_version FROM version "
            "WHERE table_name IN ('pua', 'pua_second') ORDER BY table_name"
        )
        assert versions == [("pua", 7), ("pua_second", 7)]
    finally:
        await one.close()
        await two.close()


async def test_ping_and_close(backend: Backend) -> None:
    """ping answers while open; after close every call is a StoreError."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    await store.ping()
    await store.close()
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.ping()
    with pytest.raises(StoreError, match="closed"):
        await store.write([publication(1)], [])


async def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    """No db_url opens data_dir/pua.db (making data_dir), in WAL mode."""
    data_dir = tmp_path / "var" / "pua"
    store = await Store.open(None, data_dir=data_dir)
    try:
        await store.write([publication(1)], [])
    finally:
        await store.close()
    con = sqlite3.connect(data_dir / "pua.db")
    try:
        assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert con.execute("SELECT count(*) FROM pua").fetchone() == (1,)
    finally:
        con.close()


async def test_sqlite_relative_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sqlite:///relative/path is relative to the working directory."""
    (tmp_path / "rel").mkdir()
    monkeypatch.chdir(tmp_path)
    store = await Store.open("sqlite:///rel/store.db", data_dir=tmp_path / "unused")
    await store.close()
    assert (tmp_path / "rel" / "store.db").is_file()
    assert not (tmp_path / "unused").exists()


async def test_mysql_insert_without_returning(mysql_backend: Backend) -> None:
    """Without INSERT ... RETURNING (MySQL) ids come from LAST_INSERT_ID(), in row order."""
    store = await Store.open(mysql_backend.url, data_dir=mysql_backend.data_dir)
    try:
        store._insert_returning = False  # as on MySQL proper (MariaDB has RETURNING)
        await store.write([publication(0)], [])
        rows = [publication(n, body=BINARY if n % 2 else None) for n in range(1, 1201)]
        ids = await store.write(rows, [])
        loaded = await _all(store)
        assert [row["id"] for row in loaded[1:]] == ids
        assert [{k: v for k, v in row.items() if k != "id"} for row in loaded[1:]] == rows
    finally:
        await store.close()


class Flag(enum.IntFlag):
    """Like pua.core's event and source flags."""

    PRESENCE = 1
    PUBLISH = 1024


async def test_int_flags_are_written_as_ints(backend: Backend) -> None:
    """IntFlag values are stored and read back as plain ints, inserted or updated."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        (ident,) = await store.write([publication(1, event=Flag.PRESENCE, flag=Flag.PUBLISH)], [])
        await store.write([publication(2, event=Flag.PRESENCE)], [])
        await store.write(
            [{**publication(1), "id": ident, "flag": Flag.PUBLISH | Flag.PRESENCE}], []
        )
        loaded = await _all(store)
        assert [(row["event"], row["flag"]) for row in loaded] == [(1, 1025), (1, 1024)]
        assert all(type(row["flag"]) is int for row in loaded)
    finally:
        await store.close()


async def test_the_xmpp_gateways_facts_round_trip(backend: Backend) -> None:
    """The gateway's table: facts written, replaced, deleted in one
    transaction each, and read back in order, on every backend."""
    store = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        assert await store.load_xmpp() == []
        value = '{"jid": "zoë@jabber.org", "status": "😀"}'
        await store.save_xmpp({("user", "a" * 40): '{"jid": "bob@jabber.org"}',
                               ("resource", "b" * 40): value,
                               ("sip", "c" * 40): "{}"})
        await store.save_xmpp({("resource", "b" * 40): '{"changed": true}',
                               ("sip", "c" * 40): None, ("sip", "d" * 40): None})
        assert await store.load_xmpp() == [
            ("user", "a" * 40, '{"jid": "bob@jabber.org"}'),
            ("resource", "b" * 40, '{"changed": true}'),
        ]
        await store.save_xmpp({})
        assert len(await store.load_xmpp()) == 2
    finally:
        await store.close()
    again = await Store.open(backend.url, data_dir=backend.data_dir)
    try:
        assert [kind for kind, _, _ in await again.load_xmpp()] == ["user", "resource"]
    finally:
        await again.close()
