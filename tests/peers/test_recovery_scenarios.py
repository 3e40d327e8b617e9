"""Self-checks of the SIPp recovery scenarios (tests/peers/scenarios).

Each scenario is driven with the stdlib client (tests/peers/rawsip.py)
behaving the way pua's presence engine does on the wire:

* all PUBLISHes of one publication share one Call-ID, CSeq increasing;
* after 412 a new initial PUBLISH (no SIP-If-Match) with the stored body;
* after 423 the same PUBLISH at once with ``Expires: <Min-Expires>``;
* after 503 + Retry-After: N the same PUBLISH about N seconds later;
* SUBSCRIBE refreshes in dialog; after a 481 a new dialog (new Call-ID);
* every NOTIFY is answered 200 (RawSipClient does that by itself).

The "negative" tests check that a peer breaking these rules gets a 400 with
a Warning and makes the scenario count a failed call.  A missing sipp fails
in CI and skips elsewhere (tests.conftest.peer_or_skip).
"""

from __future__ import annotations

import time
import uuid

import pytest

from .rawsip import RawSipClient, SipMessage, pidf
from .sipp import SippStats, SippUAS, subscribe_terminated_uas

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
TIMEOUT = 3.0


def _peer_or_skip(factory):
    from tests.conftest import peer_or_skip

    return peer_or_skip(factory)


def _uas(scenario: str) -> SippUAS:
    return _peer_or_skip(lambda: SippUAS(scenario))


def _stats(uas: SippUAS) -> SippStats:
    assert uas.stats is not None
    return uas.stats


def _final(r: SipMessage | None, status: int, call_id: str, cseq: int,
           method: str = "PUBLISH") -> SipMessage:
    """A final response that copied Call-ID/CSeq and carries a To tag."""
    assert r is not None, f"no answer to {method} CSeq {cseq}"
    assert r.status == status, r.raw.decode(errors="replace")
    assert r.header("Call-ID") == call_id
    assert r.header("CSeq") == f"{cseq} {method}"
    assert r.tag("To")
    return r


