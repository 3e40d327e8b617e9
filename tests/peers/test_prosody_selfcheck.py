"""Self-checks of the XMPP test peers: a real Prosody (tests/peers/prosody.py)
with slixmpp clients and an XEP-0114 component (tests/peers/xmpp_user.py).

These pin the Prosody 0.12 behaviour the XMPP gateway's tests build on.
A missing prosody fails these tests in CI and skips them elsewhere (see
tests/conftest.py).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from . import PeerError
from .prosody import Prosody, encode_path_part
from .xmpp_user import Logins, XmppComponent, XmppUser

pytestmark = pytest.mark.interop

DOMAIN = "localhost"
GATEWAY = "sip.example.com"
SECRET = "secret"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
USERS = {"alice": "alicepw", "bob": "bobpw"}


@pytest.fixture
def prosody(start) -> Prosody:
    return start(lambda: Prosody(DOMAIN, {GATEWAY: SECRET}, dict(USERS)))


@pytest.fixture
def xmpp() -> Iterator[Logins]:
    """Connected users (``xmpp(prosody, "alice")``), disconnected at the end."""
    logins = Logins()
    yield logins
    logins.close()


@pytest.fixture
def component() -> Iterator[Callable[..., XmppComponent]]:
    """Components (``component(prosody)``), not yet connected; disconnected
    at the end."""
    made: list[XmppComponent] = []

    def make(server: Prosody, secret: str = SECRET, name: str = GATEWAY) -> XmppComponent:
        comp = XmppComponent(name, secret, server.host, server.component_port)
        made.append(comp)
        return comp

    yield make
    for comp in made:
        comp.disconnect()


def test_prosody_config_and_accounts(prosody):
    assert prosody.host == "127.0.0.1"
    assert prosody.c2s_port and prosody.component_port
    assert prosody.c2s_port != prosody.component_port
    # internal_plain: one Lua file per account, the host dir name encoded
    assert prosody.account_path("bob").read_text().count('"bobpw"') == 1
    assert encode_path_part("sip.example-1.com") == "sip%2eexample%2d1%2ecom"
    assert "Hello and welcome to Prosody" in prosody.log_text()
    assert "Activated service 's2s'" not in prosody.log_text()
    assert "Error indexing certificate directory" not in prosody.log_text()


def test_add_user_overwrites_while_running(prosody, xmpp):
    prosody.add_user("bob", "newpw")
    assert '"newpw"' in prosody.account_path("bob").read_text()
    assert xmpp(prosody, "bob").session_started
    with pytest.raises(PeerError, match="authentication failed"):
        XmppUser(BOB, "bobpw", prosody.host, prosody.c2s_port).connect(timeout=5)


def test_subscription_approval_then_presence(prosody, xmpp):
    alice = xmpp(prosody, "alice")
    bob = xmpp(prosody, "bob")

    mark = alice.mark()
    alice.subscribe(BOB)
    request = bob.wait_subscribe_request(ALICE)
    assert request.from_jid == ALICE  # subscriptions come from the bare JID
    # Prosody answers a new outbound subscription with an unavailable
    # presence from the contact's bare JID, before any approval.
    early = alice.wait_unavailable(BOB, since=mark)
    assert early.from_jid == BOB
    assert not [p for p in alice.presences[mark:] if p.type == "subscribed"]

    bob.approve(ALICE)
    alice.wait_subscribed(BOB, since=mark)
    first = alice.wait_presence(lambda p: p.type == "available" and p.from_bare == BOB, since=mark)
    assert first.from_jid == bob.full_jid
    assert "urn:xmpp:delay" in first.xml  # his current presence, stamped

    mark = alice.mark()
    bob.send_presence(show="away", status="in a meeting", priority=5)
    away = alice.wait_presence(lambda p: p.from_bare == BOB and p.show == "away", since=mark)
    assert (away.type, away.status, away.priority) == ("available", "in a meeting", 5)
    # a broadcast comes back to its sender too
    bob.wait_presence(lambda p: p.from_jid == bob.full_jid and p.show == "away")

    mark = alice.mark()
    bob.go_offline()
    gone = alice.wait_unavailable(BOB, since=mark)
    assert gone.from_jid == bob.full_jid

    assert alice.roster()[BOB]["subscription"] == "to"
    assert bob.roster()[ALICE]["subscription"] == "from"


def test_deny_and_bad_presence_errors(prosody, xmpp):
    alice = xmpp(prosody, "alice")
    bob = xmpp(prosody, "bob")
    mark = alice.mark()
    alice.subscribe(BOB)
    bob.wait_subscribe_request(ALICE)
    bob.deny(ALICE)
    refused = alice.wait_presence(lambda p: p.type == "unsubscribed", since=mark)
    assert refused.from_jid == BOB
    assert alice.roster().get(BOB, {}).get("subscription", "none") == "none"

    mark = alice.mark()
    alice.send_raw(f"<presence type='bogus' to='{BOB}'/>")
    assert alice.wait_error(since=mark).error_condition == "bad-request"

    mark = alice.mark()
    alice.send_presence(to="nobody@example.org")  # s2s is off
    error = alice.wait_error(since=mark)
    assert (error.from_jid, error.error_condition) == ("nobody@example.org", "not-allowed")


def test_component_handshake(prosody, component):
    comp = component(prosody).connect()
    assert comp.session_started
    assert "External component successfully authenticated" in prosody.log_text()

    wrong = component(prosody, secret="not the secret")
    with pytest.raises(PeerError, match="not-authorized"):
        wrong.connect(timeout=5)
    assert not wrong.session_started
    assert "Component authentication failed for sip.example.com" in prosody.log_text()
    # the good one is still connected
    assert not comp.disconnected.is_set()


def test_presence_between_user_and_component(prosody, xmpp, component):
    comp = component(prosody).connect()
    alice = xmpp(prosody, "alice")

    alice.send_presence(to=f"someone@{GATEWAY}", status="hello")
    directed = comp.wait_presence(lambda p: p.to_jid == f"someone@{GATEWAY}")
    assert (directed.type, directed.from_jid, directed.status) == (
        "available",
        alice.full_jid,
        "hello",
    )

    contact = f"x*example.com@{GATEWAY}"
    alice.subscribe(contact)
    request = comp.wait_presence(lambda p: p.type == "subscribe" and p.to_jid == contact)
    assert request.from_jid == ALICE

    alice.probe(contact)
    probe = comp.wait_presence(lambda p: p.type == "probe" and p.to_jid == contact)
    assert probe.from_jid == alice.full_jid  # a probe from a client keeps its resource

    mark = alice.mark()
    comp.send_presence(contact, ALICE, show="dnd", status="on the phone")
    seen = alice.wait_presence(lambda p: p.from_jid == contact, since=mark)
    assert (seen.type, seen.show, seen.status) == ("available", "dnd", "on the phone")

    # Logging out sends unavailable to every JID that had directed presence.
    alice.disconnect()
    comp.wait_presence(lambda p: p.type == "unavailable" and p.to_jid == f"someone@{GATEWAY}")


def test_presence_to_missing_component_bounces(prosody, xmpp):
    alice = xmpp(prosody, "alice")
    mark = alice.mark()
    alice.send_presence(to=f"someone@{GATEWAY}")
    error = alice.wait_error(since=mark)
    assert (error.from_jid, error.error_condition) == (
        f"someone@{GATEWAY}",
        "remote-server-timeout",
    )


def test_restart_keeps_accounts_and_rosters(prosody, xmpp, component):
    alice = xmpp(prosody, "alice")
    bob = xmpp(prosody, "bob")
    comp = component(prosody).connect()
    alice.subscribe(BOB)
    bob.wait_subscribe_request(ALICE)
    bob.approve(ALICE)
    alice.wait_subscribed(BOB)
    prosody.add_user("carol", "carolpw")  # while running
    xmpp(prosody, "carol")
    ports = (prosody.c2s_port, prosody.component_port)

    prosody.restart()
    assert (prosody.c2s_port, prosody.component_port) == ports
    for endpoint in (alice, bob, comp):
        endpoint.wait_disconnected(5)

    alice.connect(presence=True)
    bob.connect(presence=True)
    comp.connect()
    xmpp(prosody, "carol")
    assert alice.roster()[BOB]["subscription"] == "to"
    mark = alice.mark()
    bob.send_presence(status="back")
    assert alice.wait_available(BOB, since=mark).status == "back"

    prosody.kill()
    alice.wait_disconnected(5)
    prosody.restart()
    alice.connect()
    assert alice.roster()[BOB]["subscription"] == "to"


def test_wrong_password_is_refused(prosody):
    user = XmppUser(ALICE, "wrong", prosody.host, prosody.c2s_port)
    with pytest.raises(PeerError, match="authentication failed"):
        user.connect(timeout=5)
    assert not user.session_started


def test_port_in_use_fails_fast(prosody):
    # Prosody does not exit when a port is taken: it logs the failure and
    # runs without that service.  The peer sees the log line and gives up.
    prosody.kill()
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind((prosody.host, prosody.component_port))
        taken.listen()
        with pytest.raises(PeerError, match="could not listen"):
            prosody.restart()
    assert not prosody.running
    prosody.restart()
    assert prosody.running


def test_plain_without_tls_needs_the_slixmpp_setting(prosody):
    class StrictUser(XmppUser):
        def _make(self):
            client = super()._make()
            client.plugin["feature_mechanisms"].unencrypted_plain = False  # slixmpp's default
            return client

    strict = StrictUser(ALICE, USERS["alice"], prosody.host, prosody.c2s_port)
    with pytest.raises(PeerError, match="authentication failed"):
        strict.connect(timeout=5)
    user = XmppUser(ALICE, USERS["alice"], prosody.host, prosody.c2s_port).connect()
    try:
        assert user.xmpp.plugin["feature_mechanisms"].mech.name == "PLAIN"
    finally:
        user.disconnect()
