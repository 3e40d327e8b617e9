"""Self-checks of the Kamailio presence USER AGENT reference (pua + pua_rpc
over jsonrpcs/xhttp), against SIPp UASes.

These pin down what ``pua.publish`` takes and returns on Kamailio 5.6.3 (see
the docstring of tests/peers/kamailio_pua.py).  Only the standard library
talks to the peers here, nothing from ``pua``.  A missing kamailio (or
module) or sipp fails these tests in CI and skips them elsewhere.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from .kamailio_pua import KamailioPua, publish_params
from .rawsip import pidf
from .sipp import SippUAS

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"


def _peer_or_skip(factory):
    from tests.conftest import peer_or_skip

    return peer_or_skip(factory)


def _publishes(uas: SippUAS) -> list[str]:
    """The PUBLISH requests SIPp received (needs trace_msg=True; call after
    ``uas.stop()`` so that the trace is complete)."""
    chunks = re.split(r"^-{10,}[^\n]*\n", uas.messages_text(), flags=re.MULTILINE)
    return [c for c in chunks
            if "message received" in c and re.search(r"^PUBLISH sip:", c, re.MULTILINE)]


def _header(msg: str, name: str) -> str | None:
    m = re.search(rf"^{re.escape(name)}:\s*(.*?)\s*$", msg, re.MULTILINE | re.IGNORECASE)
    return m.group(1) if m else None


@pytest.fixture
def uas_factory():
    started: list[SippUAS] = []

    def start(scenario: str) -> SippUAS:
        uas = _peer_or_skip(lambda: SippUAS(scenario, trace_msg=True))
        uas.start()
        started.append(uas)
        return uas

    yield start
    for uas in started:
        uas.stop()


def _kamailio(outbound_proxy: str, **kwargs) -> KamailioPua:
    return _peer_or_skip(lambda: KamailioPua(outbound_proxy, children=2, **kwargs))


def test_publish_200_returns_sipp_etag_and_expires(uas_factory):
    uas = uas_factory("publish_200")
    pid = uas.pid
    with _kamailio(uas.uri) as kam:
        assert kam.http_url == f"http://127.0.0.1:{kam.http_port}/jsonrpc"
        assert kam.sip_port and kam.sip_port != kam.http_port
        body = pidf(ALICE, "open")
        params = publish_params(ALICE, body, expires=3600)
        assert params == [ALICE, "3600", "presence", "application/pidf+xml", ".", ".",
                          ".", ".", body]
        reply = kam.rpc("pua.publish", params)
        assert set(reply) == {"jsonrpc", "result", "id"}, reply
        assert reply["jsonrpc"] == "2.0"
        assert isinstance(reply["id"], int)
        result = reply["result"]
        assert set(result) == {"SIP-ETag", "Expires"}, result
        etag1 = result["SIP-ETag"]
        # publish_200.xml answers "SIP-ETag: sipp-[pid]-[call_number]", Expires: 3600
        assert re.fullmatch(rf"sipp-{pid}-1", etag1), etag1
        assert result["Expires"] == 3600

        # refresh with the etag (no body): SIP-If-Match, new etag comes back
        reply = kam.publish(ALICE, expires=600, etag=etag1)
        assert reply["result"] == {"SIP-ETag": f"sipp-{pid}-2", "Expires": 3600}

        # a publication for the same presentity without etag: pua uses the
        # etag it holds (a modification), the UAS gets SIP-If-Match
        reply = kam.publish(ALICE, pidf(ALICE, "closed"), expires=600)
        assert reply["result"]["SIP-ETag"] == f"sipp-{pid}-3"

        # removal
        reply = kam.publish(ALICE, expires=0)
        assert reply["result"]["SIP-ETag"] == f"sipp-{pid}-4"
    uas.stop()
    assert uas.stats is not None and uas.stats.successful == 4
    pubs = _publishes(uas)
    assert len(pubs) == 4, uas.messages_text()[-3000:]
    first, refresh, modify, remove = pubs
    assert "PUBLISH sip:alice@example.com SIP/2.0" in first
    assert _header(first, "Event") == "presence"
    assert _header(first, "Expires") == "3601"          # pua adds one second
    assert _header(first, "Content-Type") == "application/pidf+xml"
    assert _header(first, "SIP-If-Match") is None
    assert "<basic>open</basic>" in first
    assert 'entity="sip:alice@example.com"' in first
    assert _header(first, "From").startswith("<sip:alice@example.com>;tag=")
    assert _header(first, "To") == "<sip:alice@example.com>"
    assert _header(refresh, "SIP-If-Match") == etag1
    assert _header(refresh, "Expires") == "601"
    assert _header(refresh, "Content-Type") is None
    assert _header(modify, "SIP-If-Match") == f"sipp-{pid}-2"
    assert "<basic>closed</basic>" in modify
    assert _header(remove, "SIP-If-Match") == f"sipp-{pid}-3"
    assert _header(remove, "Expires") == "0"


def test_publish_412_gives_empty_result(uas_factory):
    """A non-200 final reply is NOT an RPC error on 5.6.3: the result is an
    empty object and the status code is not reported; pua does not retry."""
    uas = uas_factory("publish_412")
    with _kamailio(uas.uri) as kam:
        reply = kam.publish(ALICE, pidf(ALICE))
        assert "error" not in reply, reply
        assert reply["result"] == {}
        assert isinstance(reply["id"], int)
        # the HTTP status is 200 as well
        doc = json.dumps({"jsonrpc": "2.0", "method": "pua.publish", "id": "x",
                          "params": publish_params("sip:bob@example.com", pidf("sip:bob@example.com"))})
        status, _reason, body = kam.post(doc)
        assert status == 200
        assert json.loads(body) == {"jsonrpc": "2.0", "result": {}, "id": "x"}
    uas.stop()
    assert len(_publishes(uas)) == 2
    assert uas.stats is not None and uas.stats.successful == 2


def test_publish_without_answer_gives_empty_result_after_fr_timer(uas_factory):
    uas = uas_factory("no_answer")
    with _kamailio(uas.uri, fr_timer_ms=1000) as kam:
        t0 = time.monotonic()
        reply = kam.publish(ALICE, pidf(ALICE), timeout=10)
        elapsed = time.monotonic() - t0
        assert reply["result"] == {}, reply
        assert 0.9 <= elapsed < 5, elapsed


def test_outbound_proxy_param_overrides_modparam(uas_factory):
    ok = uas_factory("publish_200")
    bad = uas_factory("publish_412")
    with _kamailio(bad.uri) as kam:
        assert kam.publish(ALICE, pidf(ALICE))["result"] == {}
        reply = kam.publish("sip:carol@example.com", pidf("sip:carol@example.com"),
                            outbound_proxy=ok.uri)
        assert reply["result"] == {"SIP-ETag": f"sipp-{ok.pid}-1", "Expires": 3600}


def test_parameter_errors_are_rpc_errors(uas_factory):
    uas = uas_factory("publish_200")
    with _kamailio(uas.uri) as kam:
        def err(params, method="pua.publish"):
            doc = json.dumps({"jsonrpc": "2.0", "method": method, "params": params, "id": 9})
            status, reason, body = kam.post(doc)
            reply = json.loads(body)
            assert "result" not in reply, reply
            assert reply["id"] == 9
            e = reply["error"]
            # the HTTP status line mirrors the RPC error
            assert (status, reason) == (e["code"], e["message"])
            return e["code"], e["message"]

        body = pidf(ALICE)
        assert err(publish_params(ALICE, expires="x")) == (400, "Invalid expires value 'x'")
        assert err([ALICE, 3600, "presence", ".", ".", ".", ".", "."]) == (
            400, "Too few or wrong type of parameters (-1)")
        assert err([ALICE, "3600"]) == (400, "Too few or wrong type of parameters (-2)")
        assert err(publish_params("alice", body)) == (400, "Invalid presentity uri 'alice'")
        assert err(publish_params(ALICE, body, event="nope")) == (400, "Unknown event")
        assert err(publish_params(ALICE, content_type="application/pidf+xml")) == (
            400, "Body is missing")
        assert err(publish_params(ALICE, etag="no-such-etag")) == (500, "Wrong ETag")
        assert err(publish_params(ALICE, "<not-pidf/>")) == (
            500, "I'm terribly sorry, server error occurred (1/RPC/PUBLISH)")
        assert err([], method="no.such") == (500, "Method Not Found")
    uas.stop()
    assert _publishes(uas) == []


def test_batch_is_not_supported(uas_factory):
    uas = uas_factory("publish_200")
    with _kamailio(uas.uri) as kam:
        batch = [{"jsonrpc": "2.0", "method": "pua.publish", "id": i,
                  "params": publish_params(f"sip:u{i}@example.com", pidf(f"sip:u{i}@example.com"))}
                 for i in range(3)]
        status, _reason, body = kam.post(json.dumps(batch))
        assert status == 200
        assert json.loads(body) == {"jsonrpc": "2.0", "result": {}}
        assert "missing or invalid jsonrpc field in request" in kam.log_text()
    uas.stop()
    assert _publishes(uas) == []
