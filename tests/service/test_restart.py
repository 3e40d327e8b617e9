"""A restart loses nothing: `pua serve` killed and started again resumes
every publication with its ETag and every subscription in its dialog."""

from __future__ import annotations

import json
import signal
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.peers.kamailio import KamailioPresence

from .running import RunningService

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    "<tuple><status><basic>open</basic></status></tuple></presence>"
)


class EventStream:
    """The service's /events, read in a thread; wait_for() blocks on a
    condition until a matching event arrives (or the timeout)."""

    def __init__(self, url: str) -> None:
        self.events: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        self._reply = urllib.request.urlopen(url + "/events", timeout=60)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._reply:
                line = raw.decode()
                if line.startswith("data: "):
                    with self._cond:
                        self.events.append(json.loads(line[6:]))
                        self._cond.notify_all()
        except OSError:
            pass

    def wait_for(self, match: Callable[[dict[str, Any]], bool], timeout: float = 30) -> dict[str, Any]:
        with self._cond:
            found = self._cond.wait_for(lambda: next((e for e in self.events if match(e)), None),
                                        timeout=timeout)
        assert found, f"no matching event; saw {self.events}"
        return next(e for e in self.events if match(e))


@pytest.fixture
def started() -> Iterator[list[RunningService]]:
    services: list[RunningService] = []
    yield services
    for svc in services:
        if svc.process.poll() is None:
            svc.stop()


def test_sigkill_then_restart_resumes_etag_and_dialog(
    kamailio: KamailioPresence, tmp_path: Path, started: list[RunningService],
) -> None:
    """After SIGKILL and a new start on the same database the publication is
    refreshed with its ETag (Kamailio keeps one row, no 412) and the
    subscription is refreshed in its dialog (same Call-ID at Kamailio)."""
    flags = ("--outbound-proxy", kamailio.uri, "--default-expires", "40",
             "--db-url", f"sqlite:///{tmp_path / 'pua.db'}")
    first = RunningService(*flags, data_dir=tmp_path / "var")
    started.append(first)
    stream = EventStream(first.api_url)
    published = first.rpc("pua.publish", [ALICE, -1, "presence", "application/pidf+xml",
                                          ".", ".", ".", ".", PIDF])["result"]
    first.rpc("pua.subscribe", [ALICE, BOB, "presence", -1])
    stream.wait_for(lambda e: e["type"] == "notify" and e["state"] == "active")
    first.rpc("pua.cleanup", [])  # acknowledged only once everything is written
    watcher = kamailio.active_watchers_rows()
    assert len(watcher) == 1
    call_id = watcher[0]["callid"]

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)

    # The same SIP address, as a real service has; the Contact is ours.
    second = RunningService(*flags, data_dir=tmp_path / "var", sip_port=first.sip_port)
    started.append(second)
    stream = EventStream(second.api_url)
    listed = second.rpc("pua.list", [])["result"]
    publication = next(r for r in listed if r["kind"] == "publication")
    assert publication["etag"] == published["SIP-ETag"] and publication["state"] == "published"
    subscription = next(r for r in listed if r["kind"] == "subscription")
    assert subscription["call_id"] == call_id

    refreshed = stream.wait_for(lambda e: e["type"] == "publication.succeeded")
    assert refreshed["kind"] == "refresh" and refreshed["etag"] != published["SIP-ETag"]
    rows = kamailio.presentity_rows(username="alice", domain="example.com")
    assert [r["etag"] for r in rows] == [refreshed["etag"]]
    stream.wait_for(lambda e: e["type"] == "notify" and e["state"] == "active")
    watcher = kamailio.active_watchers_rows()
    assert [w["callid"] for w in watcher] == [call_id]
    assert not [e for e in stream.events if e["type"] in ("publication.failed", "subscription.failed")]
