"""Subscriptions in the sans-IO engine, on a virtual clock (RFC 6665)."""

from __future__ import annotations

import pytest

from pua.core import (
    DialogState,
    EngineConfig,
    EventFlag,
    NotifyReceived,
    SourceFlag,
    SubscribeInfo,
    SubscriptionFailed,
    SubscriptionStateChanged,
    SubscriptionTerminated,
    SubState,
)
from pua.sip import Request

from .harness import Harness

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)
BOMB = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b">&lol2;</presence>'
)


def subscribe(h: Harness, expires: int = 600, **kw: object) -> tuple[object, Request]:
    key = h.agent.send_subscribe(
        SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=expires, **kw), h.now  # type: ignore[arg-type]
    )
    return key, h.one()


def established(h: Harness, expires: int = 600) -> tuple[object, Request]:
    """Subscribe bob to alice; answer 200 with a To tag, Contact and Record-Route."""
    key, request = subscribe(h, expires=-1)
    h.answer(request, 200, [
        ("Expires", str(expires)),
        ("Contact", "<sip:ps@192.0.2.1:5060;transport=udp>"),
        ("Record-Route", "<sip:p1.example.com;lr>, <sip:p2.example.com;lr>"),
    ])
    return key, request


def test_initial_subscribe_and_temporary_dialog() -> None:
    """The initial SUBSCRIBE has From tag, no To tag, our Contact, Event and
    Expires; until its 2xx the dialog is temporary."""
    h = Harness()
    _, request = subscribe(h)
    assert request.method == "SUBSCRIBE" and request.uri_text == ALICE
    assert request.to.tag is None and request.from_.tag
    assert str(request.from_.uri) == BOB
    assert request.contacts[0].uri.host == "192.0.2.9" and request.contacts[0].uri.port == 5070
    assert request.event is not None and request.event.name == "presence"
    assert request.expires == 600
    assert "application/pidf+xml" in (request.header("Accept") or "")
    tag = request.from_.tag
    assert h.agent.is_dialog(request.call_id, None, tag) is DialogState.TEMPORARY
    assert h.agent.is_dialog("other", None, tag) is DialogState.NONE


def test_2xx_confirms_dialog_and_refresh_is_in_dialog() -> None:
    """The 2xx gives the dialog: the refresh goes to the Contact, with the
    Record-Route reversed as Route, the To tag and the next CSeq."""
    h = Harness()
    _, request = established(h, expires=600)
    assert h.agent.is_dialog(request.call_id, "srv1", request.from_.tag) is DialogState.CONFIRMED
    refresh = h.next_request(600)
    assert refresh.uri_text == "sip:ps@192.0.2.1:5060;transport=udp"
    assert [str(r.uri) for r in refresh.routes] == ["sip:p2.example.com;lr", "sip:p1.example.com;lr"]
    assert refresh.to.tag == "srv1" and refresh.call_id == request.call_id
    assert refresh.cseq.seq == request.cseq.seq + 1
    assert 558 <= h.now - 1_700_000_000.0 <= 568  # max(E/2, E-32) less jitter


def test_notify_before_2xx_matches_and_is_delivered() -> None:
    """A NOTIFY that beats the 2xx matches the temporary dialog, is answered
    200 and delivered with its parsed body."""
    h = Harness()
    key, request = subscribe(h)
    answer = h.notify(request, "active;expires=500", body=PIDF, content_type="application/pidf+xml")
    assert answer.status == 200
    [notify] = h.take_events(NotifyReceived)
    assert notify.key == key and notify.state == "active" and notify.expires == 500  # type: ignore[attr-defined]
    assert notify.document is not None and notify.document.tuples[0].basic == "open"  # type: ignore[attr-defined]
    assert h.agent.is_dialog(request.call_id, "srv1", request.from_.tag) is DialogState.CONFIRMED
    h.answer(request, 200, [("Expires", "600")])
    sub = h.agent.record(key)  # type: ignore[arg-type]
    assert sub is not None and sub.state is SubState.ACTIVE
    # The refresh follows the sooner expiry, the NOTIFY's 500 s.
    refresh = h.next_request(600)
    assert h.now - 1_700_000_000.0 <= 468 and refresh.to.tag == "srv1"


