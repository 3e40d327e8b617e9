"""Publications in the sans-IO engine, on a virtual clock (RFC 3903)."""

from __future__ import annotations

import pytest

from pua.core import (
    CallbackFailed,
    EngineConfig,
    EventFlag,
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    PublishInfo,
    PubState,
    SourceFlag,
    UpdateType,
)

from .harness import Harness

ALICE = "sip:alice@example.com"


def pidf(note: str, tuple_id: str | None = None) -> bytes:
    id_attr = f' id="{tuple_id}"' if tuple_id else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
        f"<tuple{id_attr}><status><basic>open</basic></status><note>{note}</note></tuple></presence>"
    ).encode()


def published(h: Harness, expires: int = 3600, etag: str = "e1", **kw: object) -> PublishInfo:
    """Publish presence for alice (for ever, unless ``requested`` says
    otherwise) and answer the initial PUBLISH with 200."""
    info = PublishInfo(pres_uri=ALICE, body=pidf("hello"), expires=kw.pop("requested", -1), **kw)  # type: ignore[arg-type]
    h.agent.send_publish(info, h.now)
    h.ok_publish(h.one(), etag, expires)
    return info


def test_initial_publish_carries_body_and_no_if_match() -> None:
    """The first PUBLISH has the body, Event, Expires and no SIP-If-Match."""
    h = Harness()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("hi")), h.now)
    request = h.one()
    assert request.method == "PUBLISH" and request.uri_text == ALICE
    assert str(request.to.uri) == ALICE and str(request.from_.uri) == ALICE
    assert request.event is not None and request.event.name == "presence"
    assert request.expires == 3600
    assert request.sip_if_match is None
    assert request.content_type == "application/pidf+xml"
    assert b"<note>hi</note>" in request.body
    record = h.agent.record(key)  # type: ignore[arg-type]
    assert record is not None and record.state is PubState.SENDING


def test_success_schedules_refresh_between_half_and_margin() -> None:
    """After a 200 (Expires 3600) the refresh is due at max(E/2, E-32) minus
    at most 10 s of jitter, and it carries SIP-If-Match and no body."""
    h = Harness()
    published(h)
    [ok] = h.take_events(PublicationSucceeded)
    assert ok.etag == "e1" and ok.expires == 3600 and ok.kind == "initial"  # type: ignore[attr-defined]
    h.advance(5.1)  # timer K of the finished transaction
    due = h.agent.get_timer()
    assert due is not None and h.now - 5.1 + 3558 <= due <= h.now - 5.1 + 3568
    h.advance(due - h.now)
    refresh = h.one()
    assert refresh.sip_if_match == "e1" and refresh.body == b"" and refresh.expires == 3600
    assert refresh.call_id == h.requests[0].call_id and refresh.cseq.seq == 2


def test_refresh_schedule_for_short_expiry() -> None:
    """A 60 s publication is refreshed at 30 s at the latest (E/2 beats E-32)."""
    h = Harness()
    published(h, expires=60)
    start = h.now
    refresh = h.next_request(31)
    assert refresh.sip_if_match == "e1"
    assert h.now - start <= 31


def test_412_on_refresh_republishes_the_stored_body() -> None:
    """A 412 to a refresh is answered at once by an initial PUBLISH with the
    last body and no SIP-If-Match; its 200 restores the publication."""
    h = Harness()
    published(h, expires=60)
    refresh = h.next_request(31)
    h.answer(refresh, 412)
    again = h.one()
    assert again.sip_if_match is None
    assert b"<note>hello</note>" in again.body
    h.ok_publish(again, "e2", 60)
    oks = h.take_events(PublicationSucceeded)
    assert [e.etag for e in oks] == ["e1", "e2"]  # type: ignore[attr-defined]
    assert h.agent.counters()["recoveries_412"] == 1


def test_412_on_modify_republishes_the_new_body() -> None:
    """A 412 to a modify re-publishes with the body of that modify."""
    h = Harness()
    published(h)
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("busy")), h.now)
    modify = h.one()
    assert modify.sip_if_match == "e1" and b"busy" in modify.body
    h.answer(modify, 412)
    again = h.one()
    assert again.sip_if_match is None and b"busy" in again.body


