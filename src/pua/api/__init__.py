"""The management API: JSON-RPC 2.0 with Kamailio's method names, a REST
mirror, an event stream, Prometheus metrics and a live status page."""

from __future__ import annotations

from .http import ApiServer, make_app
from .rpc import JsonRpc, PuaMethods, RpcError

__all__ = ["ApiServer", "JsonRpc", "PuaMethods", "RpcError", "make_app"]
