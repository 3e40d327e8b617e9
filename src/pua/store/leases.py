"""The cluster's tables on PostgreSQL: nodes and partition leases.

Several pua nodes share one ``pua`` table.  Two more tables, named after
it, say who does what:

- ``<table>_nodes``: one row per node: its name, the URL of its API, its
  SIP address, and until when it is alive (``alive_until``, renewed with
  its leases);
- ``<table>_partitions``: one row per partition (2^hash_size of them):
  its owner and until when the owner holds it (``lease_until``), and an
  ``epoch`` counted up at each change of owner.

Every time is the database's (``now()``), so the nodes' clocks do not
matter.  A claim is one ``UPDATE ... WHERE the lease is over``: two nodes
that claim the same partition at once are ordered by its row lock, and
only one of them gets it.  Changes of owner are announced on the channel
``<table>_cluster`` (LISTEN/NOTIFY), so the other nodes look at once
instead of at their next turn.

This module talks to asyncpg directly, on a connection of its own (a
LISTEN needs one that stays open).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from .errors import StoreError, mask_url
from .urls import normalize_db_url

__all__ = ["LeaseStore", "NodeRow", "PartitionRow"]

# How long one statement may take before the database counts as
# unreachable (a lease is a few seconds: a slow answer is no answer).
STATEMENT_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeRow:
    """A node as the database knows it."""

    node_id: str
    api_url: str
    sip: str
    alive: bool
    seen_ago: float
    records: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PartitionRow:
    """A partition's lease: its owner (None: none) while ``held``."""

    partition: int
    owner: str | None
    held: bool
    left: float
    epoch: int


