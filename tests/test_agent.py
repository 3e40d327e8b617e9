"""pua.Agent against a scripted UDP peer: results, errors and the event stream."""

from __future__ import annotations

import asyncio

import pytest

import pua
from pua.adapters.dialogs import CallEvent
from pua.adapters.registrations import RegistrationSettings
from pua.bodies import basic_pidf
from pua.core import EventPackage, PublicationSucceeded
from pua.errors import UnknownEventError, UsageError
from pua.sip import Request, make_response, parse_message


class Server(asyncio.DatagramProtocol):
    """A UDP peer on loopback answering PUBLISH and SUBSCRIBE with a status."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.requests: list[Request] = []
        self.transport: asyncio.DatagramTransport | None = None
        self.arrived = asyncio.Event()  # set at each request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        message = parse_message(data)
        if not isinstance(message, Request):
            return
        self.requests.append(message)
        self.arrived.set()
        response = make_response(message, self.status, to_tag="srv")
        if self.status < 300:
            response.headers.add("SIP-ETag", f"e{len(self.requests)}")
            response.headers.add("Expires", "60")
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)


async def server(status: int) -> tuple[Server, str]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(
        lambda: Server(status), local_addr=("127.0.0.1", 0)
    )
    port = transport.get_extra_info("sockname")[1]
    return peer, f"sip:127.0.0.1:{port}"


async def test_publish_update_remove_and_events() -> None:
    """publish() returns after the 2xx with state and ETag; update() sends a
    modify with SIP-If-Match; remove() sends Expires 0; events() saw it all."""
    peer, uri = await server(200)
    async with pua.Agent(server=uri) as agent:
        seen: list[object] = []
        stream = agent.events()  # collects from here on

        async def collect() -> None:
            async for event in stream:
                seen.append(event)

        collector = asyncio.ensure_future(collect())
        with pytest.raises(UnknownEventError, match="x-custom"):  # not registered yet
            await agent.publish("sip:alice@example.com", b"<presence/>", event="x-custom")
        agent.add_event(EventPackage(flag=1 << 16, name="x-custom", content_type="application/x-custom"))
        pub = await agent.publish("sip:alice@example.com", b"<presence/>", event="x-custom",
                                  content_type="application/x-custom")
        assert pub.state == "published" and pub.etag == "e1"
        assert pub.expires_at is not None
        await pub.update(b"<presence>2</presence>")
        assert peer.requests[-1].sip_if_match == "e1" and pub.etag == "e2"
        await pub.remove()
        assert peer.requests[-1].expires == 0 and pub.state == "removed"
    await asyncio.wait_for(collector, 5)
    assert [type(e) for e in seen if isinstance(e, PublicationSucceeded)] == [PublicationSucceeded] * 2
    assert peer.requests[0].content_type == "application/x-custom"


async def test_publish_failure_raises_publish_error() -> None:
    """A 403 to the PUBLISH raises PublishError carrying status and reason."""
    _, uri = await server(403)
    async with pua.Agent(server=uri) as agent:
        with pytest.raises(pua.PublishError) as info:
            await agent.publish("sip:alice@example.com", basic_pidf("sip:alice@example.com", "open", tuple_id="t1"))
    assert info.value.status == 403 and info.value.reason == "Forbidden"


async def test_rejected_subscription_ends_iteration_with_reason() -> None:
    """A 404 to the SUBSCRIBE: wait_active raises, iteration ends, the reason is kept."""
    _, uri = await server(404)
    async with pua.Agent(server=uri) as agent:
        sub = agent.subscribe("sip:alice@example.com", watcher="sip:bob@example.com")
        with pytest.raises(pua.SubscribeError):
            await sub.wait_active()
        assert [n async for n in sub] == []
        assert sub.reason is not None and "404" in sub.reason
        assert sub.state == "terminated"


async def test_bad_arguments_raise_value_error() -> None:
    """A bad URI is a ValueError before anything is sent."""
    peer, uri = await server(200)
    async with pua.Agent(server=uri) as agent:
        with pytest.raises(ValueError, match="pres_uri"):
            await agent.publish("alice", b"x")
        with pytest.raises(ValueError, match="body rejected"):
            await agent.publish("sip:alice@example.com", b"<presence/>")
    assert peer.requests == []


def test_agent_settings_are_checked() -> None:
    """A bad setting or listen address is refused when the agent is made."""
    with pytest.raises(ValueError, match="default_expires"):
        pua.Agent(server="sip:127.0.0.1", default_expires=0)
    with pytest.raises(ValueError, match="listen"):
        pua.Agent(server="sip:127.0.0.1", listen=["udp:nowhere"])


async def test_agent_with_a_store_takes_its_publications_back(tmp_path: object) -> None:
    """An Agent with a data_dir keeps its publication in the store (no
    clean-up on exit) and a new Agent on it resumes it with its ETag."""
    peer, uri = await server(200)
    body = basic_pidf("sip:alice@example.com", "open", tuple_id="t1")
    async with pua.Agent(server=uri, data_dir=tmp_path, cleanup_on_exit=False) as agent:  # type: ignore[arg-type]
        pub = await agent.publish("sip:alice@example.com", body, expires=-1)
        etag = pub.etag
    async with pua.Agent(server=uri, data_dir=tmp_path, cleanup_on_exit=False) as agent:  # type: ignore[arg-type]
        [record] = list(agent.runtime.records())
        assert record.etag == etag and record.state.value == "published"  # type: ignore[union-attr]
    assert len(peer.requests) == 1  # resumed, not published again


async def test_outbound_proxy_is_the_seeds_name_for_the_next_hop() -> None:
    """pua.Agent(outbound_proxy=...) sends there, and a text body is sent
    as UTF-8; naming two different next hops is one clear error."""
    peer, uri = await server(200)
    async with pua.Agent(outbound_proxy=uri) as agent:
        text = basic_pidf("sip:alice@example.com", "open", tuple_id="t1").decode()
        pub = await agent.publish("sip:alice@example.com", text)
        assert pub.state == "published"
        assert peer.requests[-1].body == text.encode()
    with pytest.raises(UsageError, match="server or outbound_proxy"):
        pua.Agent(server=uri, outbound_proxy="sip:192.0.2.1:5060")


async def test_a_failed_first_attempt_raises_with_retrying_and_the_record_stays() -> None:
    """A 503 to the first PUBLISH and SUBSCRIBE: publish() and wait_active()
    raise with the status, reason, retrying True and the record's key; the
    engine keeps both records and retries."""
    peer, uri = await server(503)
    body = basic_pidf("sip:alice@example.com", "open", tuple_id="t1")
    async with pua.Agent(server=uri, cleanup_on_exit=False) as agent:
        with pytest.raises(pua.PublishError) as info:
            await agent.publish("sip:alice@example.com", body)
        assert (info.value.status, info.value.reason) == (503, "Service Unavailable")
        assert info.value.retrying is True and info.value.retry_at is not None
        assert agent.runtime.record(info.value.key) is not None
        sub = agent.subscribe("sip:carol@example.com", watcher="sip:bob@example.com")
        with pytest.raises(pua.SubscribeError) as failed:
            await sub.wait_active()
        assert failed.value.status == 503 and failed.value.retrying is True
        assert not sub.accepted and sub.last_failure == "503 Service Unavailable"
        assert agent.runtime.record(failed.value.key) is not None
    assert [r.method for r in peer.requests] == ["PUBLISH", "SUBSCRIBE"]


async def publishes(peer: Server, count: int) -> None:
    """Wait (10 s at most) until ``peer`` got ``count`` PUBLISHes."""
    async with asyncio.timeout(10):
        while len([r for r in peer.requests if r.method == "PUBLISH"]) < count:
            peer.arrived.clear()
            await peer.arrived.wait()


async def test_registrations_from_python_and_from_a_register(tmp_path: object) -> None:
    """Agent(registrations=True): agent.registrations.register() and a REGISTER
    sent to the agent's SIP address make bindings, published as presence per
    Call-ID; unbinding removes the publication."""
    peer, uri = await server(200)
    async with pua.Agent(uri, registrations=True) as agent:
        report = await agent.registrations.register(
            "sip:carol@example.com", "sip:carol@192.0.2.8:5060", 120, q="0.8")
        assert [p["status"] for p in report["publications"]] == [200]
        assert [(b["contact"], b["q"]) for b in report["bindings"]] == [("sip:carol@192.0.2.8:5060", "0.8")]
        loop = asyncio.get_running_loop()
        await publishes(peer, 1)
        publish = next(r for r in peer.requests if r.method == "PUBLISH")
        assert b"sip:carol@192.0.2.8:5060" in publish.body and b'priority="0.8"' in publish.body
        assert str(publish.to.uri) == "sip:carol@example.com"
        # a REGISTER to the agent's own SIP address
        host, port = agent.runtime.transports.bound()[("udp", 2)]
        reply: asyncio.Future[bytes] = loop.create_future()

        class Phone(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: object) -> None:
                if not reply.done():
                    reply.set_result(data)

        transport, _ = await loop.create_datagram_endpoint(Phone, local_addr=("127.0.0.1", 0))
        try:
            lines = [
                "REGISTER sip:example.com SIP/2.0",
                "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKagent1",
                "From: <sip:carol@example.com>;tag=p", "To: <sip:carol@example.com>",
                "Call-ID: agent-reg-1", "CSeq: 1 REGISTER",
                "Contact: <sip:carol@192.0.2.9:5062>;expires=60", "Content-Length: 0",
            ]
            transport.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), (host, port))
            async with asyncio.timeout(10):
                answer = parse_message(await reply)
        finally:
            transport.close()
        assert getattr(answer, "status", None) == 200
        assert len(agent.registrations.bindings("sip:carol@example.com")) == 2
        before = len([r for r in peer.requests if r.method == "PUBLISH"])
        await agent.registrations.register("sip:carol@example.com", "sip:carol@192.0.2.8:5060", 0)
        await publishes(peer, before + 1)
        removal = [r for r in peer.requests if r.method == "PUBLISH"][-1]
        assert removal.headers.get("expires") == "0"
        assert [b["contact"] for b in agent.registrations.bindings()] == ["sip:carol@192.0.2.9:5062"]


async def test_registration_closed_before_removed_and_entity_prefix() -> None:
    """publish_closed: an unbinding sends a closed document, then the
    removal; entity_prefix changes the PIDF entity, not where requests go."""
    peer, uri = await server(200)
    settings = RegistrationSettings(publish_closed=True, entity_prefix="pres")
    async with pua.Agent(uri, registrations=settings) as agent:
        await agent.registrations.register("sip:dan@example.com", "sip:dan@192.0.2.4", 60)
        await publishes(peer, 1)
        await agent.registrations.register("sip:dan@example.com", "sip:dan@192.0.2.4", 0)
        await publishes(peer, 3)
        sent = [r for r in peer.requests if r.method == "PUBLISH"]
        assert [str(r.to.uri) for r in sent] == ["sip:dan@example.com"] * 3
        assert b'entity="pres:dan@example.com"' in sent[0].body
        assert b"<basic>open</basic>" in sent[0].body
        assert b"<basic>closed</basic>" in sent[1].body
        assert sent[2].headers.get("expires") == "0" and not sent[2].body


async def test_dialog_state_from_python() -> None:
    """Agent(dialogs=True): agent.dialogs.report() publishes a call's state
    for caller and callee; a late early after confirmed publishes nothing."""
    peer, uri = await server(200)
    async with pua.Agent(uri, dialogs=True) as agent:
        def event(state: str) -> CallEvent:
            return CallEvent.from_values({
                "call_id": "py-1", "from_tag": "f1", "to_tag": "t1", "state": state,
                "caller": "sip:ann@example.com", "callee": "sip:ben@example.com"})

        report = await agent.dialogs.report(event("confirmed"))
        assert sorted(p["pres_uri"] for p in report["publications"]) == [
            "sip:ann@example.com", "sip:ben@example.com"]
        assert {p["status"] for p in report["publications"]} == {200}
        await publishes(peer, 2)
        sent = [r for r in peer.requests if r.method == "PUBLISH"]
        assert {r.headers.get("event") for r in sent} == {"dialog"}
        assert all(b"<state>confirmed</state>" in r.body for r in sent)
        late = await agent.dialogs.report(event("early"))
        assert late["publications"] == []
        assert agent.dialogs.counters["ignored"] == 1
