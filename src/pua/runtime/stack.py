"""The asyncio face of the SIP endpoint: sockets, one timer, futures.

:class:`SipStack` owns the UDP sockets and a sans-IO
:class:`~pua.sip.SipEndpoint`.  Each input (a datagram, a timer, a request to
send) is handed to the endpoint with ``loop.time()`` as ``now``; then the
stack transmits what the endpoint produced, dispatches its events and
re-arms one ``loop.call_at`` at the endpoint's next deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType

from pua.sip import (
    Datagram,
    MessageDropped,
    Request,
    RequestReceived,
    Response,
    ResponseReceived,
    SipEndpoint,
    TimerConfig,
    TransactionTimedOut,
    TransportFailed,
    make_response,
)
from pua.sip.builder import new_via
from pua.sip.errors import LocalProtocolError, TransactionTimeout, TransportError
from pua.sip.headers import Via
from pua.sip.ids import Ids
from pua.sip.transaction import Address, ClientTransaction, ServerTransaction

from .ids import SystemIds

__all__ = ["Listen", "RequestHandler", "SipStack"]

log = logging.getLogger("pua.sip")

RequestHandler = Callable[[ServerTransaction, Request], Awaitable[Response] | Response]


@dataclass(frozen=True, slots=True)
class Listen:
    """A listening address in Kamailio's syntax: ``udp:127.0.0.1:5060``,
    ``udp:[::1]:5060``."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse ``PROTO:HOST:PORT`` (IPv6 hosts in brackets)."""
        proto, sep, rest = text.partition(":")
        if not sep or proto.lower() not in ("udp",):
            raise ValueError(f"listen {text!r}: expected udp:HOST:PORT")
        if rest.startswith("["):
            host, _, port_text = rest[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = rest.rpartition(":")
        if not host or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"listen {text!r}: expected udp:HOST:PORT")
        return cls(proto.lower(), host, int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, stack: SipStack) -> None:
        self._stack = stack

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._stack._on_datagram(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable, ...) are not tied to a transaction
        # on a shared socket; timer F reports the failure.
        log.debug("udp error: %s", exc)


