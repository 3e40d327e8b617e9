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
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType

from pua.errors import LocalProtocolError, TransactionTimeout, TransportError
from pua.sip import (
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
from pua.sip.builder import RequestTemplate, new_via
from pua.sip.headers import Via
from pua.sip.ids import Ids
from pua.sip.message import Message
from pua.sip.transaction import Address, ClientTransaction, ServerTransaction
from pua.sip.uri import Uri

from .ids import SystemIds
from .timer import DeadlineTimer
from .transports import Listen, Transports, route_source

__all__ = ["Listen", "RequestHandler", "SipStack"]

log = logging.getLogger("pua.sip")

RequestHandler = Callable[[ServerTransaction, Request], Awaitable[Response] | Response]


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
        self._transports = Transports(
            self.listen, self._on_datagram, self._on_message, self._on_send_error
        )
        self._pending: dict[ClientTransaction, asyncio.Future[Response]] = {}
        self._timer = DeadlineTimer(self._clock, self._on_timer)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

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
        await self._transports.start()
        self._started = True

    async def close(self) -> None:
        """Close the sockets; pending requests fail with TransportError."""
        self._started = False
        self._timer.cancel()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(TransportError("stack closed"))
        self._pending.clear()
        await self._transports.close()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def local_address(self, family: int = socket.AF_INET, transport: str = "udp") -> Address:
        """The (host, port) bound for ``transport`` and ``family``."""
        return self._transports.local_address(transport, family)

    def sent_by(self, address: Address, transport: str = "udp") -> tuple[str, int]:
        """Our (host, port) as a Via's sent-by for requests to ``address``
        (the host in brackets for IPv6)."""
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        host, port = self.local_address(family, transport)
        if host in ("0.0.0.0", "::"):
            host = route_source(address)
        return (f"[{host}]" if ":" in host else host), port

    def via_for(self, address: Address, transport: str = "udp") -> Via:
        """A new Via (fresh branch) for a request sent to ``address``."""
        host, port = self.sent_by(address, transport)
        return new_via(self.ids, transport, host, port)

    def request_template(
        self,
        method: str,
        request_uri: Uri,
        address: Address,
        *,
        from_uri: Uri,
        to_uri: Uri,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        transport: str = "udp",
    ) -> RequestTemplate:
        """A :class:`~pua.sip.builder.RequestTemplate` for requests sent to
        ``address``: ``template.build(stack.ids)`` is what ``new_request``
        with ``via_for(address)`` and then ``headers`` and ``body`` gives,
        for a fraction of the work (for a request sent again and again)."""
        host, port = self.sent_by(address, transport)
        return RequestTemplate(
            method,
            request_uri,
            from_uri=from_uri,
            to_uri=to_uri,
            transport=transport,
            host=host,
            port=port,
            headers=headers,
            body=body,
        )

    # -- requests ----------------------------------------------------------
    async def request(self, request: Request, address: Address, transport: str = "udp") -> Response:
        """Send ``request`` to ``address`` and return its final response.
        Raises TransactionTimeout after timer F, TransportError when it
        cannot be sent."""
        loop = self._loop
        if loop is None or not self._started:
            loop = self._require_loop()  # raises
        tx = self.endpoint.send_request(request, address, transport, loop.time())
        future: asyncio.Future[Response] = loop.create_future()
        self._pending[tx] = future
        self._pump()
        try:
            return await future
        finally:
            self._pending.pop(tx, None)

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or not self._started:
            raise LocalProtocolError("the stack is not started")
        return self._loop

    # -- the pump -------------------------------------------------------------
    def _on_datagram(self, data: bytes, address: Address, transport: str) -> None:
        loop = self._loop
        if loop is None or not self._started:
            loop = self._require_loop()  # raises
        self.endpoint.receive_datagram(data, address, transport, loop.time())
        self._pump()

    def _on_message(self, message: Message, address: Address, transport: str) -> None:
        loop = self._require_loop()
        self.endpoint.receive_message(message, address, transport, loop.time())
        self._pump()

    def _on_send_error(self, address: Address, transport: str, exc: Exception) -> None:
        self.endpoint.fail_destination(address, transport, str(exc), self._require_loop().time())
        self._pump()

    def _clock(self) -> float:
        return self._require_loop().time()

    def _on_timer(self, now: float) -> None:
        self.endpoint.handle_timer(now)
        self._pump()

    def _pump(self) -> None:
        endpoint = self.endpoint
        send = self._transports.send
        while True:
            for datagram in endpoint.datagrams_to_send():
                send(datagram.data, datagram.address, datagram.transport)
            event = endpoint.next_event()
            if event is None:
                break
            if type(event) is ResponseReceived:  # the common case, first
                if event.response.status >= 200:
                    future = self._pending.get(event.transaction)
                    if future is not None and not future.done():
                        future.set_result(event.response)
            else:
                self._dispatch(event)
        self._timer.arm(self._require_loop(), endpoint.get_timer())

    def _dispatch(self, event: object) -> None:
        if isinstance(event, ResponseReceived):
            if not event.response.is_provisional:
                self._settle(event.transaction, result=event.response)
        elif isinstance(event, TransactionTimedOut):
            tx = event.transaction
            self._settle(
                tx,
                error=TransactionTimeout(
                    f"no final response to {tx.key[1]} from "
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


def _format_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
