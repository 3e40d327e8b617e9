"""Self-checks of the real test peers (Kamailio presence server, SIPp).

Only stdlib sockets talk to the peers here (tests/peers/rawsip.py), nothing
from ``pua``.  A missing kamailio or sipp fails these tests in CI and skips
them elsewhere (see tests/conftest.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import PeerUnavailable
from .kamailio import KamailioPresence
from .rawsip import RawSipClient, pidf
from .sipp import SippUAS

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
ALICE = "sip:alice@example.com"


def _peer_or_skip(factory):
    from tests.conftest import peer_or_skip

    return peer_or_skip(factory)


@pytest.fixture
def kam():
    k = _peer_or_skip(KamailioPresence)
    with k:
        yield k


@pytest.fixture
def udp(kam):
    with RawSipClient(kam.host, kam.port, "udp") as c:
        yield c


# ----------------------------------------------------------------- Kamailio
def test_kamailio_publish_refresh_and_remove(kam, udp):
    # Kamailio reads its clock from a cached tick that may lag ours by up to
    # a second, so the lower bounds allow one second.
    before = int(time.time()) - 1
    r = udp.publish(ALICE, expires=60, body=pidf(ALICE, "open"))
    assert r is not None, "no answer to PUBLISH"
    assert r.status == 200, r.raw
    etag1 = r.header("SIP-ETag")
    assert etag1
    assert r.header("Expires") == "60"

    # the row is INSERTed before the 200 is sent: visible without any sync
    assert [x["etag"] for x in kam.presentity_rows("alice", sync=False)] == [etag1]
    rows = kam.presentity_rows("alice", "example.com", "presence")
    assert len(rows) == 1
    row = rows[0]
    assert row["etag"] == etag1
    assert b"<basic>open</basic>" in row["body"]
    assert before + 60 <= row["expires"] <= int(time.time()) + 60
    assert set(row) >= {"id", "username", "domain", "event", "etag", "expires",
                        "received_time", "body", "sender", "priority", "ruid"}

    # refresh: SIP-If-Match, no body -> new etag, new expiry, same row, body kept
    r = udp.publish(ALICE, expires=600, etag=etag1)
    assert r is not None and r.status == 200, r and r.raw
    assert r.header("Expires") == "600"
    etag2 = r.header("SIP-ETag")
    assert etag2 and etag2 != etag1
    rows = kam.presentity_rows("alice", "example.com", "presence")
    assert [x["etag"] for x in rows] == [etag2]
    assert rows[0]["id"] == row["id"]
    assert rows[0]["expires"] >= before + 600
    assert b"<basic>open</basic>" in rows[0]["body"]

    # the replaced etag is no longer valid
    r = udp.publish(ALICE, expires=60, etag=etag1)
    assert r is not None and r.status == 412

    # modify: SIP-If-Match + new body
    r = udp.publish(ALICE, expires=60, etag=etag2, body=pidf(ALICE, "closed"))
    assert r is not None and r.status == 200
    etag3 = r.header("SIP-ETag")
    assert etag3 not in (etag1, etag2)
    rows = kam.presentity_rows("alice", "example.com", "presence")
    assert [x["etag"] for x in rows] == [etag3]
    assert b"<basic>closed</basic>" in rows[0]["body"]

    # remove: Expires: 0.  Kamailio answers 200 echoing the SAME etag with
    # Expires: 0, and deletes the row right after sending the reply.
    r = udp.publish(ALICE, expires=0, etag=etag3)
    assert r is not None and r.status == 200
    assert r.header("Expires") == "0"
    assert r.header("SIP-ETag") == etag3
    assert kam.presentity_rows("alice", "example.com", "presence") == []  # sync'ed read

    # and the etag is gone for good
    r = udp.publish(ALICE, expires=60, etag=etag3)
    assert r is not None and r.status == 412


def test_kamailio_error_answers(kam, udp):
    r = udp.publish(ALICE, expires=60, etag="no.such.etag.1")
    assert r is not None and r.status == 412
    assert r.reason.lower() == "conditional request failed"
    # neither body nor SIP-If-Match
    r = udp.publish(ALICE, expires=60)
    assert r is not None and r.status == 400
    # unknown event package
    r = udp.publish(ALICE, expires=60, body="x", event="no-such-event",
                    content_type="text/plain")
    assert r is not None and r.status == 489
    assert "presence" in r.header("Allow-Events")
    # Expires above max_expires (3600) is lowered
    r = udp.publish(ALICE, expires=7200, body=pidf(ALICE))
    assert r is not None and r.status == 200 and r.header("Expires") == "3600"
    # other methods
    r = udp.request("MESSAGE", ALICE, from_uri=ALICE, to_uri=ALICE, body="hi",
                    headers=[("Content-Type", "text/plain")])
    assert r is not None and r.status == 405
    assert kam.presentity_rows(event="no-such-event") == []
    assert "REQ PUBLISH" in kam.log_text()


def test_kamailio_publish_over_tcp_and_min_expires():
    k = _peer_or_skip(lambda: KamailioPresence(publish_min_expires=1800))
    with k, RawSipClient(k.host, k.port, "tcp") as tcp:
        r = tcp.publish(ALICE, expires=60, body=pidf(ALICE))
        assert r is not None and r.status == 423
        assert r.header("Min-Expires") == "1800"
        r = tcp.publish(ALICE, expires=1800, body=pidf(ALICE))
        assert r is not None and r.status == 200
        etag = r.header("SIP-ETag")
        rows = k.presentity_rows("alice", "example.com")
        assert [x["etag"] for x in rows] == [etag]
        # Expires: 0 is never "too brief"
        r = tcp.publish(ALICE, expires=0, etag=etag)
        assert r is not None and r.status == 200
        assert k.presentity_rows("alice", "example.com") == []


def test_kamailio_subscribe_notify_and_in_dialog_refresh(kam, udp):
    bob = "sip:bob@example.com"
    sub_headers = [("Event", "presence"), ("Accept", "application/pidf+xml"),
                   ("Contact", udp.contact)]
    # publish something first so the NOTIFY carries a body
    r = udp.publish(ALICE, expires=120, body=pidf(ALICE, "open", note="here"))
    assert r is not None and r.status == 200
    pub_etag = r.header("SIP-ETag")

    r = udp.request("SUBSCRIBE", ALICE, from_uri=bob, to_uri=ALICE, from_tag="ft1",
                    call_id="sub-1", cseq=1, headers=[*sub_headers, ("Expires", "60")])
    assert r is not None and r.status == 200, r and r.raw
    to_tag = r.tag("To")
    assert to_tag
    assert r.header("Contact").strip("<>") == kam.uri
    n = udp.notifies[-1] if udp.notifies else udp.wait_notify()
    assert n is not None
    assert n.header("Subscription-State").startswith("active")
    assert b"<note>here</note>" in n.body

    rows = kam.active_watchers_rows(presentity_uri=ALICE)
    assert len(rows) == 1
    assert rows[0]["callid"] == "sub-1" and rows[0]["to_tag"] == to_tag
    assert rows[0]["status"] == 1  # active (presence_xml force_active=1)
    exp1 = rows[0]["expires"]

    # in-dialog refresh to the Contact of the server
    udp.notifies.clear()
    r = udp.request("SUBSCRIBE", kam.uri, from_uri=bob, to_uri=ALICE, from_tag="ft1",
                    to_tag=to_tag, call_id="sub-1", cseq=2,
                    headers=[*sub_headers, ("Expires", "120")])
    assert r is not None and r.status == 200
    assert r.header("Expires") == "120"
    assert udp.notifies or udp.wait_notify() is not None
    rows = kam.active_watchers_rows(presentity_uri=ALICE)
    assert len(rows) == 1 and rows[0]["remote_cseq"] == 2
    assert rows[0]["expires"] >= exp1 + 59

    # a PUBLISH change triggers a NOTIFY to the watcher
    udp.notifies.clear()
    r = udp.publish(ALICE, expires=120, etag=pub_etag, body=pidf(ALICE, "closed"))
    assert r is not None and r.status == 200
    n = udp.notifies[-1] if udp.notifies else udp.wait_notify()
    assert n is not None and b"<basic>closed</basic>" in n.body

    # unsubscribe
    udp.notifies.clear()
    r = udp.request("SUBSCRIBE", kam.uri, from_uri=bob, to_uri=ALICE, from_tag="ft1",
                    to_tag=to_tag, call_id="sub-1", cseq=3,
                    headers=[*sub_headers, ("Expires", "0")])
    assert r is not None and r.status == 200
    n = udp.notifies[-1] if udp.notifies else udp.wait_notify()
    assert n is not None and n.header("Subscription-State").startswith("terminated")
    assert kam.active_watchers_rows(presentity_uri=ALICE) == []


def test_kamailio_missing_binary_is_peer_unavailable(monkeypatch):
    monkeypatch.setenv("KAMAILIO_BIN", "/nonexistent/kamailio")
    with pytest.raises(PeerUnavailable, match="KAMAILIO_BIN"):
        KamailioPresence()


# --------------------------------------------------------------------- SIPp
def _sipp(scenario):
    return _peer_or_skip(lambda: SippUAS(scenario))


def test_sipp_uas_412():
    uas = _sipp("publish_412")
    with uas, RawSipClient(uas.host, uas.port, "udp") as c:
        r = c.publish(ALICE, expires=60, etag="whatever")
        assert r is not None
        assert r.status == 412
        assert r.reason == "Conditional Request Failed"
        assert r.tag("To")  # UAS added a To tag
    assert uas.stats is not None
    assert uas.stats.successful == 1 and uas.stats.failed == 0


@pytest.mark.parametrize("scenario,status,header,value", [
    ("publish_200", 200, "Expires", "3600"),
    ("publish_423", 423, "Min-Expires", "1800"),
    ("publish_503", 503, "Retry-After", "5"),
])
def test_sipp_uas_answers(scenario, status, header, value):
    uas = _sipp(scenario)
    with uas, RawSipClient(uas.host, uas.port, "udp") as c:
        etags = []
        # the same Call-ID twice: needs -deadcall_wait 0 to be answered again
        for cseq in (1, 2):
            r = c.publish(ALICE, expires=3600, body=pidf(ALICE), call_id="same-call",
                          cseq=cseq)
            assert r is not None, f"no answer to request {cseq}"
            assert r.status == status
            assert r.header(header) == value
            assert r.header("Call-ID") == "same-call"
            etags.append(r.header("SIP-ETag"))
        if status == 200:
            assert all(etags) and etags[0] != etags[1]
        else:
            assert etags == ["", ""]
    assert uas.stats.successful == 2


def test_sipp_uas_no_answer():
    uas = _sipp("no_answer")
    with uas, RawSipClient(uas.host, uas.port, "udp") as c:
        assert c.publish(ALICE, expires=60, body=pidf(ALICE), timeout=1.0) is None
        assert c.request("OPTIONS", ALICE, from_uri=ALICE, to_uri=ALICE, timeout=0.5) is None
    assert uas.stats.incoming == 2


def test_sipp_reference_benchmark_small():
    script = ROOT / "benchmarks" / "sipp" / "run_sipp_reference.py"
    _sipp("publish_200")  # PeerUnavailable check only (not started)
    cmd = [sys.executable, str(script), "--calls", "200", "--limit", "50", "--timeout", "30"]
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    res = json.loads(out.stdout)
    assert res["calls"] == 200
    assert res["successful"] == 200
    assert res["failed"] == 0
    assert res["uas"]["successful"] == 200
    assert res["elapsed_s"] > 0 and res["calls_per_s"] > 0
