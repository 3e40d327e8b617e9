"""The engine's shape: callbacks outside transitions, no leak without a
store, a table whose hash_size costs nothing, one error tree, bodies of
every kind the library takes."""

from __future__ import annotations

import gc
import sys
import tracemalloc

import pytest

from pua.bodies import basic_pidf, parse_pidf
from pua.core import (
    DialogState,
    EngineConfig,
    PresenceEngine,
    PublishInfo,
    PubState,
    RecordKey,
    RecordTable,
    SourceFlag,
    SubscribeInfo,
)
from pua.errors import (
    BodyError,
    PuaError,
    StateError,
    UnknownEventError,
    UsageError,
)
from pua.sip import Request, Response, make_response, parse_message

from .harness import Harness

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = basic_pidf(ALICE, "open", tuple_id="t1")


def test_callback_may_call_the_engine_after_the_transition() -> None:
    """A registered callback that publishes and subscribes again runs once
    the answer's transition is complete: the record it sees is settled
    (PUBLISHED, with its ETag) and its own calls go out."""
    h = Harness()
    seen: list[tuple[object, str | None]] = []

    def again(record: object, message: Request | Response | None, param: object) -> None:
        assert isinstance(message, Response)
        seen.append((record.state, record.etag))  # type: ignore[attr-defined]
        if len(seen) == 1:
            h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=basic_pidf(ALICE, "closed", tuple_id="t1")), h.now)
            h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB), h.now)
            dialog = h.agent.is_dialog("none", None, "none")
            assert dialog is DialogState.NONE

    h.agent.register_callback(SourceFlag.MI_PUBLISH, again)
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF), h.now)
    h.ok_publish(h.one(), "e1")
    assert seen == [(PubState.PUBLISHED, "e1")]
    sent = h.take()
    methods = sorted(r.method for r in sent)
    assert methods == ["PUBLISH", "SUBSCRIBE"]
    modify = next(r for r in sent if r.method == "PUBLISH")
    assert modify.sip_if_match == "e1" and b"closed" in modify.body


def test_a_callback_that_raises_is_reported_and_the_engine_goes_on() -> None:
    """A failing callback becomes a CallbackFailed event; the record is intact."""
    h = Harness()

    def boom(record: object, message: object, param: object) -> None:
        raise RuntimeError("user code")

    h.agent.register_callback(SourceFlag.MI_PUBLISH, boom)
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF), h.now)
    h.ok_publish(h.one(), "e1")
    failed = [e for e in h.take_events() if type(e).__name__ == "CallbackFailed"]
    assert len(failed) == 1 and "user code" in failed[0].error  # type: ignore[attr-defined]
    record = h.agent.record(key)  # type: ignore[arg-type]
    assert record is not None and record.state is PubState.PUBLISHED


def _answer_all(engine: PresenceEngine, now: float) -> None:
    """Answer every PUBLISH sent with 200 (the server; keeps no history)."""
    for datagram in engine.datagrams_to_send():
        request = parse_message(datagram.data)
        assert isinstance(request, Request)
        response = make_response(request, 200)
        response.headers.add("SIP-ETag", f"e{request.cseq.seq}")
        response.headers.add("Expires", "0" if request.expires == 0 else "60")
        engine.receive_datagram(bytes(response), datagram.address, "udp", now)
    while engine.next_event() is not None:
        pass


def _churn(engine: PresenceEngine, now: float, rounds: int) -> float:
    for n in range(rounds):
        uri = f"sip:u{n}@example.com"
        engine.send_publish(PublishInfo(pres_uri=uri, body=PIDF, expires=60), now)
        _answer_all(engine, now)
        engine.send_publish(PublishInfo(pres_uri=uri, expires=0), now)
        _answer_all(engine, now)
    now += 10  # timer K of every finished transaction
    while (deadline := engine.get_timer()) is not None and deadline <= now:
        engine.handle_timer(now)  # a slice of what is due a call
    return now