def test_repeated_412_backs_off_instead_of_looping() -> None:
    """A 412 to the re-publication itself is not answered by another one at
    once: the engine backs off."""
    h = Harness()
    published(h, expires=60)
    h.answer(h.next_request(31), 412)
    h.answer(h.one(), 412)
    h.none()
    [failed] = h.take_events(PublicationFailed)
    assert failed.status == 412 and failed.retry_at is not None  # type: ignore[attr-defined]
    h.advance(failed.retry_at - h.now)  # type: ignore[attr-defined]
    retry = h.one()
    assert retry.sip_if_match is None and b"hello" in retry.body


def test_423_adopts_min_expires_and_retries_at_once() -> None:
    """423 with Min-Expires: the same PUBLISH goes again at once with that Expires."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x"), expires=60), h.now)
    first = h.one()
    h.answer(first, 423, [("Min-Expires", "1800")])
    second = h.one()
    assert second.expires == 1800 and second.body == first.body
    h.ok_publish(second, "e1", 1800)
    assert h.take_events(PublicationSucceeded)
    assert h.agent.counters()["recoveries_423"] == 1


def test_423_without_usable_min_expires_is_fatal() -> None:
    """A 423 that gives no larger Min-Expires cannot be recovered."""
    h = Harness()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    h.answer(h.one(), 423)
    h.none()
    [failed] = h.take_events(PublicationFailed)
    assert failed.retry_at is None  # type: ignore[attr-defined]
    assert h.agent.record(key) is None  # type: ignore[arg-type]


def test_503_with_retry_after_waits_that_long() -> None:
    """503 with Retry-After: 20 -> nothing is sent for 20 s, then the PUBLISH again."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    first = h.one()
    h.answer(first, 503, [("Retry-After", "20")])
    start = h.now
    h.advance(19.9)
    h.none()
    again = h.next_request(0.2)
    assert again.body == first.body and again.sip_if_match is None
    assert 20 <= h.now - start <= 20.2


def test_timeout_keeps_the_record_and_retries_with_backoff() -> None:
    """No answer at all: after timer F the record stays and the PUBLISH is
    retried after a jittered, growing delay."""
    h = Harness(EngineConfig(outbound_proxy="sip:192.0.2.1", retry_base=2, retry_cap=300))
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    h.one()
    delays = []
    for _ in range(4):
        h.advance(32.0)  # retransmissions, then timer F
        [failed] = h.take_events(PublicationFailed)
        assert failed.status == 408  # type: ignore[attr-defined]
        delays.append(failed.retry_at - h.now)  # type: ignore[attr-defined]
        h.advance(failed.retry_at - h.now)  # type: ignore[attr-defined]
        assert h.agent.record(key) is not None  # type: ignore[arg-type]
    assert 1 <= delays[0] <= 2 and 2 <= delays[1] <= 4 and 4 <= delays[2] <= 8 and 8 <= delays[3] <= 16


def test_ten_updates_in_flight_give_two_publishes_and_the_last_body_wins() -> None:
    """Updates while a PUBLISH is in flight are coalesced: one more PUBLISH,
    with the newest body and the newest ETag."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("v0")), h.now)
    first = h.one()
    for i in range(1, 11):
        h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf(f"v{i}")), h.now)
    h.none()
    h.ok_publish(first, "e1")
    second = h.one()
    assert second.sip_if_match == "e1"
    assert b"<note>v10</note>" in second.body
    h.ok_publish(second, "e2")
    h.none()
    assert len([r for r in h.requests if r.method == "PUBLISH"]) == 2


def test_2xx_without_etag_is_a_failure() -> None:
    """A 200 without SIP-ETag is not success: it is retried."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    h.answer(h.one(), 200, [("Expires", "3600")])
    assert h.take_events(PublicationSucceeded) == []
    [failed] = h.take_events(PublicationFailed)
    assert failed.retry_at is not None and "SIP-ETag" in failed.reason  # type: ignore[attr-defined]


def test_for_ever_refreshes_with_default_expires() -> None:
    """expires -1: asks default_expires and keeps refreshing."""
    h = Harness(EngineConfig(outbound_proxy="sip:192.0.2.1", default_expires=600))
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x"), expires=-1), h.now)
    first = h.one()
    assert first.expires == 600
    h.ok_publish(first, "e0", 600)
    for i in range(1, 6):
        refresh = h.next_request(600)
        assert refresh.expires == 600 and refresh.sip_if_match == f"e{i - 1}"
        h.ok_publish(refresh, f"e{i}", 600)


