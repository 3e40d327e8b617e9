"""`pua subscribe` and `pua publish --keep` as users run them, against Kamailio."""

from __future__ import annotations

import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.peers.kamailio import KamailioPresence

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


class Running:
    """A `pua` command running in the background, its output read line by line."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pua", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
        )
        self.lines: list[str] = []
        self._selector = selectors.DefaultSelector()
        assert self.process.stdout is not None
        self._selector.register(self.process.stdout, selectors.EVENT_READ)

    def wait_for(self, needle: str, timeout: float = 15.0) -> str:
        """The first output line containing ``needle`` (waiting for it)."""
        for line in self.lines:
            if needle in line:
                self.lines.remove(line)
                return line
        deadline = time.monotonic() + timeout
        assert self.process.stdout is not None
        while (left := deadline - time.monotonic()) > 0:
            if not self._selector.select(timeout=left):
                continue
            line = self.process.stdout.readline()
            if not line:
                break
            if needle in line:
                return line.rstrip("\n")
            self.lines.append(line.rstrip("\n"))
        raise AssertionError(f"no line with {needle!r}; got {self.lines}; stderr: {self.stderr()}")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def stderr(self) -> str:
        if self.process.poll() is None:
            return "(running)"
        assert self.process.stderr is not None
        return self.process.stderr.read()

    def rest(self) -> str:
        assert self.process.stdout is not None
        return self.process.stdout.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=5)


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for proc in started:
        proc.kill()


def test_watch_a_kept_publication(kamailio: KamailioPresence, running: list[Running]) -> None:
    """`pua subscribe` prints the NOTIFYs of a publication kept by
    `pua publish --keep`; SIGTERM removes the publication and ends the
    subscription cleanly (exit 0)."""
    watcher = Running("subscribe", "--server", kamailio.uri, "--pres-uri", ALICE,
                      "--watcher", BOB, "--expires", "120")
    running.append(watcher)
    watcher.wait_for("NOTIFY active")
    publisher = Running("publish", "--server", kamailio.uri, "--pres-uri", ALICE,
                        "--basic", "open", "--keep", "--expires", "60")
    running.append(publisher)
    assert "SIP-ETag" in publisher.wait_for("published (initial)")
    assert "open" in watcher.wait_for(": open")
    assert len(kamailio.presentity_rows(username="alice", domain="example.com")) == 1

    assert publisher.stop() == 0
    assert "removed" in publisher.rest()
    assert kamailio.presentity_rows(username="alice", domain="example.com") == []
    watcher.wait_for("NOTIFY active")  # the state after the removal
    assert watcher.stop() == 0
    assert "unsubscribed" in watcher.rest()
    assert kamailio.active_watchers_rows() == []


def test_subscribe_to_unknown_event_is_rejected(kamailio: KamailioPresence, running: list[Running]) -> None:
    """A subscription the server refuses (489 Bad Event) ends with exit 1 and
    says why; an event pua has no package for must be declared first."""
    watcher = Running("subscribe", "--server", kamailio.uri, "--pres-uri", ALICE,
                      "--watcher", BOB, "--event", "x-unknown",
                      "--event-package", "x-unknown=application/x-unknown+xml")
    running.append(watcher)
    status = watcher.process.wait(timeout=15)
    assert status == 1
    assert "489" in watcher.stderr()
