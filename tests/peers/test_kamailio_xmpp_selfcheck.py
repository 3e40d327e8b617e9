"""Self-checks of Kamailio's own SIP <-> XMPP presence gateway (xmpp +
pua + pua_xmpp, tests/peers/kamailio_xmpp.py) between a real Prosody and
the Kamailio presence server (tests/peers/kamailio.py).

They pin what Kamailio 5.6.3 does in each direction, the reference that
pua's XMPP gateway is measured against (see the peer's docstring and
tests/peers/README.md).  A missing kamailio module, prosody or C compiler
fails these tests in CI and skips them elsewhere.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator

import pytest

from . import PeerError
from .conftest import poll
from .kamailio import KamailioPresence
from .kamailio_xmpp import HANDSHAKE_LINE, KamailioXmppGateway
from .prosody import Prosody
from .rawsip import RawSipClient, SipMessage, pidf
from .xmpp_user import Logins, XmppUser

pytestmark = pytest.mark.interop

DOMAIN = "localhost"
GATEWAY = "sip.example.com"
SECRET = "secret"
USERS = {"bob": "bobpw", "dave": "davepw", "erin": "erinpw"}


@pytest.fixture
def prosody(start) -> Prosody:
    return start(lambda: Prosody(DOMAIN, {GATEWAY: SECRET}, dict(USERS)))


@pytest.fixture
def presence(start) -> KamailioPresence:
    return start(KamailioPresence)


@pytest.fixture
def gateway(start, prosody, presence) -> KamailioXmppGateway:
    return start(lambda: KamailioXmppGateway(
        xmpp_port=prosody.component_port, xmpp_domain=GATEWAY, xmpp_secret=SECRET,
        presence_server=presence.uri))


@pytest.fixture
def xmpp(prosody) -> Iterator[Callable[..., XmppUser]]:
    """Connected users (``xmpp("bob")``), disconnected at the end."""
    logins = Logins()
    yield functools.partial(logins, prosody)
    logins.close()


@pytest.fixture
def sip(presence) -> Iterator[Callable[..., RawSipClient]]:
    """SIP clients (``sip()`` talks to the presence server, ``sip(host,
    port)`` elsewhere), closed at the end."""
    made: list[RawSipClient] = []

    def make(host: str | None = None, port: int | None = None) -> RawSipClient:
        client = RawSipClient(host or presence.host, port or presence.port)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def _rows(presence: KamailioPresence, user: str, domain: str = GATEWAY) -> list[dict]:
    return presence.presentity_rows(user, domain, "presence")


def _wait_rows(gateway: KamailioXmppGateway, presence: KamailioPresence, user: str,
               what: str, predicate: Callable[[str], bool] = lambda _body: True,
               timeout: float = 10.0) -> list[dict]:
    """``user``'s presentity rows once one body matches ``predicate``; on
    a timeout the error shows what pua sent and the gateway's log."""
    try:
        return poll(what, lambda: [r for r in _rows(presence, user) if predicate(_body(r))]
                    and _rows(presence, user), timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}; pua sent {gateway.local_requests()}; gateway log:\n"
                             + "\n".join(gateway.log_text().splitlines()[-60:])) from None


def _next_notify(client: RawSipClient, index: int, timeout: float = 5.0) -> SipMessage:
    """The client's NOTIFY number ``index`` (0: the first), also when it
    came while the client was waiting for an answer."""
    while len(client.notifies) <= index:
        if client.wait_notify(timeout) is None:
            raise AssertionError(f"no NOTIFY #{index + 1} within {timeout}s")
    return client.notifies[index]


def _body(row: dict) -> str:
    return row["body"].decode()


def _publish(client: RawSipClient, aor: str, *, expires: int = 600, etag: str | None = None,
             basic: str = "open", note: str = "") -> SipMessage:
    body = pidf(aor, basic=basic, note=note) if expires else b""
    reply = client.publish(aor, expires=expires, etag=etag, body=body)
    assert reply is not None and reply.status == 200, reply
    return reply


# ------------------------------------------------------------------ startup
def test_stock_xmpp_module_dies_at_the_stream_header(start, prosody):
    # Kamailio 5.6.3's xmpp module reads through the NULL that ends expat's
    # attribute list: its XMPP process dies at the server's stream header
    # and Kamailio shuts down.  The peer preloads a fix (fix_attrs=True).
    gw = KamailioXmppGateway(xmpp_port=prosody.component_port, presence_server="sip:127.0.0.1:9",
                             fix_attrs=False, startup_timeout=10)
    with pytest.raises(PeerError, match=r"child process \d+ exited by a signal 11"):
        start(lambda: gw)
    log = gw.log_text()
    # the last thing it read: Prosody's stream header (attributes in any order)
    assert re.search(r"server read\n\[<\?xml version='1.0'\?><stream:stream [^\]]*"
                     r"xmlns='jabber:component:accept'", log)
    assert HANDSHAKE_LINE not in log


