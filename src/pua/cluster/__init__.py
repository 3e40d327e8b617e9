"""Several pua nodes on one PostgreSQL database (``cluster = true``).

:class:`ClusterNode` holds this node's leases and takes over or gives up
partitions of records; :class:`NotifyHandOff` carries a NOTIFY that
reached the wrong node to the right one; :class:`Peers` calls the other
nodes' APIs.  See docs/cluster.md.
"""

from .node import ClusterNode, ClusterStats, rank
from .notify import NotifyHandOff
from .peers import PeerError, Peers

__all__ = ["ClusterNode", "ClusterStats", "NotifyHandOff", "PeerError", "Peers", "rank"]
