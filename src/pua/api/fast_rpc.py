"""A short road for ``POST /rpc``: JSON-RPC calls without aiohttp's
request machinery.

Every call of a busy client is a ``POST /rpc`` on a keep-alive connection.
Taken by aiohttp, each builds a request object, a stream reader, a header
multidict, a response object and a writer, and passes the middlewares (about
130 µs of the 740 µs a ``pua.publish`` cost before this road).
:class:`RpcConnection` reads such requests itself: a request line
``POST /rpc HTTP/1.1``, a ``Content-Length`` within ``max_body``, no
``Transfer-Encoding``, ``Expect`` or ``Upgrade``, the token in
``Authorization: Bearer`` when one is set, and room for the body in the
shared :class:`BodyBudget`.  Anything else (another path or method, a
chunked body, a missing or wrong token, a body over the limits, HTTP/1.0, a
head it cannot read) hands the connection, with every byte not yet used, to
aiohttp, which answers it as before (401, 413, 503, the pages, the event
stream): the refusals stay in one place.

Requests on one connection are answered in order, one at a time (HTTP/1.1
pipelining keeps order, RFC 9112 §9.3.2); bytes that come meanwhile wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from typing import Any, cast

from aiohttp import web

__all__ = ["BodyBudget", "RpcConnection", "RpcSite"]

log = logging.getLogger("pua.api")

# A request head longer than this is left to aiohttp (whose own limit is
# 8190 bytes a line): a JSON-RPC client sends a few hundred.
MAX_HEAD = 8192
# Bytes of a pipelined request that wait while one is answered, beyond
# which the connection stops reading (TCP pushes back on the client).
MAX_WAITING_BYTES = 1 << 20

Answer = Callable[[bytes], Awaitable[bytes | None]]


class BodyBudget:
    """Bytes of request bodies held at once (api_max_buffered), shared by
    the short road and aiohttp's middleware."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, size: int) -> bool:
        """Take room for ``size`` bytes; False (nothing taken) when there is none."""
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        """Give back what :meth:`take` took."""
        self.held -= size


