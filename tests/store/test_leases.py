"""The cluster's lease tables on a real PostgreSQL: claims ordered by the
database, leases that run out, releases and announcements, and nodes that
share partitions out among themselves (pua.store.leases, pua.cluster.node)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from pua.cluster import ClusterNode
from pua.core import EngineConfig
from pua.core.table import partition_of
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.persistence import StoreSync
from pua.store import Store, StoreError
from pua.store.leases import LeaseStore

from .conftest import Backend, make_backend
from .tcpproxy import TcpProxy

PARTS = 16


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh PostgreSQL database."""
    async with make_backend("postgresql", tmp_path) as db:
        yield db


async def until(check: Callable[[], Any], nodes: list[ClusterNode], what: str,
                limit: float = 15.0) -> Any:
    """``check()``'s first true value, asked again after every turn of any
    of ``nodes``; fails naming ``what`` after ``limit`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not (value := check()):
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"not within {limit:g} s: {what}")
        turns = [asyncio.ensure_future(n.changed.wait()) for n in nodes]
        await asyncio.wait(turns, timeout=left, return_when=asyncio.FIRST_COMPLETED)
        for t in turns:
            t.cancel()
    return value


async def test_tables_are_made_once_and_hash_size_must_match(pg: Backend) -> None:
    """prepare() makes 2^hash_size partition rows, twice is harmless, and a
    node with another hash_size is refused, naming it."""
    first = LeaseStore(pg.url, partitions=PARTS)
    await asyncio.gather(first.prepare(), LeaseStore(pg.url, partitions=PARTS).prepare())
    rows = await pg.fetch("SELECT count(*), min(partition), max(partition) FROM pua_partitions")
    assert rows == [(PARTS, 0, PARTS - 1)]
    other = LeaseStore(pg.url, partitions=PARTS * 2)
    with pytest.raises(StoreError, match="hash_size"):
        await other.prepare()
    for store in (first, other):
        await store.close()


async def test_racing_claims_are_ordered_by_the_database(pg: Backend) -> None:
    """Nodes that claim every partition at the same moment get disjoint
    sets that together are all of them."""
    stores = [LeaseStore(pg.url, partitions=PARTS) for _ in range(3)]
    await stores[0].prepare()
    got = await asyncio.gather(
        *(s.claim(f"n{i}", range(PARTS), lease=30) for i, s in enumerate(stores))
    )
    assert sum(len(g) for g in got) == PARTS
    assert set().union(*got) == set(range(PARTS))
    owners = dict(await pg.fetch("SELECT partition, owner FROM pua_partitions"))
    for i, g in enumerate(got):
        assert all(owners[p] == f"n{i}" for p in g)
    for s in stores:
        await s.close()


async def test_a_lease_runs_out_and_a_release_frees_at_once(pg: Backend) -> None:
    """A held partition cannot be claimed until its lease is over or its
    owner releases it; beat() renews only the owner's own leases."""
    a, b = LeaseStore(pg.url, partitions=PARTS), LeaseStore(pg.url, partitions=PARTS)
    await a.prepare()
    assert await a.claim("a", {0, 1, 2}, lease=1.0) == {0, 1, 2}
    assert await b.claim("b", {0, 1, 2, 3}, lease=30) == {3}
    assert await a.beat("a", api_url="http://a", sip="udp:a", records=0, lease=1.0) == {0, 1, 2}
    assert await b.release("b", {3, 0}) == {3}  # 0 is not b's to give

    _nodes, parts = await b.view()
    assert parts[0].owner == "a" and 0 < parts[0].left <= 1.0
    # A lease is a length of time: wait it out once, then it is over.
    await asyncio.sleep(max(p.left for p in parts) + 0.1)
    assert await b.claim("b", {0, 1, 2}, lease=30) == {0, 1, 2}
    # a has not noticed: its next beat says what it still holds (nothing).
    assert await a.beat("a", api_url="http://a", sip="udp:a", records=0, lease=1.0) == set()
    for s in (a, b):
        await s.close()


async def test_claims_are_announced(pg: Backend) -> None:
    """Another node hears a claim, a release and a leave on the channel."""
    a, b = LeaseStore(pg.url, partitions=PARTS), LeaseStore(pg.url, partitions=PARTS)
    heard: asyncio.Queue[str] = asyncio.Queue()
    b.listen(heard.put_nowait)
    await a.prepare()
    await b.view()  # connects, listening
    await a.claim("a", {5}, lease=30)
    assert await asyncio.wait_for(heard.get(), 5) == "claim a"
    await a.release("a", {5})
    assert await asyncio.wait_for(heard.get(), 5) == "release a"
    await a.leave("a")
    assert await asyncio.wait_for(heard.get(), 5) == "leave a"
    for s in (a, b):
        await s.close()


