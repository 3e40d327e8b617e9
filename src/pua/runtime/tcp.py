"""SIP over TCP for asyncio (RFC 3261 §18), IPv4 and IPv6.

:class:`TcpTransport` keeps at most one live connection per peer address
and uses it both ways: requests we send open (or reuse) a connection, and a
response goes back on the connection its request came in on (§18.2.2),
because that connection is filed under the request's source address.

Each connection is an :class:`asyncio.Protocol` with its own
:class:`~pua.sip.parser.StreamFramer`; nothing here reads a message's
meaning, the stack does that with what ``on_message`` receives.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import ssl
from collections.abc import Callable
from typing import cast

from pua.errors import RemoteProtocolError, TransportError
from pua.sip.message import Message
from pua.sip.parser import KeepAlive, StreamFramer
from pua.sip.transaction import Address

__all__ = ["ErrorHandler", "MessageHandler", "TcpTransport"]

log = logging.getLogger("pua.tcp")

MessageHandler = Callable[[Message, Address], None]
ErrorHandler = Callable[[Address, Exception], None]

# close() lets each connection flush what it still has to write for this
# long, then aborts it.
CLOSE_GRACE = 1.0
# Where in CPython's _ssl.c an error was raised: noise in a message meant
# for an operator.
_SSL_SOURCE = re.compile(r"\.?\s*\(_ssl\.c:\d+\)$")


class TcpTransport:
    """SIP over TCP: listening sockets plus a table of connections by peer.

    ``on_message(message, peer)`` gets every complete message read from any
    connection; ``on_error(peer, TransportError)`` is told once per send
    batch that could not be written (connect failure or timeout, a write
    that failed).  Failures after the kernel accepted the bytes cannot be
    seen by TCP's sender: the transaction layer's timers cover them.
    """

    def __init__(
        self,
        on_message: MessageHandler,
        on_error: ErrorHandler | None = None,
        *,
        connect_timeout: float = 5.0,
        idle_timeout: float = 300.0,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> None:
        self.on_message = on_message
        self.on_error = on_error
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        # With contexts this is SIP over TLS (RFC 3261 §26.2.1): the same
        # framing on an encrypted stream.
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self._servers: list[asyncio.Server] = []
        # The connection to use for each peer, and every connection alive
        # (a replaced one stays in _all until it has closed).
        self._by_peer: dict[Address, _Connection] = {}
        self._all: set[_Connection] = set()
        self._connecting: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def name(self) -> str:
        """TLS or TCP, as messages about this transport name it."""
        return "TLS" if self.server_ssl is not None or self.client_ssl is not None else "TCP"

    async def listen(self, host: str, port: int) -> Address:
        """Bind a listening socket (port 0 picks one); return the bound
        (host, port).  May be called once per address to listen on."""
        if self._closed:
            raise TransportError("TCP transport closed")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: _Connection(self, None), host, port, ssl=self.server_ssl
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        return (str(sockname[0]), int(sockname[1]))

    def send(self, data: bytes, address: Address, server_hostname: str | None = None) -> None:
        """Write ``data`` to ``address`` without blocking.

        Uses the live connection to that peer, inbound or outbound;
        otherwise opens one and queues ``data`` (in order) until it is up.
        ``server_hostname``: the name ``address`` was resolved from, which
        a TLS server's certificate must carry (RFC 5922 §7.2); by default
        the address itself.
        """
        peer = _normalise(address)
        if self._closed:
            self._report(peer, TransportError("TCP transport closed"))
            return
        connection = self._by_peer.get(peer)
        if connection is None or connection.closing:
            connection = _Connection(self, peer, server_hostname)
            self._register(connection)
            task = asyncio.get_running_loop().create_task(self._connect(connection))
            self._connecting.add(task)
            task.add_done_callback(self._connecting.discard)
        connection.write(data)

    def connections(self) -> list[Address]:
        """Peers with an established, open connection."""
        return [peer for peer, connection in self._by_peer.items() if connection.established]

    async def close(self) -> None:
        """Close the listening sockets and every connection, and wait for
        them; data still queued for a connection being opened is dropped."""
        self._closed = True
        for server in self._servers:
            server.close()
        for task in self._connecting:
            task.cancel()
        if self._connecting:
            await asyncio.wait(set(self._connecting))
        connections = list(self._all)
        for connection in connections:
            connection.shutdown()
        waiters = [connection.closed for connection in connections]
        if waiters:
            _, late = await asyncio.wait(waiters, timeout=CLOSE_GRACE)
            if late:
                for connection in connections:
                    connection.abort()
                await asyncio.wait(late)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- for _Connection ----------------------------------------------------
    async def _connect(self, connection: _Connection) -> None:
        host, port = connection.peer
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                await loop.create_connection(
                    lambda: connection,
                    host,
                    port,
                    ssl=self.client_ssl,
                    server_hostname=(connection.server_hostname or host)
                    if self.client_ssl is not None
                    else None,
                )
        except TimeoutError:
            connection.connect_failed(f"no connection within {self.connect_timeout:g} s")
        except Exception as exc:  # OSError mostly; a bad host gives others
            # A failed TLS handshake says why: the certificate check's own
            # words (unknown issuer, name mismatch) or the peer's alert.
            connection.connect_failed(describe(exc))

    def _register(self, connection: _Connection) -> None:
        self._by_peer[connection.peer] = connection
        self._all.add(connection)

    def _forget(self, connection: _Connection) -> None:
        if self._by_peer.get(connection.peer) is connection:
            del self._by_peer[connection.peer]
        self._all.discard(connection)

    def _deliver(self, message: Message, peer: Address) -> None:
        try:
            self.on_message(message, peer)
        except Exception:
            log.exception("on_message failed for a message from %s", _format(peer))

    def _report(self, peer: Address, error: TransportError) -> None:
        if self.on_error is None:
            log.warning("%s", error)
            return
        try:
            self.on_error(peer, error)
        except Exception:
            log.exception("on_error failed for %s", _format(peer))


class _Connection(asyncio.Protocol):
    """One TCP connection: its framer, its idle timer, and the data queued
    while it is being opened."""

    def __init__(
        self, owner: TcpTransport, peer: Address | None, server_hostname: str | None = None
    ) -> None:
        self.owner = owner
        self.server_hostname = server_hostname
        self.inbound = peer is None
        self.peer: Address = peer or ("", 0)  # inbound: set on connection_made
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer()
        self.queue: list[bytes] = []
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._last_activity = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        """True once the connection is closed or closing."""
        return self.closed.done() or (self.transport is not None and self.transport.is_closing())

    @property
    def established(self) -> bool:
        """True while the connection is up and open."""
        return self.transport is not None and not self.closing

    # -- asyncio.Protocol ------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if self.inbound:
            peername = transport.get_extra_info("peername")
            if peername:
                self.peer = _normalise((str(peername[0]), int(peername[1])))
            # An inbound connection is the way back to its peer (§18.2.2).
            self.owner._register(self)
        if self.owner._closed:
            self.transport.abort()
            return
        self._touch()
        self._arm_idle_timer()
        if self.queue:
            # Everything sent while connecting goes out as one batch, in order.
            data = b"".join(self.queue)
            self.queue.clear()
            self._write(data)

    def data_received(self, data: bytes) -> None:
        self._touch()
        try:
            items = self.framer.feed(data)
        except RemoteProtocolError as exc:
            # §18.3: framing relies on Content-Length; once it is lost the
            # stream cannot be resynchronised, so the connection goes.
            log.info("closing TCP connection with %s: %s", _format(self.peer), exc)
            if self.transport is not None:
                self.transport.close()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                # RFC 5626 §3.5.1: a CRLFCRLF ping is answered with one CRLF.
                if self.transport is not None and not self.transport.is_closing():
                    self.transport.write(b"\r\n")
            else:
                self.owner._deliver(item, self.peer)

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.info("%s connection with %s lost: %s", self.owner.name, _format(self.peer), exc)
            if isinstance(exc, ssl.SSLError):
                # A TLS alert after the handshake: with TLS 1.3 a server
                # refuses our (missing) client certificate only once our
                # first request is out.  That request is lost, so the
                # transactions waiting on this peer fail now, naming the
                # alert, rather than time out.
                self.owner._report(
                    self.peer,
                    TransportError(
                        f"{self.owner.name} connection with {_format(self.peer)} "
                        f"closed: {describe(exc)}"
                    ),
                )
        else:
            log.debug("TCP connection with %s closed", _format(self.peer))
        self._finish()

    # -- used by TcpTransport -----------------------------------------------
    def write(self, data: bytes) -> None:
        """Send now if connected, else queue for connection_made."""
        if self.transport is None:
            self.queue.append(data)
        else:
            self._write(data)

    def connect_failed(self, reason: str) -> None:
        """The connection could not be opened: report the queued batch."""
        if self.queue:
            self.queue.clear()
            self.owner._report(
                self.peer,
                TransportError(f"{self.owner.name} connect to {_format(self.peer)}: {reason}"),
            )
        if self.transport is not None:  # connected just as the timeout struck
            self.transport.abort()
        self._finish()

    def shutdown(self) -> None:
        """Close gracefully (pending writes are flushed first)."""
        if self.transport is None:
            self.queue.clear()
            self._finish()
        else:
            self.transport.close()

    def abort(self) -> None:
        """Close at once, dropping unsent data."""
        if self.transport is not None and not self.closed.done():
            self.transport.abort()

    # -- internals ----------------------------------------------------------
    def _write(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        error: Exception | None = None
        if transport.is_closing():
            error = ConnectionError("connection closed")
        else:
            self._touch()
            try:
                transport.write(data)
            except Exception as exc:  # uvloop raises on a closed handle
                error = exc
            else:
                # asyncio reports a failed socket send by closing the
                # transport from inside write(), not by raising.
                if transport.is_closing():
                    error = ConnectionError("write failed")
        if error is not None:
            self.owner._report(
                self.peer, TransportError(f"TCP send to {_format(self.peer)}: {error}")
            )
            transport.abort()

    def _touch(self) -> None:
        self._last_activity = self._loop.time()

    def _arm_idle_timer(self) -> None:
        deadline = self._last_activity + self.owner.idle_timeout
        self._idle_timer = self._loop.call_at(deadline, self._check_idle)

    def _check_idle(self) -> None:
        # One timer per connection, pushed back lazily: traffic only
        # updates _last_activity.
        self._idle_timer = None
        if self.transport is None or self.closing:
            return
        if self._loop.time() >= self._last_activity + self.owner.idle_timeout:
            log.debug("closing idle TCP connection with %s", _format(self.peer))
            self.transport.close()
        else:
            self._arm_idle_timer()

    def _finish(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        self.owner._forget(self)
        if not self.closed.done():
            self.closed.set_result(None)


def describe(exc: BaseException) -> str:
    """The text of a connection error, without CPython's _ssl.c location."""
    return _SSL_SOURCE.sub("", str(exc)) or type(exc).__name__


def _normalise(address: Address) -> Address:
    """(host, port) with the host in its canonical textual form, so that
    ``0:0::1`` and ``[::1]`` name the same peer as ``::1``."""
    host, port = address
    host = host.removeprefix("[").removesuffix("]")
    with contextlib.suppress(ValueError):
        host = str(ipaddress.ip_address(host))
    return (host, int(port))


def _format(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