class SipStack:
    """SIP over UDP (IPv4 and IPv6) for asyncio.

    Use as ``async with SipStack(listen=[...]) as stack:``; then
    ``await stack.request(request, address)`` returns the final response.
    """

    def __init__(
        self,
        *,
        listen: list[Listen] | None = None,
        timers: TimerConfig | None = None,
        ids: Ids | None = None,
        on_request: RequestHandler | None = None,
    ) -> None:
        self.listen = listen or [Listen("udp", "127.0.0.1", 0)]
        self.ids: Ids = ids or SystemIds()
        self.endpoint = SipEndpoint(timers=timers)
        self.on_request = on_request
        self._transports: dict[int, asyncio.DatagramTransport] = {}
        self._bound: dict[int, Address] = {}
        self._pending: dict[ClientTransaction, asyncio.Future[Response]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SipStack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind every listening address."""
        self._loop = asyncio.get_running_loop()
        for listen in self.listen:
            family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
            if family in self._transports:
                raise ValueError(f"only one UDP listen address per family: {listen}")
            transport, _ = await self._loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(listen.host, listen.port), family=family
            )
            sock = transport.get_extra_info("socket")
            if sock is not None:
                _grow_buffers(sock)
            sockname = transport.get_extra_info("sockname")
            self._transports[family] = transport
            self._bound[family] = (str(sockname[0]), int(sockname[1]))

    async def close(self) -> None:
        """Close the sockets; pending requests fail with TransportError."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(TransportError("stack closed"))
        self._pending.clear()
        for transport in self._transports.values():
            transport.close()
        self._transports.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def local_address(self, family: int = socket.AF_INET) -> Address:
        """The (host, port) bound for ``family``."""
        try:
            return self._bound[family]
        except KeyError:
            raise TransportError(f"no UDP socket for address family {family}") from None

    def via_for(self, address: Address) -> Via:
        """A new Via (fresh branch) for a request sent to ``address``."""
        family = _family_of(address[0])
        host, port = self.local_address(family)
        if host in ("0.0.0.0", "::"):
            host = _route_source(address, family)
        return new_via(self.ids, "udp", f"[{host}]" if ":" in host else host, port)

    # -- requests ----------------------------------------------------------
    async def request(self, request: Request, address: Address) -> Response:
        """Send ``request`` to ``address`` over UDP and return its final
        response.  Raises TransactionTimeout after timer F, TransportError
        when it cannot be sent."""
        loop = self._require_loop()
        tx = self.endpoint.send_request(request, address, "udp", loop.time())
        future: asyncio.Future[Response] = loop.create_future()
        self._pending[tx] = future
        self._pump()
        try:
            return await future
        finally:
            self._pending.pop(tx, None)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or not self._transports:
            raise LocalProtocolError("the stack is not started")
        return self._loop

    # -- the pump -------------------------------------------------------------
    def _on_datagram(self, data: bytes, address: Address) -> None:
        loop = self._require_loop()
        self.endpoint.receive_datagram(data, address, "udp", loop.time())
        self._pump()

    def _on_timer(self) -> None:
        loop = self._require_loop()
        at = self._timer_at if self._timer_at is not None else loop.time()
        self._timer = self._timer_at = None
        # Never run a timer early (loop.call_at may wake a little before).
        self.endpoint.handle_timer(max(at, loop.time()))
        self._pump()

    def _pump(self) -> None:
        endpoint = self.endpoint
        while True:
            for datagram in endpoint.datagrams_to_send():
                self._transmit(datagram)
            event = endpoint.next_event()
            if event is None:
                break
            self._dispatch(event)
        self._arm_timer()

    def _arm_timer(self) -> None:
        when = self.endpoint.get_timer()
        if when == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = when
        if when is not None:
            self._timer = self._require_loop().call_at(when, self._on_timer)

    def _transmit(self, datagram: Datagram) -> None:
        transport = self._transports.get(_family_of(datagram.address[0]))
        if transport is None:
            log.warning("no socket to reach %s", datagram.address)
            return
        transport.sendto(datagram.data, datagram.address)

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            if not event.response.is_provisional:
                self._settle(event.transaction, result=event.response)
        elif isinstance(event, TransactionTimedOut):
            tx = event.transaction
            self._settle(
                tx,
                error=TransactionTimeout(
                    f"no final response to {tx.request.method} from "
                    f"{_format_address(tx.address)} within {self.endpoint.timers.timer_f:g} s"
                ),
            )
        elif isinstance(event, TransportFailed):
            self._settle(event.transaction, error=TransportError(event.reason))
        elif isinstance(event, RequestReceived):
            self._serve(event.transaction, event.request)
        elif isinstance(event, MessageDropped):
            log.info("dropped message from %s: %s", _format_address(event.address), event.reason)

    def _settle(
        self,
        tx: ClientTransaction,
        *,
        result: Response | None = None,
        error: Exception | None = None,
    ) -> None:
        future = self._pending.get(tx)
        if future is None or future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def _serve(self, tx: ServerTransaction, request: Request) -> None:
        handler = self.on_request
        if handler is None:
            self._answer(tx, make_response(request, 405, to_tag=self.ids.token(10)))
            return
        result = handler(tx, request)
        if isinstance(result, Response):
            self._answer(tx, result)
            return

        async def wait() -> None:
            try:
                response = await result
            except Exception:
                log.exception("request handler failed")
                response = make_response(request, 500, to_tag=self.ids.token(10))
            self._answer(tx, response)

        task = asyncio.ensure_future(wait())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _answer(self, tx: ServerTransaction, response: Response) -> None:
        self.endpoint.respond(tx, response, self._require_loop().time())
        self._pump()


# A burst of answers to a few hundred requests in flight overflows the
# kernel's default UDP receive buffer (about 200 KiB, counted with per-packet
# overhead), and every dropped answer costs a retransmission after T1.  The
# kernel caps what we ask at net.core.rmem_max / wmem_max.
SOCKET_BUFFER_BYTES = 4 << 20


def _grow_buffers(sock: socket.socket) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)


def _family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _route_source(address: Address, family: int) -> str:
    """The local IP the kernel would use to reach ``address`` (no packet is
    sent: connecting a UDP socket only picks a route)."""
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(address)
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