def test_start_waits_for_the_component_handshake(gateway, prosody):
    log = gateway.log_text()
    assert HANDSHAKE_LINE in log
    # the stream Kamailio opens, and the handshake it answers with
    assert ("<stream:stream xmlns='jabber:component:accept' to='sip.example.com' "
            "version='1.0'") in log
    assert re.search(r"xode_send \[<handshake>[0-9a-f]{40}</handshake>\]", log)
    assert "External component successfully authenticated" in prosody.log_text()
    assert gateway.started_in is not None and gateway.started_in < 5
    assert gateway.uri == f"sip:127.0.0.1:{gateway.sip_port}"
    assert gateway.sip_address_of("bob@localhost/phone") == "sip:bob*localhost@sip.example.com"
    assert gateway.jid_of("sip:alice@example.com") == "alice*example.com@sip.example.com"


# ------------------------------------------------------------ XMPP -> SIP
def _publish_answered(gateway: KamailioXmppGateway, since: int) -> tuple[dict, dict]:
    """The PUBLISH pua sent since log offset ``since``, and its 200 (seen
    by the gateway, just before pua's callback takes the new etag).  pua
    sends a PUBLISH that it makes before that answer is back as another
    initial one: a second presentity (see the README)."""
    publish = gateway.wait_local_request(lambda r: r["method"] == "PUBLISH", since=since)
    reply = gateway.wait_reply(lambda r: r["call-id"] == publish["call-id"], since=since)
    assert reply["status"] == "200", reply
    return publish, reply


def _presence_published(gateway: KamailioXmppGateway, client: XmppUser, **presence) -> dict:
    """``client`` sends a presence; the PUBLISH it became, once answered."""
    mark = gateway.log_mark()
    client.send_presence(**presence)
    return _publish_answered(gateway, mark)[0]


def test_xmpp_presence_becomes_a_publish(gateway, presence, xmpp):
    bob = xmpp("bob", presence=False)
    to = "alice*example.com@sip.example.com"
    mark = gateway.log_mark()
    bob.send_presence(show="dnd", status="in a meeting", to=to)
    publish, reply = _publish_answered(gateway, mark)
    assert publish["ruri"] == "sip:bob*localhost@sip.example.com"
    assert publish["from"] == publish["to"] == publish["ruri"]
    assert publish["event"] == "presence"
    assert publish["expires"] == "3601"           # default_expires + 1
    assert publish["if-match"] is None
    assert publish["content-type"] == "application/pidf+xml"
    assert publish["contact"] is None
    assert reply["expires"] == "3600"             # the presence server's max_expires
    rows = _rows(presence, "bob*localhost")
    assert len(rows) == 1
    assert rows[0]["etag"] == reply["etag"]
    body = _body(rows[0])
    assert 'entity="pres:bob*localhost@sip.example.com"' in body
    assert "<basic>open</basic>" in body
    assert "<note>Busy (DND)</note>" in body      # the show, mapped
    assert "in a meeting" not in body             # the status text is lost
    assert re.search(r'<tuple id="(0x[0-9a-f]+)">', body)
    assert re.search(r'<person id="0x[0-9a-f]+"/>', body)

    # another show: the same publication, refreshed with the new body
    update = _presence_published(gateway, bob, show="xa", to=to)
    assert update["if-match"] == rows[0]["etag"]
    assert update["expires"] == "3601"
    assert update["content-type"] == "application/pidf+xml"
    assert "<note>Away</note>" in _body(_rows(presence, "bob*localhost")[0])

    for show, note in (("chat", "Online"), ("away", "away")):
        _presence_published(gateway, bob, show=show, status="lunch", to=to)
        [row] = _rows(presence, "bob*localhost")
        assert f"<note>{note}</note>" in _body(row) and "lunch" not in _body(row)
    # a status without a show: an empty note; neither: no note
    _presence_published(gateway, bob, status="back", to=to)
    [row] = _rows(presence, "bob*localhost")
    assert "<basic>open</basic>" in _body(row)
    assert "<note/>" in _body(row) and "back" not in _body(row)
    assert "<person" not in _body(row)             # only with a show
    _presence_published(gateway, bob, to=to)
    [row] = _rows(presence, "bob*localhost")
    assert "<basic>open</basic>" in _body(row)
    assert "<note" not in _body(row) and "<person" not in _body(row)

    # unavailable: the publication is removed
    removal = _presence_published(gateway, bob, ptype="unavailable", to=to)
    assert removal["expires"] == "0"
    assert removal["if-match"]
    assert removal["length"] == "0"
    assert not _rows(presence, "bob*localhost")


