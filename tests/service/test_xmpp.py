"""The SIP <-> XMPP presence gateway (`pua serve --xmpp`) between real
peers: Prosody as the XMPP server (pua is its external component, XEP-0114),
the Kamailio presence server on the SIP side, slixmpp clients as XMPP
users and raw SIP clients as SIP users."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from pua.bodies import parse_pidf
from tests.conftest import peer_or_skip
from tests.peers.conftest import poll
from tests.peers.kamailio import KamailioPresence
from tests.peers.prosody import Prosody
from tests.peers.rawsip import DocumentWatcher, RawSipClient, pidf
from tests.peers.sipp import subscribe_terminated_uas
from tests.peers.xmpp_user import Logins, PresenceSeen, XmppUser

from .running import RunningService

pytestmark = pytest.mark.interop

COMPONENT = "sip.example.com"
SECRET = "gateway-secret"
ALICE = "sip:alice@example.com"  # a SIP user
ALICE_JID = "alice*example.com@sip.example.com"
CAROL = "sip:carol@example.com"  # a SIP watcher
CAROL_JID = "carol*example.com@sip.example.com"
BOB = "bob@localhost"  # an XMPP user
BOB_SIP = "sip:bob*localhost@sip.example.com"


@pytest.fixture
def kam() -> Iterator[KamailioPresence]:
    with peer_or_skip(KamailioPresence) as server:
        yield server


@pytest.fixture
def prosody() -> Iterator[Prosody]:
    with peer_or_skip(lambda: Prosody(components={COMPONENT: SECRET},
                                      users={"bob": "bobpw", "dave": "davepw"})) as server:
        yield server


@pytest.fixture
def users(prosody: Prosody) -> Iterator[Callable[..., XmppUser]]:
    """Bob logged in (from his laptop unless another resource is named)."""
    logins = Logins()

    def make(resource: str = "laptop") -> XmppUser:
        return logins(prosody, "bob", resource=resource)

    yield make
    logins.close()


def gateway(kam: KamailioPresence, prosody: Prosody, data_dir: Path, *flags: str,
            sip_port: int | None = None) -> RunningService:
    return RunningService(
        "--xmpp", "--xmpp-component", COMPONENT, "--xmpp-port", str(prosody.component_port),
        "--outbound-proxy", kam.uri, *flags,
        data_dir=data_dir, env={"PUA_XMPP_SECRET": SECRET}, sip_port=sip_port,
    )


def view(svc: RunningService) -> dict[str, Any]:
    return json.loads(svc.get("/xmpp"))


def connected(svc: RunningService, timeout: float = 20.0) -> dict[str, Any]:
    try:
        return poll("the gateway connected", lambda: (v := view(svc))["connected"] and v, timeout)
    except AssertionError:
        raise AssertionError(f"not connected; pua said:\n{svc.new_stderr()}") from None


def SipWatcher(kam: KamailioPresence, uri: str) -> DocumentWatcher:
    """Carol watching a presentity's presence at Kamailio: the PIDF
    documents of her NOTIFYs (None for a NOTIFY without a body)."""
    return DocumentWatcher(kam.host, kam.port, uri, event="presence",
                           accept="application/pidf+xml", parse=parse_pidf, watcher=CAROL,
                           keep_empty=True, expires=600)


def publish(kam: KamailioPresence, body: str, expires: int = 600,
            etag: str | None = None) -> str:
    """Publish ALICE's presence at Kamailio as her phone would; the ETag."""
    with RawSipClient(kam.host, kam.port) as phone:
        answer = phone.publish(ALICE, expires=expires, body=body, etag=etag)
        assert answer is not None and answer.status == 200, answer
        return answer.header("SIP-ETag")


AWAY = f"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
  xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="{ALICE}">
  <tuple id="t1"><status><basic>open</basic></status></tuple>
  <dm:person id="p1"><rpid:activities><rpid:away/></rpid:activities>
    <dm:note>at lunch</dm:note></dm:person>
