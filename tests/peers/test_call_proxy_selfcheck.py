"""Self-checks of the call proxy peer: Kamailio (tm + rr + dialog) between
a SIPp caller and a SIPp callee, reporting each call's dialog states to an
HTTP feed (http_client), or publishing them with Kamailio's own
pua_dialoginfo.

The feed here is a stdlib HTTP server that records what it gets; nothing
from ``pua`` is used.  A missing kamailio (or module) or sipp fails these
tests in CI and skips them elsewhere (see tests/conftest.py).
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.peers.conftest import poll

from . import find_free_port
from .kamailio_proxy import KamailioCallProxy
from .rawsip import SipMessage, parse_message
from .sipp import SippUAS, call_uac, call_uas, run_calls, split_trace

pytestmark = pytest.mark.interop

DIALOG_NS = "{urn:ietf:params:xml:ns:dialog-info}"
ALL_KEYS = {"call_id", "from_tag", "to_tag", "caller", "callee", "state", "wait"}



# --------------------------------------------------------------- the feed
@dataclass
class Post:
    """One request the feed got."""

    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


class Feed:
    """A stdlib HTTP server on 127.0.0.1 standing for pua's API: records
    every POST and answers ``status`` with a JSON body."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.posts: list[Post] = []
        self._cond = threading.Condition()
        feed = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                post = Post(self.path, {k.lower(): v for k, v in self.headers.items()},
                            self.rfile.read(length))
                with feed._cond:
                    feed.posts.append(post)
                    feed._cond.notify_all()
                out = json.dumps({"status": feed.status}).encode()
                self.send_response(feed.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/dialogs"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                        name="dialog-feed")
        self._thread.start()

    def wait_for(self, what: str, predicate: Callable[[list[Post]], bool],
                 timeout: float = 10.0) -> list[Post]:
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.posts), timeout):
                raise AssertionError(f"timed out waiting for {what}; got "
                                     f"{[p.body for p in self.posts]!r}")
            return list(self.posts)

    def documents(self, call_id: str | None = None) -> list[dict[str, Any]]:
        with self._cond:
            docs = [p.json() for p in self.posts]
        return [d for d in docs if call_id is None or d["call_id"] == call_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed():
    f = Feed()
    yield f
    f.close()


def _traced(msg: str) -> SipMessage:
    return parse_message(msg.replace("\r\n", "\n").replace("\n", "\r\n").encode())


def _uri(name_addr: str) -> str:
    return name_addr.split("<", 1)[1].split(">", 1)[0] if "<" in name_addr else name_addr


@dataclass
class CallSeen:
    """What the caller sent and got, from its SIPp trace."""

    call_id: str
    from_tag: str
    contact: str
    to_tag: str | None
    answer_contact: str | None


def _call_seen(messages: str, call_id: str | None = None) -> CallSeen:
    trace = [(received, _traced(m)) for received, m in split_trace(messages)]
    invite = next(m for received, m in trace if not received and not m.is_response
                  and m.method == "INVITE"
                  and (call_id is None or m.header("Call-ID") == call_id))
    cid = invite.header("Call-ID")
    final = [m for received, m in trace if received and m.is_response and m.status >= 200
             and m.header("Call-ID") == cid and m.header("CSeq").endswith("INVITE")]
    answer = final[0] if final else None
    return CallSeen(cid, invite.tag("From"), _uri(invite.header("Contact")),
                    answer.tag("To") or None if answer else None,
                    _uri(answer.header("Contact")) if answer and answer.header("Contact")
                    else None)



def _states(docs: list[dict[str, Any]]) -> list[str]:
    return [d["state"] for d in docs]


# ------------------------------------------------------------- http feed
def test_call_posts_trying_early_confirmed_terminated(start, feed):
    uas = start(lambda: call_uas("bob", ring_ms=200))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=feed.url,
                                            dialog_timeout=1800, invite_timeout=45))
    uac = call_uac(proxy.host, proxy.sip_port, caller="alice", callee="bob", hold_ms=100,
                   trace_msg=True)
    stats = uac.run()
    assert (stats.successful, stats.failed) == (1, 0), stats.errors
    seen = _call_seen(uac.messages)
    assert seen.to_tag and seen.answer_contact == f"sip:bob@127.0.0.1:{uas.port}"

    # the BYE is relayed after dialog:end's POST: all four are there
    posts = feed.wait_for("four posts", lambda p: len(p) >= 4)
    assert len(posts) == 4
    for post in posts:
        assert post.path == "/dialogs"
        assert post.headers["content-type"] == "application/json"
        assert "authorization" not in post.headers
    docs = [p.json() for p in posts]
    assert _states(docs) == ["trying", "early", "confirmed", "terminated"]
    ids = {"call_id": seen.call_id, "from_tag": seen.from_tag,
           "caller": "sip:alice@example.com", "callee": "sip:bob@example.com",
           "local_target": seen.contact, "wait": False}
    remote = {"to_tag": seen.to_tag, "remote_target": seen.answer_contact}
    trying, early, confirmed, terminated = docs
    assert trying == {**ids, "state": "trying", "to_tag": None, "lifetime": 45}
    assert early == {**ids, **remote, "state": "early", "lifetime": 45}
    assert confirmed == {**ids, **remote, "state": "confirmed", "lifetime": 1800}
    assert terminated == {**ids, **remote, "state": "terminated"}

    # each POST is logged, with pua's answer
    logged = proxy.feed_log()
    assert [json.loads(line) for line in logged] == docs
    log = proxy.log_text()
    for state in ("trying", "early", "confirmed", "terminated"):
        assert f"FEED POST {state} ci={seen.call_id} answered 200" in log


