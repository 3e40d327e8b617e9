"""NOTIFYs that reach a node that does not hold their dialog.

A presence server sends a subscription's NOTIFYs to the Contact of the
dialog: the node that last sent the SUBSCRIBE.  When the partition moves
to another node, the new owner refreshes the subscription with its own
Contact (a target refresh, RFC 6665 §4.1.2.1), but until that refresh the
NOTIFYs still come to the old node.  Answered 481 there, they would end a
subscription that lives (RFC 6665 §4.1.3: the notifier removes it).  So a
NOTIFY outside this node's dialogs is looked up in the database first:

- a stored subscription has this Call-ID: answered 200, and the NOTIFY is
  handed to the owner of its partition, which acts on it as if it had come
  itself (its own 200 goes to the notifier too, which ignores an answer to
  a transaction it has finished);
- none has: 481, as on one node;
- the database cannot be asked: 500 with Retry-After, so that the notifier
  tries again rather than dropping the subscription.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pua.core import IncomingRequest
from pua.runtime import PresenceRuntime
from pua.sip.endpoint import make_response
from pua.sip.message import Response
from pua.store import StoreError

from .node import ClusterNode
from .peers import PeerError, Peers

__all__ = ["NotifyHandOff"]

log = logging.getLogger("pua.cluster")


class NotifyHandOff:
    """The runtime's handler of NOTIFYs outside its dialogs, in a cluster."""

    def __init__(self, runtime: PresenceRuntime, node: ClusterNode, peers: Peers) -> None:
        self.runtime = runtime
        self.node = node
        self.peers = peers
        self._tasks: set[asyncio.Task[None]] = set()

    def install(self) -> None:
        """Take the NOTIFYs no dialog of this node matches."""
        self.runtime.add_request_handler("NOTIFY", self._on_notify)

    async def close(self) -> None:
        """Stop taking them; wait for the hand-offs under way."""
        self.runtime.remove_request_handler("NOTIFY")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_notify(self, incoming: IncomingRequest, now: float) -> Response | None:
        task = asyncio.ensure_future(self._look_up(incoming))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return None  # answered once the database has said whose it is

    async def _look_up(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        try:
            rows = await self.node.leases.dialog_rows(request.call_id)
        except StoreError as exc:
            log.warning("NOTIFY of %s: cannot ask the database: %s", request.call_id, exc)
            answer = make_response(request, 500, "Server Internal Error")
            answer.headers.add("Retry-After", "5")
            self.runtime.respond(incoming, answer)
            return
        if not rows:
            self.runtime.respond(incoming, make_response(request, 481))
            return
        pres_uri, watcher_uri = rows[0]
        partition = self.node.partition_of(pres_uri, watcher_uri)
        self.runtime.respond(incoming, make_response(request, 200))
        if self.node.owns(partition):
            # Ours, but not (yet) in memory: being taken over right now.
            # The refresh that follows the takeover brings a NOTIFY again.
            return
        url = self.node.owner_url(partition)
        if url is None:
            log.info("NOTIFY of %s: partition %d has no owner now", request.call_id, partition)
            return
        params: dict[str, Any] = {
            "message": bytes(request).decode("latin-1"),
            "source": list(incoming.source),
        }
        try:
            reply = await self.peers.call(url, "pua.cluster.notify", params)
        except PeerError as exc:
            log.warning("NOTIFY of %s not handed to its owner: %s", request.call_id, exc)
            return
        if "error" in reply:
            log.warning("NOTIFY of %s refused by its owner: %s", request.call_id, reply["error"])
            return
        self.node.stats.handed_notifies += 1
