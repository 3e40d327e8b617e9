"""Fixtures and helpers shared by the peers' self-checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import peer_or_skip


@pytest.fixture
def start() -> Iterator[Callable[[Callable[[], Any]], Any]]:
    """Start peers (factories of Kamailio peers, SippUAS...); all stopped at
    the end of the test, last started first."""
    started: list[Any] = []

    def run(factory: Callable[[], Any]) -> Any:
        peer = peer_or_skip(factory)
        peer.start()
        started.append(peer)
        return peer

    yield run
    for peer in reversed(started):
        peer.stop()


def poll(what: str, fn: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns something true; return that value."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        pause.wait(interval)
