"""Self-checks of the bridged line appearance peers (draft-anil-sipping-bla):
Kamailio's presence server with ``dialog;sla`` (``KamailioPresence(bla=True)``),
the registrar marking shared-line REGISTER copies
(``KamailioRegistrar(bla_lines=...)``) and the phone (``BlaPhone``).

Nothing from ``pua`` is used: a RawSipClient stands in for it.  A missing
kamailio (or module) fails these tests in CI and skips them elsewhere (see
tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import peer_or_skip

from .bla_phone import (
    DIALOG_INFO_TYPE,
    SLA_EVENT,
    BlaPhone,
    Call,
    dialog_info,
    has_dialog,
    parse_dialog_info,
)
from .kamailio import KamailioPresence
from .kamailio_registrar import KamailioRegistrar
from .rawsip import RawSipClient, SipMessage

pytestmark = pytest.mark.interop

LINE = "sip:line1@example.com"
ALICE = "sip:alice@example.com"



@pytest.fixture
def phones() -> Callable[..., BlaPhone]:
    """BlaPhone factory; each phone serving, closed at the end."""
    made: list[BlaPhone] = []

    def make(line: str = LINE, **kw) -> BlaPhone:
        phone = BlaPhone(line, **kw).serve()
        made.append(phone)
        return phone

    yield make
    for phone in made:
        phone.close()


def _doc(*calls: tuple[str, str], version: int = 0) -> str:
    return dialog_info(LINE, [Call(call_id=c, state=s, local_tag="lt-" + c) for c, s in calls],
                       version)


def _publish_sla(client: RawSipClient, body: str, sender: str | None, *,
                 etag: str | None = None, expires: int = 600) -> SipMessage:
    headers = [("Event", SLA_EVENT), ("Expires", str(expires)),
               ("Content-Type", DIALOG_INFO_TYPE)]
    if sender is not None:
        headers.append(("Sender", sender))
    if etag:
        headers.append(("SIP-If-Match", etag))
    r = client.request("PUBLISH", LINE, from_uri=LINE, to_uri=LINE, headers=headers,
                       body=body)
    assert r is not None, "no answer to PUBLISH"
    return r


def _with_body(msg: SipMessage) -> bool:
    return bool(msg.body.strip())


def _subscribed(phone: BlaPhone, kam: KamailioPresence) -> SipMessage:
    """Subscribe ``phone`` to the line's dialog;sla; returns the server's
    first NOTIFY."""
    r = phone.subscribe_line(kam.host, kam.port, expires=600)
    assert r is not None and r.status == 200, r and r.raw
    n = phone.wait_notify(timeout=5)
    assert n is not None, "no NOTIFY after the dialog;sla SUBSCRIBE"
    return n


# ------------------------------------------------------- presence server
def test_sla_publish_notifies_the_other_phones_but_not_the_sender(start, phones):
    kam = start(lambda: KamailioPresence(bla=True))
    a, b = phones(), phones()
    for phone in (a, b):
        first = _subscribed(phone, kam)
        # nothing published yet: a NOTIFY without body
        assert first.header("Event") == SLA_EVENT
        assert first.header("Subscription-State").startswith("active;expires=")
        assert first.body == b"" and first.header("Content-Length") == "0"
    # the presentity of an SLA SUBSCRIBE: Contact user @ From domain
    watchers = kam.active_watchers_rows(event=SLA_EVENT)
    assert sorted((w["presentity_uri"], w["contact"]) for w in watchers) == \
        sorted([(LINE, a.contact_uri), (LINE, b.contact_uri)])

    with RawSipClient(kam.host, kam.port) as pua:
        body1 = _doc(("c1", "confirmed"))
        r = _publish_sla(pua, body1, a.contact_uri)
        assert r.status == 200, r.raw
        assert r.header("SIP-ETag")
        [row] = kam.presentity_rows("line1", "example.com", SLA_EVENT)
        assert row["sender"] == a.contact_uri

        nb = b.wait_notify(has_dialog("c1", "confirmed"), timeout=5)
        assert nb is not None, "phone B got no NOTIFY with the confirmed dialog"
        assert nb.header("Event") == SLA_EVENT
        assert nb.header("Content-Type") == DIALOG_INFO_TYPE
        assert nb.header("Subscription-State").startswith("active;expires=")
        assert nb.body == body1.encode()  # the document as published, version too
        assert nb.first_line == f"NOTIFY {b.contact_uri} SIP/2.0"
        assert nb.header("Contact") == f"<{kam.uri}>"

        # A next gets a NOTIFY for a publication from B: the first NOTIFY
        # with a body that reaches A must be that one, not c1's.
        seen_b = len(b.notifies)
        body2 = _doc(("c2", "early"))
        r = _publish_sla(pua, body2, b.contact_uri)
        assert r.status == 200, r.raw
        na = a.wait_notify(_with_body, timeout=5)
        assert na is not None, "phone A got no NOTIFY for B's publication"
        assert has_dialog("c2", "early")(na), na.raw
        assert not has_dialog("c1")(na)
        assert not any(has_dialog("c1")(m) for m in a.notifies)

        # and B did not get its own publication: a PUBLISH without Sender
        # reaches both, and is B's first NOTIFY since c2 was published
        body3 = _doc(("c3", "confirmed"))
        r = _publish_sla(pua, body3, None)
        assert r.status == 200, r.raw
        nb3 = b.wait_notify(_with_body, timeout=5, after=seen_b)
        assert nb3 is not None and has_dialog("c3")(nb3), nb3 and nb3.raw
        assert a.wait_notify(has_dialog("c3"), timeout=5) is not None
        assert not any(has_dialog("c2")(m) for m in b.notifies)


def test_sla_sender_must_be_a_bare_sip_uri(start, phones):
    kam = start(lambda: KamailioPresence(bla=True))
    a = phones()
    _subscribed(a, kam)
    with RawSipClient(kam.host, kam.port) as pua:
        body = _doc(("c1", "confirmed"))
        # name-addr form: Kamailio's parse_uri() refuses it
        r = _publish_sla(pua, body, a.contact)
        assert r.status == 400, r.raw
        assert kam.presentity_rows(event=SLA_EVENT) == []
        r = _publish_sla(pua, body, "not a uri")
        assert r.status == 400, r.raw
        # a bare URI, other than every watcher's Contact: A is notified
        r = _publish_sla(pua, body, "sip:line1@192.0.2.1:5060")
        assert r.status == 200, r.raw
        assert a.wait_notify(has_dialog("c1", "confirmed"), timeout=5) is not None


def test_sla_refresh_of_the_sender_gets_an_empty_document(start, phones):
    kam = start(lambda: KamailioPresence(bla=True))
    a, b = phones(), phones()
    for phone in (a, b):
        _subscribed(phone, kam)
    with RawSipClient(kam.host, kam.port) as pua:
        r = _publish_sla(pua, _doc(("c1", "confirmed")), a.contact_uri)
        assert r.status == 200, r.raw
        assert b.wait_notify(has_dialog("c1"), timeout=5) is not None

    # a NOTIFY built for the sender's own subscription (its refresh) carries
    # a dialog-info without dialogs instead of its own dialogs
    seen = len(a.notifies)
    r = a.subscribe_line(kam.host, kam.port, expires=600)
    assert r is not None and r.status == 200, r and r.raw
    na = a.wait_notify(timeout=5, after=seen)
    assert na is not None
    assert na.header("Content-Type") == DIALOG_INFO_TYPE
    doc = parse_dialog_info(na.body)
    assert (doc.entity, doc.version, doc.state, doc.dialogs) == (LINE, 1, "full", [])
    # B's refresh still gets the stored document
    seen = len(b.notifies)
    r = b.subscribe_line(kam.host, kam.port, expires=600)
    assert r is not None and r.status == 200, r and r.raw
    nb = b.wait_notify(timeout=5, after=seen)
    assert nb is not None and has_dialog("c1", "confirmed")(nb), nb and nb.raw


def test_sla_subscribe_presentity_is_contact_user_at_from_domain(start, phones):
    kam = start(lambda: KamailioPresence(bla=True))
    phone = phones(user="desk7")
    assert phone.contact_uri.startswith("sip:desk7@127.0.0.1:")
    _subscribed(phone, kam)
    [w] = kam.active_watchers_rows(event=SLA_EVENT)
    # not the Request-URI's line1: the Contact's user
    assert w["presentity_uri"] == "sip:desk7@example.com"
    with RawSipClient(kam.host, kam.port) as pua:
        r = _publish_sla(pua, _doc(("c1", "confirmed")), None)
        assert r.status == 200, r.raw
        # what it does watch: a document published for desk7; its NOTIFY
        # is the first one with a body, line1's would have come before it
        desk7 = "sip:desk7@example.com"
        body = dialog_info(desk7, [Call(call_id="d7", state="confirmed")], 0)
        r = pua.request("PUBLISH", desk7, from_uri=desk7, to_uri=desk7, body=body,
                        headers=[("Event", SLA_EVENT), ("Expires", "600"),
                                 ("Content-Type", DIALOG_INFO_TYPE)])
        assert r is not None and r.status == 200, r and r.raw
    n = phone.wait_notify(_with_body, timeout=5)
    assert n is not None and has_dialog("d7")(n), n and n.raw


def test_presence_without_bla_refuses_the_sla_event(start, phones):
    kam = start(KamailioPresence)
    phone = phones()
    r = phone.subscribe_line(kam.host, kam.port, expires=600)
    assert r is not None and r.status == 489, r and r.raw
    with RawSipClient(kam.host, kam.port) as pua:
        r = _publish_sla(pua, _doc(("c1", "confirmed")), phone.contact_uri)
        assert r.status == 489, r.raw


# -------------------------------------------------------------- registrar
def test_registrar_marks_the_copies_of_shared_line_registers(start, phones):
    with RawSipClient("127.0.0.1", 9) as stub:  # stands for pua: gets the copies
        stub_uri = f"sip:127.0.0.1:{stub.local_port}"
        reg = start(lambda: KamailioRegistrar(replicate_to=stub_uri, bla_lines=[LINE]))
        stub.remote = reg.address  # its answers go back to the registrar
        phone = phones()

        def copy() -> SipMessage:
            msg = stub.recv_message(10)
            assert msg is not None, "no t_replicate copy"
            assert msg.method == "REGISTER", msg.raw
            stub.answer(msg)
            return msg

        r = phone.register(reg.host, reg.sip_port, expires=600)
        assert r is not None and r.status == 200, r and r.raw
        assert r.header("X-BLA-Line") == ""  # the phone's answer is not marked
        c = copy()
        assert c.header("X-BLA-Line") == "yes"
        assert c.header("To") == f"<{LINE}>"
        assert c.header("Contact") == phone.contact
        assert c.header("Call-ID") == r.header("Call-ID")

        with RawSipClient(*reg.address) as alice:
            r = alice.register(ALICE, expires=600)
            assert r is not None and r.status == 200, r and r.raw
            c = copy()
            assert c.header("To") == f"<{ALICE}>"
            assert c.header_all("X-BLA-Line") == []

        # the unregister of the line is marked too
        r = phone.register(reg.host, reg.sip_port, expires=0)
        assert r is not None and r.status == 200, r and r.raw
        c = copy()
        assert (c.header("X-BLA-Line"), c.header("Expires")) == ("yes", "0")
        assert reg.lookup(LINE) == []


def test_registrar_bla_header_name_and_checks(start, phones):
    with pytest.raises(ValueError, match="replicate_to"):
        peer_or_skip(lambda: KamailioRegistrar(bla_lines=[LINE]))
    with pytest.raises(ValueError, match="AOR"):
        peer_or_skip(lambda: KamailioRegistrar(replicate_to="sip:127.0.0.1:9",
                                                bla_lines=['sip:a"b@example.com']))
    with pytest.raises(ValueError, match="header name"):
        peer_or_skip(lambda: KamailioRegistrar(replicate_to="sip:127.0.0.1:9",
                                                bla_lines=[LINE], bla_header="X Bad"))
    plain = peer_or_skip(lambda: KamailioRegistrar(replicate_to="sip:127.0.0.1:9"))
    assert "WITH_BLA_LINES" not in plain._defines()

    with RawSipClient("127.0.0.1", 9) as stub:
        reg = start(lambda: KamailioRegistrar(
            replicate_to=f"sip:127.0.0.1:{stub.local_port}",
            bla_lines=["sip:line2@example.com", LINE], bla_header="X-Shared-Line"))
        stub.remote = reg.address
        phone = phones()
        r = phone.register(reg.host, reg.sip_port, expires=600)
        assert r is not None and r.status == 200, r and r.raw
        c = stub.recv_message(10)
        assert c is not None and c.method == "REGISTER"
        stub.answer(c)
        assert c.header("X-Shared-Line") == "yes"
        assert c.header_all("X-BLA-Line") == []


# ------------------------------------------------------------------ phone
def _pua_subscribe(pua: RawSipClient, phone: BlaPhone, *, expires: int, call_id: str,
                   cseq: int, from_tag: str, to_tag: str | None = None,
                   event: str = SLA_EVENT) -> SipMessage:
    r = pua.request("SUBSCRIBE", phone.contact_uri, from_uri=LINE, to_uri=LINE,
                    call_id=call_id, cseq=cseq, from_tag=from_tag, to_tag=to_tag,
                    headers=[("Event", event), ("Accept", DIALOG_INFO_TYPE),
                             ("Contact", pua.contact), ("Expires", str(expires))])
    assert r is not None, "the phone did not answer the SUBSCRIBE"
    return r


def _next_notify(pua: RawSipClient, seen: int) -> SipMessage:
    """The NOTIFY after the first ``seen`` ones (answered 200 by ``pua``)."""
    if len(pua.notifies) <= seen:
        assert pua.wait_notify(5) is not None, "no NOTIFY from the phone"
    return pua.notifies[seen]


def test_phone_answers_sla_subscribe_and_notifies_its_dialogs(phones):
    phone = phones()
    with RawSipClient(*phone.address) as pua, ThreadPoolExecutor(1) as pool:
        r = _pua_subscribe(pua, phone, expires=300, call_id="sla-1", cseq=1, from_tag="pt")
        assert r.status == 200, r.raw
        assert r.header("Contact") == phone.contact
        assert r.header("Expires") == "300"
        tag = r.tag("To")
        assert tag
        assert phone.wait_subscribe(timeout=1) is not None
        assert [s.header("Call-ID") for s in phone.subscribes] == ["sla-1"]

        n1 = _next_notify(pua, 0)
        assert n1.first_line == f"NOTIFY sip:watcher@127.0.0.1:{pua.local_port} SIP/2.0"
        assert (n1.header("Call-ID"), n1.tag("From"), n1.tag("To")) == ("sla-1", tag, "pt")
        assert n1.header("Event") == SLA_EVENT
        assert n1.header("Contact") == phone.contact
        assert n1.header("Content-Type") == DIALOG_INFO_TYPE
        state = n1.header("Subscription-State")
        assert state.startswith("active;expires="), state
        assert 298 <= int(state.split("=", 1)[1]) <= 300
        doc = parse_dialog_info(n1.body)
        assert (doc.entity, doc.version, doc.state, doc.dialogs) == (LINE, 0, "full", [])

        # a call: the next NOTIFY in that dialog, a higher version; set_call
        # returns the subscriber's answer
        fut = pool.submit(phone.set_call, "call-1", "confirmed", appearance=1,
                          remote_uri="sip:bob@example.com")
        n2 = _next_notify(pua, 1)
        answer = fut.result(5)
        assert answer is not None and answer.status == 200
        assert n2.header("Call-ID") == "sla-1"
        assert int(n2.header("CSeq").split()[0]) > int(n1.header("CSeq").split()[0])
        doc = parse_dialog_info(n2.body)
        assert doc.version == 1
        [d] = doc.dialogs
        assert (d["call-id"], d["state"], d["direction"], d["appearance"]) == \
            ("call-1", "confirmed", "initiator", "1")
        assert d["local-tag"]

        # unknown To tag -> 481; another event -> 489 (no NOTIFY for either)
        r = _pua_subscribe(pua, phone, expires=300, call_id="sla-1", cseq=2, from_tag="pt",
                           to_tag="nope")
        assert r.status == 481, r.raw
        r = _pua_subscribe(pua, phone, expires=300, call_id="other", cseq=1, from_tag="o",
                           event="presence")
        assert r.status == 489, r.raw

        # Expires 0 -> 200 and a final NOTIFY, with the document
        r = _pua_subscribe(pua, phone, expires=0, call_id="sla-1", cseq=3, from_tag="pt",
                           to_tag=tag)
        assert r.status == 200, r.raw
        assert r.header("Expires") == "0"
        n3 = _next_notify(pua, 2)
        assert n3.header("Subscription-State").startswith("terminated")
        doc = parse_dialog_info(n3.body)
        assert doc.version == 2 and doc.dialog("call-1") is not None
        assert len(pua.notifies) == 3
        # no active subscription left: set_call NOTIFYs nobody
        sent = len(phone.sent)
        assert phone.set_call("call-1", "terminated") is None
        assert len(phone.sent) == sent
        assert phone.calls == {}


def test_bla_chain_phone_to_pua_to_presence_to_other_phone(start, phones):
    """The whole flow with a RawSipClient in pua's place: the marked REGISTER
    copy, pua's SUBSCRIBE to the phone, the phone's NOTIFY re-published with
    ``Sender: <NOTIFY Contact URI>``, Kamailio's NOTIFY to the other phone."""
    kam = start(lambda: KamailioPresence(bla=True))
    with RawSipClient("127.0.0.1", 9) as pua:
        reg = start(lambda: KamailioRegistrar(replicate_to=f"sip:127.0.0.1:{pua.local_port}",
                                              bla_lines=[LINE]))
        pua.remote = reg.address
        a, b = phones(), phones()
        for phone in (a, b):
            _subscribed(phone, kam)
        r = a.register(reg.host, reg.sip_port, expires=600)
        assert r is not None and r.status == 200, r and r.raw
        copy = pua.recv_message(10)
        assert copy is not None and copy.header("X-BLA-Line") == "yes"
        pua.answer(copy)

        # pua subscribes to the phone's Contact, as pua_bla does
        contact = copy.header("Contact").strip("<>")
        assert contact == a.contact_uri
        pua.remote = a.address
        r = pua.request("SUBSCRIBE", contact, from_uri=LINE, to_uri=LINE,
                        headers=[("Event", SLA_EVENT), ("Contact", pua.contact),
                                 ("Expires", "600")])
        assert r is not None and r.status == 200, r and r.raw
        _next_notify(pua, 0)
        with ThreadPoolExecutor(1) as pool:
            fut = pool.submit(a.set_call, "call-9", "early", direction="recipient")
            notify = _next_notify(pua, 1)
            assert fut.result(5).status == 200

        sender = notify.header("Contact").strip("<>")
        pua.remote = (kam.host, kam.port)
        r = _publish_sla(pua, notify.body.decode(), sender)
        assert r.status == 200, r.raw
        nb = b.wait_notify(has_dialog("call-9", "early"), timeout=5)
        assert nb is not None
        assert parse_dialog_info(nb.body).dialog("call-9")["direction"] == "recipient"