async def test_a_subscription_dialog_is_found_by_call_id(pg: Backend, tmp_path: Path) -> None:
    """dialog_rows() names the record a stored dialog belongs to (for a
    NOTIFY that reached another node), and nothing for a publication."""
    store = await Store.open(pg.url, data_dir=tmp_path)
    base = {"event": 1, "expires": 2_000_000_000, "desired_expires": 0, "flag": 256,
            "etag": "", "tuple_id": "", "to_tag": "t", "from_tag": "f", "cseq": 1,
            "record_route": "", "contact": "", "remote_contact": "sip:ps@127.0.0.1",
            "version": 0, "extra_headers": "", "pres_id": ""}
    await store.write(
        [
            {**base, "pres_uri": "sip:bob@example.com", "watcher_uri": "sip:w@example.com",
             "call_id": "dialog-1"},
            {**base, "pres_uri": "sip:pub@example.com", "watcher_uri": "", "call_id": "pub-1",
             "flag": 64, "etag": "e1", "tuple_id": "x"},
        ],
        [],
    )
    await store.close()
    leases = LeaseStore(pg.url, partitions=PARTS)
    assert await leases.dialog_rows("dialog-1") == [("sip:bob@example.com", "sip:w@example.com")]
    assert await leases.dialog_rows("pub-1") == []
    assert await leases.dialog_rows("nothing") == []
    await leases.close()


async def test_an_unreachable_database_is_a_bounded_store_error(pg: Backend) -> None:
    """With the database cut off, a lease call fails with StoreError within
    its bound, and works again once the database is back."""
    proxy = TcpProxy(make_url(pg.url).port or 0)
    await proxy.start()
    leases = LeaseStore(pg.url_with_port(proxy.port), partitions=PARTS)
    await leases.prepare()
    await proxy.stop()
    async with asyncio.timeout(15):
        with pytest.raises(StoreError, match="renewing leases"):
            await leases.beat("a", api_url="u", sip="s", records=0, lease=3)
    await proxy.start()
    assert await leases.beat("a", api_url="u", sip="s", records=0, lease=3) == set()
    await leases.close()
    await proxy.stop()


def test_partitions_are_the_same_in_every_process() -> None:
    """partition_of is a CRC, not Python's salted hash: fixed values."""
    assert partition_of("sip:alice@example.com", None, 9) == partition_of(
        "sip:alice@example.com", "", 9
    )
    import subprocess
    import sys

    code = (
        "from pua.core.table import partition_of;"
        "print(partition_of('sip:alice@example.com', 'sip:w@example.com', 9))"
    )
    values = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       check=True, env={"PYTHONHASHSEED": str(seed), "PATH": ""}).stdout.strip()
        for seed in (1, 2)
    }
    assert values == {str(partition_of("sip:alice@example.com", "sip:w@example.com", 9))}


# -- nodes ------------------------------------------------------------------------


class Node:
    """A ClusterNode with its own runtime and store, in this process."""

    def __init__(self, name: str, url: str, tmp_path: Path, lease: float) -> None:
        self.name, self.url, self.tmp_path, self.lease = name, url, tmp_path, lease
        self.runtime = PresenceRuntime(EngineConfig(hash_size=4),
                                       listen=[Listen("udp", "127.0.0.1", 0)])
        self.node: ClusterNode | None = None
        self.sync: StoreSync | None = None

    async def start(self) -> ClusterNode:
        await self.runtime.start()
        store = await Store.open(self.url, data_dir=self.tmp_path, timeout=2.0)
        self.sync = StoreSync(self.runtime, store, mode="write-through")
        self.sync.start()
        self.node = ClusterNode(
            self.runtime, self.sync, LeaseStore(self.url, partitions=PARTS),
            node_id=self.name, api_url=f"http://{self.name}", sip="udp:x", lease=self.lease,
        )
        await self.node.start()
        return self.node

    async def die(self) -> None:
        """Stop without a word to the others (as a killed process)."""
        assert self.node is not None and self.node._task is not None
        self.node._task.cancel()
        await self.node.leases.close()
        await self.close()

    async def stop(self) -> None:
        assert self.node is not None
        await self.node.stop()
        await self.close()

    async def close(self) -> None:
        assert self.sync is not None
        await self.sync.close()
        await self.runtime.close()


