"""A restart loses nothing: `pua serve` killed and started again resumes
every publication with its ETag and every subscription in its dialog."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.peers.kamailio import KamailioPresence

from .running import EventStream, RunningService

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    "<tuple><status><basic>open</basic></status></tuple></presence>"
)


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