class LeaseStore:
    """The nodes and partitions tables of one cluster (see the module)."""

    def __init__(self, db_url: str, *, table: str = "pua", partitions: int = 512) -> None:
        url = make_url(normalize_db_url(db_url, Path()))
        if url.get_backend_name() != "postgresql":
            raise StoreError(f"a cluster needs PostgreSQL, not {mask_url(db_url)!r}")
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._shown = mask_url(db_url)
        self.table = table
        self.partitions = partitions
        self.nodes_table = f"{table}_nodes"
        self.partitions_table = f"{table}_partitions"
        self.channel = f"{table}_cluster"
        self._conn: Any = None
        self._lock = asyncio.Lock()
        self._on_notice: Callable[[str], None] | None = None

    # -- connection ------------------------------------------------------------
    async def _connection(self) -> Any:
        if self._conn is not None and not self._conn.is_closed():
            return self._conn
        import asyncpg  # type: ignore[import-untyped]  # noqa: PLC0415 - only in a cluster

        self._conn = None
        conn = await asyncpg.connect(self._dsn, timeout=STATEMENT_TIMEOUT)
        if self._on_notice is not None:
            on_notice = self._on_notice
            await conn.add_listener(self.channel, lambda *args: on_notice(str(args[-1])))
        self._conn = conn
        return conn

    async def _call(self, what: str, work: Callable[[Any], Any]) -> Any:
        """Run ``work(connection)`` with a bound on its time; any failure of
        the database is a StoreError naming ``what``."""
        import asyncpg  # noqa: PLC0415 - only in a cluster

        async with self._lock:
            try:
                async with asyncio.timeout(STATEMENT_TIMEOUT * 2):
                    conn = await self._connection()
                    return await work(conn)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                await self._drop()
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise StoreError(
                    f"{what}: {self._shown}: {type(exc).__name__}: {detail or 'no answer'}"
                ) from None

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()

    async def close(self) -> None:
        """Close the connection."""
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(STATEMENT_TIMEOUT):
                        await conn.close()
                with contextlib.suppress(Exception):
                    conn.terminate()

    def listen(self, on_notice: Callable[[str], None]) -> None:
        """Call ``on_notice(payload)`` for every announcement on the
        cluster's channel (from the next connection on)."""
        self._on_notice = on_notice

    # -- schema ----------------------------------------------------------------
    async def prepare(self) -> None:
        """Make the tables and the partition rows when they are missing.
        Raises StoreError when the database has another number of
        partitions (another hash_size) than this node."""
        nodes, parts, count = self.nodes_table, self.partitions_table, self.partitions

        async def work(conn: Any) -> int:
            async with conn.transaction():
                # Nodes starting together would race to make the tables.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self.channel)
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {nodes} ("
                    " node_id TEXT PRIMARY KEY,"
                    " api_url TEXT NOT NULL,"
                    " sip TEXT NOT NULL,"
                    " records INTEGER NOT NULL DEFAULT 0,"
                    " started TIMESTAMPTZ NOT NULL DEFAULT now(),"
                    " seen TIMESTAMPTZ NOT NULL DEFAULT now(),"
                    " alive_until TIMESTAMPTZ NOT NULL)"
                )
                await conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {parts} ("
                    " partition INTEGER PRIMARY KEY,"
                    " owner TEXT,"
                    " lease_until TIMESTAMPTZ NOT NULL DEFAULT '-infinity',"
                    " epoch BIGINT NOT NULL DEFAULT 0)"
                )
                held = int(await conn.fetchval(f"SELECT count(*) FROM {parts}"))
                if held:
                    return held  # made by the first node: only checked
                await conn.execute(
                    f"INSERT INTO {parts} (partition) SELECT generate_series(0, $1 - 1)", count
                )
                return count

        held = await self._call("making the cluster's tables", work)
        if held != count:
            raise StoreError(
                f"the cluster on {self._shown} has {held} partitions, this node"
                f" {count}: every node needs the same hash_size"
            )

    # -- a node's turn -----------------------------------------------------------
    async def beat(
        self, node_id: str, *, api_url: str, sip: str, records: int, lease: float
    ) -> set[int]:
        """Say this node is alive for ``lease`` more seconds and renew the
        leases of its partitions; returns the partitions it holds."""
        nodes, parts = self.nodes_table, self.partitions_table

        async def work(conn: Any) -> set[int]:
            async with conn.transaction():
                await conn.execute(
                    f"INSERT INTO {nodes} (node_id, api_url, sip, records, alive_until)"
                    " VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"
                    " ON CONFLICT (node_id) DO UPDATE SET api_url = $2, sip = $3,"
                    " records = $4, seen = now(), alive_until = EXCLUDED.alive_until",
                    node_id,
                    api_url,
                    sip,
                    records,
                    lease,
                )
                rows = await conn.fetch(
                    f"UPDATE {parts} SET lease_until = now() + make_interval(secs => $2)"
                    " WHERE owner = $1 RETURNING partition",
                    node_id,
                    lease,
                )
            return {int(row[0]) for row in rows}

        result: set[int] = await self._call("renewing leases", work)
        return result

    async def view(self) -> tuple[list[NodeRow], list[PartitionRow]]:
        """Every node and every partition, as the database sees them now."""
        nodes, parts = self.nodes_table, self.partitions_table

        async def work(conn: Any) -> tuple[list[NodeRow], list[PartitionRow]]:
            node_rows = await conn.fetch(
                "SELECT node_id, api_url, sip, records, alive_until > now(),"
                f" extract(epoch FROM now() - seen) FROM {nodes} ORDER BY node_id"
            )
            part_rows = await conn.fetch(
                f"SELECT partition, owner, lease_until > now(),"
                " CASE WHEN lease_until > now()"
                " THEN extract(epoch FROM lease_until - now()) ELSE 0 END, epoch"
                f" FROM {parts} ORDER BY partition"
            )
            return (
                [
                    NodeRow(
                        node_id=r[0],
                        api_url=r[1],
                        sip=r[2],
                        records=int(r[3]),
                        alive=bool(r[4]),
                        seen_ago=float(r[5]),
                    )
                    for r in node_rows
                ],
                [
                    PartitionRow(
                        partition=int(r[0]),
                        owner=r[1] if r[2] else None,
                        held=bool(r[2]),
                        left=float(r[3]) if r[2] else 0.0,
                        epoch=int(r[4]),
                    )
                    for r in part_rows
                ],
            )

        result: tuple[list[NodeRow], list[PartitionRow]] = await self._call(
            "reading the cluster", work
        )
        return result

    async def claim(self, node_id: str, partitions: Iterable[int], lease: float) -> set[int]:
        """Take the partitions among ``partitions`` whose lease is over (or
        already this node's); returns those taken.  Announced."""
        wanted = sorted(partitions)
        if not wanted:
            return set()
        parts = self.partitions_table

        async def work(conn: Any) -> set[int]:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"UPDATE {parts} SET owner = $1,"
                    " lease_until = now() + make_interval(secs => $3),"
                    " epoch = epoch + CASE WHEN owner IS DISTINCT FROM $1 THEN 1 ELSE 0 END"
                    " WHERE partition = ANY($2::int[])"
                    " AND (owner = $1 OR owner IS NULL OR lease_until < now())"
                    " RETURNING partition",
                    node_id,
                    wanted,
                    lease,
                )
                if rows:
                    await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"claim {node_id}")
            return {int(row[0]) for row in rows}

        result: set[int] = await self._call("claiming partitions", work)
        return result

    async def release(self, node_id: str, partitions: Iterable[int]) -> set[int]:
        """Give up ``partitions`` (those still this node's), for another
        node to claim at once; returns those given up.  Announced."""
        wanted = sorted(partitions)
        if not wanted:
            return set()
        parts = self.partitions_table

        async def work(conn: Any) -> set[int]:
            async with conn.transaction():
                rows = await conn.fetch(
                    f"UPDATE {parts} SET owner = NULL, lease_until = '-infinity'"
                    " WHERE owner = $1 AND partition = ANY($2::int[]) RETURNING partition",
                    node_id,
                    wanted,
                )
                if rows:
                    await conn.execute(
                        "SELECT pg_notify($1, $2)", self.channel, f"release {node_id}"
                    )
            return {int(row[0]) for row in rows}

        result: set[int] = await self._call("releasing partitions", work)
        return result

    async def leave(self, node_id: str) -> None:
        """A node that stops: its partitions are free at once and its row
        says it is gone.  Announced."""
        nodes, parts = self.nodes_table, self.partitions_table

        async def work(conn: Any) -> None:
            async with conn.transaction():
                await conn.execute(
                    f"UPDATE {parts} SET owner = NULL, lease_until = '-infinity' WHERE owner = $1",
                    node_id,
                )
                await conn.execute(
                    f"UPDATE {nodes} SET alive_until = now() WHERE node_id = $1", node_id
                )
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, f"leave {node_id}")

        await self._call("leaving the cluster", work)

    async def announce(self, payload: str) -> None:
        """Tell the other nodes to look now (e.g. a node that joined)."""

        async def work(conn: Any) -> None:
            await conn.execute("SELECT pg_notify($1, $2)", self.channel, payload)

        await self._call("announcing", work)

    async def dialog_rows(self, call_id: str) -> list[tuple[str, str]]:
        """(pres_uri, watcher_uri) of the subscriptions stored with
        ``call_id``: which node a NOTIFY of that dialog belongs to."""
        table = self.table

        async def work(conn: Any) -> list[tuple[str, str]]:
            rows = await conn.fetch(
                f"SELECT pres_uri, watcher_uri FROM {table}"
                " WHERE call_id = $1 AND watcher_uri <> ''",
                call_id,
            )
            return [(str(r[0]), str(r[1])) for r in rows]

        result: list[tuple[str, str]] = await self._call("looking up a dialog", work)
        return result