async def test_nodes_share_the_partitions_and_take_over_a_dead_one(
    pg: Backend, tmp_path: Path
) -> None:
    """Three nodes own disjoint shares that cover every partition; when one
    stops renewing, the other two hold all of them within its lease and a
    turn; when one leaves, at once."""
    nodes = [Node(n, pg.url, tmp_path / n, lease=2.0) for n in ("a", "b", "c")]
    a, b, c = [await n.start() for n in nodes]

    def spread() -> bool:
        owned = [a.owned, b.owned, c.owned]
        return all(owned) and sum(map(len, owned)) == PARTS and set().union(*owned) == set(
            range(PARTS)
        )

    await until(spread, [a, b, c], "three nodes cover the partitions")
    # Each node's view is its last turn's: a's says so too after its next.
    view = await until(lambda: not a.view()["free"] and a.view(), [a], "a sees no free one")
    assert {n["node_id"] for n in view["nodes"] if n["alive"]} == {"a", "b", "c"}
    assert sorted(n["partitions"] for n in view["nodes"]) == sorted(
        len(x.owned) for x in (a, b, c)
    )
    before = set(a.owned)
    await nodes[0].die()
    await until(lambda: b.owned | c.owned == set(range(PARTS)) and not b.owned & c.owned,
                [b, c], "b and c take over a's partitions", limit=2.0 * 3 + 5)
    assert b.stats.claimed + c.stats.claimed >= len(before)
    await nodes[1].stop()  # leaves: c takes b's at once, no lease to wait for
    await until(lambda: c.owned == set(range(PARTS)), [c], "c takes b's at once", limit=5)
    await nodes[2].stop()


async def test_no_takeover_while_the_database_is_out(pg: Backend, tmp_path: Path) -> None:
    """With the database cut off for every node longer than the lease, each
    node keeps its partitions and claims none of the others'; once it is
    back, owners are as before (no partition changed hands)."""
    proxy = TcpProxy(make_url(pg.url).port or 0)
    await proxy.start()
    url = pg.url_with_port(proxy.port)
    nodes = [Node(n, url, tmp_path / n, lease=1.5) for n in ("a", "b")]
    a, b = [await n.start() for n in nodes]
    await until(lambda: a.owned and b.owned and len(a.owned | b.owned) == PARTS, [a, b], "split")
    owned_a, owned_b = set(a.owned), set(b.owned)
    epochs = dict(await pg.fetch("SELECT partition, epoch FROM pua_partitions"))
    await proxy.stop()
    await until(lambda: not a.reachable and not b.reachable, [a, b], "both see the outage")
    turns = a.stats.turns
    await until(lambda: a.stats.turns >= turns + 4, [a], "a few turns in the outage")
    assert (a.owned, b.owned) == (owned_a, owned_b)
    await proxy.start()
    await until(lambda: a.reachable and b.reachable, [a, b], "both see the database again")
    turns = a.stats.turns
    await until(lambda: a.stats.turns >= turns + 6, [a], "past the lease after the return")
    assert (a.owned, b.owned) == (owned_a, owned_b)
    assert dict(await pg.fetch("SELECT partition, epoch FROM pua_partitions")) == epochs
    assert a.stats.lost == b.stats.lost == 0
    for n in nodes:
        await n.stop()
    await proxy.stop()


async def test_a_node_cut_off_alone_loses_its_partitions(pg: Backend, tmp_path: Path) -> None:
    """A node cut off from the database while the others reach it keeps
    its records alive meanwhile; the others take its partitions once its
    lease is over; back, it finds them lost and drops them."""
    proxy = TcpProxy(make_url(pg.url).port or 0)
    await proxy.start()
    cut = Node("a", pg.url_with_port(proxy.port), tmp_path / "a", lease=1.5)
    other = Node("b", pg.url, tmp_path / "b", lease=1.5)
    a, b = await cut.start(), await other.start()
    await until(lambda: a.owned and b.owned and len(a.owned | b.owned) == PARTS, [a, b], "split")
    held = set(a.owned)
    await proxy.stop()
    await until(lambda: b.owned == set(range(PARTS)), [b], "b takes a's partitions")
    assert a.owned == held  # a still keeps them alive from memory
    await proxy.start()
    await until(lambda: a.stats.lost == len(held), [a], "a finds its partitions lost")
    # And gets its share back from b, by the usual hand-over.
    await until(lambda: a.owned and len(a.owned | b.owned) == PARTS and not a.owned & b.owned,
                [a, b], "a and b share again")
    for n in (cut, other):
        await n.stop()
    await proxy.stop()