def test_xmpp_resources_share_one_publication(gateway, presence, xmpp):
    # Two logins of one user: the last presence wins, the first resource
    # going offline removes the publication of both.
    dave1 = xmpp("dave", presence=False)
    dave2 = xmpp("dave", presence=False)
    to = "x*example.com@sip.example.com"
    first = _presence_published(gateway, dave1, show="dnd", to=to)
    second = _presence_published(gateway, dave2, show="xa", to=to)
    assert first["if-match"] is None and second["if-match"]
    [row] = _rows(presence, "dave*localhost")
    assert "<note>Away</note>" in _body(row)
    _presence_published(gateway, dave1, ptype="unavailable", to=to)
    assert not _rows(presence, "dave*localhost")


# ------------------------------------------------------------ SIP -> XMPP
def test_xmpp_user_watches_a_sip_user(gateway, presence, xmpp, sip):
    alice = sip()
    etag = _publish(alice, "sip:alice@example.com", note="Lunch").header("SIP-ETag")
    bob = xmpp("bob")
    jid = "alice*example.com@sip.example.com"
    mark, log_mark = bob.mark(), gateway.log_mark()
    bob.subscribe(jid)
    subscribed = bob.wait_subscribed(jid, since=mark)
    assert subscribed.from_jid == jid and subscribed.to_jid == "bob@localhost"
    available = bob.wait_available(jid, since=mark)
    assert available.from_jid == jid                 # bare: no resource
    assert available.status == "Lunch" and available.show is None
    assert available.priority is None
    assert bob.roster()[jid]["subscription"] == "to"

    sub = gateway.wait_local_request(lambda r: r["method"] == "SUBSCRIBE", since=log_mark)
    assert sub["ruri"] == sub["to"] == "sip:alice@example.com"
    assert sub["from"] == "sip:bob*localhost@sip.example.com"
    assert sub["contact"] == "<sip:bob*localhost@sip.example.com>"
    assert sub["event"] == "presence"
    assert sub["expires"] == "3610"                 # default_expires + 10
    watchers = presence.active_watchers_rows("sip:alice@example.com", "presence")
    assert [(w["watcher_username"], w["watcher_domain"], w["contact"]) for w in watchers] == [
        ("bob*localhost", "sip.example.com", "sip:bob*localhost@sip.example.com")]
    assert watchers[0]["record_route"] == f"<sip:127.0.0.1:{gateway.sip_port};lr=on>"
    # what went out on the XMPP stream, as the xmpp module logs it: the
    # 200's "subscribed" and the first NOTIFY's presence come from two SIP
    # workers, in either order
    sent = gateway.xmpp_sent(log_mark)
    assert len(sent) == 2
    assert ('<presence to="bob@localhost" from="alice*example.com@sip.example.com" '
            'type="subscribed"/>') in sent
    assert [x for x in sent if "<status>Lunch</status>" in x]

    # notes that map to a show
    for note, show in (("On the phone", "away"), ("away", "away"), ("busy", "xa"),
                       ("dnd", "dnd"), ("Busy (DND)", "dnd")):
        mark = bob.mark()
        etag = _publish(alice, "sip:alice@example.com", etag=etag, note=note).header("SIP-ETag")
        seen = bob.wait_available(jid, since=mark)
        assert (seen.show, seen.status) == (show, note)

    # closed, and no note at all
    mark = bob.mark()
    etag = _publish(alice, "sip:alice@example.com", etag=etag, basic="closed").header("SIP-ETag")
    bob.wait_unavailable(jid, since=mark)
    mark = bob.mark()
    etag = _publish(alice, "sip:alice@example.com", etag=etag).header("SIP-ETag")
    seen = bob.wait_available(jid, since=mark)
    assert seen.show is None and seen.status is None

    # the publication removed: unavailable
    mark = bob.mark()
    _publish(alice, "sip:alice@example.com", etag=etag, expires=0)
    bob.wait_unavailable(jid, since=mark)

    # a probe, or another subscribe: a refresh in the same dialog (to the
    # presence server's Contact, with the To tag), no second watcher, no
    # second "subscribed"; the NOTIFY it brings is passed on
    _publish(alice, "sip:alice@example.com", note="Back")
    bob.wait_available(jid, since=mark)
    for ask in (bob.probe, bob.subscribe):
        mark, log_mark = bob.mark(), gateway.log_mark()
        ask(jid)
        again = gateway.wait_local_request(lambda r: r["method"] == "SUBSCRIBE", since=log_mark)
        assert again["call-id"] == sub["call-id"] and again["to-tag"]
        assert again["ruri"] == f"sip:127.0.0.1:{presence.port}"
        assert again["expires"] == "3610"
        assert bob.wait_available(jid, since=mark).status == "Back"
        assert not [p for p in bob.presences[mark:] if p.type == "subscribed"]
        assert len(presence.active_watchers_rows("sip:alice@example.com", "presence")) == 1

    # unsubscribe: the SUBSCRIBE ends (Expires 0)
    mark, log_mark = bob.mark(), gateway.log_mark()
    bob.unsubscribe(jid)
    end = gateway.wait_local_request(lambda r: r["method"] == "SUBSCRIBE", since=log_mark)
    assert end["expires"] == "0" and end["call-id"] == sub["call-id"]
    # the presence server's last NOTIFY (terminated;reason=timeout) races
    # with pua's handling of the 200: it is answered and dropped, or, when
    # pua has already forgotten the dialog, left unanswered.  No stanza.
    poll("the last NOTIFY handled", lambda: re.search(
        r"don't send notification|Notify in a non existing dialog", gateway.log_text()[log_mark:]))
    assert not [p for p in bob.presences[mark:] if p.from_bare == jid]
    poll("no watcher", lambda: not presence.active_watchers_rows(
        "sip:alice@example.com", "presence"))


