"""The rows of Kamailio's ``pua`` table in SQLite, PostgreSQL or MySQL.

The store knows rows, not records: a row is a dict from column name to
value (``body`` bytes, the text columns str, the rest int), with ``"id"``
once it is in the table.

Writing.  :meth:`Store.write_values` (and :meth:`Store.write`, which takes
dicts) is one transaction on the driver's own connection: the deletes, then
the whole-row updates, then the refreshes (REFRESH_COLUMNS only), then the
inserts (so a row that replaces a deleted one with the same unique key goes
in).  Per backend:

* SQLite (:class:`~pua.store.sqlite_bulk.SqliteBulk`, a sqlite3 connection
  in a thread of its own, the whole transaction one hand-off): one prepared
  statement run as an ``executemany`` for each kind; the new ids known
  from ``last_insert_rowid()``, because SQLite gives each new row max(id) +
  1 while the transaction holds the write lock (checked by counting the
  rows in that range);
* PostgreSQL (asyncpg): the deletes one ``DELETE ... WHERE id = ANY($1)``,
  each kind an ``executemany`` (asyncpg pipelines it); the new ids taken
  from the id column's sequence first, and the rows inserted with them;
* MySQL, which has no such pipelining: deletes ``DELETE ... WHERE id IN
  (...)``, 500 ids a statement; updates a batch of up to 500 rows (and
  about 1 MiB of values) as one ``UPDATE t JOIN (SELECT ... UNION ALL
  SELECT ...) AS u ON t.id = u.id SET ...``; inserts a multi-row INSERT of
  up to 500 rows whose ids are ``LAST_INSERT_ID()`` + k *
  ``auto_increment_increment`` (consecutive for a multi-row insert unless
  another client inserts into the same table at the same moment under
  ``innodb_autoinc_lock_mode = 2``; pua is the one writer of its table).

A row to update is written whole: columns it lacks are written as NULL.  An
update of an id that is not in the table changes nothing.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    MetaData,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from pua.core.persist import REFRESH_COLUMNS, ROW_COLUMNS

from .errors import StoreError, mask_url, password_of
from .schema import (
    BINDING_COLUMNS,
    EXTRA_COLUMNS,
    INDEXES,
    KAMAILIO_COLUMNS,
    SCHEMA_VERSION,
    bindings_table,
    index_name,
    lines_table,
    pua_table,
    version_table,
    xmpp_table,
)
from .sqlite_bulk import SqliteBulk
from .statements import Statements
from .urls import normalize_db_url

__all__ = ["Store"]

T = TypeVar("T")

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
# What a database outage or refusal can raise (TimeoutError is an OSError).
_DB_ERRORS = (SQLAlchemyError, OSError)

DELETE_BATCH = 500
# MySQL's rows a statement: the driver escapes a statement's values on the
# event loop, some 7 ms for 500 whole rows, so fewer go in one.
UPDATE_BATCH = 200
MYSQL_INSERT_BATCH = 200
BODY_POSITION = ROW_COLUMNS.index("body")
SQLITE_CACHE_KIB = -65536  # negative: KiB, not pages
BATCH_BYTES = 1 << 20


def _chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _row_bytes(row: Sequence[Any]) -> int:
    """About how many bytes ``row`` takes in an SQL statement."""
    size = 0
    for value in row:
        if isinstance(value, bytes):
            size += 2 * len(value) + 8  # escaped in MySQL's text protocol
        elif isinstance(value, str):
            size += len(value) + 8
        else:
            size += 12
    return size


def _batches(rows: Sequence[Sequence[Any]], max_rows: int) -> Iterator[list[Sequence[Any]]]:
    """``rows`` in batches of at most ``max_rows`` rows and about
    BATCH_BYTES bytes (a bigger row goes alone)."""
    batch: list[Sequence[Any]] = []
    size = 0
    for row in rows:
        row_size = _row_bytes(row)
        if batch and (len(batch) >= max_rows or size + row_size > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def _driver_errors(dialect: str) -> tuple[type[BaseException], ...]:
    """The driver's own errors, which its raw connection raises."""
    if dialect == "sqlite":
        return (sqlite3.Error,)
    if dialect == "postgresql":
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - only with PostgreSQL

        return (asyncpg.PostgresError, asyncpg.InterfaceError)
    return ()


