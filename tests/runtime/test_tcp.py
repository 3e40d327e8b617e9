"""SIP over TCP (RFC 3261 §18) on real loopback sockets, IPv4 and IPv6."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable

import pytest

from pua.errors import TransportError
from pua.runtime.tcp import TcpTransport
from pua.sip import Message, Request, Response, make_response

Address = tuple[str, int]
TIMEOUT = 5


def request(cseq: int = 1, body: bytes = b"hello", host: str = "127.0.0.1") -> Request:
    via_host = f"[{host}]" if ":" in host else host
    return Request(
        "MESSAGE",
        "sip:bob@example.com",
        [
            ("Via", f"SIP/2.0/TCP {via_host}:5060;branch=z9hG4bK-{cseq}"),
            ("From", "<sip:alice@example.com>;tag=a1"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "call-1@example.com"),
            ("CSeq", f"{cseq} MESSAGE"),
            ("Content-Type", "text/plain"),
        ],
        body,
    )


class Inbox:
    """Collects what a TcpTransport delivers: messages and errors, in queues."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[tuple[Message, Address]] = asyncio.Queue()
        self.errors: asyncio.Queue[tuple[Address, Exception]] = asyncio.Queue()

    def on_message(self, message: Message, peer: Address) -> None:
        self.messages.put_nowait((message, peer))

    def on_error(self, peer: Address, error: Exception) -> None:
        self.errors.put_nowait((peer, error))

    async def next(self) -> tuple[Message, Address]:
        return await asyncio.wait_for(self.messages.get(), timeout=TIMEOUT)


@pytest.fixture
async def make() -> AsyncIterator[Callable[..., tuple[TcpTransport, Inbox]]]:
    """A factory of TcpTransports, all closed at the end of the test."""
    made: list[TcpTransport] = []

    def factory(**kwargs: float) -> tuple[TcpTransport, Inbox]:
        inbox = Inbox()
        transport = TcpTransport(inbox.on_message, inbox.on_error, **kwargs)
        made.append(transport)
        return transport, inbox

    yield factory
    for transport in made:
        await transport.close()


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def open_sockets() -> int | None:
    """How many sockets this process has open (Linux), else None."""
    fd_dir = "/proc/self/fd"
    if not os.path.isdir(fd_dir):
        return None
    count = 0
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):  # the listing's own fd is gone
            count += os.readlink(os.path.join(fd_dir, fd)).startswith("socket:")
    return count


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_request_and_reply_share_one_connection(
    make: Callable[..., tuple[TcpTransport, Inbox]], host: str
) -> None:
    """A request and its response travel both ways over the one connection
    the request opened (§18.2.2), on IPv4 and IPv6."""
    if host == "::1" and not ipv6_available():
        pytest.skip("cannot bind ::1 on this machine")
    alice, alice_inbox = make()
    bob, bob_inbox = make()
    alice_listen = await alice.listen(host, 0)
    bob_listen = await bob.listen(host, 0)
    assert bob_listen[0] == host

    sent = request(host=host)
    alice.send(bytes(sent), bob_listen)
    received, peer = await bob_inbox.next()
    assert isinstance(received, Request)
    assert bytes(received) == bytes(sent)
    assert peer[0] == host and peer != alice_listen  # alice's ephemeral port

    bob.send(bytes(make_response(received, 200, to_tag="b1")), peer)
    answer, answered_by = await alice_inbox.next()
    assert isinstance(answer, Response) and answer.status == 200
    assert answered_by == bob_listen
    assert alice.connections() == [bob_listen]
    assert bob.connections() == [peer]


