"""Every example of docs/quickstart.md runs against a real Kamailio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.kamailio import KamailioPresence

pytestmark = pytest.mark.interop

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


def run_example(name: str, server: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        env={**os.environ, "PUA_SERVER": server},
        capture_output=True, text=True, timeout=60, check=False,
    )


def test_every_example_is_documented() -> None:
    """Each script in docs/examples is shown in the quickstart."""
    text = (EXAMPLES.parent / "quickstart.md").read_text()
    for script in EXAMPLES.glob("*.py"):
        assert f"examples/{script.name}" in text


def test_publish_presence(kamailio: KamailioPresence) -> None:
    """Publish, update, remove: three lines, and nothing left on the server."""
    result = run_example("publish_presence.py", kamailio.uri)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("published: published ")
    assert lines[1].startswith("updated: published ")
    assert lines[0].split()[-1] != lines[1].split()[-1]  # a new ETag
    assert lines[2] == "removed: removed"
    assert kamailio.presentity_rows(username="alice", domain="example.com") == []


def test_publish_voicemail(kamailio: KamailioPresence) -> None:
    """The message-summary example publishes, then removes."""
    result = run_example("publish_voicemail.py", kamailio.uri)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("voicemail waiting published: ")
    assert result.stdout.splitlines()[-1] == "removed"


def test_watch_presence(kamailio: KamailioPresence) -> None:
    """With alice published, the watcher prints her state from a NOTIFY."""
    published = subprocess.run(
        [sys.executable, "-m", "pua", "publish", "--server", kamailio.uri,
         "--pres-uri", "sip:alice@example.com", "--basic", "open", "--expires", "120"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert published.returncode == 0, published.stderr
    result = run_example("watch_presence.py", kamailio.uri)
    assert result.returncode == 0, result.stderr
    assert "NOTIFY active open" in result.stdout
    assert result.stdout.splitlines()[-1] == "subscription ended: unsubscribed"
    assert kamailio.active_watchers_rows() == []


def test_rejected_subscription(kamailio: KamailioPresence) -> None:
    """The refused subscription is reported with the server's reason."""
    result = run_example("rejected_subscription.py", kamailio.uri)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("rejected: ")
    assert "489" in result.stdout or "Bad Event" in result.stdout
