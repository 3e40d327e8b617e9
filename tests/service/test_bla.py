"""Bridged line appearance (`pua serve --bla`) between real peers: two phones
register a shared line through a Kamailio registrar (its t_replicate copy
marked by a header), pua subscribes to each for dialog;sla, one phone's
NOTIFY reaches the other through the Kamailio presence server (with
presence_xml's BLA on) and not the phone that sent it, and phones that
unregister are unsubscribed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import peer_or_skip
from tests.peers import find_free_port
from tests.peers.bla_phone import SLA_EVENT, BlaPhone, has_dialog
from tests.peers.kamailio import KamailioPresence
from tests.peers.kamailio_registrar import KamailioRegistrar

from .running import RunningService

pytestmark = pytest.mark.interop

LINE = "sip:line1@example.com"
HEADER = "X-BLA-Line"


@pytest.fixture
def kam() -> Iterator[KamailioPresence]:
    with peer_or_skip(lambda: KamailioPresence(bla=True)) as server:
        yield server


@pytest.fixture
def phones() -> Iterator[Callable[[], BlaPhone]]:
    made: list[BlaPhone] = []

    def make() -> BlaPhone:
        phone = BlaPhone(LINE).serve()
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()


def subscribed(phone: BlaPhone, kam: KamailioPresence) -> None:
    answer = phone.subscribe_line(kam.host, kam.port, expires=600)
    assert answer is not None and answer.status == 200
    assert phone.wait_notify(timeout=5) is not None


def lines(svc: RunningService) -> list[dict[str, Any]]:
    return svc.rpc("pua.bla_lines")["result"]["lines"]


def test_a_phones_call_reaches_the_other_phone_of_the_line(
        kam: KamailioPresence, phones: Callable[[], BlaPhone], tmp_path: Path) -> None:
    sip_port = find_free_port("127.0.0.1")
    with peer_or_skip(lambda: KamailioRegistrar(
            replicate_to=f"sip:127.0.0.1:{sip_port}", bla_lines=[LINE],
            bla_header=HEADER)) as reg:
        svc = RunningService("--bla", "--bla-register-header", HEADER,
                             "--outbound-proxy", kam.uri, sip_port=sip_port,
                             data_dir=tmp_path / "data")
        try:
            a, b = phones(), phones()
            for phone in (a, b):
                subscribed(phone, kam)
            for phone in (a, b):
                answer = phone.register(reg.host, reg.sip_port, expires=600)
                assert answer is not None and answer.status == 200
            # pua subscribes to each phone for dialog;sla, to its contact
            for phone in (a, b):
                sub = phone.wait_subscribe(timeout=10)
                assert sub is not None and sub.header("Event") == SLA_EVENT
                assert sub.header("To").startswith(f"<{LINE}>")
            listed = lines(svc)
            assert listed[0]["line"] == LINE and listed[0]["source"] == "register header"
            assert sorted(listed[0]["phones"]) == sorted([a.contact_uri, b.contact_uri])

            # phone A reports a confirmed call: B sees it, A does not get it back
            before = len(a.notifies)
            answer = a.set_call("call-1", "confirmed", appearance=1)
            assert answer is not None and answer.status == 200
            seen = b.wait_notify(has_dialog("call-1", "confirmed"), timeout=10)
            assert seen is not None
            # B's own report afterwards reaches A: A's first NOTIFY with a
            # dialog is B's, never its own
            assert b.set_call("call-2", "early") is not None
            first = a.wait_notify(lambda n: b"<dialog " in n.body, timeout=10, after=before)
            assert first is not None and has_dialog("call-2")(first)
            assert not has_dialog("call-1")(first)
            assert svc.rpc("pua.stats")["result"]["responses"].get("412", 0) == 0

            # A unregisters: pua ends its subscription to A
            count = len(a.subscribes)
            assert a.register(reg.host, reg.sip_port, expires=0) is not None
            ended = a.wait_subscribe(timeout=10, after=count)
            assert ended is not None and ended.header("Expires") == "0"
            svc.event_stream().wait_until(
                lambda: lines(svc)[0]["phones"] == [b.contact_uri], 15,
                "only phone B left on the line")
        finally:
            svc.stop()


def test_lines_added_at_run_time_are_kept(tmp_path: Path, kam: KamailioPresence) -> None:
    svc = RunningService("--bla", "--bla-lines", "sip:fixed@example.com",
                         "--outbound-proxy", kam.uri, data_dir=tmp_path / "data")
    try:
        added = svc.post("/bla/lines", {"aor": "sip:sales@example.com"})
        assert added == {"line": "sip:sales@example.com", "source": "added", "phones": []}
        status, answer = svc.post_status("/bla/lines", {"aor": "not a uri"})
        assert status == 400 and "not" in answer["error"]["message"]
        reply = svc.rpc("pua.bla_remove", {"aor": "sip:fixed@example.com"})
        assert reply["error"]["data"]["status"] == 409
        status, answer = svc.post_status("/bla/lines", {"aor": "sip:sales@example.com"})
        assert status == 200 and answer["source"] == "added"
        spec = json.loads(svc.get("/openapi.json"))
        assert {"/bla/lines", "/bla/lines/{aor}", "/dialogs"} <= set(spec["paths"])
    finally:
        svc.stop()
    again = RunningService("--bla", "--bla-lines", "sip:fixed@example.com",
                           "--outbound-proxy", kam.uri, data_dir=tmp_path / "data")
    try:
        assert {line["line"] for line in lines(again)} == {
            "sip:fixed@example.com", "sip:sales@example.com"}
        assert again.rpc("pua.bla_remove", {"aor": "sip:sales@example.com"})["result"]["removed"]
        assert {line["line"] for line in lines(again)} == {"sip:fixed@example.com"}
    finally:
        again.stop()