def _scrub(message: str, password: str | None) -> str:
    """``message`` without ``password`` in it."""
    return message.replace(password, "***") if password else message


class Store:
    """Kamailio's ``pua`` table (schema version 7, plus ``body``,
    ``content_type``, ``outbound_proxy`` and ``remote_target``) on an async
    SQLAlchemy engine.  Make one with :meth:`open`."""

    columns: tuple[str, ...]
    """Every column name, ``id`` first."""

    def __init__(
        self,
        engine: AsyncEngine,
        table: str,
        shown_url: str,
        password: str | None,
        timeout: float,
    ) -> None:
        self._engine = engine
        self._dialect = engine.dialect.name
        self._shown_url = shown_url
        self._password = password
        self._timeout = timeout
        self._closed = False
        self._table = pua_table(MetaData(), table, self._dialect)
        self._version = version_table(MetaData(), self._dialect)
        self._bindings = bindings_table(MetaData(), table)
        self._lines = lines_table(MetaData(), table)
        self._xmpp = xmpp_table(MetaData(), table)
        self.columns = tuple(c.name for c in self._table.columns)
        assert set(self.columns[1:]) == set(ROW_COLUMNS), "schema and ROW_COLUMNS differ"
        self._known = frozenset(self.columns)
        self._int_positions = tuple(
            ROW_COLUMNS.index(c.name)
            for c in self._table.columns
            if c.name != "id" and c.type.python_type is int
        )
        self._sql = Statements(engine.dialect, table)
        # SQLite: the table's bulk reads and writes in a thread of their own.
        self._bulk: SqliteBulk | None = None
        if self._dialect == "sqlite":
            self._bulk = SqliteBulk(
                str(engine.url.database),
                self._sql,
                busy_ms=max(1, int(timeout * 1000)),
                cache_kib=SQLITE_CACHE_KIB,
            )
        # What a write or a read on the driver can raise: SQLAlchemy's and
        # the OS's errors, and the driver's own.
        self._errors: tuple[type[BaseException], ...] = (
            *_DB_ERRORS,
            *_driver_errors(self._dialect),
        )

    @property
    def table(self) -> str:
        """The table's name."""
        return self._table.name

    @property
    def url(self) -> str:
        """The database URL, password masked."""
        return self._shown_url

    # -- opening -----------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        db_url: str | None,
        *,
        data_dir: Path,
        table: str = "pua",
        timeout: float = 10.0,  # noqa: ASYNC109 - bounds the connect, not the whole call
    ) -> Store:
        """Connect to ``db_url`` (see :func:`normalize_db_url`; None is
        ``data_dir/pua.db``), create the table, its indexes and its row in
        Kamailio's ``version`` table when they are missing, and add pua's
        columns to a table that lacks them (existing rows are kept).

        Raises StoreError naming the URL when it is malformed, unreachable
        within ``timeout`` seconds or refused, when the table has another
        schema version than 7, or lacks a column of Kamailio's."""
        if not _TABLE_NAME.fullmatch(table):
            raise StoreError(f"invalid table name {table!r}")
        url = normalize_db_url(db_url, data_dir)
        shown = mask_url(db_url) if db_url is not None else url
        password = password_of(db_url or "")
        if db_url is None:
            try:
                await asyncio.to_thread(Path(data_dir).mkdir, parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot open database: {shown}: {exc}") from None
        elif url.startswith("sqlite"):
            # Said here rather than by a failed connect (which also leaves
            # aiosqlite's worker thread to finish after the loop is gone).
            folder = Path(make_url(url).database or "").parent
            if not await asyncio.to_thread(folder.is_dir):
                raise StoreError(
                    f"cannot open database: {shown}: directory {folder} does not exist"
                )
        try:
            engine = cls._engine_for(url, timeout)
        except (SQLAlchemyError, ImportError, ValueError, TypeError) as exc:
            raise StoreError(_scrub(f"cannot open database: {shown}: {exc}", password)) from None
        store = cls(engine, table, shown, password, timeout)
        try:
            async with asyncio.timeout(timeout), engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            await store._prepare()
        except StoreError:
            await engine.dispose()
            raise
        except (*_DB_ERRORS, TypeError, ValueError) as exc:
            # TypeError, ValueError: a driver refusing the URL's query arguments
            await engine.dispose()
            raise store._error("cannot open database", exc) from None
        return store

    @staticmethod
    def _engine_for(url: str, timeout: float) -> AsyncEngine:
        backend = url.partition("+")[0]
        connect_args: dict[str, Any] = {}
        if backend == "postgresql":
            connect_args["timeout"] = timeout
        elif backend == "mysql":
            connect_args["connect_timeout"] = max(1, round(timeout))
            # bytes as _binary'...': a body that is no valid UTF-8 stays intact
            connect_args["binary_prefix"] = True
        else:
            connect_args["timeout"] = timeout
        engine = create_async_engine(
            url,
            # A server's connection may have gone while pooled; a file's not
            # (and the ping would cost SQLite a turn of aiosqlite's thread).
            pool_pre_ping=backend != "sqlite",
            hide_parameters=True,
            connect_args=connect_args,
        )
        if backend == "sqlite":
            busy_ms = max(1, int(timeout * 1000))

            @event.listens_for(engine.sync_engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
                cursor.execute("PRAGMA synchronous=NORMAL")
                # Up to 64 MiB of pages in memory (SQLite's default is 2 MiB):
                # at a million rows the indexes a write-back touches stay in
                # it, which halves the write's time.
                cursor.execute(f"PRAGMA cache_size={SQLITE_CACHE_KIB}")
                cursor.close()

        return engine

    async def _prepare(self) -> None:
        """Check the schema version; create or complete the table."""
        await self._create()
        if self._dialect == "postgresql":
            async with self._engine.connect() as conn:
                sequence = (
                    await conn.execute(
                        text("SELECT pg_get_serial_sequence(:t, 'id')"),
                        {"t": self._engine.dialect.identifier_preparer.quote(self.table)},
                    )
                ).scalar()
            if sequence is None:
                raise StoreError(
                    f"table {self.table!r} in {self._shown_url} has no sequence for its id column"
                )
            self._sql.next_ids = f"SELECT nextval('{sequence}') FROM generate_series(1, $1)"

    async def _create(self) -> None:
        name = self.table
        table, version = self._table, self._version
        async with self._engine.begin() as conn:
            has_version = await conn.run_sync(lambda c: inspect(c).has_table("version"))
            found: int | None = None
            if has_version:
                value = (
                    await conn.execute(
                        select(version.c.table_version).where(version.c.table_name == name)
                    )
                ).scalar()
                found = None if value is None else int(value)
                if found is not None and found != SCHEMA_VERSION:
                    raise StoreError(
                        f"table {name!r} in {self._shown_url} has schema version {found} "
                        f"(Kamailio's version table); pua needs version {SCHEMA_VERSION}"
                    )
            if await conn.run_sync(lambda c: inspect(c).has_table(name)):
                await self._complete_table(conn)
            else:
                await conn.run_sync(table.create)
            await conn.run_sync(lambda c: self._bindings.create(c, checkfirst=True))
            await conn.run_sync(lambda c: self._lines.create(c, checkfirst=True))
            await conn.run_sync(lambda c: self._xmpp.create(c, checkfirst=True))
            if not has_version:
                await conn.run_sync(version.create)
            if found is None:
                await conn.execute(
                    insert(version).values(table_name=name, table_version=SCHEMA_VERSION)
                )

    async def _complete_table(self, conn: AsyncConnection) -> None:
        """Add pua's columns and the indexes an existing table lacks."""
        name = self.table

        def reflect(c: Connection) -> tuple[list[str], set[tuple[tuple[str, ...], bool]], set[str]]:
            insp = inspect(c)
            columns = [str(col["name"]) for col in insp.get_columns(name)]
            indexes: set[tuple[tuple[str, ...], bool]] = set()
            names: set[str] = set()
            for ix in insp.get_indexes(name):
                cols = tuple(str(col).lower() for col in ix["column_names"] if col is not None)
                indexes.add((cols, bool(ix["unique"])))
                names.add(str(ix["name"]).lower())
            for uc in insp.get_unique_constraints(name):
                indexes.add((tuple(str(col).lower() for col in uc["column_names"]), True))
                names.add(str(uc["name"]).lower())
            return columns, indexes, names

        columns, indexes, index_names = await conn.run_sync(reflect)
        present = {c.lower() for c in columns}
        missing = [c for c in KAMAILIO_COLUMNS if c not in present]
        if missing:
            raise StoreError(
                f"table {name!r} in {self._shown_url} is not Kamailio's pua table: "
                f"it has no column {', '.join(missing)}"
            )
        dialect = self._engine.dialect
        quote = dialect.identifier_preparer.quote
        for column in EXTRA_COLUMNS:
            if column not in present:
                type_sql = self._table.c[column].type.compile(dialect=dialect)
                await conn.execute(
                    text(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} {type_sql} NULL")
                )
        for short, unique, cols in INDEXES:
            full = index_name(name, short, self._dialect)
            satisfied = (cols, True) in indexes or (not unique and (cols, False) in indexes)
            if satisfied or full.lower() in index_names:
                continue
            kind = "UNIQUE INDEX" if unique else "INDEX"
            await conn.execute(
                text(
                    f"CREATE {kind} {quote(full)} ON {quote(name)} "
                    f"({', '.join(quote(c) for c in cols)})"
                )
            )

    # -- reading -----------------------------------------------------------------
    async def load(self, chunk_size: int = 5000) -> AsyncIterator[list[dict[str, Any]]]:
        """Every row as a dict (``id`` included), in lists of at most
        ``chunk_size`` rows, ordered by id (see :meth:`load_values`)."""
        names = ("id", *ROW_COLUMNS)
        async for chunk in self.load_values(chunk_size):
            yield [dict(zip(names, row, strict=True)) for row in chunk]

    async def load_values(
        self, chunk_size: int = 5000, *, kind: str | None = None
    ) -> AsyncIterator[Sequence[Sequence[Any]]]:
        """Every row as its values (``id`` first, then the columns of
        ROW_COLUMNS in their order; ``body`` as bytes), in chunks of at
        most ``chunk_size`` rows, ordered by id.  Each chunk is one query
        on the driver (``WHERE id > last ORDER BY id LIMIT n``): no
        connection is held between chunks and no dict is made per row.

        ``kind="publication"``: only the rows of publications (an empty
        ``watcher_uri``), as the columns of PUBLICATION_COLUMNS;
        ``kind="subscription"``: only the others, as SUBSCRIPTION_COLUMNS.
        What a restart reads: each column costs the driver a step per row."""
        if chunk_size < 1:
            raise ValueError("chunk_size must be at least 1")
        sql = self._sql.load if kind is None else self._sql.load_kind[kind]
        self._check_open()
        last = -1
        while True:
            try:
                if self._bulk is not None:
                    rows: Sequence[Sequence[Any]] = await self._bulk.load(sql, last, chunk_size)
                else:
                    rows = await self._load_chunk(sql, last, chunk_size)
            except self._errors as exc:
                raise self._error("reading the table", exc) from None
            if not rows:
                return
            last = int(rows[-1][0])
            yield rows
            if len(rows) < chunk_size:
                return

    async def _load_chunk(self, sql: str, last: int, limit: int) -> Sequence[Sequence[Any]]:
        async with self._engine.connect() as conn:
            if self._dialect == "postgresql":
                db = await self._driver(conn)
                return list(await db.fetch(sql, last, limit))
            result = await conn.exec_driver_sql(sql, (last, limit))
            return result.fetchall()

    async def count(self) -> int:
        """How many rows the table has."""
        return await self._run(
            "counting rows",
            lambda conn: conn.execute(select(func.count()).select_from(self._table)),
            lambda result: int(result.scalar_one()),
        )

    # -- writing -----------------------------------------------------------------
    async def write(self, rows: list[dict[str, Any]], deleted_ids: list[int]) -> list[int]:
        """In one transaction: delete ``deleted_ids``, update the rows that
        have an ``"id"`` (the whole row, by id), insert the rows that have
        none.  Returns the new ids of the inserted rows, in their order.
        Raises StoreError (and changes nothing) when the database fails."""
        self._check_open()
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        ints = self._int_positions
        for row in rows:
            unknown = row.keys() - self._known
            if unknown:
                raise StoreError(
                    f"row for table {self.table!r} has unknown columns {sorted(unknown)}"
                )
            values = [row.get(name) for name in ROW_COLUMNS]
            body = values[BODY_POSITION]
            if isinstance(body, memoryview | bytearray):
                values[BODY_POSITION] = bytes(body)
            for position in ints:  # an IntFlag is an int to us, not to a driver
                value = values[position]
                if value is not None and type(value) is not int:
                    values[position] = int(value)
            ident = row.get("id")
            if ident is None:
                inserts.append(tuple(values))
            else:
                values.append(int(ident))
                updates.append(tuple(values))
        return await self.write_values(inserts=inserts, updates=updates, deleted_ids=deleted_ids)

    async def write_values(
        self,
        *,
        inserts: Sequence[Sequence[Any]] = (),
        updates: Sequence[Sequence[Any]] = (),
        refreshes: Sequence[Sequence[Any]] = (),
        deleted_ids: Iterable[int] = (),
    ) -> list[int]:
        """In one transaction, on the driver's bulk operations: delete
        ``deleted_ids``; write ``updates`` (the values of ROW_COLUMNS, then
        the id) whole; write ``refreshes`` (the values of REFRESH_COLUMNS,
        then the id) to those columns only; insert ``inserts`` (the values
        of ROW_COLUMNS).  Returns the new ids of the inserted rows, in their
        order.  An update of an id that is not in the table changes
        nothing.  Raises StoreError (and changes nothing) when the database
        fails."""
        self._check_open()
        deletes = sorted({int(i) for i in deleted_ids})
        if not inserts and not updates and not refreshes and not deletes:
            return []
        what = (
            f"writing {len(inserts) + len(updates) + len(refreshes)} rows "
            f"and {len(deletes)} deletes"
        )
        try:
            if self._bulk is not None:
                return await self._bulk.write(inserts, updates, refreshes, deletes)
            if self._dialect == "postgresql":
                async with self._engine.connect() as conn:
                    db = await self._driver(conn)
                    async with db.transaction():
                        return await self._write_postgresql(
                            db, inserts, updates, refreshes, deletes
                        )
            async with self._engine.begin() as conn:
                return await self._write_mysql(conn, inserts, updates, refreshes, deletes)
        except self._errors as exc:
            raise self._error(what, exc) from None

    @staticmethod
    async def _driver(conn: AsyncConnection) -> Any:
        """The driver's own connection (asyncpg's) under ``conn``."""
        fairy = await conn.get_raw_connection()
        return fairy.driver_connection

    async def _write_postgresql(
        self,
        db: Any,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: list[int],
    ) -> list[int]:
        # asyncpg pipelines an executemany of one prepared statement.
        sql = self._sql
        if deletes:
            await db.execute(sql.delete_many, deletes)
        if updates:
            await db.executemany(sql.update, updates)
        if refreshes:
            await db.executemany(sql.refresh, refreshes)
        if not inserts:
            return []
        # The ids are taken from the table's sequence first, so the rows go
        # in with them, in one executemany, and their order is known.
        ids = [int(r[0]) for r in await db.fetch(sql.next_ids, len(inserts))]
        await db.executemany(
            sql.insert_with_id, [(*row, ident) for row, ident in zip(inserts, ids, strict=True)]
        )
        return ids

    async def _write_mysql(
        self,
        conn: AsyncConnection,
        inserts: Sequence[Sequence[Any]],
        updates: Sequence[Sequence[Any]],
        refreshes: Sequence[Sequence[Any]],
        deletes: list[int],
    ) -> list[int]:
        # No pipelining in MySQL's protocol: multi-row statements instead.
        quote = conn.dialect.identifier_preparer.quote
        table = quote(self.table)
        for chunk in _chunks(deletes, DELETE_BATCH):
            marks = ", ".join("%s" for _ in chunk)
            await conn.exec_driver_sql(
                f"DELETE FROM {table} WHERE {quote('id')} IN ({marks})", tuple(chunk)
            )
        for columns, rows in ((ROW_COLUMNS, updates), (REFRESH_COLUMNS, refreshes)):
            if not rows:
                continue
            # One UPDATE ... JOIN over a derived table a batch (the id last).
            names = (*columns, "id")
            first = "SELECT " + ", ".join(f"%s AS {quote(n)}" for n in names)
            other = "SELECT " + ", ".join("%s" for _ in names)
            sets = ", ".join(f"t.{quote(n)} = u.{quote(n)}" for n in columns)
            for batch in _batches(rows, UPDATE_BATCH):
                derived = " UNION ALL ".join([first, *([other] * (len(batch) - 1))])
                await conn.exec_driver_sql(
                    f"UPDATE {table} AS t JOIN ({derived}) AS u "
                    f"ON t.{quote('id')} = u.{quote('id')} SET {sets}",
                    tuple(value for row in batch for value in row),
                )
        if not inserts:
            return []
        # A multi-row INSERT's ids are consecutive, LAST_INSERT_ID() the
        # first (pua is the one writer of its table).
        step = int(
            (await conn.exec_driver_sql("SELECT @@session.auto_increment_increment")).scalar_one()
        )
        head = f"INSERT INTO {table} ({', '.join(quote(n) for n in ROW_COLUMNS)}) VALUES "
        one = "(" + ", ".join("%s" for _ in ROW_COLUMNS) + ")"
        ids: list[int] = []
        for batch in _batches(inserts, MYSQL_INSERT_BATCH):
            result = await conn.exec_driver_sql(
                head + ", ".join([one] * len(batch)),
                tuple(value for row in batch for value in row),
            )
            first_id = int(result.lastrowid)
            ids.extend(first_id + k * step for k in range(len(batch)))
        return ids

    async def delete_expired(self, before: int) -> int:
        """Delete the rows whose lifetime is over: ``expires < before`` (the
        last publication or subscription has run out) and a wanted end
        that has passed too (``desired_expires != 0 and desired_expires <
        before``).  Rows with ``desired_expires = 0`` (kept for ever) or a
        wanted end still to come are kept even when ``expires`` is past: the
        agent refreshes or re-publishes them.  Returns how many rows went."""
        table = self._table
        stmt = delete(table).where(
            table.c.expires < before,
            table.c.desired_expires != 0,
            table.c.desired_expires < before,
        )
        return await self._run(
            "deleting expired rows",
            lambda conn: conn.execute(stmt),
            lambda result: int(result.rowcount),
            begin=True,
        )

    # -- shared lines -------------------------------------------------------------
    async def load_lines(self) -> list[str]:
        """The shared lines added at run time."""
        table = self._lines
        query = select(table.c.aor).order_by(table.c.id)
        return await self._run(
            "reading the shared lines",
            lambda conn: conn.execute(query),
            lambda result: [str(row[0]) for row in result],
        )

    async def save_line(self, aor: str, *, present: bool) -> None:
        """Add (``present``) or remove one shared line."""
        table = self._lines

        async def write(conn: AsyncConnection) -> None:
            await conn.execute(delete(table).where(table.c.aor == aor))
            if present:
                await conn.execute(insert(table), [{"aor": aor}])

        await self._run(
            f"{'adding' if present else 'removing'} the shared line {aor}",
            write,
            lambda _: None,
            begin=True,
        )

    # -- the XMPP gateway ---------------------------------------------------------
    async def load_xmpp(self) -> list[tuple[str, str, str]]:
        """What the XMPP gateway stored: (kind, name, value) rows."""
        table = self._xmpp
        query = select(table.c.kind, table.c.name, table.c.value).order_by(table.c.id)
        return await self._run(
            "reading the XMPP gateway's state",
            lambda conn: conn.execute(query),
            lambda result: [(str(k), str(n), str(v)) for k, n, v in result],
        )

    async def save_xmpp(self, changes: dict[tuple[str, str], str | None]) -> None:
        """In one transaction: each (kind, name) gets its new value (None:
        its row goes)."""
        if not changes:
            return
        table = self._xmpp

        async def write(conn: AsyncConnection) -> None:
            keys = list(changes)
            for chunk in _chunks(keys, DELETE_BATCH):
                for kind in {k for k, _ in chunk}:
                    names = [n for k, n in chunk if k == kind]
                    await conn.execute(
                        delete(table).where(table.c.kind == kind, table.c.name.in_(names))
                    )
            rows = [
                {"kind": kind, "name": name, "value": value}
                for (kind, name), value in changes.items()
                if value is not None
            ]
            if rows:
                await conn.execute(insert(table), rows)

        await self._run(
            f"saving {len(changes)} facts of the XMPP gateway",
            write,
            lambda _: None,
            begin=True,
        )

    # -- registration bindings ---------------------------------------------------
    async def load_bindings(self) -> list[dict[str, Any]]:
        """Every stored registration binding (the columns of BINDING_COLUMNS)."""
        table = self._bindings
        query = select(*(table.c[name] for name in BINDING_COLUMNS)).order_by(table.c.id)
        return await self._run(
            "reading the bindings",
            lambda conn: conn.execute(query),
            lambda result: [dict(zip(BINDING_COLUMNS, row, strict=True)) for row in result],
        )

    async def save_bindings(self, aors: dict[str, list[dict[str, Any]]]) -> None:
        """In one transaction: the bindings of each address of record in
        ``aors`` become the rows given (none: all gone)."""
        if not aors:
            return
        table = self._bindings

        async def write(conn: AsyncConnection) -> None:
            names = list(aors)
            for chunk in _chunks(names, DELETE_BATCH):
                await conn.execute(delete(table).where(table.c.aor.in_(chunk)))
            rows = [
                {name: row.get(name) for name in BINDING_COLUMNS}
                for bindings in aors.values()
                for row in bindings
            ]
            if rows:
                await conn.execute(insert(table), rows)

        await self._run(
            f"writing the bindings of {len(aors)} addresses of record",
            write,
            lambda _: None,
            begin=True,
        )

    # -- health ------------------------------------------------------------------
    async def ping(self) -> None:
        """Raise StoreError unless the database answers within the timeout."""
        self._check_open()
        try:
            async with asyncio.timeout(self._timeout), self._engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except _DB_ERRORS as exc:
            raise self._error("ping", exc) from None

    async def close(self) -> None:
        """Close every connection.  The store cannot be used afterwards."""
        if not self._closed:
            self._closed = True
            if self._bulk is not None:
                await self._bulk.close()
            await self._engine.dispose()

    # -- helpers -----------------------------------------------------------------
    async def _run(
        self,
        what: str,
        call: Callable[[AsyncConnection], Any],
        convert: Callable[[Any], T],
        *,
        begin: bool = False,
    ) -> T:
        self._check_open()
        try:
            if begin:
                async with self._engine.begin() as conn:
                    return convert(await call(conn))
            async with self._engine.connect() as conn:
                return convert(await call(conn))
        except _DB_ERRORS as exc:
            raise self._error(what, exc) from None

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the store on {self._shown_url} is closed")

    def _error(self, what: str, exc: BaseException) -> StoreError:
        detail: BaseException = exc
        if isinstance(exc, DBAPIError) and isinstance(exc.orig, BaseException):
            detail = exc.orig
        message = str(detail).strip().splitlines()[0] if str(detail).strip() else ""
        if isinstance(detail, TimeoutError) and not message:
            message = f"no answer within {self._timeout:g} s"
        return StoreError(
            _scrub(f"{what}: {self._shown_url}: {type(detail).__name__}: {message}", self._password)
        )
