"""Records made from stored rows in one go (a restart makes a million) are
the records the constructors and setters make, slot for slot; each kind's
columns make the same record as the whole row."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from pua.core import PresenceEngine
from pua.core.persist import (
    PUBLICATION_COLUMNS,
    ROW_COLUMNS,
    SUBSCRIPTION_COLUMNS,
    publication_from_values,
    record_from_values,
    records_from_values,
    subscription_from_values,
)
from pua.core.records import (
    PublicationRecord,
    PubState,
    Record,
    RecordKey,
    RecordOptions,
    SubscriptionRecord,
    SubscriptionRoute,
    SubState,
    tuple_id_of,
)
from pua.core.requests import parse_extra_headers
from pua.sip.abnf import split_quoted

from .harness import Harness

PIDF = "application/pidf+xml"
MADE = tuple_id_of("sip:made@example.com", 1, "", 64)


def usual(row: dict[str, Any], content_type: str | None) -> Record:
    """The record of ``row`` through the constructors and setters (what
    record_from_values did, one attribute at a time)."""
    key = RecordKey(
        str(row["pres_uri"]),
        int(row["event"]),
        str(row["pres_id"] or ""),
        int(row["flag"]),
        str(row["watcher_uri"] or ""),
    )
    desired = int(row["desired_expires"] or 0)
    extra = parse_extra_headers(row["extra_headers"]) if row["extra_headers"] else ()
    proxy = row["outbound_proxy"] or None
    record: Record
    if not key.watcher_uri:
        pub = PublicationRecord(key, etag=row["etag"] or None)
        pub.tuple_id = str(row["tuple_id"] or "")
        pub.body = bytes(row["body"]) if row["body"] is not None else None
        stored = row["content_type"]
        own = None if not stored or stored == content_type else stored
        pub.options = RecordOptions.of(extra, proxy, own)
        pub.state = PubState.PUBLISHED if row["etag"] else PubState.DONE
        record = pub
    else:
        sub = SubscriptionRecord(key, str(row["call_id"]), str(row["from_tag"]))
        sub.to_tag = row["to_tag"] or None
        routes = tuple(
            p.strip() for p in split_quoted(str(row["record_route"] or ""), ",") if p.strip()
        )
        target = str(row["remote_target"] or key.pres_uri)
        remote = str(row["remote_contact"] or target)
        own_contact = str(row["contact"] or "") or None
        if own_contact is not None and "@" not in own_contact:
            own_contact = None
        sub.route = SubscriptionRoute.of(
            initial_target=None if target == key.pres_uri else target,
            remote_target=None if remote == target else remote,
            route_set=routes,
            contact=own_contact,
            from_tag=sub.route.from_tag,
        )
        sub.options = RecordOptions.of(extra, proxy)
        sub.state = SubState.ACTIVE if sub.to_tag else SubState.DONE
        record = sub
    record.expires_at = float(row["expires"] or 0)
    record.desired_until = None if desired == 0 else float(desired)
    record.cseq = int(row["cseq"] or 0)
    if row.get("id") is not None:
        record.row_id = int(row["id"])
    return record


def slots(record: Record) -> dict[str, Any]:
    """Every slot of ``record`` (a slot never set would raise here)."""
    names = itertools.chain.from_iterable(
        getattr(cls, "__slots__", ()) for cls in type(record).__mro__
    )
    return {name: getattr(record, name) for name in names}


def publication(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "id": n, "pres_uri": f"sip:p{n}@example.com", "pres_id": "", "event": 1,
        "expires": 1_800_000_000 + n, "desired_expires": 0, "flag": 64, "etag": f"e{n}",
        "tuple_id": f"t{n}", "watcher_uri": "", "call_id": f"c{n}", "to_tag": "",
        "from_tag": "", "cseq": 3, "record_route": None, "contact": "", "remote_contact": "",
        "version": 3, "extra_headers": "", "body": b"<presence/>", "content_type": PIDF,
        "outbound_proxy": None, "remote_target": None,
    }
    return {**row, **changes}


def subscription(n: int, **changes: Any) -> dict[str, Any]:
    row = {
        "id": n, "pres_uri": f"sip:p{n}@example.com", "pres_id": "", "event": 1,
        "expires": 1_800_000_000 + n, "desired_expires": 0, "flag": 256, "etag": "",
        "tuple_id": None, "watcher_uri": "sip:w@example.com", "call_id": f"call{n:012d}",
        "to_tag": f"tt{n}", "from_tag": f"call{n:04d}", "cseq": 9, "record_route": None,
        "contact": "sip:127.0.0.1:5070", "remote_contact": "sip:ps@192.0.2.1",
        "version": 4, "extra_headers": "", "body": None, "content_type": None,
        "outbound_proxy": None, "remote_target": f"sip:p{n}@example.com",
    }
    return {**row, **changes}


ROWS = [
    publication(1),
    publication(2, etag="", body=None),  # no ETag: DONE
    publication(3, tuple_id=MADE, pres_uri="sip:made@example.com"),  # the made id: not kept
    publication(4, tuple_id="t" + "0" * 10),  # looks made, is not: kept
    publication(5, tuple_id=None, pres_id="p5", event=2, flag=1024),
    publication(6, extra_headers="X-A: 1\r\nX-B: two\r\n", outbound_proxy="sip:proxy.example.com"),
    publication(7, content_type="application/other+xml", desired_expires=1_800_000_500),
    publication(8, content_type=None, expires=None, cseq=None, body=bytearray(b"<x/>")),
    publication(9, watcher_uri=None),
    subscription(10),
    subscription(11, to_tag="", remote_contact=""),  # temporary dialog: DONE
    subscription(12, from_tag="theirs1", record_route="<sip:a;lr>, <sip:b;lr>"),
    subscription(13, contact="sip:me@192.0.2.7", remote_target="sip:other@example.com"),
    subscription(14, extra_headers="X-C: 3\r\n", outbound_proxy="sip:proxy.example.com"),
    subscription(15, desired_expires=1_800_000_900, pres_id="s15", event=2),
]


def values(row: dict[str, Any], columns: tuple[str, ...] = ROW_COLUMNS) -> tuple[Any, ...]:
    return (row["id"], *(row[c] for c in columns))


@pytest.mark.parametrize("row", ROWS, ids=lambda r: str(r["id"]))
def test_a_record_from_a_row_is_the_usual_record(row: dict[str, Any]) -> None:
    made = record_from_values(values(row), PIDF)
    expected = usual(row, PIDF)
    assert type(made) is type(expected)
    assert slots(made) == slots(expected)
    assert made.key == expected.key and hash(made) == hash(expected.key)
    # each kind's own columns make the same record
    if isinstance(expected, PublicationRecord):
        alone = publication_from_values(values(row, PUBLICATION_COLUMNS), PIDF)
    else:
        alone = subscription_from_values(values(row, SUBSCRIPTION_COLUMNS))
    assert slots(alone) == slots(expected)


def test_a_made_tuple_id_is_not_kept() -> None:
    [made, kept] = [
        record_from_values(values(ROWS[i]), PIDF) for i in (2, 3)
    ]
    assert isinstance(made, PublicationRecord) and isinstance(kept, PublicationRecord)
    assert made._tuple_id is None and made.tuple_id == MADE
    assert kept._tuple_id == "t" + "0" * 10 == kept.tuple_id


def test_rows_of_a_chunk_become_records_and_the_bad_ones_are_named() -> None:
    """Every row of a chunk in its order; the ids of rows that cannot be
    records: an unknown event, extra headers that do not parse, a
    subscription without a dialog."""
    bad = [
        publication(20, event=99),
        publication(21, extra_headers="no colon\r\n"),
        subscription(22, call_id=""),
        publication(23, event="x"),
    ]
    rows = [*ROWS[:4], *bad, *ROWS[4:]]

    def content_type_of(event: int) -> str | None:
        if event not in (1, 2):
            raise KeyError(event)
        return PIDF

    records, ids = records_from_values([values(r) for r in rows], content_type_of)
    assert ids == [20, 21, 22, 23]
    assert [slots(r) for r in records] == [slots(usual(row, PIDF)) for row in ROWS]
    for kind, columns, cls in (
        ("publication", PUBLICATION_COLUMNS, PublicationRecord),
        ("subscription", SUBSCRIPTION_COLUMNS, SubscriptionRecord),
    ):
        mine = [r for r in rows if bool(r["watcher_uri"]) is (cls is SubscriptionRecord)]
        records, ids = records_from_values(
            [values(r, columns) for r in mine], content_type_of, kind
        )
        assert ids == [r["id"] for r in bad if r in mine]
        assert [slots(r) for r in records] == [
            slots(usual(row, PIDF)) for row in ROWS if row in mine
        ]


def _taken_back(engine: PresenceEngine, record: Record) -> dict[str, Any]:
    """What resuming left on ``record`` and in the engine."""
    held = engine.record(record)
    pending = record.pending
    return {
        **{name: value for name, value in slots(record).items() if name != "_work"},
        "held by the table": held is record,
        "wish": None if pending is None else (pending.body, pending.remove),
    }


def test_resume_all_is_resume_one_record_after_the_other() -> None:
    """Taken back in bulk or one by one (same due times, same jitter):
    the same records held in the same states with the same deadlines,
    the same ones refused, and those left unchanged."""
    now = 1_800_000_000.0
    rows = [
        *ROWS,
        publication(30, desired_expires=int(now) - 5),  # lifetime over
        publication(31, etag="", body=None),  # lost, nothing to publish again
        publication(32, expires=int(now) - 100),  # dropped by the server: published again
        subscription(33, expires=int(now) - 100),  # dialog over: a new one
        subscription(34, desired_expires=int(now) + 1),  # over (within a second)
        publication(35, pres_uri="sip:p1@example.com", etag="other"),  # key of row 1: held
        subscription(36, pres_uri="sip:p10@example.com"),  # key of row 10: held
    ]

    def made() -> list[Record]:
        return [record_from_values(values(row), PIDF) for row in rows]

    due = [now + 0.5 * n for n in range(len(rows))]
    one, bulk = Harness(seed="same"), Harness(seed="same")
    singly = made()
    kept = [one.agent.resume(record, now, at) for record, at in zip(singly, due, strict=True)]
    together = made()
    before = [slots(record) for record in together]
    refused = bulk.agent.resume_all(together, now, due)
    assert sorted(r.row_id or 0 for r in refused) == [
        r.row_id for r, ok in zip(singly, kept, strict=True) if not ok
    ] == [2, 30, 31, 34, 35, 36]
    refused_ones = {id(record) for record in refused}
    for record, was in zip(together, before, strict=True):
        if id(record) in refused_ones:
            assert slots(record) == was  # refused: unchanged
            assert bulk.agent.record(record) is not record
    assert [_taken_back(bulk.agent, r) for r in together] == [
        _taken_back(one.agent, r) for r in singly
    ]
    assert bulk.agent.counts() == one.agent.counts()
    # The same requests go out at the same times.
    for h in (one, bulk):
        h.now = now
    sent_one: list[tuple[float, str, str]] = []
    sent_bulk: list[tuple[float, str, str]] = []
    for h, sent in ((one, sent_one), (bulk, sent_bulk)):
        while (at := h.agent.get_timer()) is not None and at < now + 40:
            h.now = max(h.now, at)
            h.agent.handle_timer(h.now)
            sent.extend((h.now, str(r.cseq), r.call_id) for r in h.take())
    assert sent_bulk == sent_one and len(sent_one) > 5
    # A record held already is refused, unchanged.
    held = together[0]
    was = slots(held)
    assert bulk.agent.resume_all([held], now, [now]) == [held]
    assert not bulk.agent.resume(held, now, now)
    assert slots(held) == was
