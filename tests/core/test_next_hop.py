"""The engine names the URI a host name came from, for RFC 3263 in the runtime."""

from __future__ import annotations

from pua.core import EngineConfig, PublishInfo

from .harness import Harness

PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test">'
    '<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


def test_without_a_proxy_the_request_uri_is_the_next_hop() -> None:
    """No outbound proxy: the PUBLISH goes to the presentity's domain, and
    next_hop gives back the presentity's URI for that address."""
    h = Harness(EngineConfig())
    h.agent.send_publish(PublishInfo(pres_uri="sip:alice@example.test", body=PIDF), h.now)
    sent = h.agent.datagrams_to_send()
    assert [(d.address, d.transport) for d in sent] == [(("example.test", 5060), "udp")]
    assert h.agent.next_hop(("example.test", 5060), "udp") == "sip:alice@example.test"
    assert h.agent.next_hop(("example.test", 5060), "tcp") is None


def test_a_proxy_by_name_keeps_its_transport_and_port() -> None:
    """A record's outbound proxy given by name is what next_hop names; an
    IP address is never remembered (nothing to locate)."""
    h = Harness()
    proxy = "sip:proxy.test;transport=tcp"
    h.agent.set_local_address("tcp", "127.0.0.1", 5070)
    h.agent.send_publish(
        PublishInfo(pres_uri="sip:bob@example.test", body=PIDF, outbound_proxy=proxy), h.now
    )
    h.agent.send_publish(PublishInfo(pres_uri="sip:carol@example.test", body=PIDF), h.now)
    sent = {(d.address, d.transport) for d in h.agent.datagrams_to_send()}
    assert sent == {(("proxy.test", 5060), "tcp"), (("192.0.2.1", 5060), "udp")}
    assert h.agent.next_hop(("proxy.test", 5060), "tcp") == proxy
    assert h.agent.next_hop(("192.0.2.1", 5060), "udp") is None
