"""Self-checks of the registrar peers: Kamailio registrar (bindings,
t_replicate copies, the reg event) and Kamailio's pua_usrloc, with phones
from tests/peers/rawsip.py and SIPp.

Nothing from ``pua`` is used.  A missing kamailio (or module) or sipp fails
these tests in CI and skips them elsewhere (see tests/conftest.py).
"""

from __future__ import annotations

import socket
import xml.etree.ElementTree as ET

import pytest

from tests.peers.conftest import poll

from . import PeerUnavailable
from .kamailio_pua_usrloc import KamailioPuaUsrloc
from .kamailio_registrar import KamailioRegistrar
from .rawsip import RawSipClient, SipMessage, parse_message
from .sipp import SippUAS, register_phone, register_phones

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
REGINFO_NS = "{urn:ietf:params:xml:ns:reginfo}"
PIDF_NS = "{urn:ietf:params:xml:ns:pidf}"




def _traced(msg: str) -> SipMessage:
    """A message from a SIPp trace (its text), parsed."""
    return parse_message(msg.replace("\r\n", "\n").replace("\n", "\r\n").encode())


def _header(msg: str, name: str) -> str | None:
    """A header of a SIPp-traced message, None when absent."""
    return _traced(msg).header(name) or None


class UdpSidecar:
    """A bare UDP socket standing for pua: receives the t_replicate copies."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.uri = f"sip:127.0.0.1:{self.sock.getsockname()[1]}"

    def recv(self, timeout: float = 10.0) -> tuple[SipMessage, tuple[str, int]]:
        self.sock.settimeout(timeout)
        data, addr = self.sock.recvfrom(65535)
        return parse_message(data), addr

    def answer(self, msg: SipMessage, addr: tuple[str, int], code: int = 200) -> None:
        lines = [f"SIP/2.0 {code} OK"]
        lines += [f"{k}: {v}" for k, v in msg.headers
                  if k.lower() in ("via", "from", "to", "call-id", "cseq")]
        self.sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), addr)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def sidecar():
    s = UdpSidecar()
    yield s
    s.close()


# ----------------------------------------------------------------- bindings
def test_register_lists_binding_and_unregister_removes_it(start):
    reg = start(lambda: KamailioRegistrar(max_expires=3600))
    with RawSipClient(*reg.address) as phone:
        contact = f"sip:alice@127.0.0.1:{phone.local_port}"
        r = phone.register(ALICE, contact, expires=7200, headers=[("User-Agent", "rawphone")])
        assert r is not None and r.status == 200, r and r.raw
        # the 200 lists the binding, with the Expires lowered to max_expires
        assert r.header("Contact") == f"<{contact}>;expires=3600"

        [b] = reg.bindings(ALICE)
        assert (b.aor, b.contact, b.callid, b.cseq, b.user_agent) == \
            ("alice@example.com", contact, r.header("Call-ID"), 1, "rawphone")
        assert b.expires is not None and 3590 <= b.expires <= 3600
        assert [(x.contact, x.callid) for x in reg.lookup(ALICE)] == [(contact, b.callid)]
        assert reg.binding_count() == 1

        # re-register: same binding, new CSeq
        r = phone.register(ALICE, contact, expires=600, call_id=b.callid, cseq=2)
        assert r is not None and r.status == 200
        [b2] = reg.lookup(ALICE)
        assert (b2.contact, b2.cseq) == (contact, 2)
        assert b2.expires is not None and b2.expires <= 600

        r = phone.register(ALICE, contact, expires=0, call_id=b.callid, cseq=3)
        assert r is not None and r.status == 200
        assert r.header("Contact") == ""
    assert reg.bindings(ALICE) == []
    assert reg.lookup(ALICE) == []
    assert reg.binding_count() == 0


def test_wildcard_unregister_removes_every_contact(start):
    reg = start(KamailioRegistrar)
    with RawSipClient(*reg.address) as phone:
        contacts = ["<sip:alice@127.0.0.1:5071>;expires=300",
                    '<sip:alice@127.0.0.1:5072>;+sip.instance="<urn:uuid:00000000-0000-0000-'
                    '0000-000000000002>";reg-id=1']
        r = phone.register(ALICE, contacts, expires=600)
        assert r is not None and r.status == 200
        assert len(r.header_all("Contact")) == 2 or r.header("Contact").count("<sip:") == 2
        got = {b.contact: b for b in reg.lookup(ALICE)}
        assert set(got) == {"sip:alice@127.0.0.1:5071", "sip:alice@127.0.0.1:5072"}
        assert got["sip:alice@127.0.0.1:5071"].expires <= 300
        assert got["sip:alice@127.0.0.1:5072"].raw["Instance"] == \
            "<urn:uuid:00000000-0000-0000-0000-000000000002>"

        # a query (no Contact) lists them, changes nothing
        q = phone.register(ALICE, None)
        assert q is not None and q.status == 200
        assert len(reg.lookup(ALICE)) == 2

        r = phone.register(ALICE, "*", expires=0, call_id=r.header("Call-ID"), cseq=2)
        assert r is not None and r.status == 200
    assert reg.lookup(ALICE) == []


def test_expired_binding_is_removed_by_the_timer(start):
    reg = start(lambda: KamailioRegistrar(timer_interval=1))
    with RawSipClient(*reg.address) as phone:
        r = phone.register(ALICE, expires=1)
        assert r is not None and r.status == 200
        assert r.header("Contact").endswith(";expires=1")
    assert reg.wait_bindings(ALICE, lambda found: not found, timeout=15) == []
    # the timer removes the expired contact from the table
    poll("the usrloc timer", lambda: reg.binding_count() == 0, timeout=15)
    assert reg.bindings(ALICE) == []


def test_min_expires_rejected_with_423(start):
    reg = start(lambda: KamailioRegistrar(min_expires=60, reject_short_expires=True))
    with RawSipClient(*reg.address) as phone:
        r = phone.register(ALICE, expires=10)
        assert r is not None and r.status == 423
        assert r.header("Min-Expires") == "60"
    assert reg.lookup(ALICE) == []


def test_sipp_phones_register(start):
    reg = start(KamailioRegistrar)
    stats = register_phones(reg.host, reg.port, calls=20, rate=200, user_prefix="ph",
                            expires=300, timeout=60).run()
    assert stats.successful == 20, stats.errors[-2000:]
    assert reg.binding_count() == 20
    bindings = reg.bindings()
    assert sorted(b.aor for b in bindings) == sorted(f"ph{n}@example.com" for n in range(1, 21))
    assert len({b.callid for b in bindings}) == 20
    assert all(b.contact.startswith(f"sip:{b.aor.split('@')[0]}@127.0.0.1:") for b in bindings)


def test_sipp_phone_registers_refreshes_and_unregisters(start):
    reg = start(KamailioRegistrar)
    uac = register_phone(reg.host, reg.port, "alice", expires=300, reregister=True,
                         contact_params=";reg-id=1", trace_msg=True, timeout=60)
    stats = uac.run()
    assert stats.successful == 1, stats.errors[-2000:]
    sent = [m for m in uac.messages.split("\n") if m.startswith("REGISTER sip:")]
    assert len(sent) == 3
    assert reg.lookup(ALICE) == []
    assert "REQ REGISTER" in reg.log_text()


# ---------------------------------------------------------------- t_replicate
def test_replicated_register_carries_the_phone_headers(start, sidecar):
    reg = start(lambda: KamailioRegistrar(replicate_to=sidecar.uri, max_expires=3600))
    with RawSipClient(*reg.address) as phone:
        contact = (f'<sip:alice@127.0.0.1:{phone.local_port};transport=udp>;q=0.5;'
                   '+sip.instance="<urn:uuid:00000000-0000-0000-0000-000000000001>";reg-id=1')
        r = phone.register(ALICE, contact, expires=7200, headers=[("User-Agent", "rawphone")])
        assert r is not None and r.status == 200

        copy, addr = sidecar.recv()
        assert addr == reg.address  # from the registrar's SIP socket
        assert copy.first_line == "REGISTER sip:example.com SIP/2.0"
        assert copy.header("From") == r.header("From")
        assert copy.header("User-Agent") == "rawphone"
        assert copy.header("Call-ID") == r.header("Call-ID")
        assert copy.header("CSeq") == "1 REGISTER"
        assert copy.header("Contact") == contact
        assert copy.header("Expires") == "7200"  # the phone's value, not the granted one
        assert copy.header("To") == f"<{ALICE}>"  # no To-tag
        assert copy.header("Max-Forwards") == "69"
        vias = copy.header_all("Via")
        assert len(vias) == 2
        assert vias[0].startswith(f"SIP/2.0/UDP 127.0.0.1:{reg.port};branch=z9hG4bK")
        assert f"127.0.0.1:{phone.local_port}" in vias[1] and "received=127.0.0.1" in vias[1]
        assert copy.header_all("Record-Route") == []

        # unanswered, tm retransmits the copy (same branch)
        again, _ = sidecar.recv()
        assert again.header_all("Via") == vias
        sidecar.answer(again, addr)

        # the answer to the copy is not relayed to the phone: the next thing
        # the phone gets is the answer to its next request
        r2 = phone.register(ALICE, None)
        assert r2 is not None and r2.status == 200
        # a query REGISTER is saved (nothing changes) and copied as well
        q, _ = sidecar.recv()
        while q.header("Call-ID") == copy.header("Call-ID"):  # a late retransmission
            q, _ = sidecar.recv()
        assert q.header("Call-ID") == r2.header("Call-ID") and q.header("Contact") == ""
        sidecar.answer(q, addr)


def test_refused_register_is_not_replicated(start, sidecar):
    reg = start(lambda: KamailioRegistrar(replicate_to=sidecar.uri, min_expires=60,
                                          reject_short_expires=True))
    with RawSipClient(*reg.address) as phone:
        r = phone.register(ALICE, expires=10)
        assert r is not None and r.status == 423
        ok = phone.register("sip:bob@example.com", expires=120)
        assert ok is not None and ok.status == 200
        # one worker handles both in order: the first copy is bob's
        copy, addr = sidecar.recv()
        assert copy.header("Call-ID") == ok.header("Call-ID")
        sidecar.answer(copy, addr)


def test_replicate_to_sipp_uas(start):
    uas = start(lambda: SippUAS("register_200", trace_msg=True))
    reg = start(lambda: KamailioRegistrar(replicate_to=uas.uri))
    with RawSipClient(*reg.address) as phone:
        r = phone.register(ALICE, expires=600)
        assert r is not None and r.status == 200
        r2 = phone.register(ALICE, expires=0, call_id=r.header("Call-ID"), cseq=2)
        assert r2 is not None and r2.status == 200
    copies = poll("two REGISTER copies at SIPp", lambda: len(uas.received("REGISTER")) >= 2
                   and uas.received("REGISTER"))
    assert [_header(m, "CSeq") for m in copies] == ["1 REGISTER", "2 REGISTER"]
    assert {_header(m, "Call-ID") for m in copies} == {r.header("Call-ID")}
    assert [_header(m, "Expires") for m in copies] == ["600", "0"]
    stats = uas.stop()
    assert stats.successful == 2


# ------------------------------------------------------------------ reginfo
def _registration(notify: SipMessage) -> ET.Element:
    assert notify.header("Event") == "reg"
    assert notify.header("Content-Type") == "application/reginfo+xml"
    root = ET.fromstring(notify.body)
    assert root.tag == f"{REGINFO_NS}reginfo"
    [registration] = root.findall(f"{REGINFO_NS}registration")
    assert registration.get("aor") == ALICE
    return registration


def test_reginfo_subscribe_gets_notify_with_contact(start):
    reg = start(lambda: KamailioRegistrar(reginfo=True))
    with RawSipClient(*reg.address) as watcher, RawSipClient(*reg.address) as phone:
        s = watcher.request("SUBSCRIBE", ALICE, from_uri="sip:watcher@example.com",
                            to_uri=ALICE, headers=[("Event", "reg"),
                                                   ("Accept", "application/reginfo+xml"),
                                                   ("Contact", watcher.contact),
                                                   ("Expires", "600")])
        assert s is not None and s.status in (200, 202), s and s.raw
        first = watcher.wait_notify(10)
        assert first is not None and first.body == b""  # nothing published yet

        contact = f"sip:alice@127.0.0.1:{phone.local_port}"
        r = phone.register(ALICE, contact, expires=600)
        assert r is not None and r.status == 200
        n = watcher.wait_notify(10)
        assert n is not None
        registration = _registration(n)
        assert registration.get("state") == "active"
        [c] = registration.findall(f"{REGINFO_NS}contact")
        assert c.findtext(f"{REGINFO_NS}uri") == contact
        assert (c.get("state"), c.get("event"), c.get("callid")) == \
            ("active", "created", r.header("Call-ID"))

        r = phone.register(ALICE, contact, expires=0, call_id=r.header("Call-ID"), cseq=2)
        assert r is not None and r.status == 200
        n = watcher.wait_notify(10)
        assert n is not None
        registration = _registration(n)
        assert registration.get("state") == "terminated"
        [c] = registration.findall(f"{REGINFO_NS}contact")
        assert (c.get("state"), c.get("event")) == ("terminated", "unregistered")


# --------------------------------------------------------------- pua_usrloc
def test_pua_usrloc_publishes_presence_for_a_register(start):
    uas = start(lambda: SippUAS("publish_200", trace_msg=True))
    reg = start(lambda: KamailioPuaUsrloc(uas.uri))
    with RawSipClient(*reg.address) as phone:
        r = phone.register(ALICE, expires=600)
        assert r is not None and r.status == 200
        [pub] = poll("a PUBLISH at SIPp", lambda: uas.received("PUBLISH"))
        assert pub.startswith(f"PUBLISH {ALICE} SIP/2.0")
        assert _header(pub, "Event") == "presence"
        assert _header(pub, "To") == f"<{ALICE}>"
        assert _header(pub, "Expires") in ("600", "601")  # remaining lifetime + 1
        assert _header(pub, "Content-Type") == "application/pidf+xml"
        doc = ET.fromstring(_traced(pub).body.strip())
        assert doc.get("entity") == "alice@example.com"
        assert doc.findtext(f"{PIDF_NS}tuple/{PIDF_NS}status/{PIDF_NS}basic") == "open"

        r = phone.register(ALICE, expires=0, call_id=r.header("Call-ID"), cseq=2)
        assert r is not None and r.status == 200
        pubs = poll("the removing PUBLISH", lambda: len(uas.received("PUBLISH")) >= 2
                     and uas.received("PUBLISH"))
        assert _header(pubs[1], "Expires") == "0"
        assert _header(pubs[1], "SIP-If-Match")  # the ETag SIPp gave
        assert _header(pubs[1], "Content-Type") is None


# ------------------------------------------------------------------ missing
def test_missing_kamailio_is_peer_unavailable(monkeypatch):
    monkeypatch.setenv("KAMAILIO_BIN", "/nonexistent/kamailio")
    with pytest.raises(PeerUnavailable):
        KamailioRegistrar()
    with pytest.raises(PeerUnavailable):
        KamailioPuaUsrloc("sip:127.0.0.1:5060")
