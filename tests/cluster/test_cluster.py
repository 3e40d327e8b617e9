"""Three `pua serve` nodes on one PostgreSQL database against a real
Kamailio presence server granting 20 s: each record refreshed by one node
once a period, a killed node's records taken over by the others without a
lapse or a 412, a restarted node given its share back, a database outage
that moves nothing, and a NOTIFY that reached the wrong node handed over."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from tests.peers.conftest import poll
from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import RawSipClient, pidf
from tests.service.running import RunningService

from .conftest import MAX_EXPIRES
from .harness import DatabaseGate, Nodes, PostgresDatabase, Request, RequestLog

pytestmark = pytest.mark.interop

LEASE = 3.0
PARTITIONS = 16  # --hash-size 4
# With Expires 20 a refresh comes 8 to 10 s after the last 2xx.
PERIOD = MAX_EXPIRES / 2
EARLIEST = PERIOD * 0.8
# A refresh is never sooner than this after the last one of its record
# (once a period), and a record lapses when none comes within Expires.
NOT_TWICE = EARLIEST - 0.5


def node_flags(presence: KamailioPresence, db_url: str) -> tuple[str, ...]:
    return (
        "--cluster", "--db-url", db_url, "--hash-size", "4", "--lease-time", str(LEASE),
        "--outbound-proxy", presence.uri, "--refresh-margin", "10",
    )  # fmt: skip


def cluster(svc: RunningService) -> dict[str, Any]:
    answer = svc.rpc("pua.cluster")
    assert "result" in answer, answer
    return dict(answer["result"])


def spread(nodes: Iterable[RunningService]) -> list[set[int]] | None:
    """The partitions each node owns, once every node owns some, together
    all of them, none twice, and each node sees none free."""
    views = [cluster(svc) for svc in nodes]
    owned = [set(v["owned"]) for v in views]
    if not all(owned) or sum(map(len, owned)) != PARTITIONS:
        return None
    if set().union(*owned) != set(range(PARTITIONS)) or any(v["free"] for v in views):
        return None
    return owned


def records(svc: RunningService) -> dict[Any, dict[str, Any]]:
    """The node's records: publications by pres_uri, subscriptions by
    (pres_uri, watcher_uri)."""
    out: dict[Any, dict[str, Any]] = {}
    for r in json.loads(svc.get("/records"))["records"]:
        key = r["pres_uri"] if r["kind"] == "publication" else (r["pres_uri"], r["watcher_uri"])
        out[key] = r
    return out


def make_records(svc: RunningService, pubs: list[str], subs: list[tuple[str, str]]) -> None:
    """Publish and subscribe through ``svc`` in batches (so the records'
    refreshes come close together), every answer a success."""
    calls: list[dict[str, Any]] = [
        {"jsonrpc": "2.0", "id": n, "method": "pua.publish",
         "params": {"pres_uri": uri, "expires": -1, "event": "presence",
                    "content_type": "application/pidf+xml", "body": pidf(uri)}}
        for n, uri in enumerate(pubs)
    ] + [
        {"jsonrpc": "2.0", "id": 10_000 + n, "method": "pua.subscribe",
         "params": {"pres_uri": p, "watcher_uri": w, "expires": -1}}
        for n, (p, w) in enumerate(subs)
    ]  # fmt: skip
    batches = [calls[i:i + 50] for i in range(0, len(calls), 50)]
    with ThreadPoolExecutor(4) as pool:
        answers = [a for batch in pool.map(lambda b: svc.post("/rpc", b), batches) for a in batch]
    failed = [a for a in answers if "result" not in a]
    assert not failed, failed[:3]


def owner_ports(nodes: Nodes, names: Iterable[str]) -> dict[Any, int]:
    """Which node's SIP port holds each record."""
    out: dict[Any, int] = {}
    for name in names:
        svc = nodes[name]
        for key in records(svc):
            assert key not in out, f"{key} held by two nodes"
            out[key] = svc.sip_port
    return out


def responses_412(nodes: Nodes, names: Iterable[str]) -> int:
    return sum(int(nodes[n].rpc("pua.stats")["result"]["responses"].get("412", 0)) for n in names)


def check_no_lapse(requests: list[Request], what: Any) -> None:
    """Consecutive requests of one record: never two in one period, never
    a gap the server's Expires does not cover."""
    gaps = [later.time - earlier.time for earlier, later in pairwise(requests)]
    assert all(g < MAX_EXPIRES - 1 for g in gaps), (what, gaps)


