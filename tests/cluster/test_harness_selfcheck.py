"""The cluster harness proven with plain (non-cluster) nodes against a real
Kamailio presence server and the machine's PostgreSQL: the request log
tells records and senders apart, the database holds the nodes' rows, a
killed node restarts on its ports, and the gate cuts the database off and
gives it back."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from pua.api.rpc import NOT_STORED
from tests.peers.conftest import poll
from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import RawSipClient, pidf
from tests.service.running import RunningService

from .conftest import MAX_EXPIRES
from .harness import DatabaseGate, Nodes, PostgresDatabase, Request, RequestLog

pytestmark = pytest.mark.interop

PRESENTITIES = [f"sip:p{n:02d}@example.com" for n in range(20)]
WATCHED = [(PRESENTITIES[n], f"sip:w{n}@example.com") for n in range(5)]
# With Expires 20 a refresh comes half the Expires after the 2xx, made up
# to 10% earlier: 8 to 10 s.  A margin above half the Expires changes
# nothing; it is given so the timing does not hang on the default.
REFRESH_MARGIN = 10
EARLIEST_REFRESH = MAX_EXPIRES / 2 * 0.8


def node_flags(presence: KamailioPresence, db_url: str) -> tuple[str, ...]:
    return (
        "--outbound-proxy", presence.uri,
        "--db-url", db_url,
        "--db-mode", "write-through",
        "--refresh-margin", str(REFRESH_MARGIN),
    )  # fmt: skip


def publish(svc: RunningService, uri: str) -> dict[str, Any]:
    """pua.publish for ever (Kamailio grants 20 s at a time), waiting for
    the answer; the whole JSON-RPC response."""
    return svc.rpc(
        "pua.publish",
        {
            "pres_uri": uri,
            "expires": -1,
            "event": "presence",
            "content_type": "application/pidf+xml",
            "body": pidf(uri),
            "wait": True,
        },
    )


def subscribe(svc: RunningService, pres_uri: str, watcher_uri: str) -> dict[str, Any]:
    return svc.rpc(
        "pua.subscribe",
        {"pres_uri": pres_uri, "watcher_uri": watcher_uri, "expires": -1, "wait": True},
    )


def publications(svc: RunningService) -> dict[str, dict[str, Any]]:
    """The node's publications by presentity, as pua.list shows them."""
    listed = svc.rpc("pua.list")["result"]
    return {r["pres_uri"]: r for r in listed if r["kind"] == "publication"}


def stored_etags(database: PostgresDatabase) -> dict[str, str]:
    rows = database.query("SELECT pres_uri, etag FROM pua WHERE watcher_uri = ''")
    return {row["pres_uri"]: row["etag"] for row in rows}


def lull(svc: RunningService, database: PostgresDatabase) -> dict[str, str]:
    """Wait for a moment when a SIGKILL loses nothing: every publication's
    row holds the node's current ETag (no refresh answered but unwritten,
    none in flight) and none falls due within a second.  The ETags then."""

    def check() -> dict[str, str] | None:
        held = publications(svc)
        current = {uri: held[uri]["etag"] for uri in PRESENTITIES}
        # The next refresh comes at least 8 s after the last 2xx, that is
        # at least 12 s before the expiry the 2xx set.
        next_due = min(held[uri]["expires_at"] for uri in PRESENTITIES) - (
            MAX_EXPIRES - EARLIEST_REFRESH
        )
        if stored_etags(database) == current and next_due > time.time() + 1:
            return current
        return None

    return poll("a moment with no refresh in flight or due", check, timeout=15, interval=0.1)


