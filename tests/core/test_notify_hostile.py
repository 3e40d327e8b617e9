"""NOTIFYs pua must refuse: from the other address family of their dialog,
outside pua's dialogs, and with a DTD or entities in the body."""

from __future__ import annotations

import pytest

from pua.core import EngineConfig, NotifyReceived, SubscribeInfo, SubState

from .harness import SERVER, Harness

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)
# "Billion laughs": ten levels of ten entities each.
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n'.encode()
        for n in range(1, 10)
    )
    + b']>\n<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">'
    b"<note>&lol9;</note></presence>"
)
EXTERNAL_ENTITY = (
    b'<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>&x;</note></presence>'
)
V4_PEER = ("192.0.2.1", 5060)
V6_PEER = ("2001:db8::1", 5060)


def established(h: Harness, contact: str = "<sip:ps@192.0.2.1:5060>") -> object:
    """A confirmed presence subscription of bob to alice; its request."""
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=600), h.now)
    request = h.one()
    h.answer(request, 200, [("Expires", "600"), ("Contact", contact)])
    h.take_events()
    return request


def v6_harness() -> Harness:
    h = Harness(EngineConfig(outbound_proxy="sip:[2001:db8::1]:5060"))
    h.agent.set_local_address("udp", "2001:db8::9", 5070)
    return h


def test_notify_from_ipv6_for_an_ipv4_dialog_is_481() -> None:
    """A dialog made over IPv4 refuses a NOTIFY that arrives over IPv6 with
    481, and nothing of the subscription changes; the IPv4 peer still gets 200."""
    h = Harness()
    request = established(h)
    refused = h.notify(request, "active;expires=600", body=PIDF,
                       content_type="application/pidf+xml", source=V6_PEER)
    assert refused.status == 481
    assert "IPv6" in (refused.header("warning") or "")
    assert h.take_events(NotifyReceived) == []
    accepted = h.notify(request, "active;expires=600", body=PIDF,
                        content_type="application/pidf+xml", cseq=2, source=V4_PEER)
    assert accepted.status == 200
    assert len(h.take_events(NotifyReceived)) == 1


def test_notify_from_ipv4_for_an_ipv6_dialog_is_481() -> None:
    """The same the other way round: an IPv6 dialog refuses IPv4, and an
    IPv4-mapped IPv6 source counts as IPv4."""
    h = v6_harness()
    request = established(h, contact="<sip:ps@[2001:db8::1]:5060>")
    assert h.notify(request, "active", source=V4_PEER).status == 481
    assert h.notify(request, "active", source=("::ffff:192.0.2.1", 5060)).status == 481
    assert h.notify(request, "active", cseq=2, source=V6_PEER).status == 200


def test_dialog_family_follows_the_route_set() -> None:
    """With a Record-Route the dialog's peer is its first route: an IPv6
    route makes IPv6 the dialog's family even through an IPv4 proxy."""
    h = Harness()
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=600), h.now)
    request = h.one()
    h.answer(request, 200, [("Expires", "600"), ("Contact", "<sip:ps@192.0.2.1>"),
                            ("Record-Route", "<sip:[2001:db8::7];lr>")])
    assert h.notify(request, "active", source=V4_PEER).status == 481
    assert h.notify(request, "active", cseq=2, source=("2001:db8::7", 5060)).status == 200


def test_a_dialog_through_a_name_takes_either_family() -> None:
    """When the next hop is a DNS name the family is not known: NOTIFYs
    from either family are taken."""
    h = Harness(EngineConfig(outbound_proxy="sip:proxy.example.com:5060"))
    request = established(h, contact="<sip:ps@presence.example.com>")
    assert h.notify(request, "active", source=V6_PEER).status == 200
    assert h.notify(request, "active", cseq=2, source=V4_PEER).status == 200


@pytest.mark.parametrize("change", ["call_id", "our_tag", "their_tag"])
def test_notify_outside_our_dialogs_is_481(change: str) -> None:
    """A NOTIFY with another Call-ID, another To tag, or (after the dialog
    is confirmed) another From tag matches no dialog: 481, nothing changes."""
    h = Harness()
    request = established(h)
    record = next(iter(h.agent.records()))
    kwargs: dict[str, object] = {"source": SERVER}
    if change == "our_tag":
        kwargs["to_tag"] = "not-ours"
    elif change == "their_tag":
        kwargs["from_tag"] = "someone-else"
    else:
        request.headers.set("Call-ID", "unknown-call-id@192.0.2.66")
    answer = h.notify(request, "terminated;reason=rejected", **kwargs)  # type: ignore[arg-type]
    assert answer.status == 481
    assert h.take_events() == []
    assert record.state is SubState.ACTIVE


@pytest.mark.parametrize("body", [BILLION_LAUGHS, EXTERNAL_ENTITY], ids=["billion-laughs", "xxe"])
def test_notify_with_entities_is_400_and_the_dialog_survives(body: bytes) -> None:
    """A body with a DTD and entities is answered 400 without being
    expanded; the subscription keeps going and takes the next good NOTIFY."""
    h = Harness()
    request = established(h)
    answer = h.notify(request, "active;expires=600", body=body,
                      content_type="application/pidf+xml")
    assert answer.status == 400
    assert "DOCTYPE" in (answer.header("warning") or "")
    assert h.take_events(NotifyReceived) == []
    good = h.notify(request, "active;expires=600", body=PIDF,
                    content_type="application/pidf+xml", cseq=2)
    assert good.status == 200