def test_records_are_refreshed_by_one_node_taken_over_and_given_back(
    presence: KamailioPresence, database: PostgresDatabase, tmp_path: Path
) -> None:
    """300 publications and 100 subscriptions made through one node: each refreshed by exactly one node once a period; a node killed is taken over by the others within the lease, by stored ETag and target refresh, with no lapse, no 412, NOTIFYs at the new owner; restarted, it gets its share back without a lapse or a duplicate."""
    pubs = [f"sip:p{n:03d}@example.com" for n in range(300)]
    subs = [(pubs[n], f"sip:w{n:03d}@example.com") for n in range(100)]
    log = RequestLog(presence)
    names = ("A", "B", "C")
    with Nodes(tmp_path, *node_flags(presence, database.url)) as nodes:
        for name in names:
            nodes.start(name, "--node-id", name)
        poll("three nodes share the partitions", lambda: spread(nodes[n] for n in names),
             timeout=20, interval=0.2)
        make_records(nodes["A"], pubs, subs)
        owners = owner_ports(nodes, names)
        assert set(owners) == set(pubs) | set(subs)
        by_node = {nodes[n].sip_port: sum(1 for p in owners.values() if p == nodes[n].sip_port)
                   for n in names}
        assert all(by_node.values()), by_node  # every node holds records
        rows = database.query("SELECT count(*) AS n FROM pua")
        assert rows[0]["n"] == 400

        # -- A killed --------------------------------------------------------------
        a_port = nodes["A"].sip_port
        a_records = {k for k, port in owners.items() if port == a_port}
        a_pubs = {k for k in a_records if isinstance(k, str)}

        def lull() -> dict[str, str] | None:
            # A moment when killing A loses no ETag: its rows hold what it
            # holds, and no refresh of it falls due within a second.
            held = records(nodes["A"])
            etags = {uri: held[uri]["etag"] for uri in a_pubs}
            stored = {r["pres_uri"]: r["etag"]
                      for r in database.query(
                          "SELECT pres_uri, etag FROM pua WHERE watcher_uri = ''")}
            due = min(held[uri]["expires_at"] for uri in a_pubs) - (MAX_EXPIRES - EARLIEST)
            ok = all(stored[u] == e for u, e in etags.items()) and due > time.time() + 1
            return etags if ok else None

        last_etags = poll("a lull in A's refreshes", lull, timeout=3 * PERIOD, interval=0.05)
        kill_mark = log.mark()
        nodes.kill("A")
        killed = time.time()
        b, c = nodes["B"], nodes["C"]
        taken = poll("B and C own every partition", lambda: spread([b, c]),
                     timeout=LEASE * 3 + 5, interval=0.1)
        takeover = time.time() - killed
        assert takeover < LEASE + LEASE / 3 + 2, takeover

        def refreshed_by_others() -> dict[Any, list[Request]] | None:
            after = {**log.by_record("PUBLISH", log.since(kill_mark, "PUBLISH")),
                     **log.by_record("SUBSCRIBE", log.since(kill_mark, "SUBSCRIBE"))}
            return after if a_records <= set(after) else None

        after = poll("every record of A's refreshed by B or C", refreshed_by_others,
                     timeout=LEASE + PERIOD + 5, interval=0.2)
        new_owners = owner_ports(nodes, ("B", "C"))
        assert set(new_owners) == set(owners)  # nothing lost, nothing held twice
        for key in a_records:
            assert log.senders(after[key]) == {new_owners[key]}, (key, after[key])
            assert new_owners[key] in (b.sip_port, c.sip_port)
        for uri in a_pubs:
            assert after[uri][0].if_match == last_etags[uri], after[uri]  # by stored ETag
        everything = {**log.by_record("PUBLISH"), **log.by_record("SUBSCRIBE")}
        for key in a_records:
            check_no_lapse(everything[key], key)
        assert responses_412(nodes, ("B", "C")) == 0
        # The target refresh moved the NOTIFYs: each of A's subscriptions
        # has had one at its new owner since the kill.
        a_subs = a_records - a_pubs

        def notified() -> bool:
            held = {**records(b), **records(c)}
            return all(held[k].get("last_notify") and held[k]["last_notify"]["at"] > killed
                       and held[k]["state"] == "active" for k in a_subs)

        poll("a NOTIFY of each of A's subscriptions at its new owner", notified, timeout=10)
        live = set(pubs)
        rows = presence.presentity_rows()
        assert live <= {f"sip:{r['username']}@{r['domain']}" for r in rows
                        if r["expires"] > time.time()}  # none lapsed at the server
        assert taken is not None

        # -- A back -------------------------------------------------------------------
        back_mark = log.mark()
        restarted = time.time()
        nodes.restart("A")
        poll("three nodes share the partitions again",
             lambda: spread(nodes[n] for n in names), timeout=LEASE * 3 + 10, interval=0.2)
        final = owner_ports(nodes, names)
        assert set(final) == set(owners)
        moved = {k for k in final if final[k] == nodes["A"].sip_port}
        assert moved, "A got no records back"

        def a_refreshed_its_share() -> dict[Any, list[Request]] | None:
            since = {**log.by_record("PUBLISH", log.since(back_mark, "PUBLISH")),
                     **log.by_record("SUBSCRIBE", log.since(back_mark, "SUBSCRIBE"))}
            ok = all(k in since and since[k][-1].port == nodes["A"].sip_port for k in moved)
            return since if ok else None

        since = poll("A refreshes its share", a_refreshed_its_share,
                     timeout=PERIOD + LEASE + 10, interval=0.2)
        everything = {**log.by_record("PUBLISH"), **log.by_record("SUBSCRIBE")}
        for key in moved:
            check_no_lapse(everything[key], key)
            requests = since[key]
            # One owner at a time: once A sent, no other node did.
            first_a = next(i for i, r in enumerate(requests) if r.port == nodes["A"].sip_port)
            assert log.senders(requests[first_a:]) == {nodes["A"].sip_port}, requests
            if isinstance(key, str):
                assert all(r.if_match for r in requests), requests  # no initial PUBLISH
                assert not log.early(requests, NOT_TWICE), (key, requests)  # no duplicate
        assert responses_412(nodes, names) == 0
        assert time.time() - restarted < 60

        # -- five refresh periods: one node per record, once a period ------------
        mark = log.mark()

        def periods(n: int) -> dict[Any, list[Request]] | None:
            sent = {**log.by_record("PUBLISH", log.since(mark, "PUBLISH")),
                    **log.by_record("SUBSCRIBE", log.since(mark, "SUBSCRIBE"))}
            return sent if len(sent) == 400 and all(len(r) >= n for r in sent.values()) else None

        sent = poll("five refreshes of every record", lambda: periods(5),
                    timeout=5 * PERIOD + 15, interval=0.5)
        for key, requests in sent.items():
            assert log.senders(requests) == {final[key]}, (key, requests)
            # never two in one period
            assert not log.early(requests, NOT_TWICE), (key, log.early(requests, NOT_TWICE))
            check_no_lapse(requests, key)
            if isinstance(key, str):
                assert all(r.if_match for r in requests), key  # refreshes, by ETag
                assert len({r.if_match for r in requests}) == len(requests), key
        assert responses_412(nodes, names) == 0