# ---------------------------------------------- SIP watchers of XMPP users
def test_sip_watcher_of_an_xmpp_user(gateway, presence, xmpp, sip):
    erin = xmpp("erin", presence=False)
    erin.send_presence(show="away", status="out")
    carol = sip(gateway.host, gateway.sip_port)     # subscribes through the gateway
    mark, log_mark = erin.mark(), gateway.log_mark()
    reply = carol.request(
        "SUBSCRIBE", "sip:erin*localhost@sip.example.com", from_uri="sip:carol@example.com",
        to_uri="sip:erin*localhost@sip.example.com",
        headers=[("Event", "presence"), ("Expires", "600"), ("Contact", carol.contact),
                 ("Accept", "application/pidf+xml")])
    assert reply is not None and reply.status == 200
    # (the NOTIFY may come before the 200: both pass the gateway)
    assert _next_notify(carol, 0).body == b""        # nothing published yet

    winfo = gateway.wait_local_request(lambda r: r["event"] == "presence.winfo", since=log_mark)
    assert winfo["ruri"] == winfo["from"] == winfo["to"] == "sip:erin*localhost@sip.example.com"
    assert winfo["contact"] == f"<{gateway.uri}>"    # server_address
    assert winfo["expires"] == "3610"
    asked = erin.wait_subscribe_request("carol*example.com@sip.example.com", since=mark)
    assert asked.to_jid == "erin@localhost"

    # approved: Prosody sends erin's presence to carol's JID, published
    erin.approve("carol*example.com@sip.example.com")
    body = _next_notify(carol, 1).body.decode()
    assert 'entity="pres:erin*localhost@sip.example.com"' in body
    assert "<basic>open</basic>" in body and "<note>away</note>" in body


# ------------------------------------------------------------------ routing
def test_what_else_the_gateway_answers(gateway, sip):
    client = sip(gateway.host, gateway.sip_port)
    reply = client.request("MESSAGE", "sip:bob*localhost@sip.example.com",
                           from_uri="sip:carol@example.com",
                           to_uri="sip:bob*localhost@sip.example.com",
                           headers=[("Content-Type", "text/plain")], body="hi")
    assert reply is not None and reply.status == 405
    assert "SUBSCRIBE" in reply.header("Allow")
    # a NOTIFY in no dialog of pua_xmpp's: the function fails and returns
    # 0, which ends the script: no answer at all
    mark = gateway.log_mark()
    reply = client.request("NOTIFY", "sip:bob*localhost@sip.example.com",
                           from_uri="sip:alice@example.com",
                           to_uri="sip:bob*localhost@sip.example.com", to_tag="nope",
                           headers=[("Event", "presence"),
                                    ("Subscription-State", "active;expires=60")],
                           timeout=1.5)
    assert reply is None
    log = gateway.wait_log("script writer didn't release transaction", since=mark)
    assert "Notify2Xmpp(): Notify in a non existing dialog" in log
    # other in-dialog requests to the gateway itself
    reply = client.request("BYE", gateway.uri, from_uri="sip:carol@example.com",
                           to_uri=gateway.uri, to_tag="x")
    assert reply is not None and reply.status == 404
