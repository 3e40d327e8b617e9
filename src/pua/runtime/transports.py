"""Sockets for a sans-IO SIP core: UDP and TCP, IPv4 and IPv6, and names.

:class:`Transports` binds the listening addresses, hands every datagram
and every message cut from a TCP stream to its owner, and sends what the
core produced.  A destination may be a host name: it is resolved once
(``getaddrinfo``) and cached for a while.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass

from pua.errors import AddressInUse, TransportError
from pua.sip.message import Message
from pua.sip.transaction import Address

from .tcp import TcpTransport

__all__ = ["Listen", "Transports", "address_in_use"]

log = logging.getLogger("pua.transport")

# A burst of answers to a few hundred requests in flight overflows the
# kernel's default UDP receive buffer (about 200 KiB, counted with per-packet
# overhead), and every dropped answer costs a retransmission after T1.  The
# kernel caps what we ask at net.core.rmem_max / wmem_max.
SOCKET_BUFFER_BYTES = 4 << 20
# How long a resolved host name is reused.
DNS_CACHE_SECONDS = 60.0

TRANSPORTS = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class Listen:
    """A listening address in Kamailio's syntax: ``udp:127.0.0.1:5060``,
    ``tcp:[::1]:5060``."""

    transport: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Listen:
        """Parse ``PROTO:HOST:PORT`` (IPv6 hosts in brackets)."""
        proto, sep, rest = text.partition(":")
        if not sep or proto.lower() not in TRANSPORTS:
            raise ValueError(f"listen {text!r}: expected udp, tcp or tls:HOST:PORT")
        if rest.startswith("["):
            host, _, port_text = rest[1:].partition("]")
            port_text = port_text.removeprefix(":")
        else:
            host, _, port_text = rest.rpartition(":")
        if not host or not port_text.isdigit() or int(port_text) > 65535:
            raise ValueError(f"listen {text!r}: expected {proto}:HOST:PORT")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"listen {text!r}: HOST must be an IP address") from None
        return cls(proto.lower(), host, int(port_text))

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{host}:{self.port}"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, owner: Transports) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._owner.on_datagram(data, (str(addr[0]), int(addr[1])), "udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable...) are not tied to a transaction on
        # a shared socket; timer F reports the failure.
        log.debug("udp error: %s", exc)


DatagramHandler = Callable[[bytes, Address, str], None]
MessageHandler = Callable[[Message, Address, str], None]
ErrorHandler = Callable[[Address, str, Exception], None]


class Transports:
    """The sockets of one SIP agent."""

    def __init__(
        self,
        listen: list[Listen],
        on_datagram: DatagramHandler,
        on_message: MessageHandler,
        on_error: ErrorHandler | None = None,
        *,
        tls_server: ssl.SSLContext | None = None,
        tls_client: ssl.SSLContext | None = None,
    ) -> None:
        if not listen:
            raise ValueError("at least one listen address is needed")
        self.listen = listen
        self.on_datagram = on_datagram
        self.on_message = on_message
        self.on_error = on_error
        self._udp: dict[int, asyncio.DatagramTransport] = {}
        self._bound: dict[tuple[str, int], Address] = {}
        self._tcp: TcpTransport | None = None
        self._tls: TcpTransport | None = None
        self._tls_server = tls_server
        self._tls_client = tls_client
        self._dns: dict[tuple[str, int], tuple[float, str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind every listening address; a failure names the address."""
        loop = asyncio.get_running_loop()
        for listen in self.listen:
            family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
            try:
                if listen.transport == "udp":
                    if family in self._udp:
                        raise ValueError(f"only one UDP listen address per family: {listen}")
                    transport, _ = await loop.create_datagram_endpoint(
                        lambda: _UdpProtocol(self),
                        local_addr=(listen.host, listen.port),
                        family=family,
                    )
                    sock = transport.get_extra_info("socket")
                    if sock is not None:
                        _grow_buffers(sock)
                    name = transport.get_extra_info("sockname")
                    self._udp[family] = transport
                    self._bound[("udp", family)] = (str(name[0]), int(name[1]))
                else:
                    kind = listen.transport
                    if (kind, family) in self._bound:
                        raise ValueError(f"only one {kind} listen address per family: {listen}")
                    stream = self._stream(kind)
                    if stream is None:
                        raise ValueError(f"{listen}: TLS needs a certificate and a private key")
                    self._bound[(kind, family)] = await stream.listen(listen.host, listen.port)
            except OSError as exc:
                await self.close()
                if address_in_use(exc):
                    raise AddressInUse(listen.transport, listen.host, listen.port) from None
                raise TransportError(f"cannot listen on {listen}: {exc.strerror or exc}") from None

    async def close(self) -> None:
        """Close every socket."""
        for transport in self._udp.values():
            transport.close()
        self._udp.clear()
        for stream in (self._tcp, self._tls):
            if stream is not None:
                await stream.close()
        self._tcp = self._tls = None
        self._bound.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def bound(self) -> dict[tuple[str, int], Address]:
        """(transport, family) -> bound address."""
        return dict(self._bound)

    def local_address(self, transport: str, family: int = socket.AF_INET) -> Address:
        """The address bound for ``transport`` and ``family``."""
        try:
            return self._bound[(transport, family)]
        except KeyError:
            raise TransportError(f"not listening on {transport} for that address family") from None

    def send(self, data: bytes, address: Address, transport: str) -> None:
        """Send ``data``; a host name is resolved first (in the background)."""
        host, port = address
        if _is_ip(host):
            self._send_now(data, (host, port), transport)
            return
        cached = self._dns.get((host, port))
        if cached is not None and cached[0] > time.monotonic():
            self._send_now(data, (cached[1], port), transport, name=host)
            return
        task = asyncio.ensure_future(self._resolve_and_send(data, address, transport))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve_and_send(self, data: bytes, address: Address, transport: str) -> None:
        host, port = address
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await loop.getaddrinfo(host, port, type=kind)
        except OSError as exc:
            self._error(address, transport, TransportError(f"cannot resolve {host}: {exc}"))
            return
        families = {f for (t, f) in self._bound if t == transport}
        for family, _, _, _, sockaddr in infos:
            if family in families:
                ip = str(sockaddr[0])
                self._dns[(host, port)] = (time.monotonic() + DNS_CACHE_SECONDS, ip)
                self._send_now(data, (ip, port), transport, name=host)
                return
        self._error(address, transport, TransportError(f"no usable address for {host}"))

    def _send_now(
        self, data: bytes, address: Address, transport: str, name: str | None = None
    ) -> None:
        if transport == "udp":
            udp = self._udp.get(socket.AF_INET6 if ":" in address[0] else socket.AF_INET)
            if udp is None:
                error = TransportError("no UDP socket for that address family")
                self._error(address, transport, error)
                return
            udp.sendto(data, address)
        elif transport in ("tcp", "tls") and (stream := self._stream(transport)) is not None:
            # TLS checks the server's certificate for the name we resolved.
            stream.send(data, address, server_hostname=name)
        else:
            self._error(address, transport, TransportError(f"transport {transport} is not enabled"))

    def _stream(self, transport: str) -> TcpTransport | None:
        """The TCP or TLS transport, made on first use (TLS only with a
        server or client context)."""
        if transport == "tcp":
            if self._tcp is None:
                self._tcp = TcpTransport(
                    lambda m, a: self.on_message(m, a, "tcp"),
                    lambda a, e: self._error(a, "tcp", e),
                )
            return self._tcp
        if self._tls is None and (self._tls_server or self._tls_client):
            self._tls = TcpTransport(
                lambda m, a: self.on_message(m, a, "tls"),
                lambda a, e: self._error(a, "tls", e),
                server_ssl=self._tls_server,
                client_ssl=self._tls_client or ssl.create_default_context(),
            )
        return self._tls

    def _error(self, address: Address, transport: str, exc: Exception) -> None:
        if self.on_error is not None:
            self.on_error(address, transport, exc)
            # A stream reports the address it connected to; requests sent
            # to a host name wait on that name.
            for (host, port), (_, ip) in list(self._dns.items()):
                if (ip, port) == address:
                    self.on_error((host, port), transport, exc)
        else:
            log.warning("cannot send to %s over %s: %s", address, transport, exc)


def address_in_use(exc: BaseException) -> bool:
    """True when a failed bind says EADDRINUSE.  uvloop raises a bare
    OSError whose cause carries the errno, so the chain is followed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _grow_buffers(sock: socket.socket) -> None:
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, SOCKET_BUFFER_BYTES)


def route_source(address: Address) -> str:
    """The local IP the kernel would use to reach ``address`` (no packet is
    sent: connecting a UDP socket only picks a route)."""
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(address)
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"