def test_a_database_outage_moves_nothing(
    presence: KamailioPresence, database: PostgresDatabase, tmp_path: Path
) -> None:
    """With the database cut off from every node for several leases, each node keeps refreshing its records from memory and no partition changes hands; once it is back the nodes keep their partitions and the rows catch up."""
    pubs = [f"sip:o{n:02d}@example.com" for n in range(40)]
    log = RequestLog(presence)
    names = ("A", "B", "C")
    with DatabaseGate(database.port) as gate:
        flags = node_flags(presence, database.url_via(gate.port))
        with Nodes(tmp_path, *flags) as nodes:
            for name in names:
                nodes.start(name, "--node-id", name)
            before = poll("three nodes share the partitions",
                          lambda: spread(nodes[n] for n in names), timeout=20, interval=0.2)
            make_records(nodes["B"], pubs, [])
            owners = owner_ports(nodes, names)
            epochs = {r["partition"]: r["epoch"]
                      for r in database.query("SELECT partition, epoch FROM pua_partitions")}

            gate.cut()
            cut_mark, cut_at = log.mark(), time.time()
            poll("every node sees the database gone",
                 lambda: all(cluster(nodes[n])["database"] == "unreachable" for n in names),
                 timeout=LEASE * 2 + 5, interval=0.2)

            def refreshed_in_outage() -> dict[Any, list[Request]] | None:
                sent = log.by_record("PUBLISH", log.since(cut_mark, "PUBLISH"))
                return sent if set(sent) == set(pubs) else None

            sent = poll("every publication refreshed during the outage", refreshed_in_outage,
                        timeout=PERIOD + 5, interval=0.2)
            assert time.time() - cut_at > 2 * LEASE  # leases long over meanwhile
            for uri, requests in sent.items():
                assert log.senders(requests) == {owners[uri]}, requests
            during = [set(cluster(nodes[n])["owned"]) for n in names]
            assert during == before  # nobody took anybody's partitions

            gate.restore()
            poll("every node reaches the database again",
                 lambda: all(cluster(nodes[n])["database"] == "reachable" for n in names),
                 timeout=40, interval=0.2)
            # Past the lease the nodes wait after an outage before claiming.
            turns = cluster(nodes["A"])["stats"]["turns"]
            poll("A's turns past a lease", lambda: cluster(nodes["A"])["stats"]["turns"]
                 >= turns + 4, timeout=LEASE * 3, interval=0.2)
            assert [set(cluster(nodes[n])["owned"]) for n in names] == before
            assert {r["partition"]: r["epoch"] for r in database.query(
                "SELECT partition, epoch FROM pua_partitions")} == epochs
            assert owner_ports(nodes, names) == owners

            def rows_caught_up() -> bool:
                held = {}
                for n in names:
                    held.update({k: r["etag"] for k, r in records(nodes[n]).items()})
                stored = {r["pres_uri"]: r["etag"]
                          for r in database.query("SELECT pres_uri, etag FROM pua")}
                return stored == held

            poll("the rows match the nodes' records", rows_caught_up, timeout=40, interval=0.5)
            assert responses_412(nodes, names) == 0
            everything = log.by_record("PUBLISH")
            for uri in pubs:
                check_no_lapse(everything[uri], uri)


