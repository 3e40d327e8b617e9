"""Failover between the targets RFC 3263 gives (§4.3), on real sockets with
a real DNS server (dnsmasq), Kamailio and SIPp."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

import pytest

from pua.core import EngineConfig, EngineEvent, PublicationSucceeded, PublishInfo
from pua.errors import PublishError
from pua.runtime import Listen, PresenceRuntime
from pua.sip import Request, TimerConfig, make_response, parse_message
from tests.peers import find_free_port
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.kamailio import KamailioPresence
from tests.peers.sipp import SippUAS

ALICE = "sip:alice@example.test"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)
# T1 of 2 s: timer F is 128 s, far beyond every wait below; an outcome that
# comes cannot have waited for a transaction to time out.
SLOW = TimerConfig(t1=2.0, t2=4.0)
GUARD = 60.0

Dns = Callable[[list[str]], Dnsmasq]


def runtime(dns: Dnsmasq, proxy: str | None = None) -> PresenceRuntime:
    return PresenceRuntime(
        EngineConfig(outbound_proxy=proxy, timers=SLOW),
        listen=[Listen("udp", "127.0.0.1", 0), Listen("tcp", "127.0.0.1", 0)],
        dns_servers=[dns.server],
    )


async def test_a_refused_tcp_target_passes_the_request_on_at_once(
    kamailio: KamailioPresence, dnsmasq: Dns
) -> None:
    """An outbound proxy given by name with transport=tcp: its first SRV
    target refuses the connection, the same PUBLISH goes to the second
    (Kamailio over TCP) and succeeds."""
    closed = find_free_port(udp=False)
    dns = dnsmasq([
        f"srv-host=_sip._tcp.proxy.test,dead.proxy.test,{closed},10,0",
        f"srv-host=_sip._tcp.proxy.test,live.proxy.test,{kamailio.port},20,0",
        "host-record=dead.proxy.test,127.0.0.1",
        "host-record=live.proxy.test,127.0.0.1",
    ])
    async with runtime(dns, "sip:proxy.test;transport=tcp") as rt:
        async with asyncio.timeout(GUARD):
            event = await rt.publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=600))
    assert isinstance(event, PublicationSucceeded)
    rows = kamailio.presentity_rows(username="alice", domain="example.test")
    assert [r["etag"] for r in rows] == [event.etag]
    assert f"REQ PUBLISH {ALICE} from 127.0.0.1:" in kamailio.log_text()


async def test_every_target_failing_is_one_503_naming_them(dnsmasq: Dns) -> None:
    """Two dead UDP targets: the engine hears of a failure once both
    failed, as 503 with both targets in the reason."""
    dead1, dead2 = find_free_port(tcp=False), find_free_port(tcp=False)
    dns = dnsmasq([
        f"srv-host=_sip._udp.example.test,a.example.test,{dead1},10,0",
        f"srv-host=_sip._udp.example.test,b.example.test,{dead2},20,0",
        "host-record=a.example.test,127.0.0.1",
        "host-record=b.example.test,127.0.0.1",
    ])
    async with runtime(dns) as rt:
        with pytest.raises(PublishError) as caught:
            async with asyncio.timeout(GUARD):
                await rt.publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=600))
    error = caught.value
    assert error.status == 503 and error.retrying
    assert f"127.0.0.1:{dead1}" in str(error.reason) + str(error), error
    assert f"127.0.0.1:{dead2}" in str(error.reason) + str(error), error


async def test_a_503_sends_the_next_try_to_the_next_target(
    kamailio: KamailioPresence, dnsmasq: Dns, sipp_uas: Callable[[str], SippUAS]
) -> None:
    """The preferred target answers 503 (Retry-After 5): the engine's retry
    goes to the next target, Kamailio, which takes the publication."""
    uas = sipp_uas("publish_503")
    dns = dnsmasq([
        f"srv-host=_sip._udp.example.test,busy.example.test,{uas.port},10,0",
        f"srv-host=_sip._udp.example.test,live.example.test,{kamailio.port},20,0",
        "host-record=busy.example.test,127.0.0.1",
        "host-record=live.example.test,127.0.0.1",
    ])
    async with runtime(dns) as rt:
        succeeded: asyncio.Future[PublicationSucceeded] = asyncio.get_running_loop().create_future()

        def watch(event: EngineEvent) -> None:
            if isinstance(event, PublicationSucceeded) and not succeeded.done():
                succeeded.set_result(event)

        rt.add_listener(watch)
        with pytest.raises(PublishError) as caught:
            async with asyncio.timeout(GUARD):
                await rt.publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=600))
        assert caught.value.status == 503 and caught.value.retrying
        async with asyncio.timeout(GUARD):
            event = await succeeded
    rows = kamailio.presentity_rows(username="alice", domain="example.test")
    assert [r["etag"] for r in rows] == [event.etag]


async def test_a_target_over_another_transport_gets_its_own_via(dnsmasq: Dns) -> None:
    """The engine builds the PUBLISH for UDP (the URI names no transport);
    NAPTR says TCP: the request arrives over TCP with a TCP Via naming our
    TCP port, the branch unchanged."""
    received: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await reader.readuntil(b"\r\n\r\n")
        if not received.done():
            received.set_result(data)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dns = dnsmasq([
        "naptr-record=example.test,10,10,S,SIP+D2T,,_sip._tcp.example.test",
        f"srv-host=_sip._tcp.example.test,tcp.example.test,{port},10,0",
        "host-record=tcp.example.test,127.0.0.1",
    ])
    async with server, runtime(dns) as rt:
        rt.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=600))
        async with asyncio.timeout(GUARD):
            head = (await received).decode()
        tcp_port = rt.transports.local_address("tcp")[1]
    via = next(line for line in head.split("\r\n") if line.startswith("Via:"))
    assert via.startswith(f"Via: SIP/2.0/TCP 127.0.0.1:{tcp_port};branch=z9hG4bK"), via


class Uas(asyncio.DatagramProtocol):
    """A UDP server that answers every PUBLISH 200 with an ETag and keeps
    the Request-URIs it got."""

    def __init__(self) -> None:
        self.uris: list[str] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        request = parse_message(data)
        assert isinstance(request, Request)
        self.uris.append(str(request.uri))
        response = make_response(request, 200, "OK", to_tag="uas")
        response.headers.add("SIP-ETag", f"e{len(self.uris)}")
        response.headers.add("Expires", "600")
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def test_an_answered_request_stays_where_it_was_answered(dnsmasq: Dns) -> None:
    """A PUBLISH answered by the first target is not sent again when that
    target later fails another request: only the later one moves on."""
    loop = asyncio.get_running_loop()
    first, first_uas = await loop.create_datagram_endpoint(Uas, local_addr=("127.0.0.1", 0))
    second, second_uas = await loop.create_datagram_endpoint(Uas, local_addr=("127.0.0.1", 0))
    dns = dnsmasq([
        f"srv-host=_sip._udp.example.test,one.example.test,{first.get_extra_info('sockname')[1]},10,0",
        f"srv-host=_sip._udp.example.test,two.example.test,{second.get_extra_info('sockname')[1]},20,0",
        "host-record=one.example.test,127.0.0.1",
        "host-record=two.example.test,127.0.0.1",
    ])
    try:
        async with runtime(dns) as rt:
            async with asyncio.timeout(GUARD):
                await rt.publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=600))
                first.close()
                bob = "sip:bob@example.test"
                await rt.publish(PublishInfo(pres_uri=bob, body=PIDF.replace("alice", "bob")))
    finally:
        first.close()
        second.close()
    assert first_uas.uris == [ALICE]
    assert second_uas.uris == [bob]