def test_busy_call_posts_trying_early_terminated(start, feed):
    uas = start(lambda: call_uas("bob", ring_ms=100, busy=True))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=feed.url))
    uac = call_uac(proxy.host, proxy.sip_port, trace_msg=True)
    stats = uac.run()
    assert (stats.successful, stats.failed) == (1, 0), stats.errors
    seen = _call_seen(uac.messages)
    assert seen.to_tag and seen.answer_contact is None  # the 486: a tag, no Contact
    posts = feed.wait_for("three posts", lambda p: len(p) >= 3)
    docs = [p.json() for p in posts]
    assert _states(docs) == ["trying", "early", "terminated"]
    early, terminated = docs[1], docs[2]
    assert early["to_tag"] == seen.to_tag
    assert early["remote_target"] == f"sip:bob@127.0.0.1:{uas.port}"
    # dialog:failed: the 486's To-tag; no callee Contact is known then
    assert terminated == {"call_id": seen.call_id, "from_tag": seen.from_tag,
                          "to_tag": seen.to_tag, "caller": "sip:alice@example.com",
                          "callee": "sip:bob@example.com", "state": "terminated",
                          "local_target": seen.contact, "wait": False}
    # the 486 reached the caller, and the proxy's ACK the callee
    uas.stop()
    assert (uas.stats.successful, uas.stats.failed) == (1, 0), uas.stats.errors


def test_unanswered_call_times_out_with_terminated(start, feed):
    # the callee swallows the INVITE: tm's fr_timer (1 s here) makes a 408,
    # and dialog:failed runs on a faked message (no reply, no To-tag)
    uas = start(lambda: SippUAS("no_answer"))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=feed.url,
                                            invite_timeout=1))
    uac = call_uac(proxy.host, proxy.sip_port, trace_msg=True)
    t0 = time.monotonic()
    stats = uac.run()
    assert stats.successful == 1, stats.errors
    answers = [m for received, m in ((r, _traced(x)) for r, x in split_trace(uac.messages))
               if received and m.is_response and m.status >= 200]
    assert [m.status for m in answers] == [408]
    assert time.monotonic() - t0 >= 0.9
    seen = _call_seen(uac.messages)
    posts = feed.wait_for("two posts", lambda p: len(p) >= 2)
    docs = [p.json() for p in posts]
    assert _states(docs) == ["trying", "terminated"]
    assert docs[1] == {"call_id": seen.call_id, "from_tag": seen.from_tag, "to_tag": None,
                       "caller": "sip:alice@example.com", "callee": "sip:bob@example.com",
                       "state": "terminated", "local_target": seen.contact, "wait": False}


def test_token_header_and_json_escaping(start, feed):
    # Call-ID words and URI users may hold ' " and \ : the JSON must still
    # parse and give them back as they were
    uas = start(lambda: call_uas("bob", ring_ms=50))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=feed.url,
                                            api_token="s3cr3t.T0ken-_~+/=="))
    uac = call_uac(proxy.host, proxy.sip_port, caller="o'neil", trace_msg=True,
                   extra_args=["-cid_str", "it's\"a\\call-%u-%p@%s"])
    stats = uac.run()
    assert stats.successful == 1, stats.errors
    seen = _call_seen(uac.messages)
    assert "'" in seen.call_id and '"' in seen.call_id and "\\" in seen.call_id
    posts = feed.wait_for("four posts", lambda p: len(p) >= 4)
    for post in posts:
        assert post.headers["authorization"] == "Bearer s3cr3t.T0ken-_~+/=="
        assert post.headers["content-type"] == "application/json"
        doc = post.json()
        assert doc["call_id"] == seen.call_id
        assert doc["caller"] == "sip:o'neil@example.com"
        assert doc["local_target"] == seen.contact
        assert seen.contact.startswith("sip:o'neil@")
    assert _states([p.json() for p in posts]) == ["trying", "early", "confirmed", "terminated"]