class _Date:
    """The Date header (RFC 9110 §6.6.1), made once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def value(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


_DATE = _Date()


def _head(head: bytes, max_body: int, token: bytes | None) -> tuple[int, bool] | None:
    """(Content-Length, close after the answer) of a request head the short
    road takes, or None to leave the request to aiohttp."""
    lines = head.split(b"\r\n")
    if lines[0] != b"POST /rpc HTTP/1.1":
        return None
    length = -1
    close = False
    authorization: bytes | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        # No colon, white space in or before the name, or an obsolete folded
        # line: aiohttp's parser says what is wrong with it.
        if not colon or not name or name != name.strip() or b" " in name or b"\t" in name:
            return None
        name = name.lower()
        value = value.strip(b" \t")
        if name == b"content-length":
            if length >= 0 or not value.isdigit():
                return None
            length = int(value)
        elif name in (b"transfer-encoding", b"expect", b"upgrade"):
            return None
        elif name == b"connection":
            close = b"close" in value.lower()
        elif name == b"authorization":
            authorization = value
    if length < 0 or length > max_body:
        return None
    if token is not None:
        if authorization is None or authorization[:7] != b"Bearer ":
            return None
        if not hmac.compare_digest(authorization[7:], token):
            return None
    return length, close


class RpcConnection(asyncio.Protocol):
    """One API connection: ``POST /rpc`` calls answered here, the rest
    handed to aiohttp (``fallback`` makes its protocol for the connection)."""

    def __init__(
        self,
        fallback: Callable[[], asyncio.Protocol],
        answer: Answer,
        budget: BodyBudget,
        max_body: int,
        token: str | None,
        connections: set[RpcConnection],
    ) -> None:
        self._fallback = fallback
        self._answer = answer
        self._budget = budget
        self._max_body = max_body
        self._token = token.encode() if token else None
        self._connections = connections
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy = False  # a call is being answered
        self._held = 0  # room taken in the budget for the body being read
        self._paused = False
        self._closing = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses.
        self._transport = cast(asyncio.Transport, transport)
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        self._connections.discard(self)
        self._transport = None

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if not self._busy:
            self._next()
        elif len(self._buffer) > MAX_WAITING_BYTES and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool | None:
        return None  # close when the peer has sent all it will

    def shutdown(self) -> None:
        """Close now when idle, else after the answer in progress."""
        self._closing = True
        if not self._busy and self._transport is not None:
            self._transport.close()

    def _release(self) -> None:
        if self._held:
            self._budget.give(self._held)
            self._held = 0

    def _next(self) -> None:
        """Start the next request in the buffer, if it is whole."""
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                self._hand_off()
            return
        if end > MAX_HEAD:
            self._hand_off()
            return
        taken = _head(bytes(buffer[:end]), self._max_body, self._token)
        if taken is None:
            self._hand_off()
            return
        length, close = taken
        if not self._held and length:
            if not self._budget.take(length):
                self._hand_off()  # aiohttp answers 503 (api_max_buffered)
                return
            self._held = length
        start = end + 4
        if len(buffer) < start + length:
            return  # the rest of the body is still coming
        body = bytes(buffer[start : start + length])
        del buffer[: start + length]
        self._busy = True
        self.task = asyncio.get_running_loop().create_task(self._serve(body, close))

    async def _serve(self, body: bytes, close: bool) -> None:
        try:
            try:
                reply = await self._answer(body)
            finally:
                self._release()
        except Exception:
            log.exception("JSON-RPC request failed")
            reply = None
            status = b"500 Internal Server Error"
        else:
            status = b"200 OK" if reply is not None else b"204 No Content"
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        close = close or self._closing
        parts = [b"HTTP/1.1 ", status, b"\r\nDate: ", _DATE.value(), b"\r\nServer: pua\r\n"]
        if reply is not None:
            parts += [
                b"Content-Type: application/json; charset=utf-8\r\nContent-Length: ",
                str(len(reply)).encode(),
                b"\r\n",
            ]
        elif status[0:1] == b"5":
            parts.append(b"Content-Length: 0\r\n")
        if close:
            parts.append(b"Connection: close\r\n")
        parts.append(b"\r\n")
        if reply is not None:
            parts.append(reply)
        transport.write(b"".join(parts))
        self._busy = False
        if close:
            transport.close()
            return
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buffer:
            self._next()

    def _hand_off(self) -> None:
        """Give the connection, and what it sent that is not yet used, to aiohttp."""
        transport = self._transport
        if transport is None:
            return
        self._release()
        self._connections.discard(self)
        protocol = self._fallback()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if self._paused:
            self._paused = False
            transport.resume_reading()
        if self._buffer:
            data, self._buffer = bytes(self._buffer), bytearray()
            protocol.data_received(data)
        self._transport = None


class RpcSite(web.SockSite):
    """aiohttp's site on a listening socket whose connections start on the
    short road (:class:`RpcConnection`)."""

    def __init__(
        self,
        runner: web.BaseRunner,
        sock: Any,
        *,
        answer: Answer,
        budget: BodyBudget,
        max_body: int,
        token: str | None,
    ) -> None:
        super().__init__(runner, sock)
        self._answer = answer
        self._budget = budget
        self._max_body = max_body
        self._token = token
        self._connections: set[RpcConnection] = set()

    async def start(self) -> None:
        self._runner._reg_site(self)
        fallback = self._runner.server
        assert fallback is not None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: RpcConnection(
                fallback,
                self._answer,
                self._budget,
                self._max_body,
                self._token,
                self._connections,
            ),
            sock=self._sock,
            backlog=self._backlog,
        )

    async def stop(self) -> None:
        await super().stop()
        tasks = [c.task for c in self._connections if c.task is not None and not c.task.done()]
        for connection in list(self._connections):
            connection.shutdown()
        if tasks:
            _done, pending = await asyncio.wait(tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
