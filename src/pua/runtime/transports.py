"""Sockets for a sans-IO SIP core: UDP and TCP, IPv4 and IPv6, and names.

:class:`Transports` binds the listening addresses, hands every datagram
and every message cut from a TCP stream to its owner, and sends what the
core produced.  A destination may be a host name: it is located by RFC 3263
(NAPTR, SRV, A/AAAA; :mod:`pua.runtime.resolver`) and the request goes to
the first target.  When a target fails at the transport (ICMP port
unreachable for UDP, a refused or broken connection, a TLS failure) the
same request goes to the next target at once, and the failed one is tried
last for a while; the core hears of a failure only when every target failed.
Retransmissions stay with the target chosen (RFC 3263 §4.3).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import logging
import os
import random
import re
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from pua.errors import AddressInUse, RemoteProtocolError, TransportError
from pua.sip.locate import Hop, Target, hop_of, is_ip
from pua.sip.message import Message, Response
from pua.sip.transaction import Address

from .resolver import LocateError, Locator, Resolver
from .tcp import TcpTransport

__all__ = ["Listen", "Transports", "address_in_use"]

log = logging.getLogger("pua.transport")

# A burst of answers to a few hundred requests in flight overflows the
# kernel's default UDP receive buffer (about 200 KiB, counted with per-packet
# overhead), and every dropped answer costs a retransmission after T1.  The
# kernel caps what we ask at net.core.rmem_max / wmem_max.
SOCKET_BUFFER_BYTES = 4 << 20
# How long a request sent to a host name is remembered, so that the core's
# retransmissions stay with its target and a transport error finds it: the
# longest a non-INVITE transaction lives (64·T1 at T1 = 2 s) plus T4.
FLIGHT_SECONDS = 140.0
# Linux: ICMP errors reach an unconnected UDP socket only with IP_RECVERR,
# and the error queue names the destination that failed (ip(7)).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
MSG_ERRQUEUE = getattr(socket, "MSG_ERRQUEUE", 0x2000)
# The top Via as the core writes it: "Via: SIP/2.0/UDP host:port;branch=...".
_TOP_VIA = re.compile(
    rb"^(Via|v)([ \t]*:[ \t]*SIP/2\.0/)([A-Za-z]+)([ \t]+)([^;\r\n]+)", re.M | re.I
)
_BRANCH = re.compile(rb"^(?:Via|v)[ \t]*:[^\r\n]*?;[ \t]*branch=([^;,\s]+)", re.M | re.I)

TRANSPORTS = ("udp", "tcp", "tls")
# Hosts remembered as IP address or name (a few peers in practice; the
# cache starts afresh past this many).
_LITERAL_CACHE = 1024


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
        self._transport: asyncio.BaseTransport | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        owner = self._owner
        if owner.tracking and data.startswith(b"SIP/2.0 "):
            owner.answered(data)
        # (host, port) of an IPv4 peer as is; IPv6 adds flow info and scope.
        address = addr if len(addr) == 2 else addr[:2]
        owner.on_datagram(data, address, "udp")  # type: ignore[arg-type]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def error_received(self, exc: Exception) -> None:
        # With IP_RECVERR the error queue says which destination failed;
        # draining it also stops the socket from polling as readable.
        for address in _drain_errors(self._transport):
            self._owner.on_udp_error(address, exc)


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
        locator: Locator | None = None,
        next_hop: Callable[[Address, str], str | None] | None = None,
        flight_seconds: float = FLIGHT_SECONDS,
    ) -> None:
        """``locator`` finds the targets of host names (default: the
        system's DNS configuration, made at the first name); ``next_hop``
        gives the URI a host name came from (the core's
        ``PresenceEngine.next_hop``), so that RFC 3263 sees the port and
        transport as written."""
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
        self._locator = locator
        self._next_hop = next_hop
        self._flight_seconds = flight_seconds
        self._flights: OrderedDict[bytes, _Flight] = OrderedDict()
        self._at: dict[tuple[Address, str], set[bytes]] = {}
        self._last: dict[tuple[Address, str], Target] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        # host -> whether it is an IP address: the check (ipaddress) costs
        # more than the sendto it precedes.
        self._literal: dict[str, bool] = {}

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
                        _report_icmp(sock, family)
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

    @property
    def locator(self) -> Locator:
        """The RFC 3263 locator (made on first use from the system's DNS
        configuration when none was given)."""
        if self._locator is None:
            self._locator = Locator(Resolver(), random.random)
        return self._locator

    def send(self, data: bytes, address: Address, transport: str) -> None:
        """Send ``data``; a host name is located first (in the background),
        and a request's retransmission goes where the request went."""
        host = address[0]
        literal = self._literal.get(host)
        if literal is None:
            literal = is_ip(host)
            if len(self._literal) >= _LITERAL_CACHE:
                self._literal.clear()
            self._literal[host] = literal
        if literal:
            self._send_now(data, address, transport)
            return
        match = _BRANCH.search(data)
        branch = match.group(1) if match else None
        flight = self._flights.get(branch) if branch is not None else None
        if flight is not None:
            if flight.index < len(flight.targets):
                target = flight.targets[flight.index]
                if target.transport == "udp":  # a reliable transport retransmits itself
                    self._send_now(self._bytes_for(flight, target), _addr(target), "udp")
            return
        self._purge()
        flight = _Flight(data, address, transport.lower(), time.monotonic())
        if branch is not None:
            self._flights[branch] = flight
            flight.branch = branch
        task = asyncio.ensure_future(self._locate_and_send(flight))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def usable(self) -> list[str]:
        """The transports requests can go over: those we listen on (the
        Via and Contact need our address on them)."""
        kinds = {kind for kind, _ in self._bound}
        return [t for t in ("udp", "tcp", "tls") if t in kinds]

    def target_of(self, address: Address, transport: str) -> Target | None:
        """Where the last request to the host name in ``address`` went."""
        return self._last.get((address, transport.lower()))

    def avoid(self, target: Target) -> None:
        """Try ``target`` after the others for a while (it timed out or
        answered 503: RFC 3263 §4.3)."""
        self.locator.avoid(target)

    async def _locate_and_send(self, flight: _Flight) -> None:
        host, port = flight.address
        text = self._next_hop(flight.address, flight.transport) if self._next_hop else None
        try:
            hop = hop_of(text) if text else Hop(host, port, flight.transport, False)
            targets = await self.locator.locate(hop, self.usable())
        except (LocateError, RemoteProtocolError) as exc:
            self._give_up(flight, TransportError(str(exc)))
            return
        except TransportError as exc:
            self._give_up(flight, exc)
            return
        flight.targets = targets
        self._send_to(flight)

    def _send_to(self, flight: _Flight) -> None:
        target = flight.targets[flight.index]
        key = (_addr(target), target.transport)
        if flight.branch is not None and not flight.answered:
            self._at.setdefault(key, set()).add(flight.branch)
        self._last[(flight.address, flight.transport)] = target
        log.debug("%s:%s -> %s", flight.address[0], flight.address[1], target)
        self._send_now(
            self._bytes_for(flight, target), _addr(target), target.transport, flight.address[0]
        )

    def _bytes_for(self, flight: _Flight, target: Target) -> bytes:
        """The request's bytes for ``target``: as the core made them, or
        with the top Via naming the target's transport and our port on it."""
        if target.transport == flight.transport:
            return flight.data
        family = socket.AF_INET6 if ":" in target.host else socket.AF_INET
        local = self._bound.get((target.transport, family))
        port = b"" if local is None else b":%d" % local[1]

        def swap(match: re.Match[bytes]) -> bytes:
            host = match.group(5).strip()
            if host.startswith(b"["):
                host = host.partition(b"]")[0] + b"]"
            elif b":" in host:
                host = host.partition(b":")[0]
            proto = target.transport.upper().encode()
            return match.group(1) + match.group(2) + proto + match.group(4) + host + port

        return _TOP_VIA.sub(swap, flight.data, count=1)

    def _next_target(self, flight: _Flight, error: Exception) -> None:
        """The flight's target failed: on to the next, or give up."""
        target = flight.targets[flight.index]
        flight.errors.append(f"{_show(target)}: {error}")
        flight.index += 1
        if flight.index < len(flight.targets):
            log.info(
                "%s failed (%s); trying %s",
                _show(target),
                error,
                _show(flight.targets[flight.index]),
            )
            self._send_to(flight)
            return
        host = flight.address[0]
        self._give_up(
            flight, TransportError(f"every server of {host} failed: {'; '.join(flight.errors)}")
        )

    def _give_up(self, flight: _Flight, error: TransportError) -> None:
        if flight.branch is not None:
            self._flights.pop(flight.branch, None)
        if self.on_error is not None:
            self.on_error(flight.address, flight.transport, error)
        else:
            log.warning("cannot send to %s: %s", flight.address[0], error)

    def _purge(self) -> None:
        """Forget requests older than any transaction."""
        limit = time.monotonic() - self._flight_seconds
        while self._flights:
            branch, flight = next(iter(self._flights.items()))
            if flight.started > limit:
                break
            self._flights.popitem(last=False)
            if flight.index < len(flight.targets):
                target = flight.targets[flight.index]
                branches = self._at.get((_addr(target), target.transport))
                if branches is not None:
                    branches.discard(branch)
                    if not branches:
                        del self._at[(_addr(target), target.transport)]

    @property
    def tracking(self) -> bool:
        """True while requests sent to host names are remembered."""
        return bool(self._flights)

    def answered(self, data: bytes) -> None:
        """A response came in: its request stays with the server that
        answered (RFC 3263 §4.3), a later error there does not move it."""
        match = _BRANCH.search(data)
        if match is not None:
            self._settle(match.group(1))

    def _message(self, message: Message, address: Address, transport: str) -> None:
        if self._flights and isinstance(message, Response):
            branch = message.top_via.branch
            if branch:
                self._settle(branch.encode())
        self.on_message(message, address, transport)

    def _settle(self, branch: bytes) -> None:
        flight = self._flights.get(branch)
        if flight is None or flight.answered:
            return
        flight.answered = True
        if flight.index < len(flight.targets):
            target = flight.targets[flight.index]
            key = (_addr(target), target.transport)
            branches = self._at.get(key)
            if branches is not None:
                branches.discard(branch)
                if not branches:
                    del self._at[key]

    def on_udp_error(self, address: Address, exc: Exception) -> None:
        """An ICMP error for a datagram we sent to ``address``."""
        self._error(address, "udp", exc)

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
            # TLS checks the server's certificate for the name the request
            # was sent to (RFC 5922 §7.2), not the address it was located at.
            stream.send(data, address, server_hostname=name)
        else:
            self._error(address, transport, TransportError(f"transport {transport} is not enabled"))

    def _stream(self, transport: str) -> TcpTransport | None:
        """The TCP or TLS transport, made on first use (TLS only with a
        server or client context)."""
        if transport == "tcp":
            if self._tcp is None:
                self._tcp = TcpTransport(
                    lambda m, a: self._message(m, a, "tcp"),
                    lambda a, e: self._error(a, "tcp", e),
                )
            return self._tcp
        if self._tls is None and (self._tls_server or self._tls_client):
            self._tls = TcpTransport(
                lambda m, a: self._message(m, a, "tls"),
                lambda a, e: self._error(a, "tls", e),
                server_ssl=self._tls_server,
                client_ssl=self._tls_client or ssl.create_default_context(),
            )
        return self._tls

    def _error(self, address: Address, transport: str, exc: Exception) -> None:
        branches = self._at.pop((address, transport), None)
        if branches:
            # Requests sent to a located target: on to their next targets.
            self.locator.avoid(Target(address[0], address[1], transport))
            for branch in branches:
                flight = self._flights.get(branch)
                if (
                    flight is not None
                    and not flight.answered
                    and flight.index < len(flight.targets)
                ):
                    self._next_target(flight, exc)
            return
        if self.on_error is not None:
            self.on_error(address, transport, exc)
        else:
            log.warning("cannot send to %s over %s: %s", address, transport, exc)


@dataclass(slots=True)
class _Flight:
    """A request sent to a host name: its bytes as the core made them, the
    core's address and transport, the targets and the one in use."""

    data: bytes
    address: Address
    transport: str
    started: float
    branch: bytes | None = None
    targets: list[Target] = field(default_factory=list)
    index: int = 0
    errors: list[str] = field(default_factory=list)
    answered: bool = False  # a response came: no failover any more


def _addr(target: Target) -> Address:
    return (target.host, target.port)


def _show(target: Target) -> str:
    host = f"[{target.host}]" if ":" in target.host else target.host
    return f"{target.transport}:{host}:{target.port}"


def _report_icmp(sock: socket.socket | object, family: int) -> None:
    """Ask the kernel for ICMP errors on an unconnected UDP socket (Linux)."""
    level, option = (
        (socket.IPPROTO_IPV6, IPV6_RECVERR)
        if family == socket.AF_INET6
        else (socket.IPPROTO_IP, IP_RECVERR)
    )
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is not None:
        with contextlib.suppress(OSError):
            setsockopt(level, option, 1)


def _drain_errors(transport: asyncio.BaseTransport | None) -> list[Address]:
    """The destinations named by the socket's error queue, emptied."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return []
    out: list[Address] = []
    # A socket object of our own on the same file (the loop's may be a
    # stand-in without recvmsg).
    with socket.socket(fileno=os.dup(sock.fileno())) as own:
        own.setblocking(False)
        for _ in range(64):
            try:
                _, _, _, address = own.recvmsg(1, 512, MSG_ERRQUEUE)
            except OSError:
                break
            if address:
                out.append((str(address[0]), int(address[1])))
    return out


def address_in_use(exc: BaseException) -> bool:
    """True when a failed bind says EADDRINUSE.  uvloop raises a bare
    OSError whose cause carries the errno, so the chain is followed."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno == errno.EADDRINUSE:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


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
