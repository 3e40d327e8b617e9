"""Registrations become presence and reg state (`pua serve --usrloc
--reginfo`), checked in a real Kamailio presence server's tables: a phone's
REGISTER (as a registrar's t_replicate copy would come) makes an open
presentity for its address of record, a second phone a second tuple,
unregistering and expiry remove them, a kill -9 loses no binding, and
hostile REGISTERs change nothing."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import peer_or_skip
from tests.peers.kamailio import KamailioPresence
from tests.peers.kamailio_registrar import KamailioRegistrar
from tests.peers.rawsip import RawSipClient
from tests.peers.sipp import register_phones

from .running import RunningService

pytestmark = pytest.mark.interop

AOR = "sip:alice@example.com"


class Phone:
    """A UDP socket that sends REGISTERs to pua and reads the answers."""

    def __init__(self, pua_port: int, host: str = "127.0.0.1") -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.target = ("127.0.0.1", pua_port)
        self.call_id = uuid.uuid4().hex
        self.cseq = 0

    def close(self) -> None:
        self.sock.close()

    def register(self, contacts: list[str] | str, expires: int | str | None = 60, *,
                 aor: str = AOR, cseq: int | None = None,
                 call_id: str | None = None) -> tuple[int, list[str]]:
        """Send a REGISTER; (status, Contact values of the answer)."""
        self.cseq = cseq if cseq is not None else self.cseq + 1
        branch = "z9hG4bK" + uuid.uuid4().hex[:12]
        lines = [
            f"REGISTER sip:{aor.partition('@')[2]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch}",
            "Max-Forwards: 70",
            f"From: <{aor}>;tag=ph{self.port}",
            f"To: <{aor}>",
            f"Call-ID: {call_id or self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
        ]
        for contact in [contacts] if isinstance(contacts, str) else contacts:
            lines.append(f"Contact: {contact}")
        if expires is not None:
            lines.append(f"Expires: {expires}")
        lines.append("Content-Length: 0")
        self.sock.sendto(("\r\n".join(lines) + "\r\n\r\n").encode(), self.target)
        while True:
            data = self.sock.recv(65535).decode()
            if branch in data and not data.startswith("SIP/2.0 100"):
                break
        status = int(data.split(" ", 2)[1])
        found = [line.split(":", 1)[1].strip() for line in data.split("\r\n")
                 if line.lower().startswith("contact:")]
        return status, found


def wait_until(svc: RunningService, check: Callable[[], Any], seconds: float = 15.0,
               what: str = "") -> Any:
    """``check()``'s first true value, tested again at each event ``svc``
    reports (each PUBLISH it makes is answered after the server changed)."""
    return svc.event_stream().wait_until(check, seconds, what)


def presence_rows(kam: KamailioPresence) -> list[dict[str, Any]]:
    now = int(time.time())
    return [r for r in kam.presentity_rows("alice", "example.com", "presence")
            if r["expires"] > now]


@pytest.fixture
def kam() -> Iterator[KamailioPresence]:
    with peer_or_skip(KamailioPresence) as server:
        yield server


@pytest.fixture
def start(kam: KamailioPresence, tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    started: list[RunningService] = []

    def run(*flags: str, sip_port: int | None = None) -> RunningService:
        svc = RunningService("--usrloc", "--reginfo", "--outbound-proxy", kam.uri, *flags,
                             data_dir=tmp_path / "data", sip_port=sip_port)
        svc.event_stream()  # open before anything happens
        started.append(svc)
        return svc

    yield run
    for svc in started:
        if svc.process.poll() is None:
            svc.stop()


def test_phones_register_and_unregister(kam: KamailioPresence,
                                        start: Callable[..., RunningService]) -> None:
    svc = start()
    desk, mobile = Phone(svc.sip_port), Phone(svc.sip_port)
    try:
        status, contacts = desk.register(f"<sip:alice@127.0.0.1:{desk.port}>;q=0.9", 120)
        assert status == 200 and len(contacts) == 1 and "expires=" in contacts[0]
        rows = wait_until(svc, lambda: presence_rows(kam), what="the desk phone's presentity")
        assert b"<basic>open</basic>" in rows[0]["body"]
        assert f"127.0.0.1:{desk.port}".encode() in rows[0]["body"]
        # a second phone: a second publication (its own Call-ID), two tuples for watchers
        status, contacts = mobile.register(f"<sip:alice@127.0.0.1:{mobile.port}>", 120)
        assert status == 200 and len(contacts) == 2
        wait_until(svc, lambda: len(presence_rows(kam)) == 2, what="two presentity rows")
        listed = svc.rpc("pua.registrations", {"aor": AOR})["result"]["bindings"]
        assert {b["contact"] for b in listed} == {
            f"sip:alice@127.0.0.1:{desk.port}", f"sip:alice@127.0.0.1:{mobile.port}"}
        # the reg state of the AOR is published too, with both contacts
        reg = wait_until(svc, lambda: kam.presentity_rows("alice", "example.com", "reg"),
                         what="reginfo presentity")
        wait_until(svc, lambda: all(str(p.port).encode() in kam.presentity_rows(
            "alice", "example.com", "reg")[0]["body"] for p in (desk, mobile)),
            what="both contacts in reginfo")
        assert b"application" not in reg[0]["body"][:5]
        # re-registering refreshes (same publication, no new row)
        etags = {r["etag"] for r in presence_rows(kam)}
        assert desk.register(f"<sip:alice@127.0.0.1:{desk.port}>", 120)[0] == 200
        wait_until(svc, lambda: {r["etag"] for r in presence_rows(kam)} != etags,
                   what="the refreshed publication's new ETag")
        assert len(presence_rows(kam)) == 2
        # one unregisters: the other stays
        status, contacts = desk.register(f"<sip:alice@127.0.0.1:{desk.port}>", 0)
        assert status == 200 and len(contacts) == 1
        wait_until(svc, lambda: len(presence_rows(kam)) == 1, what="one row left")
        assert str(mobile.port).encode() in presence_rows(kam)[0]["body"]
        # the last one goes with a wildcard: no presentity, no reg state
        status, contacts = mobile.register("*", 0)
        assert status == 200 and contacts == []
        wait_until(svc, lambda: presence_rows(kam) == [], what="no presentity left")
        wait_until(svc, lambda: kam.presentity_rows("alice", "example.com", "reg") == [],
                   what="reg state removed")
        assert svc.rpc("pua.registrations")["result"]["bindings"] == []
    finally:
        desk.close()
        mobile.close()


def test_a_binding_left_to_expire_is_removed(kam: KamailioPresence,
                                             start: Callable[..., RunningService]) -> None:
    svc = start()
    phone = Phone(svc.sip_port)
    try:
        assert phone.register(f"<sip:alice@127.0.0.1:{phone.port}>;expires=3")[0] == 200
        wait_until(svc, lambda: presence_rows(kam), what="the presentity")
        wait_until(svc, lambda: svc.rpc("pua.registrations")["result"]["bindings"] == [],
                   what="the binding ended at its expiry")
        wait_until(svc, lambda: kam.presentity_rows("alice", "example.com", "presence") == [],
                   what="the publication removed (the row gone, not only expired)")
    finally:
        phone.close()


def stored_etags(data_dir: Path) -> set[str]:
    """The ETags of the UL_PUBLISH publications in pua's own database."""
    try:
        with contextlib.closing(sqlite3.connect(data_dir / "pua.db", timeout=5)) as db:
            rows = db.execute("SELECT etag FROM pua WHERE pres_id LIKE 'UL_PUBLISH.%'").fetchall()
    except sqlite3.Error:
        return set()
    return {etag for (etag,) in rows if etag}


