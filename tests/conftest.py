"""Shared test set-up: real peers, and what happens when one is missing.

In CI (``CI=true``) a missing peer fails the run.  Elsewhere the tests
that need it are skipped with a reason that says what is missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest

from tests.peers import PeerUnavailable
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.kamailio import KamailioPresence
from tests.peers.sipp import SippUAS

T = TypeVar("T")

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def peer_or_skip(factory: Callable[[], T]) -> T:
    """Build a peer; a missing one fails in CI and is skipped elsewhere."""
    try:
        return factory()
    except PeerUnavailable as exc:
        if IN_CI:
            pytest.fail(f"test peer missing in CI: {exc}", pytrace=False)
        pytest.skip(f"test peer missing (install with scripts/install-debian-deps.sh): {exc}")


@pytest.fixture
def kamailio() -> Iterator[KamailioPresence]:
    """A fresh Kamailio presence server on loopback."""
    with peer_or_skip(KamailioPresence) as kam:
        yield kam


@pytest.fixture
def sipp_uas() -> Callable[[str], SippUAS]:
    """A factory for SIPp UAS peers running a scenario from tests/peers/scenarios."""
    started: list[SippUAS] = []

    def start(scenario: str) -> SippUAS:
        uas = peer_or_skip(lambda: SippUAS(scenario))
        uas.start()
        started.append(uas)
        return uas

    yield start  # type: ignore[misc]
    for uas in started:
        uas.stop()


@pytest.fixture
def dnsmasq() -> Iterator[Callable[[list[str]], Dnsmasq]]:
    """A factory for dnsmasq DNS servers serving the given records."""
    started: list[Dnsmasq] = []

    def start(records: list[str]) -> Dnsmasq:
        server = peer_or_skip(lambda: Dnsmasq(records))
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()