def test_feed_errors_do_not_stop_calls(start):
    # pua answers 503: each state is POSTed once, logged as failed, and the
    # call goes on
    failing = Feed(status=503)
    try:
        uas = start(lambda: call_uas("bob", ring_ms=50))
        proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=failing.url))
        stats = run_calls(proxy.host, proxy.sip_port)
        assert (stats.successful, stats.failed) == (1, 0), stats.errors
        posts = failing.wait_for("four posts", lambda p: len(p) >= 4)
        assert _states([p.json() for p in posts]) == ["trying", "early", "confirmed",
                                                      "terminated"]
        log = proxy.log_text()
        for state in ("trying", "early", "confirmed", "terminated"):
            assert f"FEED POST {state} ci=" in log
        assert log.count("failed: 503") == 4
        assert "answered 200" not in log
    finally:
        failing.close()


def test_unreachable_feed_does_not_stop_calls(start):
    # nobody listens: http_client_query() fails at once with libcurl's
    # CURLE_COULDNT_CONNECT (7) as its result, and the call goes on
    url = f"http://127.0.0.1:{find_free_port(udp=False)}/dialogs"
    uas = start(lambda: call_uas("bob", ring_ms=50))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=url))
    stats = run_calls(proxy.host, proxy.sip_port)
    assert (stats.successful, stats.failed) == (1, 0), stats.errors
    assert proxy.log_text().count("failed: 7 ") == 4
    assert len(proxy.feed_log()) == 4


def test_silent_feed_times_out_and_calls_go_on(start):
    # a feed that takes the connection and never answers: each POST is
    # given up after http_timeout (1 s, CURLE_OPERATION_TIMEDOUT = 28)
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/dialogs"
        uas = start(lambda: call_uas("bob", ring_ms=50))
        proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=url,
                                                http_timeout=1))
        t0 = time.monotonic()
        stats = run_calls(proxy.host, proxy.sip_port)
        elapsed = time.monotonic() - t0
        assert (stats.successful, stats.failed) == (1, 0), stats.errors
        assert proxy.log_text().count("failed: 28 ") == 4
        # four POSTs of about a second each held the call up
        assert elapsed >= 3.5
    finally:
        silent.close()


def test_numbered_calls_each_post_their_own_states(start, feed):
    uas = start(lambda: call_uas("bob", ring_ms=200))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, feed_url=feed.url))
    uac = call_uac(proxy.host, proxy.sip_port, calls=3, numbered=True, hold_ms=50,
                   trace_msg=True)
    stats = uac.run()
    assert (stats.successful, stats.failed) == (3, 0), stats.errors
    posts = feed.wait_for("twelve posts", lambda p: len(p) >= 12)
    assert len(posts) == 12
    docs = [p.json() for p in posts]
    call_ids = sorted({d["call_id"] for d in docs})
    assert len(call_ids) == 3
    pairs = set()
    for cid in call_ids:
        mine = [d for d in docs if d["call_id"] == cid]
        assert _states(mine) == ["trying", "early", "confirmed", "terminated"]
        assert len({(d["caller"], d["callee"], d["from_tag"]) for d in mine}) == 1
        assert mine[0]["from_tag"] == _call_seen(uac.messages, cid).from_tag
        pairs.add((mine[0]["caller"], mine[0]["callee"]))
    assert pairs == {(f"sip:alice{n}@example.com", f"sip:bob{n}@example.com")
                     for n in (1, 2, 3)}


def test_proxy_rejects_bad_parameters():
    with pytest.raises(ValueError):
        KamailioCallProxy(callee="127.0.0.1:5060")  # no feed_url
    with pytest.raises(ValueError):
        KamailioCallProxy(callee="127.0.0.1:5060", feed_url="http://x/'$(ci)")
    with pytest.raises(ValueError):
        KamailioCallProxy(callee="127.0.0.1:5060", feed_url="http://x/d",
                          api_token="a\r\nX-Evil: 1")
    with pytest.raises(ValueError):
        KamailioCallProxy(callee="somewhere", feed_url="http://x/d")
    with pytest.raises(ValueError):
        KamailioCallProxy(callee="127.0.0.1:5060", publisher="pua_dialoginfo")