def test_a_kill_loses_no_binding(kam: KamailioPresence, tmp_path: Path,
                                 start: Callable[..., RunningService]) -> None:
    svc = start()
    data_dir = tmp_path / "data"
    port = svc.sip_port
    stays, expires = Phone(port), Phone(port)
    try:
        assert stays.register(f"<sip:alice@127.0.0.1:{stays.port}>", 300)[0] == 200
        # a binding that ends about when pua is killed: its end is found
        # after the restart (expired meanwhile, or expiring just after)
        assert expires.register(f"<sip:alice@127.0.0.1:{expires.port}>", 1)[0] == 200
        # A REGISTER is answered once its PUBLISHes' first answers (their
        # ETags) are stored: pua.cleanup writes, and the database has them.
        svc.rpc("pua.cleanup")
        server_etags = {r["etag"] for r in kam.presentity_rows("alice", "example.com",
                                                               "presence")}
        assert len(server_etags) == 2 and stored_etags(data_dir) >= server_etags
        svc.process.send_signal(signal.SIGKILL)
        svc.process.wait(10)
        again = start(sip_port=port)
        # the publication came back with the ETag the server gave it (stored
        # when its answer came, not at the next update_period)
        held = [r for r in again.rpc("pua.list")["result"]
                if r["record_id"].startswith("UL_PUBLISH.") and r["event"] == "presence"]
        assert any(r["etag"] in server_etags for r in held), (held, server_etags)
        wait_until(again, lambda: [b["contact"] for b in again.rpc("pua.registrations")[
            "result"]["bindings"]] == [f"sip:alice@127.0.0.1:{stays.port}"],
                   what="only the long binding after the restart")
        wait_until(again, lambda: len(presence_rows(kam)) == 1,
                   what="the short binding's publication gone")
        # the binding that lived on still answers to its phone: unregistering removes it
        assert stays.register(f"<sip:alice@127.0.0.1:{stays.port}>", 0)[0] == 200
        wait_until(again, lambda: presence_rows(kam) == [], what="removed after the restart")
    finally:
        stays.close()
        expires.close()