def test_publish_remove_churn_without_a_store_leaves_memory_flat() -> None:
    """With no store attached nothing remembers a record once it is gone:
    rounds of publish/remove leave no records, timers or transactions, and
    the memory held does not grow from round to round."""
    engine = Harness().agent
    now = _churn(engine, 1_700_000_000.0, 300)  # warm-up: caches and pools
    tracemalloc.start()
    try:
        now = _churn(engine, now, 300)
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        now = _churn(engine, now, 900)
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    counts = engine.counts()
    assert counts["records"] == 0 and counts["timers"] == 0
    assert counts["client_transactions"] == 0 and counts["server_transactions"] == 0
    assert engine.take_store_changes() == (set(), set(), [])
    # Three times the rounds hold no more (a key kept per record that ever
    # existed would be 900 x ~150 bytes).
    assert second - first < 20_000, (first, second)


def test_store_changes_are_kept_only_when_tracked() -> None:
    """track_changes() turns on change tracking; deletions carry row ids."""
    h = Harness()
    h.agent.track_changes()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF), h.now)
    changed, refreshed, deleted = h.agent.take_store_changes()
    assert changed == {key} and refreshed == set() and deleted == []
    record = h.agent.record(key)  # type: ignore[arg-type]
    assert record is not None
    record.row_id = 17  # as the store sets it once written
    h.ok_publish(h.one(), "e1")
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, expires=0), h.now)
    h.answer(h.one(), 200, [("SIP-ETag", "e1"), ("Expires", "0")])
    changed, refreshed, deleted = h.agent.take_store_changes()
    assert changed == set() and refreshed == set() and deleted == [17]


def test_a_refresh_marks_only_what_a_refresh_changes() -> None:
    """A publication's refresh and its 2xx are kept as refreshed (the store
    writes ETag, expiry and CSeq); a new document marks the row whole, and
    whole wins when both happened."""
    h = Harness()
    h.agent.track_changes()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=-1), h.now)
    h.ok_publish(h.one(), "e1", expires=600)
    assert h.agent.take_store_changes()[0] == {key}  # a new row: whole
    record = h.agent.record(key)  # type: ignore[arg-type]
    assert record is not None
    record.row_id = 5
    refresh = h.next_request(600)
    assert refresh.headers.get("SIP-If-Match") == "e1"
    h.ok_publish(refresh, "e2", expires=600)
    assert h.agent.take_store_changes() == (set(), {key}, [])
    h.ok_publish(h.next_request(600), "e3", expires=600)
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF.replace(b"open", b"closed")), h.now)
    h.ok_publish(h.one(), "e4", expires=600)
    assert h.agent.take_store_changes() == ({key}, set(), [])


def test_a_notify_in_the_dialog_marks_the_subscription_refreshed() -> None:
    """The 2xx that makes the dialog marks the row whole; a NOTIFY that
    leaves the route as it was, and a refresh, mark it refreshed; a NOTIFY
    that moves the remote target marks it whole."""
    h = Harness()
    h.agent.track_changes()
    key = h.agent.send_subscribe(
        SubscribeInfo(pres_uri=ALICE, watcher_uri="sip:bob@example.com", expires=-1), h.now
    )
    request = h.one()
    h.answer(request, 200, [("Expires", "600"), ("Contact", "<sip:ps@192.0.2.1:5060>")])
    h.notify(request, "active;expires=600", contact="<sip:ps@192.0.2.1:5060>")
    assert h.agent.take_store_changes()[0] == {key}
    record = h.agent.record(key)  # type: ignore[arg-type]
    assert record is not None
    record.row_id = 9
    h.notify(request, "active;expires=500", cseq=2, contact="<sip:ps@192.0.2.1:5060>")
    assert h.agent.take_store_changes() == (set(), {key}, [])
    refresh = h.next_request(600)
    h.answer(refresh, 200, [("Expires", "600")])
    assert h.agent.take_store_changes() == (set(), {key}, [])
    h.notify(request, "active;expires=600", cseq=3, contact="<sip:moved@192.0.2.7:5060>")
    assert h.agent.take_store_changes() == ({key}, set(), [])


