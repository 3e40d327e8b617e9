"""A next hop that never answers, or refuses the connection: every route
(JSON-RPC, REST, the CLI through the API) answers with the outcome of the
first attempt, bounded, says whether pua keeps retrying, and the service log
names the record."""

from __future__ import annotations

import contextlib
import json
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.peers import find_free_port

from .running import RunningService

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
CAROL = "sip:carol@example.com"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    "<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>"
)
# T1 of 50 ms: a transaction gives up after 64·T1 = 3.2 s, and a waiting
# call is bounded by 3·64·T1 + T4, well inside the HTTP client's 60 s.
FAST = {"PUA_T1": "0.05", "PUA_T4": "1"}
# T1 of 2 s: timer F is 128 s, past the HTTP client's 60 s; an answer that
# comes in time cannot have waited for it.
SLOW = {"PUA_T1": "2", "PUA_T2": "4"}

Start = Callable[..., RunningService]


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A UDP port that takes every datagram and answers none."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pua", *args],
        capture_output=True, text=True, timeout=90, check=False,
    )


def test_a_silent_next_hop_is_a_bounded_408_on_every_route(service: Start) -> None:
    """PUBLISH and SUBSCRIBE to a next hop that never answers: JSON-RPC
    answers 408 with retrying true, REST 504 with the same fields, the CLI
    says the SIP request failed (not the API), and the log names the records."""
    with black_hole() as port:
        svc = service("--outbound-proxy", f"sip:127.0.0.1:{port}", env=FAST)
        error = svc.rpc("pua.publish", [ALICE, 600, "presence", ".", ".", ".", ".", ".", PIDF])
        fault = error["error"]
        assert fault["code"] == 408, fault
        assert fault["data"]["retrying"] is True and fault["data"]["retry_at"] is not None
        assert fault["data"]["id"], "the record's id, to remove it"

        fault = svc.rpc("pua.subscribe", [BOB, ALICE, "presence", 600])["error"]
        assert fault["code"] == 408 and fault["data"]["retrying"] is True, fault

        status, answer = svc.post_status("/publications", {"pres_uri": CAROL, "body": PIDF})
        assert status == 504, answer
        assert answer["error"]["sip_status"] == 408 and answer["error"]["retrying"] is True

        status, answer = svc.post_status("/subscriptions", {"pres_uri": CAROL, "watcher_uri": ALICE}
        )
        assert status == 504 and answer["error"]["retrying"] is True, answer

        done = cli("publish", "--api", svc.api_url, "--pres-uri", "sip:dave@example.com",
                   "--basic", "open")
        assert done.returncode == 1
        assert "the SIP request failed: 408" in done.stderr, done.stderr
        assert "keeps retrying" in done.stderr and "cannot reach" not in done.stderr

        # Fire and forget stays possible, and answers at once.
        status, answer = svc.post_status("/publications", {"pres_uri": "sip:erin@example.com", "body": PIDF,
                                   "wait": False},
        )
        assert status == 201 and answer["state"] == "sending", answer
        assert svc.stop() == 0
    log = svc.stderr()
    assert f"PUBLISH {ALICE} event=presence failed: 408" in log, log
    assert "backing off, next try in" in log
    assert f"SUBSCRIBE {BOB} event=presence watcher={ALICE} failed: 408" in log


def test_a_refused_tcp_connection_is_a_503_at_once(service: Start) -> None:
    """A next hop over TCP that refuses the connection fails PUBLISH and
    SUBSCRIBE alike with 503 and the cause, without waiting for timer F."""
    closed = find_free_port(udp=False)
    svc = service("--outbound-proxy", f"sip:127.0.0.1:{closed};transport=tcp", env=SLOW)
    fault = svc.rpc("pua.publish", [ALICE, 600, "presence", ".", ".", ".", ".", ".", PIDF])
    assert fault["error"]["code"] == 503, fault
    assert "Transport failed" in fault["error"]["message"]
    assert "refused" in fault["error"]["data"]["detail"].lower() or "failed" in (
        fault["error"]["data"]["detail"]
    )
    assert fault["error"]["data"]["retrying"] is True

    fault = svc.rpc("pua.subscribe", [BOB, ALICE, "presence", 600])
    assert fault["error"]["code"] == 503, fault
    assert "Transport failed" in fault["error"]["message"]


def test_stopping_a_subscription_that_never_worked_says_so() -> None:
    """`pua subscribe` stopped before any answer came says the subscription
    was never accepted (with the last failure) and exits 1, instead of
    claiming it unsubscribed."""
    with black_hole() as port:
        process = subprocess.Popen(
            [sys.executable, "-m", "pua", "subscribe", "--server", f"127.0.0.1:{port}",
             "--pres-uri", BOB, "--watcher", ALICE, "--t1", "0.01"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            assert process.stderr is not None
            # Wait for the first failure (timer F after 64·T1 = 0.64 s).
            selector = selectors.DefaultSelector()
            selector.register(process.stderr, selectors.EVENT_READ)
            first = ""
            if selector.select(timeout=30):
                first = process.stderr.readline()
            assert first.startswith(f"pua: SUBSCRIBE {BOB} event=presence"), first
            assert "failed: 408" in first and "backing off" in first, first
            process.send_signal(signal.SIGTERM)
            status = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        rest = process.stderr.read()
    assert status == 1
    assert "the subscription was never accepted (last: 408" in rest, rest
    assert "unsubscribed" not in process.stdout.read()  # type: ignore[union-attr]


def test_too_many_waiting_calls_are_refused_early(service: Start) -> None:
    """With api_max_waiting calls already waiting on a silent next hop, the
    next call is refused at once (JSON-RPC -32003, REST 503 with
    Retry-After), nothing is done; the waiting ones still get their answer."""
    with black_hole() as port:
        svc = service("--outbound-proxy", f"sip:127.0.0.1:{port}", "--api-max-waiting", "2",
                      env={"PUA_T1": "0.1"})
        answers: list[dict[str, Any]] = []
        waiting = [
            threading.Thread(target=lambda n=n: answers.append(svc.rpc(
                "pua.publish", [f"sip:w{n}@example.com", 600, "presence", ".", ".", ".", ".",
                                ".", PIDF]))) for n in range(2)
        ]
        for thread in waiting:
            thread.start()
        # Both are in flight once the engine holds two records sending.
        deadline = time.monotonic() + 10
        while svc.rpc("pua.stats")["result"]["by_state"].get("publication.sending", 0) < 2:
            assert time.monotonic() < deadline, "the waiting calls never started"
        refused = svc.rpc("pua.publish", [CAROL, 600, "presence", ".", ".", ".", ".", ".", PIDF])
        assert refused["error"]["code"] == -32003, refused
        assert refused["error"]["data"]["retry_after"] == 1
        request = urllib.request.Request(
            svc.api_url + "/publications", data=json.dumps({"pres_uri": CAROL, "body": PIDF})
            .encode(), headers={"Content-Type": "application/json"}, method="POST")
        with pytest.raises(urllib.error.HTTPError) as rest:
            urllib.request.urlopen(request, timeout=30)
        assert rest.value.code == 503 and rest.value.headers["Retry-After"] == "1"
        assert CAROL not in json.dumps(svc.rpc("pua.list")["result"])
        for thread in waiting:
            thread.join(timeout=60)
        assert [a["error"]["code"] for a in answers] == [408, 408]
