"""Calls become dialog state (`pua serve --dialoginfo`), seen by watchers of
a real Kamailio presence server (presence_dialoginfo): a call's states in
order for caller and callee with growing versions, two calls of one user
as two dialogs of one document, a storm of changes without a 412, calls
kept across a kill -9, and bad events refused with nothing published."""

from __future__ import annotations

import re
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pua.bodies import DialogInfo, parse_dialog_info
from tests.conftest import peer_or_skip
from tests.peers.kamailio import KamailioPresence
from tests.peers.kamailio_proxy import KamailioCallProxy
from tests.peers.rawsip import DocumentWatcher
from tests.peers.sipp import call_uas, run_calls

from .running import RunningService

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


def Watcher(kam: KamailioPresence, uri: str) -> DocumentWatcher:
    """A subscriber to the ``dialog`` event of one user at the presence
    server, keeping the documents its NOTIFYs carry."""
    return DocumentWatcher(kam.host, kam.port, uri, event="dialog",
                           accept="application/dialog-info+xml", parse=parse_dialog_info)


def states(document: DialogInfo) -> dict[str, str]:
    return {d.call_id or d.id: d.state for d in document.dialogs}


def call(call_id: str, state: str, **more: Any) -> dict[str, Any]:
    return {"call_id": call_id, "from_tag": f"ft-{call_id}", "caller": ALICE, "callee": BOB,
            "state": state, **more}


@pytest.fixture
def kam() -> Iterator[KamailioPresence]:
    with peer_or_skip(KamailioPresence) as server:
        yield server