# -------------------------------------------------------- pua_dialoginfo
def _dialog_doc(msg: SipMessage) -> tuple[str, str, str]:
    """(entity, direction, state) of a dialog-info PUBLISH body."""
    root = ET.fromstring(msg.body)
    [dialog] = root.findall(f"{DIALOG_NS}dialog")
    state = dialog.find(f"{DIALOG_NS}state")
    assert state is not None
    return root.get("entity", ""), dialog.get("direction", ""), state.text or ""


def test_pua_dialoginfo_publishes_for_caller_and_callee(start):
    pub = start(lambda: SippUAS("publish_200", trace_msg=True))
    uas = start(lambda: call_uas("bob", ring_ms=200))
    proxy = start(lambda: KamailioCallProxy(callee=uas.address, publisher="pua_dialoginfo",
                                            publish_to=pub.uri))
    uac = call_uac(proxy.host, proxy.sip_port, hold_ms=100, trace_msg=True)
    stats = uac.run()
    assert (stats.successful, stats.failed) == (1, 0), stats.errors
    seen = _call_seen(uac.messages)

    # pua sends them from dialog callbacks; the last two during the BYE
    poll("eight PUBLISHes", lambda: len(pub.received("PUBLISH")) >= 8)
    publishes = [_traced(m) for m in pub.received("PUBLISH")]
    assert len(publishes) == 8, [m.raw for m in publishes]
    by_entity: dict[str, list[tuple[str, str]]] = {}
    for msg in publishes:
        assert msg.header("Event") == "dialog"
        assert msg.header("Content-Type") == "application/dialog-info+xml"
        entity, direction, state = _dialog_doc(msg)
        assert msg.method == "PUBLISH"
        assert msg.first_line == f"PUBLISH {entity} SIP/2.0"
        assert seen.call_id.encode() in msg.body  # include_callid
        by_entity.setdefault(entity, []).append((direction, state))
    # callee_trying 1: "Trying" (sic, capitalised) for both, then early,
    # confirmed, terminated
    states = ["Trying", "early", "confirmed", "terminated"]
    assert by_entity == {
        "sip:alice@example.com": [("initiator", s) for s in states],
        "sip:bob@example.com": [("recipient", s) for s in states],
    }
    # the first PUBLISH of an entity is initial; confirmed and terminated
    # carry the ETag of an answer before (publish_200: sipp-<pid>-<n>).
    # early follows Trying within a millisecond (the 180 comes at once):
    # when the Trying's 200 is not back yet, pua sends it as another
    # initial PUBLISH, so it may go either way.
    for entity in by_entity:
        mine = [m for m in publishes if _dialog_doc(m)[0] == entity]
        assert mine[0].header("SIP-If-Match") == ""
        assert all(m.header("SIP-If-Match").startswith("sipp-") for m in mine[2:])
    # Only the early documents have the tags and the callee's Contact as
    # its target: elsewhere the callee's target is its To URI, and in the
    # Trying ones the caller's is its From URI (not its Contact)
    uas_contact = f"sip:bob@127.0.0.1:{uas.port}"
    for msg in publishes:
        entity, direction, state = _dialog_doc(msg)
        [dialog] = ET.fromstring(msg.body).findall(f"{DIALOG_NS}dialog")
        targets = {side: dialog.find(f"{DIALOG_NS}{side}/{DIALOG_NS}target")
                   for side in ("local", "remote")}
        caller_side, callee_side = (("local", "remote") if direction == "initiator"
                                    else ("remote", "local"))
        callee_target = targets[callee_side].get("uri")  # type: ignore[union-attr]
        caller_target = targets[caller_side].get("uri")  # type: ignore[union-attr]
        if state == "early":
            assert (dialog.get("local-tag"), dialog.get("remote-tag")) == (
                (seen.from_tag, seen.to_tag) if direction == "initiator"
                else (seen.to_tag, seen.from_tag))
            assert callee_target == uas_contact
        else:
            assert dialog.get("local-tag") is None and dialog.get("remote-tag") is None
            assert callee_target == "sip:bob@example.com"
        assert caller_target == ("sip:alice@example.com" if state == "Trying"
                                 else seen.contact)
    # Expires: dialog lifetime + 1 while the call lasts, 10 + 1 at the end
    assert [m.header("Expires") for m in publishes[-2:]] == ["11", "11"]
    assert {m.header("Expires") for m in publishes[:-2]} == {"3601"}