def test_the_latest_notify_gives_the_expiry_longer_or_shorter() -> None:
    """A NOTIFY the notifier built before taking a refresh arrives after
    the refresh's 2xx with the old, shorter expiry; the NOTIFY that follows
    says the full one again, and the refresh keeps its usual time.  A
    NOTIFY that shortens the subscription brings the refresh forward."""
    h = Harness()
    key, request = established(h)
    h.advance(300)
    refresh = h.next_request(600)
    h.answer(refresh, 200, [("Expires", "600")])
    answered = h.now
    sub = h.agent.record(key)  # type: ignore[arg-type]
    assert sub is not None
    assert h.notify(request, "active;expires=30", cseq=10).status == 200  # stale
    assert sub.expires_at == answered + 30
    assert h.notify(request, "active;expires=600", cseq=11).status == 200
    assert sub.expires_at == answered + 600
    assert h.notify(request, "active;expires=599", cseq=12).status == 200  # a clock tick
    assert sub.expires_at == answered + 600
    again = h.next_request(600)
    assert again.call_id == request.call_id
    assert 540 <= h.now - answered <= 568, h.now - answered  # max(E/2, E-32) less jitter
    h.answer(again, 200, [("Expires", "600")])
    answered = h.now
    assert h.notify(request, "active;expires=100", cseq=13).status == 200
    h.next_request(600)
    assert 40 <= h.now - answered <= 68, h.now - answered


def test_notify_checks() -> None:
    """Unknown dialog -> 481; wrong event -> 489; no Subscription-State -> 400;
    a body that is an XML bomb -> 400; and none of them changes the state."""
    h = Harness()
    key, request = established(h)
    assert h.notify(request, "active", from_tag="stranger").status == 481
    assert h.notify(request, "active", event="dialog", cseq=2).status == 489
    assert h.notify(request, "", cseq=3).status == 400
    bad = h.notify(request, "terminated;reason=rejected", body=BOMB, content_type="application/pidf+xml", cseq=4)
    assert bad.status == 400
    assert h.take_events(NotifyReceived) == []
    sub = h.agent.record(key)  # type: ignore[arg-type]
    assert sub is not None and sub.state is SubState.ACTIVE
    assert h.notify(request, "active;expires=600", cseq=5).status == 200
    assert len(h.take_events(NotifyReceived)) == 1


def test_notify_contact_updates_remote_target() -> None:
    """The Contact of a NOTIFY becomes the Request-URI of the next refresh."""
    h = Harness()
    _, request = established(h, expires=600)
    h.notify(request, "active;expires=600", contact="<sip:moved@192.0.2.77:5080>")
    assert h.next_request(600).uri_text == "sip:moved@192.0.2.77:5080"


@pytest.mark.parametrize("reason", ["deactivated", "timeout"])
def test_terminated_deactivated_or_timeout_resubscribes_at_once(reason: str) -> None:
    """terminated;reason=deactivated/timeout: a new SUBSCRIBE at once, in a new dialog."""
    h = Harness()
    key, request = established(h)
    h.notify(request, f"terminated;reason={reason}")
    again = h.one()
    assert again.to.tag is None and again.call_id != request.call_id
    sub = h.agent.record(key)  # type: ignore[arg-type]
    assert sub is not None and sub.state is SubState.SUBSCRIBING


@pytest.mark.parametrize("reason", ["probation", "giveup"])
def test_terminated_probation_or_giveup_waits_retry_after(reason: str) -> None:
    """terminated;reason=probation/giveup;retry-after=30: nothing for 30 s,
    then a new SUBSCRIBE."""
    h = Harness()
    _, request = established(h)
    h.notify(request, f"terminated;reason={reason};retry-after=30")
    start = h.now
    again = h.next_request(40)
    assert h.now - start == pytest.approx(30)
    assert again.to.tag is None and again.call_id != request.call_id


