"""The API of a node in a cluster: changes carried to the record's owner,
and the cluster's view.

Any node's API takes any change.  A call about a record of a partition
this node does not own is carried, whole, to the owner's API as
``pua.cluster.apply``; the owner does it as it would its own call
(stored before it answers) and its answer is the caller's, word for word.
While a partition has no owner (its node died and the lease is not over
yet), the call waits for one, at most :attr:`ClusterRouter.wait` seconds,
then is refused with :data:`NO_OWNER` and nothing is done.

Methods beyond the single node's:

- ``pua.cluster``: the nodes, their leases and partitions
  (:meth:`ClusterNode.view`); ``GET /cluster`` is the same;
- ``pua.cluster.apply`` (between nodes): ``{"method", "values"}``, a change
  this node must own; :data:`NOT_OWNER` when it no longer does;
- ``pua.cluster.notify`` (between nodes): a NOTIFY another node received
  for one of this node's dialogs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pua.cluster import ClusterNode, PeerError, Peers
from pua.runtime import PresenceRuntime

from .rpc import INVALID_PARAMS, LOCAL, Method, RpcError

__all__ = ["NOT_OWNER", "NO_OWNER", "ClusterMethods", "ClusterRouter"]

log = logging.getLogger("pua.api")

# JSON-RPC error of a node asked to apply a change of a partition it does
# not own (any more): the caller asks again where it is now.
NOT_OWNER = -32004
# JSON-RPC error for a change of a record whose partition has no live
# owner within the wait: nothing was done; ``data.retry_after`` says when
# to try again.
NO_OWNER = -32005
# Attempts to reach an owner when ownership moves under the call.
TRIES = 3


class ClusterRouter:
    """Where a change of a record is made: here, or at its owner."""

    def __init__(self, node: ClusterNode, peers: Peers) -> None:
        self.node = node
        self.peers = peers
        # A partition without an owner gets one within a lease (its node's
        # lease runs out) and a turn of the node that should take it.
        self.wait = node.lease * 2 + 1

    async def owner_url(self, partition: int) -> str | None:
        """The API URL of the partition's owner, or None when it is this
        node; waits (bounded) while the partition has no owner.  Raises
        RpcError NO_OWNER when none comes."""
        node = self.node
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait
        while True:
            if node.owns(partition):
                return None
            url = node.owner_url(partition)
            if url is not None:
                return url
            left = deadline - loop.time()
            if left <= 0:
                raise RpcError(
                    NO_OWNER,
                    f"partition {partition} has no live owner (a node died and its lease"
                    " is not over, or the database is unreachable); nothing was done",
                    {"partition": partition, "retry_after": max(1, round(node.lease))},
                )
            node.poke()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(node.changed.wait(), min(left, node.lease))

    async def forward(
        self, method: str, values: dict[str, Any], pres_uri: str, watcher_uri: str | None
    ) -> Any:
        """The owner's answer to ``method`` with ``values`` (the result, or
        its error raised as RpcError), or :data:`LOCAL` when this node owns
        the record."""
        node = self.node
        partition = node.partition_of(pres_uri, watcher_uri)
        for attempt in range(TRIES):
            url = await self.owner_url(partition)
            if url is None:
                return LOCAL
            try:
                answer = await self.peers.call(
                    url, "pua.cluster.apply", {"method": method, "values": values}
                )
            except PeerError as exc:
                # The owner is gone or cut off: once its lease is over the
                # partition is another's.
                log.warning("%s for %s: %s", method, pres_uri, exc)
                if attempt + 1 == TRIES:
                    raise RpcError(
                        NO_OWNER,
                        f"the owner of partition {partition} does not answer: {exc};"
                        " nothing is known to be done",
                        {"partition": partition, "retry_after": max(1, round(node.lease))},
                    ) from None
                node.poke()
                continue
            error = answer.get("error")
            if error is None:
                node.stats.forwarded += 1
                return answer.get("result")
            if isinstance(error, dict) and error.get("code") == NOT_OWNER and attempt + 1 < TRIES:
                node.poke()
                await _next_turn(node)
                continue
            if not isinstance(error, dict):
                raise RpcError(-32603, f"the owner answered {error!r}")
            raise RpcError(
                int(error.get("code", -32603)), str(error.get("message")), error.get("data")
            )
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _next_turn(node: ClusterNode) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(node.changed.wait(), node.lease)


class ClusterMethods:
    """``pua.cluster``, ``pua.cluster.apply`` and ``pua.cluster.notify``."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        node: ClusterNode,
        apply: dict[str, Callable[[dict[str, Any]], Awaitable[Any]]],
        where: Callable[[str, dict[str, Any]], tuple[str, str | None]],
    ) -> None:
        """``apply``: the changes a peer may ask for, by method name, each
        made here without asking where (``routed``); ``where(method,
        values)``: the (pres_uri, watcher_uri) a change is about."""
        self.runtime = runtime
        self.node = node
        self._apply = apply
        self._where = where

    def table(self) -> dict[str, Method]:
        """Method name -> coroutine function."""
        return {
            "pua.cluster": self.cluster,
            "pua.cluster.apply": self.apply,
            "pua.cluster.notify": self.notify,
        }

    async def cluster(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """The nodes, their leases and partitions, as this node last saw them."""
        return self.node.view()

    async def apply(self, params: list[Any] | dict[str, Any]) -> Any:
        """A change another node carried here: made when this node owns
        the record, refused with NOT_OWNER otherwise."""
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: an object {method, values}")
        method, values = params.get("method"), params.get("values")
        if not isinstance(method, str) or method not in self._apply or not isinstance(values, dict):
            raise RpcError(INVALID_PARAMS, f"Invalid params: no change {method!r} to apply")
        pres_uri, watcher_uri = self._where(method, values)
        partition = self.node.partition_of(pres_uri, watcher_uri)
        if not self.node.owns(partition):
            raise RpcError(
                NOT_OWNER,
                f"{self.node.node_id} does not own partition {partition}",
                {"partition": partition},
            )
        return await self._apply[method](values)

    async def notify(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Take a NOTIFY another node received for one of our dialogs."""
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "Invalid params: an object {message, source}")
        message, source = params.get("message"), params.get("source")
        if (
            not isinstance(message, str)
            or not isinstance(source, list)
            or len(source) != 2
            or not isinstance(source[0], str)
            or not isinstance(source[1], int)
        ):
            raise RpcError(INVALID_PARAMS, "Invalid params: message, source [host, port]")
        # Taken as a datagram whatever it came over: the answer the engine
        # makes goes to a notifier that has finished that transaction.
        self.runtime.receive(message.encode("latin-1"), (source[0], source[1]), "udp")
        return {"taken": True}
