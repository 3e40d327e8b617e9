"""The asyncio runtime over real UDP sockets, IPv4 and IPv6."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pua.errors import TransactionTimeout
from pua.runtime import Listen, SipStack
from pua.sip import Request, SipUri, TimerConfig, make_response, parse_message
from pua.sip.builder import new_request

ALICE = SipUri(host="example.com", user="alice")


class UdpPeer(asyncio.DatagramProtocol):
    """A real UDP peer on loopback that answers each request with ``status``
    (or stays silent when ``status`` is None) and keeps what it received."""

    def __init__(self, status: int | None = 200) -> None:
        self.status = status
        self.received: list[bytes] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.got_one = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self.received.append(data)
        self.got_one.set()
        message = parse_message(data)
        if self.status is not None and isinstance(message, Request):
            response = make_response(message, self.status, to_tag="peer")
            response.headers.add("SIP-ETag", "etag-1")
            response.headers.add("Expires", "60")
            assert self.transport is not None
            self.transport.sendto(bytes(response), addr)


async def start_peer(host: str, status: int | None = 200) -> tuple[UdpPeer, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, peer = await loop.create_datagram_endpoint(
        lambda: UdpPeer(status), local_addr=(host, 0), family=family
    )
    sockname = transport.get_extra_info("sockname")
    return peer, (str(sockname[0]), int(sockname[1]))


def publish_request(stack: SipStack, address: tuple[str, int]) -> Request:
    request = new_request("PUBLISH", ALICE, from_uri=ALICE, to_uri=ALICE,
                          via=stack.via_for(address), ids=stack.ids)
    request.headers.add("Event", "presence")
    request.headers.add("Expires", "60")
    return request


def ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
async def test_request_and_final_response(host: str) -> None:
    """A request sent over UDP returns its final response; the Via names the
    bound address (an IPv6 one in brackets)."""
    if host == "::1" and not ipv6_available():
        pytest.skip("no IPv6 loopback on this machine")
    peer, address = await start_peer(host)
    async with SipStack(listen=[Listen("udp", host, 0)]) as stack:
        response = await stack.request(publish_request(stack, address), address)
        bound_port = stack.local_address(socket.AF_INET6 if ":" in host else socket.AF_INET)[1]
    assert response.status == 200 and response.sip_etag == "etag-1"
    sent = parse_message(peer.received[0])
    expected_host = f"[{host}]" if ":" in host else host
    assert sent.top_via.host == expected_host
    assert sent.top_via.port == bound_port
    assert peer.transport is not None
    peer.transport.close()


async def test_timeout_is_raised_after_timer_f() -> None:
    """With a silent peer the request fails with TransactionTimeout after
    64*T1, having been retransmitted in between."""
    peer, address = await start_peer("127.0.0.1", status=None)
    async with SipStack(timers=TimerConfig(t1=0.01, t2=0.04)) as stack:
        with pytest.raises(TransactionTimeout, match=r"0\.64 s"):
            await stack.request(publish_request(stack, address), address)
        assert stack.endpoint.client_transactions == 0
    assert len(peer.received) >= 5
    assert len(set(peer.received)) == 1  # the same bytes each time
    assert peer.transport is not None
    peer.transport.close()


async def test_incoming_request_without_handler_gets_405() -> None:
    """A request nobody handles is answered 405, not left hanging."""
    peer, _ = await start_peer("127.0.0.1", status=None)
    async with SipStack() as stack:
        assert peer.transport is not None
        request = publish_request(stack, stack.local_address())
        request.method = "MESSAGE"
        request.headers.set("CSeq", "1 MESSAGE")
        peer.transport.sendto(bytes(request), stack.local_address())
        await asyncio.wait_for(peer.got_one.wait(), timeout=5)
    answer = parse_message(peer.received[0])
    assert answer.start_line() == "SIP/2.0 405 Method Not Allowed"
    peer.transport.close()


async def test_garbage_does_not_break_the_stack() -> None:
    """Garbage and a malformed request are dropped or answered 400, and the
    stack still completes a transaction afterwards."""
    peer, address = await start_peer("127.0.0.1")
    async with SipStack() as stack:
        assert peer.transport is not None
        peer.transport.sendto(b"\x00\xff garbage", stack.local_address())
        bad = publish_request(stack, stack.local_address())
        bad.headers.set("CSeq", "nonsense")
        peer.transport.sendto(bytes(bad), stack.local_address())
        await asyncio.wait_for(peer.got_one.wait(), timeout=5)
        assert parse_message(peer.received[0]).start_line().startswith("SIP/2.0 400 ")
        response = await stack.request(publish_request(stack, address), address)
        assert response.status == 200
        assert stack.endpoint.counters["dropped"] == 2
    peer.transport.close()


def test_listen_syntax() -> None:
    """Kamailio's listen syntax parses, IPv6 in brackets; bad forms are refused."""
    assert Listen.parse("udp:127.0.0.1:5060") == Listen("udp", "127.0.0.1", 5060)
    assert Listen.parse("udp:[::1]:5062") == Listen("udp", "::1", 5062)
    assert str(Listen("udp", "::1", 5062)) == "udp:[::1]:5062"
    assert Listen.parse("tcp:127.0.0.1:5060") == Listen("tcp", "127.0.0.1", 5060)
    for bad in ("127.0.0.1:5060", "udp:127.0.0.1", "udp:127.0.0.1:70000", "sctp:1.2.3.4:5",
                "udp:localhost:5060"):
        with pytest.raises(ValueError):
            Listen.parse(bad)


async def test_request_template_through_the_stack() -> None:
    """A request built from the stack's template carries our bound address
    in its Via and completes like one made by new_request."""
    peer, address = await start_peer("127.0.0.1")
    async with SipStack() as stack:
        template = stack.request_template(
            "PUBLISH", ALICE, address, from_uri=ALICE, to_uri=ALICE,
            headers=[("Event", "presence"), ("Expires", "60")],
        )
        responses = [await stack.request(template.build(stack.ids), address) for _ in range(3)]
        bound = stack.local_address()
    assert [r.status for r in responses] == [200, 200, 200]
    sent = [parse_message(data) for data in peer.received]
    assert len({m.top_via.branch for m in sent}) == 3
    assert (sent[0].top_via.host, sent[0].top_via.port) == bound
    assert sent[0].event is not None and sent[0].event.package == "presence"
    assert peer.transport is not None
    peer.transport.close()