def test_nodes_refresh_their_records_and_a_restarted_node_resumes_them(
    presence: KamailioPresence, database: PostgresDatabase, tmp_path: Path
) -> None:
    """Two plain nodes on one database: each record is refreshed by its node alone, once per interval, publications with SIP-If-Match; the rows are in PostgreSQL; after SIGKILL the restarted node refreshes its publications by their stored ETags, with no initial PUBLISH."""
    log = RequestLog(presence)
    with Nodes(tmp_path, *node_flags(presence, database.url)) as nodes:
        a, b = nodes.start("A"), nodes.start("B")
        etags = {}
        for uri in PRESENTITIES:
            answer = publish(a, uri)
            assert "result" in answer, answer
            etags[uri] = answer["result"]["SIP-ETag"]
        dialogs = {}
        for pres_uri, watcher_uri in WATCHED:
            answer = subscribe(b, pres_uri, watcher_uri)
            assert answer.get("result", {}).get("state") == "active", answer
            dialogs[(pres_uri, watcher_uri)] = answer["result"]["record"]["call_id"]

        # Acknowledged means written (write-through).
        rows = database.query("SELECT pres_uri, watcher_uri, etag, call_id FROM pua")
        assert {r["pres_uri"]: r["etag"] for r in rows if not r["watcher_uri"]} == etags
        assert {
            (r["pres_uri"], r["watcher_uri"]): r["call_id"] for r in rows if r["watcher_uri"]
        } == dialogs

        def refreshed() -> dict[Any, list[Any]] | None:
            sent = log.by_record("PUBLISH")
            subscribes = log.by_record("SUBSCRIBE")
            if all(log.refreshes(sent.get(uri, [])) for uri in PRESENTITIES) and all(
                len(subscribes.get(key, [])) >= 2 for key in WATCHED
            ):
                return sent
            return None

        sent = poll("a refresh of every record", refreshed, timeout=25, interval=0.2)
        assert set(sent) == set(PRESENTITIES)
        for uri, requests in sent.items():
            assert log.senders(requests) == {a.sip_port}, requests
            initial, *refreshes = requests
            assert initial.if_match is None and initial.call_id == refreshes[0].call_id
            assert [r.if_match is not None for r in refreshes] == [True] * len(refreshes), requests
            assert refreshes[0].if_match == etags[uri]
            assert len({r.if_match for r in refreshes}) == len(refreshes), requests
            assert log.answer(initial) == 200, initial
            # one per interval (save a retry after the server's own 5xx)
            assert not log.early(requests, EARLIEST_REFRESH - 0.5), log.early(
                requests, EARLIEST_REFRESH - 0.5
            )

        subscribes = log.by_record("SUBSCRIBE")
        assert set(subscribes) == set(WATCHED)
        for identity, requests in subscribes.items():
            assert log.senders(requests) == {b.sip_port}, requests
            assert {r.call_id for r in requests} == {dialogs[identity]}  # one dialog
            cseqs = [r.cseq for r in requests]
            assert len(cseqs) >= 2 and cseqs == sorted(set(cseqs)), requests
            assert requests[0].uri == identity[0] and requests[-1].uri != identity[0]

        before = lull(a, database)
        nodes.kill("A")
        mark = log.mark()
        a = nodes.restart("A")

        def resumed() -> dict[Any, list[Any]] | None:
            after = log.by_record("PUBLISH", log.since(mark, "PUBLISH"))
            return after if set(after) >= set(PRESENTITIES) else None

        after = poll("a refresh of every publication after the restart", resumed, timeout=25)
        for uri, requests in after.items():
            assert log.senders(requests) == {a.sip_port}, requests
            assert requests[0].if_match == before[uri], requests  # the stored ETag

        def renewed() -> bool:
            held = publications(a)
            return all(
                held[uri]["state"] == "published" and held[uri]["etag"] != before[uri]
                for uri in PRESENTITIES
            )

        poll("every publication refreshed anew by the restarted node", renewed, timeout=10)
        assert set(log.by_record("PUBLISH", log.since(mark, "PUBLISH"))) == set(PRESENTITIES)
        initial = [r for r in log.since(mark, "PUBLISH") if r.if_match is None]
        assert initial == [], initial


def test_a_cut_gate_keeps_a_write_pending_until_it_is_restored(
    presence: KamailioPresence, database: PostgresDatabase, tmp_path: Path
) -> None:
    """Through a cut DatabaseGate a publish is answered 'not stored' and its row stays out of PostgreSQL while the node holds it; once the gate is restored the node writes the row."""
    before, during = "sip:before@example.com", "sip:during@example.com"
    with DatabaseGate(database.port) as gate:
        url = database.url_via(gate.port)
        with Nodes(tmp_path, *node_flags(presence, url)) as nodes:
            node = nodes.start("A")
            answer = publish(node, before)
            assert "result" in answer, answer
            assert stored_etags(database) == {before: answer["result"]["SIP-ETag"]}
            assert gate.accepted >= 1  # the node reaches the database through the gate

            gate.cut()
            answer = publish(node, during)
            assert answer.get("error", {}).get("code") == NOT_STORED, answer
            assert during not in stored_etags(database)
            etag = publications(node)[during]["etag"]
            assert etag and presence.presentity_rows(username="during")[0]["etag"] == etag

            accepted = gate.accepted
            gate.restore()
            stored = poll(
                "the row written once the gate is restored",
                lambda: during in stored_etags(database),
                timeout=40,
                interval=0.2,
            )
            assert stored and gate.accepted > accepted


def test_the_request_log_reads_each_answer_given(presence: KamailioPresence) -> None:
    """The log pairs each request with the answer Kamailio gave it: 200 for
    a PUBLISH it took, 500 for a body-carrying one with an ETag it does not
    hold (its presentity update fails), and a retry after such a 5xx is the
    one early request the log does not count as early."""
    uri = "sip:answers@example.com"
    log = RequestLog(presence)
    with RawSipClient(presence.host, presence.port, "udp") as phone:
        taken = phone.publish(uri, expires=60, body=pidf(uri))
        refused = phone.publish(uri, expires=60, body=pidf(uri), etag="unknown")
    assert taken is not None and taken.status == 200, taken
    assert refused is not None and refused.status == 500, refused

    def answered() -> list[Request] | None:
        sent = log.requests("PUBLISH")
        return sent if len(sent) == 2 and all(log.answer(r) for r in sent) else None

    first, second = poll("both answers logged", answered, timeout=5)
    assert (log.answer(first), log.answer(second)) == (200, 500)
    assert second.if_match == "unknown"
    # second follows first at once: early, as the first was answered 200
    assert [(r, code) for _, r, code in log.early([first, second], 5)] == [(first, 200)]
    # a request right after the 500 is not
    again = dataclasses.replace(first, call_id="again", time=second.time + 1)
    assert log.early([second, again], 5) == []