@pytest.mark.parametrize("state", [
    "terminated;reason=rejected", "terminated;reason=noresource",
    "terminated;reason=invariant", "terminated", "terminated;reason=whatever",
])
def test_terminated_final_reasons_stop_and_tell(state: str) -> None:
    """rejected, noresource, invariant, no or unknown reason: the subscription
    ends, the user is told, nothing more is sent."""
    h = Harness()
    key, request = established(h)
    h.notify(request, state)
    [ended] = h.take_events(SubscriptionTerminated)
    assert ended.key == key  # type: ignore[attr-defined]
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    h.advance(7200)
    h.none()


def test_repeated_deactivation_backs_off() -> None:
    """A second deactivation before any active NOTIFY is not answered at once."""
    h = Harness()
    _, request = established(h)
    h.notify(request, "terminated;reason=deactivated")
    second = h.one()
    h.answer(second, 200, [("Expires", "600")], to_tag="srv2")
    h.notify(second, "terminated;reason=deactivated", from_tag="srv2")
    h.none()
    assert h.take_events(SubscriptionFailed)
    assert h.next_request(10).to.tag is None


def test_481_on_refresh_starts_a_new_dialog() -> None:
    """481 to an in-dialog refresh: a new initial SUBSCRIBE at once."""
    h = Harness()
    _, request = established(h)
    refresh = h.next_request(600)
    h.answer(refresh, 481)
    again = h.one()
    assert again.call_id != request.call_id and again.to.tag is None
    assert again.uri_text == ALICE


def test_other_refresh_failure_keeps_the_subscription_and_retries() -> None:
    """503 to a refresh: the subscription stays (its expiry is not over) and
    the refresh is retried in the same dialog."""
    h = Harness()
    key, request = established(h, expires=600)
    refresh = h.next_request(600)
    h.answer(refresh, 503, [("Retry-After", "10")])
    sub = h.agent.record(key)  # type: ignore[arg-type]
    assert sub is not None and sub.state is SubState.BACKOFF and sub.to_tag == "srv1"
    retry = h.next_request(11)
    assert retry.call_id == request.call_id and retry.to.tag == "srv1"


def test_unsubscribe() -> None:
    """expires 0: an in-dialog SUBSCRIBE with Expires 0; its 2xx deletes the record."""
    h = Harness()
    key, request = established(h)
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=0), h.now)
    bye = h.one()
    assert bye.expires == 0 and bye.call_id == request.call_id and bye.to.tag == "srv1"
    h.answer(bye, 200, [("Expires", "0")])
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    assert [e.reason for e in h.take_events(SubscriptionTerminated)] == ["unsubscribed"]  # type: ignore[attr-defined]
    # The final NOTIFY that follows finds no dialog and gets 481.
    assert h.notify(request, "terminated;reason=timeout", cseq=9).status == 481


def test_unsubscribe_unknown_is_a_no_op() -> None:
    """Unsubscribing a subscription we do not hold sends nothing."""
    h = Harness()
    assert h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=0), h.now) is None
    h.none()


def test_423_on_initial_adopts_min_expires() -> None:
    """423 with Min-Expires: the SUBSCRIBE goes again at once with it."""
    h = Harness()
    _, request = subscribe(h, expires=60)
    h.answer(request, 423, [("Min-Expires", "300")])
    again = h.one()
    assert again.expires == 300 and again.call_id == request.call_id


def test_initial_rejected_is_final() -> None:
    """404 to the initial SUBSCRIBE: failed, terminated, nothing more."""
    h = Harness()
    key, request = subscribe(h)
    h.answer(request, 404)
    assert h.take_events(SubscriptionTerminated)
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    h.advance(3600)
    h.none()


def test_initial_timeout_retries() -> None:
    """No answer to the initial SUBSCRIBE: retried after a backoff."""
    h = Harness()
    key, _ = subscribe(h, expires=-1)
    h.advance(32)
    [failed] = h.take_events(SubscriptionFailed)
    assert failed.status == 408 and failed.retry_at is not None  # type: ignore[attr-defined]
    again = h.next_request(5)
    assert again.to.tag is None
    assert h.agent.record(key) is not None  # type: ignore[arg-type]