def test_limited_lifetime_ends_without_refresh() -> None:
    """expires 100 answered with 100: no refresh; the record goes at expiry."""
    h = Harness()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x"), expires=100), h.now)
    h.ok_publish(h.one(), "e1", 100)
    h.advance(101)
    h.none()
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    [gone] = h.take_events(PublicationRemoved)
    assert gone.reason == "expired"  # type: ignore[attr-defined]


def test_server_shorter_expiry_is_refreshed_for_the_remaining_lifetime() -> None:
    """Asked 1000, granted 100: refreshed, asking for what is left."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x"), expires=1000), h.now)
    h.ok_publish(h.one(), "e1", 100)
    start = h.now - 0
    refresh = h.next_request(70)
    assert refresh.expires is not None and 900 < refresh.expires <= 950
    assert h.now - start <= 70


def test_expires_0_removes() -> None:
    """expires 0: a PUBLISH with Expires 0 and SIP-If-Match, then the record is gone."""
    h = Harness()
    published(h)
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, expires=0), h.now)
    remove = h.one()
    assert remove.expires == 0 and remove.sip_if_match == "e1" and remove.body == b""
    h.answer(remove, 200, [("SIP-ETag", "e1"), ("Expires", "0")])
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    assert [e.reason for e in h.take_events(PublicationRemoved)] == ["removed"]  # type: ignore[attr-defined]


def test_remove_without_record_sends_nothing() -> None:
    """Removing what we do not hold is a no-op, as in the seed."""
    h = Harness()
    assert h.agent.send_publish(PublishInfo(pres_uri=ALICE, expires=0), h.now) is None
    h.none()


def test_remove_while_initial_in_flight_waits_then_removes() -> None:
    """A removal during the initial PUBLISH is sent after its 200."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    first = h.one()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, expires=0), h.now)
    h.none()
    h.ok_publish(first, "e1")
    remove = h.one()
    assert remove.expires == 0 and remove.sip_if_match == "e1"


def test_insert_type_forces_an_initial_publish() -> None:
    """INSERT_TYPE sends an initial PUBLISH even when an ETag is held."""
    h = Harness()
    published(h)
    h.agent.send_publish(
        PublishInfo(pres_uri=ALICE, body=pidf("new"), flag=UpdateType.INSERT_TYPE), h.now
    )
    request = h.one()
    assert request.sip_if_match is None and b"new" in request.body


def test_min_expires_raises_small_requests() -> None:
    """With min_expires 300, expires 60 is asked as 300."""
    h = Harness(EngineConfig(outbound_proxy="sip:192.0.2.1", min_expires=300))
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x"), expires=60), h.now)
    assert h.one().expires == 300


def test_presence_tuple_id_is_stable_across_updates() -> None:
    """A tuple without an id gets the record's tuple id, the same in every update."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("a")), h.now)
    first = h.one()
    h.ok_publish(first, "e1")
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("b")), h.now)
    second = h.one()
    ids = [r.body.split(b'<tuple id="')[1].split(b'"')[0] for r in (first, second)]
    assert ids[0] == ids[1] and ids[0].startswith(b"t")
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("c", "mine")), h.now)


def test_resume_by_etag_sends_a_refresh() -> None:
    """A caller that knows an ETag (and gives no body) refreshes it."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, etag="known"), h.now)
    request = h.one()
    assert request.sip_if_match == "known" and request.body == b""


def test_fatal_answer_deletes_and_reports() -> None:
    """403 ends the publication: reported with no retry, record gone."""
    h = Harness()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    h.answer(h.one(), 403)
    [failed] = h.take_events(PublicationFailed)
    assert failed.status == 403 and failed.retry_at is None  # type: ignore[attr-defined]
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    h.advance(3600)
    h.none()


@pytest.mark.parametrize(
    ("info", "message"),
    [
        (PublishInfo(pres_uri=ALICE), "needs a body"),
        (PublishInfo(pres_uri="not a uri", body=b"x"), "pres_uri"),
        (PublishInfo(pres_uri=ALICE, body=b"x", event=1 << 20), "unknown event flag .*known events are presence"),
        (PublishInfo(pres_uri=ALICE, body=b"x", event=EventFlag.PWINFO_EVENT), "subscribe only"),
        (PublishInfo(pres_uri=ALICE, body=b"<presence", expires=60), "body rejected"),
        (PublishInfo(pres_uri=ALICE, body=b"x", expires=-7), "expires"),
        (PublishInfo(pres_uri=ALICE, body=b"x", outbound_proxy="tel:123"), "non-SIP"),
    ],
)
def test_bad_calls_raise_clear_errors(info: PublishInfo, message: str) -> None:
    """What cannot be sent raises ValueError naming the problem, and sends nothing."""
    h = Harness()
    with pytest.raises(ValueError, match=message):
        h.agent.send_publish(info, h.now)
    h.none()
    assert h.agent.counts()["records"] == 0