def test_hostile_registers_change_nothing(start: Callable[..., RunningService]) -> None:
    svc = start()
    phone = Phone(svc.sip_port)
    try:
        assert phone.register(f"<sip:alice@127.0.0.1:{phone.port}>", 300)[0] == 200
        before = svc.rpc("pua.registrations")["result"]["bindings"]
        assert len(before) == 1
        many = [f"<sip:alice@10.0.{n // 250}.{n % 250}:5060>" for n in range(200)]
        cases: list[tuple[Any, Any, int]] = [
            ("<http://example.com/>", 60, 400),
            ("<sip:alice@127.0.0.1:5999>;expires=-5", None, 400),
            ("<sip:alice@127.0.0.1:5999>", "99999999999999", 400),
            ("<sip:alice@127.0.0.1:5999", 60, 400),
            ("*", 60, 400),
            (many, 60, 403),
        ]
        for contacts, expires, status in cases:
            assert phone.register(contacts, expires)[0] == status, (contacts, expires)
        # a CSeq that is not higher in the same Call-ID: out of order, refused
        assert phone.register(f"<sip:alice@127.0.0.1:{phone.port}>", 0, cseq=1)[0] == 500
        after = svc.rpc("pua.registrations")["result"]["bindings"]
        unchanging = ("aor", "contact", "call_id", "cseq", "q", "event")
        assert [{k: b[k] for k in unchanging} for b in after] == [
            {k: b[k] for k in unchanging} for b in before]
    finally:
        phone.close()


def test_registers_from_elsewhere_are_refused(start: Callable[..., RunningService]) -> None:
    svc = start("--usrloc-allow", "192.0.2.0/24")
    phone = Phone(svc.sip_port)
    try:
        assert phone.register(f"<sip:alice@127.0.0.1:{phone.port}>", 60)[0] == 403
        assert svc.rpc("pua.registrations")["result"]["bindings"] == []
    finally:
        phone.close()


