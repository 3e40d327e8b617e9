"""Calls from one node of a cluster to another's management API.

A change asked of a node that does not own the record is carried to the
owner as one JSON-RPC call (``pua.cluster.apply``); a NOTIFY that reached
the wrong node is carried as ``pua.cluster.notify``.  Every call has a
bound: the owner's own wait for its SIP answer, and a few seconds more.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import aiohttp
import orjson

__all__ = ["PeerError", "Peers"]


class PeerError(Exception):
    """The other node did not answer (unreachable, too slow, not JSON)."""


class Peers:
    """A pool of HTTP connections to the other nodes' APIs."""

    def __init__(self, *, token: str | None, timeout: float) -> None:
        self._token = token
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._ids = itertools.count(1)

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            headers = {"Content-Type": "application/json"}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            self._session = aiohttp.ClientSession(headers=headers)
        return self._session

    async def call(self, api_url: str, method: str, params: Any) -> dict[str, Any]:
        """The JSON-RPC answer object (``result`` or ``error``) of
        ``method`` at the node whose API is ``api_url``.  Raises PeerError
        when it does not come within the timeout."""
        body = orjson.dumps(
            {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        )
        try:
            async with asyncio.timeout(self.timeout):
                async with self._open().post(f"{api_url}/rpc", data=body) as response:
                    data = await response.read()
                    if response.status != 200:
                        raise PeerError(f"{api_url} answered HTTP {response.status}")
        except (aiohttp.ClientError, OSError) as exc:
            raise PeerError(f"{api_url} unreachable: {exc}") from None
        except TimeoutError:
            raise PeerError(f"{api_url}: no answer within {self.timeout:g} s") from None
        try:
            answer = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise PeerError(f"{api_url} answered something that is not JSON") from None
        if not isinstance(answer, dict):
            raise PeerError(f"{api_url} answered {type(answer).__name__}, not an object")
        return answer

    async def close(self) -> None:
        """Close the connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None