def test_callbacks_fire_for_api_requests_only_and_errors_are_contained() -> None:
    """A registered callback sees the final reply of an API request (not of
    a timer refresh); a callback that raises becomes an event."""
    h = Harness()
    seen: list[int] = []
    h.agent.register_callback(SourceFlag.MI_PUBLISH, lambda rec, msg, p: seen.append(msg.status), None)
    h.agent.register_callback(SourceFlag.UL_PUBLISH, lambda rec, msg, p: seen.append(-1), None)

    def boom(rec: object, msg: object, param: object) -> None:
        raise RuntimeError("user bug")

    h.agent.register_callback(1 << 30 | SourceFlag.MI_PUBLISH, boom, None)
    replies: list[object] = []
    info = PublishInfo(pres_uri=ALICE, body=pidf("x"), expires=-1,
                       callback=lambda reply, param: replies.append((reply.status, param)), cb_param="p")
    h.agent.send_publish(info, h.now)
    h.ok_publish(h.one(), "e1", 60)
    assert seen == [200] and replies == [(200, "p")]
    assert len(h.take_events(CallbackFailed)) == 1
    h.ok_publish(h.next_request(31), "e2", 60)  # a timer refresh: no callbacks
    assert seen == [200] and replies == [(200, "p")]


def test_malformed_answer_does_not_break_the_engine() -> None:
    """A 200 whose SIP-ETag is malformed counts as missing; no exception escapes."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("x")), h.now)
    h.answer(h.one(), 200, [("SIP-ETag", "bad etag with spaces"), ("Expires", "60")])
    assert h.take_events(PublicationSucceeded) == []
    assert h.take_events(PublicationFailed)


def test_add_event_registers_a_package_with_its_own_hook() -> None:
    """A package added with add_event is published with its Content-Type and
    its process_body sees the record's counter and tuple id."""
    from pua.core import EventPackage

    h = Harness()
    seen: list[tuple[int, str]] = []

    def hook(body: bytes, version: int, tuple_id: str) -> bytes:
        seen.append((version, tuple_id))
        return body.replace(b"VERSION", str(version).encode())

    h.agent.add_event(EventPackage(flag=1 << 20, name="x-status", content_type="text/x-status",
                                   process_body=hook))
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=b"v=VERSION", event=1 << 20, expires=-1), h.now)
    first = h.one()
    assert first.event is not None and first.event.name == "x-status"
    assert first.content_type == "text/x-status" and first.body == b"v=0"
    h.ok_publish(first, "e1")
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=b"v=VERSION", event=1 << 20, expires=-1), h.now)
    assert h.one().body == b"v=1"
    assert [v for v, _ in seen] == [0, 1] and seen[0][1] == seen[1][1]
    with pytest.raises(ValueError, match="already registered"):
        h.agent.add_event(EventPackage(flag=1 << 21, name="x-status", content_type=None))


def test_412_to_a_resumed_etag_without_body_is_final() -> None:
    """A publication resumed by ETag alone cannot be re-published after a 412:
    the failure is reported, not looped."""
    h = Harness()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, etag="stale"), h.now)
    h.answer(h.one(), 412)
    [failed] = h.take_events(PublicationFailed)
    assert failed.status == 412 and failed.retry_at is None  # type: ignore[attr-defined]
    assert h.agent.record(key) is None  # type: ignore[arg-type]
    h.none()


def test_423_to_a_refresh_keeps_an_update_that_waits() -> None:
    """A refresh refused with 423 is sent again with Min-Expires, still as
    a refresh; an update made meanwhile waits and goes out after it."""
    h = Harness()
    published(h, expires=600)
    refresh = h.next_request(600)
    assert refresh.body == b""
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf("busy"), expires=-1), h.now)
    h.none()  # one PUBLISH in flight at a time
    h.answer(refresh, 423, [("Min-Expires", "7200")])
    again = h.one()
    assert again.body == b"" and again.sip_if_match == "e1" and again.expires == 7200
    h.ok_publish(again, "e2", 7200)
    modify = h.one()
    assert modify.sip_if_match == "e2" and b"<note>busy</note>" in modify.body