</presence>"""


def seen_from(user: XmppUser, jid: str, kind: str, since: int = 0,
              check: Callable[[PresenceSeen], bool] = lambda p: True) -> PresenceSeen:
    return user.wait_presence(lambda p: p.from_bare == jid and p.type == kind and check(p),
                              timeout=15, since=since)


def test_an_xmpp_user_watches_a_sip_user(kam: KamailioPresence, prosody: Prosody,
                                         users: Callable[..., XmppUser], tmp_path: Path) -> None:
    etag = publish(kam, pidf(ALICE, "open", note="in the office"))
    svc = gateway(kam, prosody, tmp_path / "data")
    try:
        connected(svc)
        bob = users()
        bob.subscribe(ALICE_JID)
        # accepted by the presence server: subscribed, then her presence
        seen_from(bob, ALICE_JID, "subscribed")
        first = seen_from(bob, ALICE_JID, "available", check=lambda p: p.status == "in the office")
        assert first.show is None
        # the SIP subscription is pua's, with bob's SIP address as watcher
        records = svc.rpc("pua.list", ["subscription"])["result"]
        mine = [r for r in records if r["pres_uri"] == ALICE]
        assert [(r["watcher_uri"], r["source_flag"], r["state"]) for r in mine] == [
            (BOB_SIP, 16, "active")]
        # a change
        mark = bob.mark()
        etag = publish(kam, AWAY, etag=etag)
        away = seen_from(bob, ALICE_JID, "available", mark, lambda p: p.show == "away")
        assert away.status == "at lunch"
        # the publication removed: unavailable
        mark = bob.mark()
        publish(kam, "", expires=0, etag=etag)
        seen_from(bob, ALICE_JID, "unavailable", mark)
        # bob unsubscribes: the SIP subscription ends
        bob.unsubscribe(ALICE_JID)
        svc.event_stream().wait_until(
            lambda: not [r for r in svc.rpc("pua.list", ["subscription"])["result"]
                         if r["pres_uri"] == ALICE],
            what="the SUBSCRIBE ended")
        counters = view(svc)["counters"]
        assert counters["subscribes"] == 1 and counters["unsubscribes"] == 1
        assert counters["notifies"] >= 3
    finally:
        svc.stop()


def test_a_sip_watcher_sees_an_xmpp_user_once_approved(
        kam: KamailioPresence, prosody: Prosody, users: Callable[..., XmppUser],
        tmp_path: Path) -> None:
    svc = gateway(kam, prosody, tmp_path / "data", "--xmpp-users", BOB)
    try:
        connected(svc)
        bob = users()
        # pua watches the watchers of bob's SIP address (presence.winfo)
        poll("winfo subscription", lambda: view(svc)["records"]["watcher_subscriptions"] == 1)
        carol = SipWatcher(kam, BOB_SIP)
        request = bob.wait_subscribe_request(CAROL_JID, timeout=15)
        assert request.to_jid.startswith(BOB)
        mark = bob.mark()
        bob.approve(CAROL_JID)
        # the server sends bob's presence to carol's JID: published for bob
        carol.wait(lambda d: d is not None and d.basic == "open")
        bob.send_presence(show="away", status="gone fishing")
        doc = carol.wait(lambda d: d is not None and "away" in d.activities)
        assert "gone fishing" in [n for p in doc.persons for n in p.notes]
        assert doc.entity == BOB_SIP
        shown = view(svc)
        assert shown["users"] == [BOB]
        assert shown["available"][BOB]["laptop"]["show"] == "away"
        assert shown["counters"]["approvals"] == 1
        # a second resource of bob's is a second tuple of the same document
        phone = users(resource="phone")
        phone.send_presence(show="dnd", status="driving", priority=10)
        # the resource with the higher priority leads
        doc = carol.wait(lambda d: d is not None and len(d.tuples) == 2 and "busy" in d.activities)
        assert {n for t in doc.tuples for n in t.notes} == {"gone fishing", "driving"}
        phone.go_offline()
        carol.wait(lambda d: d is not None and len(d.tuples) == 1)
        # the page and the metrics show the gateway
        page = svc.get("/").decode()
        assert "XMPP gateway" in page and BOB in page and "gone fishing" in page
        metrics = svc.get("/metrics").decode()
        assert "pua_xmpp_connected 1.0" in metrics
        assert "pua_xmpp_watchers_asked_total 1.0" in metrics
        bob.go_offline()
        carol.wait(lambda d: d is None or d.basic == "closed")
        assert mark <= bob.mark()
        carol.close()
    finally:
        svc.stop()


def test_restarts_of_either_server_are_recovered(
        kam: KamailioPresence, prosody: Prosody, users: Callable[..., XmppUser],
        tmp_path: Path) -> None:
    etag = publish(kam, pidf(ALICE, "open", note="here"))
    data = tmp_path / "data"
    svc = gateway(kam, prosody, data)
    try:
        connected(svc)
        bob = users()
        bob.subscribe(ALICE_JID)
        seen_from(bob, ALICE_JID, "available", check=lambda p: p.status == "here")
        # Prosody restarted: the gateway connects again by itself
        before = view(svc)["counters"]["connects"]
        prosody.restart()
        poll("the gateway reconnected",
             lambda: (v := view(svc))["connected"] and v["counters"]["connects"] > before, 30)
        bob = users()  # logs in again: the server probes alice for bob
        seen_from(bob, ALICE_JID, "available", check=lambda p: p.status == "here")
        mark = bob.mark()
        etag = publish(kam, pidf(ALICE, "open", note="back again"), etag=etag)
        seen_from(bob, ALICE_JID, "available", mark, lambda p: p.status == "back again")
        # bob tells the gateway his own presence: published for his SIP address
        bob.send_presence(show="xa", status="far away", to=COMPONENT)
        poll("bob's publication", lambda: kam.presentity_rows("bob*localhost", COMPONENT))
        held = view(svc)
    finally:
        assert svc.stop() == 0
    # pua restarted: its subscription resumes from the store, and bob is
    # told alice's last presence again once the stream is back
    mark = bob.mark()
    svc = gateway(kam, prosody, data, sip_port=svc.sip_port)
    try:
        connected(svc)
        seen_from(bob, ALICE_JID, "available", mark, lambda p: p.status == "back again")
        mark = bob.mark()
        publish(kam, pidf(ALICE, "open", note="after the restart"), etag=etag)
        seen_from(bob, ALICE_JID, "available", mark, lambda p: p.status == "after the restart")
        records = svc.rpc("pua.list", ["subscription"])["result"]
        assert [r["watcher_uri"] for r in records if r["pres_uri"] == ALICE] == [BOB_SIP]
        # what the gateway knew of bob came back from the store
        again = view(svc)
        assert again["users"] == held["users"] == [BOB]
        assert again["available"] == held["available"]
        assert again["available"][BOB]["laptop"] == {"show": "xa", "status": "far away",
                                                     "priority": 0}
        mine = [r for r in svc.rpc("pua.list", ["publication"])["result"]
                if r["pres_uri"] == BOB_SIP]
        assert [(r["source"], r["state"]) for r in mine] == [("XMPP_PUBLISH", "published")]
    finally:
        svc.stop()


def test_malformed_stanzas_and_unmappable_addresses_get_errors_and_change_nothing(
        kam: KamailioPresence, prosody: Prosody, users: Callable[..., XmppUser],
        tmp_path: Path) -> None:
    svc = gateway(kam, prosody, tmp_path / "data")
    try:
        connected(svc)
        bob = users()
        cases = [
            (f"<presence to='{ALICE_JID}'><show>sleepy</show></presence>", "bad-request"),
            (f"<presence to='{ALICE_JID}'><priority>high</priority></presence>", "bad-request"),
            (f"<presence to='{ALICE_JID}'><priority>500</priority></presence>", "bad-request"),
            (f"<presence to='nobody@{COMPONENT}'/>", "jid-malformed"),
            (f"<presence to='nobody@{COMPONENT}' type='probe'/>", "jid-malformed"),
            (f"<presence to='{COMPONENT}' type='probe'/>", "jid-malformed"),
        ]
        # (an unknown type never reaches the gateway: Prosody refuses it)
        for stanza, condition in cases:
            mark = bob.mark()
            bob.send_raw(stanza)
            error = bob.wait_error(timeout=10, since=mark)
            assert error.error_condition == condition, (stanza, error.brief())
        shown = view(svc)
        assert shown["users"] == [] and shown["available"] == {}
        assert shown["counters"]["errors_sent"] == len(cases)
        assert shown["counters"]["published"] == 0
        assert svc.rpc("pua.list", [])["result"] == []
        assert kam.presentity_rows("bob*localhost", COMPONENT, "presence") == []
        # the mapping, asked of the API: a 400 or 404 that says why
        assert svc.rpc("pua.xmpp_address", [ALICE])["result"] == {
            "kind": "sip user", "sip": ALICE, "jid": ALICE_JID}
        assert svc.rpc("pua.xmpp_address", {"address": BOB_SIP})["result"]["jid"] == BOB
        for address, status in ((f"nobody@{COMPONENT}", 404), ("sip:example.com", 400),
                                ("jabber.org", 400)):
            code, problem = svc.get_status("/xmpp/address?address=" + quote(address))
            assert code == status, (address, problem)
            assert address.split("@")[0] in json.dumps(problem)
    finally:
        svc.stop()


def test_a_refused_subscription_is_unsubscribed(prosody: Prosody, users: Callable[..., XmppUser],
                                                tmp_path: Path) -> None:
    # The notifier accepts, notifies, then ends the subscription: rejected.
    uas = peer_or_skip(lambda: subscribe_terminated_uas("rejected"))
    uas.start()
    svc = RunningService(
        "--xmpp", "--xmpp-component", COMPONENT, "--xmpp-port", str(prosody.component_port),
        "--outbound-proxy", uas.uri, data_dir=tmp_path / "data", env={"PUA_XMPP_SECRET": SECRET})
    try:
        connected(svc)
        bob = users()
        mark = bob.mark()
        bob.subscribe(ALICE_JID)
        seen_from(bob, ALICE_JID, "subscribed", mark)
        seen_from(bob, ALICE_JID, "unsubscribed", mark)
        seen_from(bob, ALICE_JID, "unavailable", mark)
        poll("the subscription gone",
             lambda: not svc.rpc("pua.list", ["subscription"])["result"], 20)
        # Prosody took the refusal: bob's roster no longer has alice as 'to'
        item = bob.roster(timeout=15).get(ALICE_JID, {})
        assert item.get("subscription") in (None, "none", "from"), item
    finally:
        svc.stop()
        uas.stop()