def test_a_notify_at_the_wrong_node_is_handed_to_the_owner(
    presence: KamailioPresence, database: PostgresDatabase, tmp_path: Path
) -> None:
    """A NOTIFY of a live subscription that reaches a node which does not own it is answered 200 (not 481) and acted on by the owner; one of no stored dialog is answered 481."""
    subs = [(f"sip:h{n}@example.com", f"sip:hw{n}@example.com") for n in range(8)]
    with Nodes(tmp_path, *node_flags(presence, database.url)) as nodes:
        b, c = nodes.start("B", "--node-id", "B"), nodes.start("C", "--node-id", "C")
        poll("two nodes share the partitions", lambda: spread([b, c]), timeout=20, interval=0.2)
        make_records(b, [], subs)
        held_by_b = records(b)
        assert held_by_b, "B owns none of the subscriptions"
        key = next(iter(held_by_b))
        row = database.query(
            "SELECT call_id, from_tag, to_tag, version FROM pua"
            " WHERE pres_uri = $1 AND watcher_uri = $2", *key)[0]
        body = pidf(key[0], note="handed over")
        with RawSipClient("127.0.0.1", c.sip_port) as phone:
            def notify(call_id: str, cseq: int) -> bytes:
                head = (
                    f"NOTIFY sip:pua@127.0.0.1:{c.sip_port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP 127.0.0.1:{phone.local_port};branch=z9hG4bK{cseq}x\r\n"
                    f"From: <{key[0]}>;tag={row['to_tag']}\r\n"
                    f"To: <{key[1]}>;tag={row['from_tag']}\r\n"
                    f"Call-ID: {call_id}\r\nCSeq: {cseq} NOTIFY\r\n"
                    f"Contact: <sip:ps@127.0.0.1:{phone.local_port}>\r\n"
                    "Event: presence\r\nSubscription-State: active;expires=20\r\n"
                    "Max-Forwards: 70\r\nContent-Type: application/pidf+xml\r\n"
                    f"Content-Length: {len(body.encode())}\r\n\r\n"
                )
                return head.encode() + body.encode()

            phone.send_raw(notify(row["call_id"], int(row["version"] or 0) + 1000))
            first = phone.recv_message(5)
            assert first is not None and first.status == 200, first
            phone.send_raw(notify("no-such-dialog@example.com", 7))
            answers = [phone.recv_message(5) for _ in range(2)]
            statuses = sorted(m.status for m in answers if m is not None)
            # B's own 200 to the handed NOTIFY may come too; C's 481 must.
            assert 481 in statuses, statuses

        def acted_on() -> bool:
            last = records(b)[key].get("last_notify") or {}
            return "handed over" in str(last.get("summary", "")) + str(last)

        poll("the owner acted on the handed NOTIFY", acted_on, timeout=10)
        assert cluster(c)["stats"]["handed_notifies"] == 1