@pytest.mark.parametrize("hash_size", [1, 9, 20])
def test_hash_size_costs_nothing(hash_size: int) -> None:
    """An empty table costs the same at any hash_size (well under 1 MiB),
    and hash_size still names 2^hash_size partitions."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        table = RecordTable(hash_size)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 1 << 20
    key = RecordKey(ALICE, 1, "", 64)
    assert 0 <= table.partition(key) < 1 << hash_size
    assert table.partition(key) == table.partition(RecordKey(ALICE, 1, "", 64))
    assert sys.getsizeof(table) < 1024


def test_counts_are_kept_as_the_engine_goes() -> None:
    """Counts by kind and state follow every transition without a scan."""
    h = Harness()
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF), h.now)
    assert h.agent.records_by_state()[("publication", "sending")] == 1
    h.ok_publish(h.one(), "e1")
    by_state = h.agent.records_by_state()
    assert by_state[("publication", "sending")] == 0
    assert by_state[("publication", "published")] == 1
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB), h.now)
    assert h.agent.counts()["subscriptions"] == 1 and h.agent.counts()["publications"] == 1
    assert h.agent.records_by_state()[("subscription", "subscribing")] == 1


def test_misuse_raises_one_error_tree() -> None:
    """Misuse raises documented PuaErrors that are also the Python errors
    users expect; an unknown event names the known ones."""
    h = Harness()
    with pytest.raises(UnknownEventError, match="known events are presence") as caught:
        h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, event="presense"), h.now)
    assert isinstance(caught.value, UsageError | ValueError | PuaError)
    assert "presence" in caught.value.known
    with pytest.raises(UsageError):
        h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, expires=-2), h.now)
    with pytest.raises(UsageError, match="extra header"):
        h.agent.send_publish(
            PublishInfo(pres_uri=ALICE, body=PIDF, extra_headers="no colon here"), h.now
        )
    with pytest.raises(BodyError):
        h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=b"<presence"), h.now)
    with pytest.raises(UsageError, match="watcher_uri"):
        h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=""), h.now)
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB), h.now)
    with pytest.raises(UsageError, match="body is bytes, str"):
        h.agent.send_publish(PublishInfo(pres_uri=BOB, body=42), h.now)  # type: ignore[arg-type]
    assert h.take() != []  # only the valid subscribe went out
    assert issubclass(StateError, RuntimeError) and issubclass(BodyError, ValueError)


@pytest.mark.parametrize("kind", ["bytes", "str", "document"])
def test_a_body_may_be_bytes_text_or_a_document(kind: str) -> None:
    """The same PIDF given as bytes, text or a pua.bodies value is sent alike."""
    h = Harness()
    body: object = {"bytes": PIDF, "str": PIDF.decode(), "document": parse_pidf(PIDF)}[kind]
    h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=body, event="presence"), h.now)  # type: ignore[arg-type]
    request = h.one()
    assert parse_pidf(request.body).tuples[0].basic == "open"
    assert request.content_type == "application/pidf+xml"


def test_extra_headers_as_kamailio_text_or_pairs() -> None:
    """Extra headers are taken as Kamailio's lines or as pairs, alike."""
    for given in ("X-A: 1\r\nX-B: 2\r\n", [("X-A", "1"), ("X-B", "2")]):
        h = Harness(EngineConfig(outbound_proxy="sip:192.0.2.1:5060"))
        h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF, extra_headers=given), h.now)  # type: ignore[arg-type]
        request = h.one()
        assert request.headers.get("x-a") == "1" and request.headers.get("x-b") == "2"


def test_records_are_compact_and_are_their_own_keys() -> None:
    """A record keeps no key tuple, no dict and no in-flight state between
    requests; the table finds it by a RecordKey all the same."""
    h = Harness()
    key = h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=PIDF), h.now)
    h.ok_publish(h.one(), "e1")
    h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB), h.now)
    h.answer(h.one(), 200, [("Expires", "600")])
    pub = h.agent.record(key)  # type: ignore[arg-type]
    [sub] = [r for r in h.agent.records() if r.key.watcher_uri]
    for record in (pub, sub):
        assert record is not None and not hasattr(record, "__dict__")
        assert record.flight is None and record.pending is None  # nothing in flight
        assert sys.getsizeof(record) <= 192
        assert record == record.key and hash(record) == hash(record.key)
        assert h.agent.record(record.key) is record
    assert pub is not None and pub.options is sub.options  # both have the defaults: shared
    assert sub.from_tag == h.requests[-1].from_.tag  # made from the Call-ID