def _quiet(c: RawSipClient, seconds: float) -> None:
    """Let ``seconds`` pass on the client socket; nothing may arrive."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        msg = c.recv_message(left)
        assert msg is None, f"unexpected message: {msg.first_line}"


def _cid() -> str:
    return uuid.uuid4().hex


# ------------------------------------------------------------------ PUBLISH
def test_publish_412_on_refresh_then_new_initial_publish():
    uas = _uas("publish_412_on_refresh")
    body = pidf(ALICE, "open", note="here")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        r = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=1,
                             timeout=TIMEOUT), 200, cid, 1)
        etag1 = r.header("SIP-ETag")
        assert etag1.startswith("e1-")
        assert r.header("Expires") == "4"
        # refresh: SIP-If-Match, no body -> 412
        r = _final(c.publish(ALICE, expires=4, etag=etag1, call_id=cid, cseq=2,
                             timeout=TIMEOUT), 412, cid, 2)
        assert r.reason == "Conditional Request Failed"
        # recovery: a new initial PUBLISH with the stored body
        r = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=3,
                             timeout=TIMEOUT), 200, cid, 3)
        assert r.header("SIP-ETag").startswith("e2-")
        assert r.header("SIP-ETag") != etag1
        assert r.header("Expires") == "60"
    st = _stats(uas)
    assert (st.successful, st.failed) == (1, 0), st.errors


def test_publish_412_removal_after_the_flow_is_answered():
    uas = _uas("publish_412_on_refresh")
    body = pidf(ALICE)
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        etag1 = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=1,
                                 timeout=TIMEOUT), 200, cid, 1).header("SIP-ETag")
        _final(c.publish(ALICE, expires=4, etag=etag1, call_id=cid, cseq=2,
                         timeout=TIMEOUT), 412, cid, 2)
        etag2 = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=3,
                                 timeout=TIMEOUT), 200, cid, 3).header("SIP-ETag")
        # the publisher removes its publication: a new instance, answered 200
        r = _final(c.publish(ALICE, expires=0, etag=etag2, call_id=cid, cseq=4,
                             timeout=TIMEOUT), 200, cid, 4)
        assert r.header("Expires") == "0"
        assert r.header("SIP-ETag") == etag2
    st = _stats(uas)
    assert (st.successful, st.failed) == (2, 0), st.errors


def test_publish_412_scenario_rejects_a_refresh_with_a_body():
    uas = _uas("publish_412_on_refresh")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        etag1 = _final(c.publish(ALICE, expires=60, body=pidf(ALICE), call_id=cid, cseq=1,
                                 timeout=TIMEOUT), 200, cid, 1).header("SIP-ETag")
        r = _final(c.publish(ALICE, expires=60, etag=etag1, body=pidf(ALICE), call_id=cid,
                             cseq=2, timeout=TIMEOUT), 400, cid, 2)
        assert "expected the refresh" in r.header("Warning")
    st = _stats(uas)
    assert (st.successful, st.failed) == (0, 1)
    assert "pua-test-sipp" in st.errors


def test_publish_412_scenario_rejects_a_republication_without_body():
    uas = _uas("publish_412_on_refresh")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        etag1 = _final(c.publish(ALICE, expires=60, body=pidf(ALICE), call_id=cid, cseq=1,
                                 timeout=TIMEOUT), 200, cid, 1).header("SIP-ETag")
        _final(c.publish(ALICE, expires=4, etag=etag1, call_id=cid, cseq=2,
                         timeout=TIMEOUT), 412, cid, 2)
        # wrong recovery: retrying the refresh instead of publishing again
        r = _final(c.publish(ALICE, expires=60, etag=etag1, call_id=cid, cseq=3,
                             timeout=TIMEOUT), 400, cid, 3)
        assert "new initial PUBLISH" in r.header("Warning")
    st = _stats(uas)
    assert (st.successful, st.failed) == (0, 1)


def test_publish_423_then_200_with_min_expires():
    uas = _uas("publish_423_then_200")
    body = pidf(ALICE)
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        r = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=1,
                             timeout=TIMEOUT), 423, cid, 1)
        assert r.reason == "Interval Too Brief"
        assert r.header("Min-Expires") == "1800"
        r = _final(c.publish(ALICE, expires=1800, body=body, call_id=cid, cseq=2,
                             timeout=TIMEOUT), 200, cid, 2)
        assert r.header("SIP-ETag")
        assert r.header("Expires") == "1800"
    st = _stats(uas)
    assert (st.successful, st.failed) == (1, 0), st.errors


def test_publish_423_scenario_fails_without_min_expires():
    uas = _uas("publish_423_then_200")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        _final(c.publish(ALICE, expires=60, body=pidf(ALICE), call_id=cid, cseq=1,
                         timeout=TIMEOUT), 423, cid, 1)
        r = _final(c.publish(ALICE, expires=3600, body=pidf(ALICE), call_id=cid, cseq=2,
                             timeout=TIMEOUT), 400, cid, 2)
        assert "Expires: 1800" in r.header("Warning")
    st = _stats(uas)
    assert (st.successful, st.failed) == (0, 1)
    assert "Failed regexp match" in st.errors and "3600" in st.errors


def test_publish_503_retry_after():
    uas = _uas("publish_503_retry_after")
    body = pidf(ALICE)
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        r = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=1,
                             timeout=TIMEOUT), 503, cid, 1)
        assert r.header("Retry-After") == "1"
        _quiet(c, 1.0)  # the publisher waits Retry-After seconds
        r = _final(c.publish(ALICE, expires=60, body=body, call_id=cid, cseq=2,
                             timeout=TIMEOUT), 200, cid, 2)
        assert r.header("SIP-ETag")
        assert r.header("Expires") == "60"
    st = _stats(uas)
    assert (st.successful, st.failed) == (1, 0), st.errors


def test_publish_503_scenario_fails_on_an_immediate_retry():
    uas = _uas("publish_503_retry_after")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid = _cid()
        _final(c.publish(ALICE, expires=60, body=pidf(ALICE), call_id=cid, cseq=1,
                         timeout=TIMEOUT), 503, cid, 1)
        r = _final(c.publish(ALICE, expires=60, body=pidf(ALICE), call_id=cid, cseq=2,
                             timeout=TIMEOUT), 400, cid, 2)
        assert "it came after 0." in r.header("Warning")
    st = _stats(uas)
    assert (st.successful, st.failed) == (0, 1)


# ---------------------------------------------------------------- SUBSCRIBE
def _subscribe(c: RawSipClient, call_id: str, from_tag: str, *, expires: int = 60,
               cseq: int = 1, ruri: str = ALICE, to_tag: str | None = None) -> SipMessage | None:
    headers = [("Event", "presence"), ("Accept", "application/pidf+xml"),
               ("Contact", c.contact), ("Expires", str(expires))]
    return c.request("SUBSCRIBE", ruri, from_uri=BOB, to_uri=ALICE, call_id=call_id,
                     cseq=cseq, from_tag=from_tag, to_tag=to_tag, headers=headers,
                     timeout=TIMEOUT)


def _next_notify(c: RawSipClient) -> SipMessage:
    """The next NOTIFY (already answered 200 by the client)."""
    if not c.notifies:
        c.wait_notify(TIMEOUT)
    assert c.notifies, "no NOTIFY"
    return c.notifies.pop(0)


def _check_notify(n: SipMessage, c: RawSipClient, call_id: str, from_tag: str,
                  to_tag: str, state: str) -> None:
    assert n.first_line == f"NOTIFY {c.contact.strip('<>')} SIP/2.0"
    assert n.header("Call-ID") == call_id
    assert n.tag("From") == to_tag          # the notifier's tag from the 2xx
    assert n.tag("To") == from_tag          # the subscriber's tag
    assert ALICE in n.header("From") and BOB in n.header("To")
    assert n.header("CSeq").endswith(" NOTIFY")
    assert n.header("Event") == "presence"
    assert n.header("Contact")
    assert n.header("Subscription-State") == state


def _open_dialog(c: RawSipClient, uas: SippUAS, expires: int,
                 state: str) -> tuple[str, str, SipMessage]:
    cid, ftag = _cid(), uuid.uuid4().hex[:8]
    r = _final(_subscribe(c, cid, ftag, expires=60), 200, cid, 1, "SUBSCRIBE")
    assert r.header("Contact") == f"<sip:{uas.host}:{uas.port}>"
    assert r.header("Expires") == str(expires)
    n = _next_notify(c)
    _check_notify(n, c, cid, ftag, r.tag("To"), state)
    assert n.header("Content-Type") == "application/pidf+xml"
    assert f'entity="{ALICE}"' in n.body.decode()
    return cid, ftag, r


def test_subscribe_481_on_refresh_then_new_dialog():
    uas = _uas("subscribe_481_on_refresh")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cids = set()
        for _ in range(2):  # the first dialog, then the one opened after the 481
            cid, ftag, ok = _open_dialog(c, uas, 4, "active;expires=4")
            cids.add(cid)
            r = _subscribe(c, cid, ftag, expires=4, cseq=2, to_tag=ok.tag("To"),
                           ruri=ok.header("Contact").strip("<>"))
            r = _final(r, 481, cid, 2, "SUBSCRIBE")
            assert r.tag("To") == ok.tag("To")
        assert len(cids) == 2
    st = _stats(uas)
    assert (st.successful, st.failed) == (2, 0), st.errors


def test_subscribe_481_scenario_rejects_an_out_of_dialog_refresh():
    uas = _uas("subscribe_481_on_refresh")
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid, ftag, ok = _open_dialog(c, uas, 4, "active;expires=4")
        # "refresh" with the wrong To tag
        r = _subscribe(c, cid, ftag, expires=4, cseq=2, to_tag="not-ours",
                       ruri=ok.header("Contact").strip("<>"))
        r = _final(r, 400, cid, 2, "SUBSCRIBE")
        assert "expected the in-dialog refresh" in r.header("Warning")
    st = _stats(uas)
    assert (st.successful, st.failed) == (0, 1)


@pytest.mark.parametrize("reason,retry_after,state", [
    ("deactivated", None, "terminated;reason=deactivated"),
    ("probation", 1, "terminated;reason=probation;retry-after=1"),
    ("rejected", None, "terminated;reason=rejected"),
])
def test_subscribe_terminated(reason, retry_after, state):
    uas = _peer_or_skip(lambda: subscribe_terminated_uas(reason, retry_after=retry_after))
    assert uas.extra_args[:3] == ["-key", "reason", state.removeprefix("terminated;reason=")]
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid, ftag, ok = _open_dialog(c, uas, 60, "active;expires=60")
        n = _next_notify(c)
        _check_notify(n, c, cid, ftag, ok.tag("To"), state)
        assert n.body == b""
        _quiet(c, 0.2)  # nothing else comes on this dialog
    st = _stats(uas)
    assert (st.successful, st.failed) == (1, 0), st.errors


def test_subscribe_terminated_deactivated_then_resubscribe():
    uas = _peer_or_skip(lambda: subscribe_terminated_uas("deactivated"))
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid1, _, _ = _open_dialog(c, uas, 60, "active;expires=60")
        assert _next_notify(c).header("Subscription-State") == "terminated;reason=deactivated"
        # the subscriber retries at once with a NEW dialog: a new call instance
        cid2, _, _ = _open_dialog(c, uas, 60, "active;expires=60")
        assert cid2 != cid1
        assert _next_notify(c).header("Call-ID") == cid2
    st = _stats(uas)
    assert (st.successful, st.failed) == (2, 0), st.errors


def test_subscribe_terminated_scenario_rejects_unsubscribe_of_ended_dialog():
    uas = _peer_or_skip(lambda: subscribe_terminated_uas("rejected"))
    with uas, RawSipClient(uas.host, uas.port) as c:
        cid, ftag, ok = _open_dialog(c, uas, 60, "active;expires=60")
        _next_notify(c)  # terminated
        r = _subscribe(c, cid, ftag, expires=0, cseq=2, to_tag=ok.tag("To"),
                       ruri=ok.header("Contact").strip("<>"))
        r = _final(r, 481, cid, 2, "SUBSCRIBE")
        assert "does not exist" in r.header("Warning")
    st = _stats(uas)
    assert (st.successful, st.failed) == (1, 1)