async def test_single_byte_writes_arrive_whole(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """A message written one byte at a time is reassembled into one message."""
    server, inbox = make()
    address = await server.listen("127.0.0.1", 0)
    _, writer = await asyncio.open_connection(*address)
    data = bytes(request(body=b"split into bytes"))
    for i in range(len(data)):
        writer.write(data[i : i + 1])
        await writer.drain()
    received, _ = await inbox.next()
    assert bytes(received) == data
    assert inbox.messages.empty()
    writer.close()
    await writer.wait_closed()


async def test_two_messages_in_one_write_arrive_as_two(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """Two messages in one segment are delivered separately, in order."""
    server, inbox = make()
    address = await server.listen("127.0.0.1", 0)
    _, writer = await asyncio.open_connection(*address)
    writer.write(bytes(request(1, b"first")) + bytes(request(2, b"second")))
    first, _ = await inbox.next()
    second, _ = await inbox.next()
    assert (first.body, second.body) == (b"first", b"second")
    writer.close()
    await writer.wait_closed()


async def test_keepalive_ping_gets_a_crlf(make: Callable[..., tuple[TcpTransport, Inbox]]) -> None:
    """A CRLFCRLF ping is answered with one CRLF (RFC 5626 §3.5.1) and the
    connection keeps carrying messages."""
    server, inbox = make()
    address = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(reader.readexactly(2), timeout=TIMEOUT) == b"\r\n"
    writer.write(bytes(request()))
    received, _ = await inbox.next()
    assert received.body == b"hello"
    writer.close()
    await writer.wait_closed()


async def test_garbage_closes_only_that_connection(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """Unframeable bytes close their connection; the listener still accepts
    and serves new ones."""
    server, inbox = make()
    address = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*address)
    writer.write(b"GARBAGE sip:x SIP/2.0\r\nX: y\r\n\r\n")  # no Content-Length
    assert await asyncio.wait_for(reader.read(), timeout=TIMEOUT) == b""
    writer.close()
    await writer.wait_closed()

    _, writer = await asyncio.open_connection(*address)
    writer.write(bytes(request()))
    received, _ = await inbox.next()
    assert received.body == b"hello"
    assert inbox.messages.empty()
    writer.close()
    await writer.wait_closed()


async def test_closed_port_reports_one_transport_error(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """Sending to a port nobody listens on calls on_error with TransportError,
    once for everything queued behind the failed connect."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        address = probe.getsockname()
    client, inbox = make()
    for cseq in range(3):
        client.send(bytes(request(cseq)), address)
    peer, error = await asyncio.wait_for(inbox.errors.get(), timeout=TIMEOUT)
    assert peer == address
    assert isinstance(error, TransportError)
    await client.close()
    assert inbox.errors.empty()
    assert client.connections() == []


async def test_order_is_kept_while_connecting(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """Many messages sent before the connection is up arrive all, in order,
    over a single connection."""
    server, inbox = make()
    client, _ = make()
    address = await server.listen("127.0.0.1", 0)
    for cseq in range(1, 201):
        client.send(bytes(request(cseq)), address)
    cseqs = [(await inbox.next())[0].cseq.seq for _ in range(200)]
    assert cseqs == list(range(1, 201))
    assert client.connections() == [address]
    assert len(server.connections()) == 1


async def test_on_message_exception_does_not_stop_reading() -> None:
    """An exception raised by on_message is logged and the next message on
    the same connection is still delivered."""
    seen: list[Message] = []
    got_two = asyncio.Event()

    def on_message(message: Message, peer: Address) -> None:
        seen.append(message)
        if len(seen) == 2:
            got_two.set()
        raise RuntimeError("handler bug")

    server = TcpTransport(on_message)
    address = await server.listen("127.0.0.1", 0)
    _, writer = await asyncio.open_connection(*address)
    writer.write(bytes(request(1)))
    writer.write(bytes(request(2)))
    await asyncio.wait_for(got_two.wait(), timeout=TIMEOUT)
    writer.close()
    await writer.wait_closed()
    await server.close()


async def test_idle_connection_is_closed(make: Callable[..., tuple[TcpTransport, Inbox]]) -> None:
    """A connection without traffic for idle_timeout is closed by us."""
    server, _ = make(idle_timeout=0.05)
    address = await server.listen("127.0.0.1", 0)
    reader, writer = await asyncio.open_connection(*address)
    assert await asyncio.wait_for(reader.read(), timeout=TIMEOUT) == b""
    assert server.connections() == []
    writer.close()
    await writer.wait_closed()


async def test_connection_closed_by_peer_is_replaced(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """When the peer closes the connection it is forgotten, and the next
    send opens a new one."""
    accepted: asyncio.Queue[asyncio.StreamReader] = asyncio.Queue()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"hello")
        accepted.put_nowait(reader)
        writer.close()

    peer = await asyncio.start_server(serve, "127.0.0.1", 0)
    address = peer.sockets[0].getsockname()[:2]
    client, _ = make()
    client.send(bytes(request(1)), address)
    await asyncio.wait_for(accepted.get(), timeout=TIMEOUT)
    # Each connection's `closed` future is settled once it is forgotten.
    [connection] = client._all
    await asyncio.wait_for(asyncio.shield(connection.closed), timeout=TIMEOUT)
    assert client.connections() == []
    client.send(bytes(request(2)), address)
    await asyncio.wait_for(accepted.get(), timeout=TIMEOUT)
    peer.close()
    await peer.wait_closed()


async def test_close_leaves_nothing_open() -> None:
    """close() shuts listeners and connections both ways and waits for them:
    no extra sockets or tasks remain and the port refuses."""
    sockets_before = open_sockets()
    tasks_before = asyncio.all_tasks()
    a_inbox, b_inbox = Inbox(), Inbox()
    a = TcpTransport(a_inbox.on_message, a_inbox.on_error)
    b = TcpTransport(b_inbox.on_message, b_inbox.on_error)
    await a.listen("127.0.0.1", 0)
    b_address = await b.listen("127.0.0.1", 0)
    a.send(bytes(request()), b_address)
    received, peer = await b_inbox.next()
    assert isinstance(received, Request)
    b.send(bytes(make_response(received, 200)), peer)
    await a_inbox.next()

    await a.close()
    await b.close()
    assert a.connections() == [] and b.connections() == []
    assert asyncio.all_tasks() == tasks_before
    if sockets_before is not None:
        assert open_sockets() == sockets_before
    with pytest.raises(OSError):
        await asyncio.open_connection(*b_address)
    assert a_inbox.errors.empty() and b_inbox.errors.empty()


@pytest.mark.skipif(sys.platform != "linux", reason="relies on Linux dropping SYNs to a full queue")
async def test_connect_timeout_reports_transport_error(
    make: Callable[..., tuple[TcpTransport, Inbox]],
) -> None:
    """A connect that hangs (the peer's accept queue is full, so Linux drops
    our SYN) is given up after connect_timeout and reported to on_error."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        fillers = []
        for _ in range(3):  # never accepted: they fill the accept queue
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(address)
            fillers.append(filler)
        try:
            client, inbox = make(connect_timeout=0.2)
            client.send(bytes(request()), address)
            peer, error = await asyncio.wait_for(inbox.errors.get(), timeout=TIMEOUT)
            assert peer == address
            assert isinstance(error, TransportError)
            assert "no connection within 0.2 s" in str(error)
            assert client.connections() == []
        finally:
            for filler in fillers:
                filler.close()
