"""One node of a cluster: its leases, its partitions, and the records it
takes over or gives up.

The records are spread over 2^hash_size partitions (``partition_of``: a
CRC of pres_uri and watcher_uri, the same on every node).  Each partition
is owned by one live node through a lease row in the database
(:class:`~pua.store.leases.LeaseStore`); only the owner holds the
partition's records in memory, refreshes them, retries them and removes
them.

Which node should own a partition is decided without talking: every node
ranks the live nodes for each partition by a hash of (node, partition) and
the first is the one (rendezvous hashing).  The live nodes agree on the
ranking, the partitions spread evenly, and a node that joins or leaves
moves only the partitions it wins or held.  The database's row locks
decide the races: a partition is claimed only while no one holds its
lease.

A turn of the node, every third of the lease (or at once when another
node announces a change on the database's LISTEN/NOTIFY channel):

1. renew this node's row and its leases; a partition it held in memory
   that the database no longer says is its own was lost (the node was cut
   off longer than the lease): its records are dropped from memory, not
   ended (the new owner keeps them alive);
2. claim the free partitions this node should own, and take over their
   records from their rows (:meth:`StoreSync.adopt`);
3. give up the partitions another live node should own: their records
   are written, then let go of, then the lease is released so that the
   other node claims it at once.

While the database is unreachable the node keeps its records alive from
memory and claims nothing; once it is back, it waits one lease before it
claims any partition that is free, so that every node renews what it held
first: no node takes over another's partitions because of an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pua.core import Record
from pua.core.table import partition_of
from pua.runtime import PresenceRuntime
from pua.runtime.persistence import StoreSync
from pua.store import StoreError
from pua.store.leases import LeaseStore, NodeRow, PartitionRow

__all__ = ["ClusterNode", "ClusterStats", "rank"]

log = logging.getLogger("pua.cluster")

# Attempts to give up a partition whose records are busy (a request in
# flight, a change being written) before the next turn tries again.
HAND_OVER_TRIES = 20
HAND_OVER_PAUSE = 0.05


def rank(node_id: str, partition: int) -> int:
    """The weight of ``node_id`` for ``partition``: the live node of the
    highest weight should own it (rendezvous hashing)."""
    return zlib.crc32(f"{node_id}/{partition}".encode())


@dataclass(slots=True)
class ClusterStats:
    """What the node has done, for the metrics."""

    turns: int = 0
    failed_turns: int = 0
    claimed: int = 0
    adopted_records: int = 0
    released: int = 0
    lost: int = 0
    forwarded: int = 0
    handed_notifies: int = 0
    last_takeover: float = 0.0


class ClusterNode:
    """This node's part in a cluster (see the module)."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        sync: StoreSync,
        leases: LeaseStore,
        *,
        node_id: str,
        api_url: str,
        sip: str,
        lease: float,
    ) -> None:
        self.runtime = runtime
        self.sync = sync
        self.leases = leases
        self.node_id = node_id
        self.api_url = api_url
        self.sip = sip
        self.lease = lease
        self.partitions = leases.partitions
        self.hash_size = self.partitions.bit_length() - 1
        # Partitions whose records this node holds and keeps alive.
        self.owned: set[int] = set()
        # The last view of the database: owner of each partition (None:
        # free), and the nodes.
        self.owners: dict[int, str | None] = {}
        self.nodes: dict[str, NodeRow] = {}
        self.reachable = False
        self.stats = ClusterStats()
        self.changed = asyncio.Event()  # set (and cleared) after each turn
        self._wake = asyncio.Event()
        self._claim_after = 0.0
        self._task: asyncio.Task[None] | None = None
        self._balancing: asyncio.Task[None] | None = None

    # -- life ---------------------------------------------------------------------
    async def start(self) -> None:
        """Make the tables, announce this node, and take its share of the
        partitions (the records of free ones it should own are taken over
        before this returns, when the database answers).  Raises
        StoreError when the database cannot be used at all."""
        loop = asyncio.get_running_loop()
        wake = self._wake

        def on_notice(payload: str) -> None:
            loop.call_soon_threadsafe(wake.set)

        self.leases.listen(on_notice)
        await self.leases.prepare()
        # Another node may have held a lease in this node's name (a restart
        # quicker than the lease): what is still ours is taken back now.
        await self.turn()
        with contextlib.suppress(StoreError):
            await self.leases.announce(f"join {self.node_id}")
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        """Write what is pending, free this node's partitions for the
        others at once, and stop."""
        for task in (self._task, self._balancing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._balancing = None
        # Each partition handed over whole where its records are idle (so
        # the next owner reads their last state); what stays busy is let go
        # of anyway, and leave() frees every partition still held.
        await self._hand_over(set(self.owned))
        self.runtime.release(list(self.runtime.records()), force=True)
        try:
            await self.leases.leave(self.node_id)
        except StoreError as exc:
            log.warning("could not leave the cluster (the others wait for the lease): %s", exc)
        self.owned.clear()
        await self.leases.close()

    async def _run(self) -> None:
        period = self.lease / 3
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(period):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.turn(wait=False)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("cluster turn failed")

    def poke(self) -> None:
        """Take a turn now (e.g. a request found no owner)."""
        self._wake.set()

    def _changed(self) -> None:
        self.changed.set()
        self.changed.clear()

    # -- a turn -------------------------------------------------------------------
    async def turn(self, *, wait: bool = True) -> None:
        """Renew this node's leases, then claim and give up partitions (see
        the module).  The claiming and giving up runs on its own (unless
        ``wait``): taking over many records may take longer than a lease,
        and the renewals must go on meanwhile."""
        try:
            seen = await self._renew()
        finally:
            self.stats.turns += 1
            self._changed()
        if seen is None:
            return
        if self._balancing is not None and not self._balancing.done():
            return  # the last one is still at work; the next turn looks again
        self._balancing = asyncio.ensure_future(self._rebalance(*seen))
        if wait:
            await self._balancing

    async def _renew(self) -> tuple[set[int], list[NodeRow], list[PartitionRow]] | None:
        """Renew; learn the nodes and owners; drop what was lost.  None
        when the database cannot be reached."""
        runtime, leases = self.runtime, self.leases
        before = set(self.owned)
        try:
            held = await leases.beat(
                self.node_id,
                api_url=self.api_url,
                sip=self.sip,
                records=runtime.counts()["records"],
                lease=self.lease,
            )
            nodes, parts = await leases.view()
        except StoreError as exc:
            self.stats.failed_turns += 1
            if self.reachable or not self.stats.turns:
                log.error(
                    "database unreachable: keeping %d partitions alive from memory,"
                    " claiming none: %s",
                    len(self.owned),
                    exc,
                )
            self.reachable = False
            return None
        if not self.reachable:
            if self.stats.turns:
                log.warning(
                    "database reachable again: claiming nothing for %.0f s (the others"
                    " renew theirs first)",
                    self.lease,
                )
            # After an outage (or at start) every node first renews what
            # it held; free partitions are claimed one lease later.
            self._claim_after = time.monotonic() + (self.lease if self.stats.turns else 0.0)
            self.reachable = True
        self._learn(nodes, parts)
        # Only what was held before the renewal can have been lost: a
        # partition claimed meanwhile is not in ``held`` yet.
        lost = (before & self.owned) - held
        if lost:
            self._drop(lost)
        for p in self.owned:
            self.owners[p] = self.node_id
        return held, nodes, parts

    async def _rebalance(
        self, held: set[int], nodes: list[NodeRow], parts: list[PartitionRow]
    ) -> None:
        try:
            await self._balance(held, nodes, parts)
        except StoreError as exc:
            log.error("cluster: %s", exc)
        finally:
            for p in self.owned:
                self.owners[p] = self.node_id
            self._changed()

    async def _balance(
        self, held: set[int], nodes: list[NodeRow], parts: list[PartitionRow]
    ) -> None:
        live = sorted(n.node_id for n in nodes if n.alive)
        if self.node_id not in live:
            live = sorted([*live, self.node_id])
        mine = {p for p in range(self.partitions) if self._winner(p, live) == self.node_id}
        # Held in the database but not in memory (a release that did not
        # reach the database, or a restart within the lease).
        stray = held - self.owned
        if stray:
            await self._adopt(stray & mine)
            await self._give_up(stray - mine)
        if time.monotonic() >= self._claim_after:
            free = {p.partition for p in parts if not p.held}
            wanted = (mine & free) - self.owned
            if wanted:
                claimed = await self.leases.claim(self.node_id, wanted, self.lease)
                if claimed:
                    started = time.monotonic()
                    await self._adopt(claimed)
                    self.stats.claimed += len(claimed)
                    self.stats.last_takeover = time.monotonic() - started
        extra = self.owned - mine
        if extra:
            await self._hand_over(extra)

    def _learn(self, nodes: list[NodeRow], parts: list[PartitionRow]) -> None:
        self.nodes = {n.node_id: n for n in nodes}
        self.owners = {p.partition: p.owner for p in parts}

    @staticmethod
    def _winner(partition: int, live: list[str]) -> str:
        return max(live, key=lambda node: rank(node, partition))

    # -- taking over and giving up ------------------------------------------------
    async def _adopt(self, partitions: set[int]) -> None:
        """Take over the records of ``partitions`` from their rows."""
        if not partitions:
            return
        size = self.hash_size
        self.owned |= partitions
        try:
            counts = await self.sync.adopt(
                lambda pres, watcher: partition_of(pres, watcher, size) in partitions
            )
        except StoreError as exc:
            # Still ours in the database: the next turn reads them again.
            self.owned -= partitions
            log.error("could not read the records of partitions taken over: %s", exc)
            return
        self.stats.adopted_records += counts["resumed"]
        log.info(
            "took over %d partitions: %d records resumed, %d rows over",
            len(partitions),
            counts["resumed"],
            counts["dropped"],
        )

    def _records_of(self, partitions: set[int]) -> dict[int, list[Record]]:
        by_partition: dict[int, list[Record]] = {p: [] for p in partitions}
        size = self.hash_size
        for record in self.runtime.records():
            p = partition_of(record.pres_uri, record.watcher_uri, size)
            if p in by_partition:
                by_partition[p].append(record)
        return by_partition

    def _drop(self, partitions: set[int]) -> None:
        """Forget the records of partitions another node holds now."""
        records = [r for rs in self._records_of(partitions).values() for r in rs]
        self.runtime.release(records, force=True)
        self.owned -= partitions
        self.stats.lost += len(partitions)
        log.warning(
            "lost %d partitions to other nodes (%d records dropped from memory)",
            len(partitions),
            len(records),
        )

    async def _hand_over(self, partitions: set[int]) -> None:
        """Give up ``partitions`` to the node that should own them: each
        partition's records are written and let go of together, when none
        is busy; those still busy wait for the next turn."""
        left = set(partitions)
        done: set[int] = set()
        for _ in range(HAND_OVER_TRIES):
            try:
                await self.sync.flush()
            except StoreError as exc:
                log.error("could not write before giving partitions up: %s", exc)
                break
            # Nothing awaits from here to the release: no change can come
            # between the check and the letting go.
            for p, records in self._records_of(left).items():
                if not self.runtime.release(records):
                    done.add(p)
                    # Not ours from now: a call for it waits for the new owner.
                    self.owned.discard(p)
            left -= done
            if not left:
                break
            await asyncio.sleep(HAND_OVER_PAUSE)
        await self._give_up(done)

    async def _give_up(self, partitions: set[int]) -> None:
        if not partitions:
            return
        try:
            given = await self.leases.release(self.node_id, partitions)
        except StoreError as exc:
            # Held in the database, not in memory: the next turn finds them
            # stray and releases them again.
            log.error("could not release %d partitions: %s", len(partitions), exc)
            return
        self.stats.released += len(given)
        for p in given:
            self.owners[p] = None
        if given:
            log.info("gave up %d partitions to other nodes", len(given))

    # -- questions from the API -----------------------------------------------------
    def partition_of(self, pres_uri: str, watcher_uri: str | None) -> int:
        """The partition of a record of ``pres_uri`` (and ``watcher_uri``)."""
        return partition_of(pres_uri, watcher_uri, self.hash_size)

    def owns(self, partition: int) -> bool:
        """Whether this node holds ``partition``'s records now."""
        return partition in self.owned

    def owner_url(self, partition: int) -> str | None:
        """The API URL of the live node that owns ``partition`` (None: no
        other live node does, as far as the last turn saw)."""
        owner = self.owners.get(partition)
        if owner is None or owner == self.node_id:
            return None
        node = self.nodes.get(owner)
        return node.api_url if node is not None and node.alive else None

    def view(self) -> dict[str, Any]:
        """The nodes, their leases and partitions, as the last turn saw
        them (``pua.cluster`` and ``GET /cluster``)."""
        by_owner: dict[str, list[int]] = {}
        for p, owner in sorted(self.owners.items()):
            if owner is not None:
                by_owner.setdefault(owner, []).append(p)
        nodes = []
        for node_id, node in sorted(self.nodes.items()):
            nodes.append(
                {
                    "node_id": node_id,
                    "api_url": node.api_url,
                    "sip": node.sip,
                    "alive": node.alive,
                    "seen_ago": round(node.seen_ago, 3),
                    "records": node.records,
                    "partitions": len(by_owner.get(node_id, [])),
                    "self": node_id == self.node_id,
                }
            )
        return {
            "node_id": self.node_id,
            "lease_time": self.lease,
            "partitions": self.partitions,
            "database": "reachable" if self.reachable else "unreachable",
            "owned": sorted(self.owned),
            "free": sorted(p for p, owner in self.owners.items() if owner is None),
            "nodes": nodes,
            "stats": {
                "turns": self.stats.turns,
                "failed_turns": self.stats.failed_turns,
                "claimed": self.stats.claimed,
                "adopted_records": self.stats.adopted_records,
                "released": self.stats.released,
                "lost": self.stats.lost,
                "forwarded": self.stats.forwarded,
                "handed_notifies": self.stats.handed_notifies,
            },
        }

    def is_owned_anywhere(self, partitions: Iterable[int]) -> bool:
        """Whether every one of ``partitions`` has an owner (last turn)."""
        return all(self.owners.get(p) is not None for p in partitions)