def test_state_changes_are_reported() -> None:
    """pending then active NOTIFYs are reported as state changes."""
    h = Harness()
    _, request = established(h)
    h.notify(request, "pending;expires=600")
    h.notify(request, "active;expires=600", cseq=2)
    states = [e.state for e in h.take_events(SubscriptionStateChanged)]  # type: ignore[attr-defined]
    assert states == ["pending", "active"]


def test_out_of_order_notify_gets_500() -> None:
    """A NOTIFY with a CSeq lower than the last one gets 500 (RFC 3261 §12.2.2)."""
    h = Harness()
    _, request = established(h)
    assert h.notify(request, "active", cseq=5).status == 200
    assert h.notify(request, "active", cseq=4).status == 500


def test_notify_callbacks_by_source_flag() -> None:
    """Registered callbacks see NOTIFYs of records with a matching source flag."""
    h = Harness()
    seen: list[str] = []
    h.agent.register_callback(SourceFlag.MI_SUBSCRIBE, lambda rec, msg, p: seen.append(msg.method if hasattr(msg, "method") else "reply"), None)
    _, request = established(h)
    h.notify(request, "active")
    assert seen == ["reply", "NOTIFY"]


def test_other_requests_get_405() -> None:
    """A MESSAGE to the engine is answered 405 with Allow: NOTIFY."""
    h = Harness()
    data = (
        b"MESSAGE sip:x@192.0.2.9 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKm1\r\n"
        b"From: <sip:a@b>;tag=1\r\nTo: <sip:x@192.0.2.9>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n"
        b"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
    h.agent.receive_datagram(data, ("192.0.2.1", 5060), "udp", h.now)
    h.pump()
    assert h.responses[-1].status == 405 and h.responses[-1].header("Allow") == "NOTIFY"


def test_winfo_and_other_events_subscribe() -> None:
    """presence.winfo (subscribe-only) can be subscribed to."""
    h = Harness(EngineConfig(outbound_proxy="sip:192.0.2.1"))
    h.agent.send_subscribe(
        SubscribeInfo(pres_uri=ALICE, watcher_uri=ALICE, event=EventFlag.PWINFO_EVENT), h.now
    )
    request = h.one()
    assert request.event is not None and request.event.name == "presence.winfo"


@pytest.mark.parametrize(("info", "message"), [
    (SubscribeInfo(pres_uri="nope", watcher_uri=BOB), "pres_uri"),
    (SubscribeInfo(pres_uri=ALICE, watcher_uri="bob"), "watcher_uri"),
    (SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, event=1 << 12), "unknown event flag"),
    (SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=-3), "expires"),
])
def test_bad_subscribe_calls(info: SubscribeInfo, message: str) -> None:
    """What cannot be sent raises ValueError naming the problem."""
    h = Harness()
    with pytest.raises(ValueError, match=message):
        h.agent.send_subscribe(info, h.now)
    h.none()


def test_early_notify_with_malformed_record_route_gets_400_and_keeps_the_dialog() -> None:
    """A NOTIFY that beats the 2xx with a malformed Record-Route is a 400, not
    a 200 followed by a fault, and the temporary dialog still matches."""
    h = Harness()
    _, request = subscribe(h)
    bad = h.notify(request, "active;expires=600", extra=[("Record-Route", "<<<garbage")])
    assert bad.status == 400
    assert h.agent.is_dialog(request.call_id, None, request.from_.tag) is DialogState.TEMPORARY
    assert h.notify(request, "active;expires=600", cseq=2).status == 200


def test_423_to_a_subscribe_keeps_an_unsubscribe_that_waits() -> None:
    """An unsubscribe asked for while the SUBSCRIBE is in flight survives a
    423 and its resend: once the dialog stands it is ended."""
    h = Harness()
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=600), h.now)
    first = h.one()
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=0), h.now)
    h.none()
    h.answer(first, 423, [("Min-Expires", "1200")])
    again = h.one()
    assert again.expires == 1200 and again.to.tag is None
    h.answer(again, 200, [("Expires", "1200")])
    bye = h.one()
    assert bye.expires == 0 and bye.to.tag == "srv1"