@pytest.fixture
def start(kam: KamailioPresence, tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def run(*flags: str, sip_port: int | None = None) -> RunningService:
        svc = RunningService("--dialoginfo", "--outbound-proxy", kam.uri, *flags,
                             data_dir=tmp_path / "data", sip_port=sip_port)
        started.append(svc)
        return svc

    yield run
    for svc in started:
        if svc.process.poll() is None:
            svc.stop()


@pytest.fixture
def watchers(kam: KamailioPresence) -> Iterator[tuple[DocumentWatcher, DocumentWatcher]]:
    caller, callee = Watcher(kam, ALICE), Watcher(kam, BOB)
    yield caller, callee
    caller.close()
    callee.close()


def test_a_call_in_order_for_caller_and_callee(
        start: Callable[..., RunningService], watchers: tuple[DocumentWatcher, DocumentWatcher]) -> None:
    svc = start()
    caller, callee = watchers
    steps = [
        call("c1", "trying", local_target="sip:alice@10.0.0.1:5060"),
        call("c1", "early", to_tag="tt1", remote_target="sip:bob@10.0.0.2:5060"),
        call("c1", "confirmed", to_tag="tt1"),
        call("c1", "terminated", to_tag="tt1", reason="remote-bye"),
    ]
    seen: list[tuple[str, int, int | None]] = []
    for step in steps:
        answer = svc.post("/dialogs", step)
        assert {p["status"] for p in answer["publications"]} == {200}, answer
        state = step["state"]
        mine = caller.wait(lambda d, s=state: states(d).get("c1") == s)
        theirs = None
        if state != "trying":  # the callee gets trying only with callee_trying
            theirs = callee.wait(lambda d, s=state: states(d).get("c1") == s).version
        seen.append((state, mine.version, theirs))
    assert [s for s, _, _ in seen] == ["trying", "early", "confirmed", "terminated"]
    caller_versions = [v for _, v, _ in seen]
    callee_versions = [v for _, _, v in seen if v is not None]
    assert caller_versions == sorted(set(caller_versions))
    assert callee_versions == sorted(set(callee_versions))
    # the documents say who is who
    (dialog,) = caller.documents[-1].dialogs
    assert (dialog.direction, dialog.local_tag, dialog.remote_tag) == ("initiator", "ft-c1", "tt1")
    assert dialog.local_target == "sip:alice@10.0.0.1:5060"
    (dialog,) = [d for d in callee.documents[-1].dialogs if d.call_id == "c1"]
    assert dialog.direction == "recipient" and dialog.remote_identity == ALICE
    listed = svc.rpc("pua.dialogs", {"presentity": BOB})["result"]["presentities"]
    assert listed[0]["dialogs"][0]["state"] == "terminated"


def test_two_calls_of_one_user_are_two_dialogs_of_one_document(
        start: Callable[..., RunningService], watchers: tuple[DocumentWatcher, DocumentWatcher]) -> None:
    svc = start()
    _, callee = watchers
    svc.post("/dialogs", call("c1", "confirmed", to_tag="a"))
    svc.post("/dialogs", call("c2", "early", to_tag="b", caller="sip:carol@example.com"))
    both = callee.wait(lambda d: states(d) == {"c1": "confirmed", "c2": "early"})
    assert both.entity == BOB
    # one publication carries both: one row at the presence server
    rows = svc.rpc("pua.list")["result"]
    mine = [r for r in rows if r["pres_uri"] == BOB]
    assert len(mine) == 1 and mine[0]["record_id"] == "DIALOG_PUBLISH.c1"
    assert mine[0]["source_flag"] == 1024  # DIALOG_PUBLISH
    svc.post("/dialogs", call("c1", "terminated"))
    callee.wait(lambda d: states(d) == {"c1": "terminated", "c2": "early"})


def test_a_storm_of_changes_ends_in_the_last_state_without_a_412(
        start: Callable[..., RunningService], watchers: tuple[DocumentWatcher, DocumentWatcher],
        kam: KamailioPresence) -> None:
    svc = start()
    _, callee = watchers
    # 20 changes for one user within a second, not waiting for answers: five
    # calls, each ringing, answered, ended, then one more left ringing
    events = []
    for n in range(5):
        events += [call(f"s{n}", "early", to_tag=f"t{n}"), call(f"s{n}", "confirmed"),
                   call(f"s{n}", "terminated")]
    events += [call(f"r{n}", "early", to_tag=f"r{n}") for n in range(5)]
    for body in events:
        assert svc.post("/dialogs", {**body, "wait": False})["publications"]
    last = {**{f"s{n}": "terminated" for n in range(5)}, **{f"r{n}": "early" for n in range(5)}}
    callee.wait(lambda d: states(d) == last)
    stats = svc.rpc("pua.stats")["result"]
    assert stats["responses"].get("412", 0) == 0, stats["responses"]
    # at the server: one publication holds the live calls; each call that
    # ended alone left its own, all terminated, lapsing in terminated_expires
    documents = [parse_dialog_info(r["body"])
                 for r in kam.presentity_rows("bob", "example.com", "dialog")]
    held: dict[str, str] = {}
    for document in documents:
        held.update(states(document))
    assert held == last
    live = [d for d in documents if "early" in states(d).values()]
    assert len(live) == 1 and set(states(live[0])) == {f"r{n}" for n in range(5)}


def test_calls_survive_a_kill(start: Callable[..., RunningService],
                              watchers: tuple[DocumentWatcher, DocumentWatcher]) -> None:
    svc = start()
    _, callee = watchers
    svc.post("/dialogs", call("k1", "confirmed", to_tag="a"))
    callee.wait(lambda d: states(d) == {"k1": "confirmed"})
    port = svc.sip_port
    svc.process.send_signal(signal.SIGKILL)
    svc.process.wait(10)
    again = start(sip_port=port)
    # a second call after the restart joins the first in one document
    again.post("/dialogs", call("k2", "early", to_tag="b"))
    document = callee.wait(lambda d: states(d) == {"k1": "confirmed", "k2": "early"})
    versions = [d.version for d in callee.documents]
    assert document.version == max(versions)


def test_bad_events_are_refused_and_publish_nothing(
        start: Callable[..., RunningService]) -> None:
    svc = start()
    for bad, word in [({"state": "ringing"}, "state"), ({"caller": "alice"}, "caller"),
                      ({"lifetime": -1}, "lifetime"), ({"colour": 1}, "colour")]:
        status, answer = svc.post_status("/dialogs", {**call("b1", "early"), **bad})
        assert status == 400 and word in answer["error"]["message"], answer
    status, answer = svc.post_status("/dialogs", {"call_id": "b1"})
    assert status == 400 and re.search("missing", answer["error"]["message"])
    reply = svc.rpc("pua.dialog", {**call("b1", "early"), "state": "ringing"})
    assert reply["error"]["code"] == -32602
    assert svc.rpc("pua.list")["result"] == []
    assert svc.rpc("pua.dialogs")["result"]["presentities"] == []


def test_a_kamailio_proxy_feeds_the_calls_it_routes(
        start: Callable[..., RunningService], watchers: tuple[DocumentWatcher, DocumentWatcher]) -> None:
    """SIPp caller -> Kamailio proxy (dialog + http_client) -> SIPp callee:
    the proxy POSTs each state to pua, and a busy lamp watching the callee
    at the presence server sees early, confirmed, terminated."""
    svc = start("--api-token", "s3cret")
    _, lamp = watchers
    with call_uas("bob") as uas, peer_or_skip(lambda: KamailioCallProxy(
            callee=uas.address, feed_url=f"{svc.api_url}/dialogs", api_token="s3cret")) as proxy:
        stats = run_calls(proxy.host, proxy.sip_port, caller="alice", callee="bob", hold_ms=500)
    assert stats.successful == 1, stats
    # the lamp saw the call ring, be answered and end, in that order
    seen: list[str] = []
    for state in ("early", "confirmed", "terminated"):
        lamp.wait(lambda d, s=state: any(x == s for x in states(d).values()))
    for document in lamp.documents:
        for value in states(document).values():
            if not seen or seen[-1] != value:
                seen.append(value)
    assert seen == ["early", "confirmed", "terminated"], [
        (d.version, states(d)) for d in lamp.documents]
    (dialog,) = lamp.documents[-1].dialogs
    assert dialog.direction == "recipient" and dialog.remote_identity == ALICE
    assert dialog.local_tag and dialog.remote_tag
    versions = [d.version for d in lamp.documents]
    assert versions == sorted(set(versions))