def test_the_api_registers_too(kam: KamailioPresence,
                               start: Callable[..., RunningService]) -> None:
    svc = start()
    answer = svc.rpc("pua.register", {"aor": AOR, "contact": "sip:alice@192.0.2.7:5060",
                                      "expires": 120})
    assert [b["contact"] for b in answer["result"]["bindings"]] == ["sip:alice@192.0.2.7:5060"]
    # answered once the PUBLISHes it made got their first answers (presence and reg)
    assert {(p["id"].split(".")[0], p["status"]) for p in answer["result"]["publications"]} == {
        ("UL_PUBLISH", 200), ("REGINFO_PUBLISH", 200)}
    wait_until(svc, lambda: presence_rows(kam), what="the API binding's presentity")
    status, body = svc.post_status("/registrations", {"aor": AOR,
                                                      "contact": "sip:alice@192.0.2.7:5060",
                                                      "expires": 0})
    assert status == 200 and body["bindings"] == []
    wait_until(svc, lambda: presence_rows(kam) == [], what="removed through REST")
    assert json.loads(svc.get("/registrations"))["bindings"] == []
    spec = json.loads(svc.get("/openapi.json"))
    assert set(spec["paths"]["/registrations"]) == {"get", "post"}
    assert "Binding" in spec["components"]["schemas"]
    bad = svc.rpc("pua.register", {"aor": "not a uri", "contact": "sip:a@b"})
    assert bad["error"]["code"] == -32602
    # the command line, through the same API
    pua = [sys.executable, "-m", "pua"]
    made = subprocess.run([*pua, "register", "--api", svc.api_url, AOR, "sip:alice@192.0.2.8",
                           "--expires", "90", "--q", "0.5"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert "1 binding(s) for sip:alice@example.com" in made.stdout
    listed = subprocess.run([*pua, "registrations", "--api", svc.api_url],
                            capture_output=True, text=True, timeout=60, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "sip:alice@192.0.2.8" in listed.stdout and "q=0.5" in listed.stdout
    metrics = svc.get("/metrics").decode()
    assert "pua_registration_bindings 1.0" in metrics
    # the status page shows the bindings as the server renders it (no script needed)
    page = svc.get("/").decode()
    table = page.split('id="registrations"', 1)[1].split("</table>", 1)[0]
    assert "sip:alice@192.0.2.8" in table and "0.5" in table and "registered" in table


def test_copies_from_a_kamailio_registrar(kam: KamailioPresence,
                                          start: Callable[..., RunningService]) -> None:
    """Phones register at a real Kamailio registrar that copies each
    accepted REGISTER to pua (t_replicate): the presence server follows."""
    svc = start()
    registrar = peer_or_skip(lambda: KamailioRegistrar(
        replicate_to=f"sip:127.0.0.1:{svc.sip_port}"))
    with registrar, RawSipClient(registrar.host, registrar.sip_port) as desk, \
            RawSipClient(registrar.host, registrar.sip_port) as mobile:
        answer = desk.register(AOR, expires=120, call_id="desk-1", cseq=1)
        assert answer is not None and answer.status == 200
        wait_until(svc, lambda: len(presence_rows(kam)) == 1, what="the desk phone's presentity")
        answer = mobile.register(AOR, expires=120, call_id="mobile-1", cseq=1)
        assert answer is not None and answer.status == 200
        wait_until(svc, lambda: len(presence_rows(kam)) == 2, what="two phones, two publications")
        listed = svc.rpc("pua.registrations", {"aor": AOR})["result"]["bindings"]
        assert {b["call_id"] for b in listed} == {"desk-1", "mobile-1"}
        answer = desk.register(AOR, expires=0, call_id="desk-1", cseq=2)
        assert answer is not None and answer.status == 200
        wait_until(svc, lambda: len(presence_rows(kam)) == 1, what="the desk phone gone")
        answer = mobile.register(AOR, expires=0, call_id="mobile-1", cseq=2)
        assert answer is not None and answer.status == 200
        wait_until(svc, lambda: presence_rows(kam) == [], what="no presentity left")


def test_reginfo_subscription_feeds_the_bindings(
        kam: KamailioPresence, start: Callable[..., RunningService]) -> None:
    """pua subscribes to the reg event of an AOR at a Kamailio registrar
    that serves it (pua_reginfo + presence_reginfo); each NOTIFY becomes
    bindings, published as presence."""
    registrar = peer_or_skip(lambda: KamailioRegistrar(reginfo=True))
    with registrar:
        svc = start("--reginfo-subscribe", f"{AOR}={registrar.uri}")
        with RawSipClient(registrar.host, registrar.sip_port) as phone:
            answer = phone.register(AOR, expires=120, call_id="phone-1", cseq=1)
            assert answer is not None and answer.status == 200
            listed = wait_until(svc,
                lambda: svc.rpc("pua.registrations", {"aor": AOR})["result"]["bindings"],
                what="the binding learnt from the reg event")
            assert listed[0]["contact"].startswith("sip:alice@127.0.0.1:")
            assert 60 < listed[0]["expires"] <= 120
            wait_until(svc, lambda: presence_rows(kam), what="presence published from reginfo")
            counters = svc.rpc("pua.registrations")["result"]["counters"]
            assert counters["reginfo_notifies"] >= 1 and counters["registers"] == 0
            answer = phone.register(AOR, expires=0, call_id="phone-1", cseq=2)
            assert answer is not None and answer.status == 200
            wait_until(svc, lambda: svc.rpc("pua.registrations")["result"]["bindings"] == [],
                       what="the binding ended by the reg event")
            wait_until(svc, lambda: presence_rows(kam) == [], what="presence removed")


def test_a_reg_watcher_sees_every_change_with_increasing_versions(
        kam: KamailioPresence, start: Callable[..., RunningService]) -> None:
    """A watcher subscribed to `reg` for the AOR at the presence server gets
    a NOTIFY per binding change, each a reginfo document whose version is
    higher than the last."""
    svc = start()
    with RawSipClient(kam.host, kam.port) as watcher:
        headers = [("Event", "reg"), ("Accept", "application/reginfo+xml"),
                   ("Contact", watcher.contact), ("Expires", "300")]
        answer = watcher.request("SUBSCRIBE", AOR, from_uri="sip:w@example.com", to_uri=AOR,
                                 from_tag="w1", call_id="reg-watch", cseq=1, headers=headers)
        assert answer is not None and answer.status == 200
        assert watcher.notifies or watcher.wait_notify() is not None
        versions: list[int] = []
        states: list[bytes] = []

        def next_document() -> bytes:
            while True:
                notify = watcher.wait_notify(timeout=15)
                assert notify is not None, "no NOTIFY for a binding change"
                if notify.body:
                    return notify.body

        phones = [Phone(svc.sip_port) for _ in range(2)]
        try:
            steps = [(phones[0], 120), (phones[1], 120), (phones[0], 60), (phones[0], 0),
                     (phones[1], 0)]
            for phone, expires in steps:
                watcher.notifies.clear()
                assert phone.register(f"<sip:alice@127.0.0.1:{phone.port}>", expires)[0] == 200
                body = next_document()
                versions.append(int(body.split(b'version="', 1)[1].split(b'"', 1)[0]))
                states.append(body)
        finally:
            for phone in phones:
                phone.close()
        assert versions == sorted(versions) and len(set(versions)) == len(versions), versions
        assert b'event="registered"' in states[0]
        assert states[1].count(b"<contact ") == 2
        assert b'event="shortened"' in states[2]
        assert b'event="unregistered"' in states[3]
        assert b'state="terminated"' in states[4]


def test_sipp_phones_through_a_kamailio_registrar(
        kam: KamailioPresence, start: Callable[..., RunningService]) -> None:
    """Fifty SIPp phones register at a Kamailio registrar that copies each
    REGISTER to pua: fifty bindings, fifty open presentities."""
    svc = start()
    registrar = peer_or_skip(lambda: KamailioRegistrar(
        replicate_to=f"sip:127.0.0.1:{svc.sip_port}"))
    with registrar:
        stats = peer_or_skip(lambda: register_phones(
            registrar.host, registrar.sip_port, calls=50, rate=100, expires=300,
            user_prefix="desk").run())
        assert stats.successful == 50 and stats.failed == 0
        wait_until(svc, lambda: len(svc.rpc("pua.registrations")["result"]["bindings"]) == 50,
                   what="fifty bindings")
        now = int(time.time())

        def open_presentities() -> int:
            rows = kam.query("SELECT username, expires, body FROM presentity "
                             "WHERE event = 'presence'")
            return sum(1 for r in rows if r["username"].startswith("desk")
                       and r["expires"] > now and b"<basic>open</basic>" in r["body"])

        wait_until(svc, lambda: open_presentities() == 50, seconds=30, what="fifty presentities")
