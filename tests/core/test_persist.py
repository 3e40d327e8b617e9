"""Records as rows of Kamailio's pua table, and resuming them after a restart."""

from __future__ import annotations

from pua.core import EventFlag, PublishInfo, PubState, SubscribeInfo, SubState
from pua.core.persist import record_from_row, record_to_row
from pua.core.records import PublicationRecord, SubscriptionRecord

from .harness import Harness

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    b"<tuple><status><basic>open</basic></status></tuple></presence>"
)


def published_row(h: Harness) -> dict[str, object]:
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=-1,
                                     extra_headers=[("X-Who", "test")]), h.now)
    h.ok_publish(h.one(), "e1", 3600)
    [record] = list(h.agent.records())
    return record_to_row(record, "application/pidf+xml")  # type: ignore[arg-type]


def subscribed_row(h: Harness) -> dict[str, object]:
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=-1), h.now)
    h.answer(h.one(), 200, [("Expires", "600"), ("Contact", "<sip:ps@192.0.2.1:5060>"),
                            ("Record-Route", "<sip:p1.example.com;lr>")])
    [record] = list(h.agent.records())
    return record_to_row(record, "application/pidf+xml")  # type: ignore[arg-type]


def test_publication_row_has_kamailio_meanings() -> None:
    """expires is absolute, desired_expires 0 for ever, event and flag are
    the bit values; body and content type are kept."""
    h = Harness()
    row = published_row(h)
    assert row["expires"] == int(h.now) + 3600 and row["desired_expires"] == 0
    assert row["event"] == EventFlag.PRESENCE_EVENT and row["flag"] == 64
    assert row["etag"] == "e1" and row["watcher_uri"] == "" and row["tuple_id"]
    assert b"<basic>open</basic>" in row["body"]  # type: ignore[operator]
    assert row["content_type"] == "application/pidf+xml"
    assert row["extra_headers"] == "X-Who: test\r\n"
    back = record_from_row(row, "application/pidf+xml")
    assert isinstance(back, PublicationRecord) and back.etag == "e1" and back.state is PubState.PUBLISHED
    assert back.extra_headers == (("X-Who", "test"),) and back.body == row["body"]


def test_resumed_publication_is_refreshed_with_its_etag() -> None:
    """After a restart a live publication is refreshed (SIP-If-Match, no
    body), before it expires, in the same Call-ID."""
    row = published_row(Harness())
    h = Harness(seed="restart")
    h.now += 60
    record = record_from_row(row, "application/pidf+xml")
    assert h.agent.resume(record, h.now, h.now + 5)
    refresh = h.next_request(3600)
    assert refresh.sip_if_match == "e1" and refresh.body == b""
    assert refresh.call_id == row["call_id"] and refresh.cseq.seq == int(row["cseq"]) + 1  # type: ignore[call-overload]
    assert refresh.expires == 3600
    assert h.now < float(row["expires"])  # type: ignore[arg-type]


def test_publication_refreshed_elsewhere_a_moment_ago_is_not_refreshed_at_once() -> None:
    """A row another node refreshed a second ago for 20 s (a cluster's
    hand-over) is refreshed by the usual rule over what is left of it:
    not before half of it, not after the margin, never at once."""
    for seed in ("a", "b", "c", "d"):
        h = Harness(seed=seed)
        h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=-1), h.now)
        h.ok_publish(h.one(), "e1", 20)
        [record] = list(h.agent.records())
        row = record_to_row(record, "application/pidf+xml")  # type: ignore[arg-type]
        taken = Harness(seed=f"taker-{seed}")
        taken.now = h.now + 1
        adopted = taken.now
        assert taken.agent.resume(record_from_row(row, "application/pidf+xml"),
                                  taken.now, taken.now + 0.5)
        refresh = taken.next_request(20)
        assert refresh.sip_if_match == "e1"
        waited = taken.now - adopted
        assert 19 / 2 - 19 / 10 <= waited <= 19 / 2, waited


def test_publication_dropped_by_the_server_is_published_again_from_its_body() -> None:
    """When the stored expiry has passed, the stored body is published anew
    (no If-Match), at the time given for due work."""
    row = published_row(Harness())
    h = Harness(seed="restart")
    h.now += 4000
    record = record_from_row(row, "application/pidf+xml")
    assert h.agent.resume(record, h.now, h.now + 7)
    again = h.next_request(10)
    assert again.sip_if_match is None and b"<basic>open</basic>" in again.body
    assert h.now - 7 == 1_700_004_000.0


def test_rows_that_cannot_be_resumed() -> None:
    """A lifetime that is over, or a lost publication without a body (a row
    Kamailio wrote), is not resumed: the caller deletes the row."""
    row = published_row(Harness())
    h = Harness(seed="restart")
    over = dict(row, desired_expires=int(h.now) - 5)
    assert not h.agent.resume(record_from_row(over, None), h.now, h.now)
    lost = dict(row, body=None, expires=int(h.now) - 100)
    assert not h.agent.resume(record_from_row(lost, None), h.now, h.now)
    assert h.agent.counts()["records"] == 0


def test_resumed_subscription_refreshes_in_its_dialog() -> None:
    """A live subscription is refreshed in its stored dialog: same Call-ID,
    tags, route set and remote target."""
    row = subscribed_row(Harness())
    assert row["to_tag"] == "srv1" and row["remote_contact"] == "sip:ps@192.0.2.1:5060"
    h = Harness(seed="restart")
    record = record_from_row(row, None)
    assert isinstance(record, SubscriptionRecord) and record.state is SubState.ACTIVE
    assert h.agent.resume(record, h.now, h.now + 5)
    refresh = h.next_request(600)
    assert refresh.call_id == row["call_id"] and refresh.to.tag == "srv1"
    assert refresh.from_.tag == row["from_tag"]
    # Past whatever a crash may have left unwritten (RFC 3261 §12.2.2).
    assert refresh.cseq.seq > int(row["cseq"]) + 100  # type: ignore[call-overload]
    assert refresh.uri_text == "sip:ps@192.0.2.1:5060"
    assert [str(r.uri) for r in refresh.routes] == ["sip:p1.example.com;lr"]
    # A NOTIFY in the stored dialog is recognised after the restart.
    assert h.agent.is_dialog(str(row["call_id"]), "srv1", str(row["from_tag"])).name == "CONFIRMED"


def test_resumed_subscription_is_refreshed_again_once_timer_f_is_over() -> None:
    """After the refresh that resumes it, a subscription is refreshed once
    more when timer F (32 s) and a little are over, so that a notifier that
    dropped it for a NOTIFY that timed out meanwhile is found out (481: a
    new dialog at once); after that, at the usual time."""
    row = subscribed_row(Harness())
    h = Harness(seed="restart")
    h.now += 10
    assert h.agent.resume(record_from_row(row, None), h.now, h.now + 1)
    first = h.next_request(5)
    h.answer(first, 200, [("Expires", "600")])
    answered = h.now
    check = h.next_request(600)
    assert check.call_id == row["call_id"] and check.to.tag == "srv1"
    assert h.now - answered == 32 + 2
    h.answer(check, 200, [("Expires", "600")])
    answered = h.now
    usual = h.next_request(600)
    assert usual.call_id == row["call_id"]
    assert 558 <= h.now - answered <= 568  # max(E/2, E-32) less jitter: no second check
    h.answer(usual, 200, [("Expires", "600")])
    # The check that finds the subscription gone starts a new dialog.
    h2 = Harness(seed="again")
    assert h2.agent.resume(record_from_row(row, None), h2.now, h2.now + 1)
    h2.answer(h2.next_request(5), 200, [("Expires", "600")])
    gone = h2.next_request(600)
    h2.answer(gone, 481)
    anew = h2.next_request(5)
    assert anew.to.tag is None and anew.call_id != row["call_id"]


def test_expired_subscription_starts_a_new_dialog() -> None:
    """A subscription whose expiry passed subscribes again, in a new dialog."""
    row = subscribed_row(Harness())
    h = Harness(seed="restart")
    h.now += 1000
    assert h.agent.resume(record_from_row(row, None), h.now, h.now + 1)
    again = h.next_request(5)
    assert again.to.tag is None and again.call_id != row["call_id"]
    assert again.uri_text == ALICE


def test_resumed_subscription_carries_our_current_contact() -> None:
    """When our own address changed across the restart, the in-dialog
    refresh carries the new Contact (a target refresh), so NOTIFYs follow."""
    row = dict(subscribed_row(Harness()), contact="sip:127.0.0.1:9999")
    h = Harness(seed="restart")
    assert h.agent.resume(record_from_row(row, None), h.now, h.now + 1)
    refresh = h.next_request(600)
    assert str(refresh.contacts[0].uri) == "sip:192.0.2.9:5070"
