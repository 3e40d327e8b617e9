"""Fixtures for the cluster tests: a Kamailio presence server with short
lifetimes and a PostgreSQL database of the test's own (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import peer_or_skip
from tests.peers.kamailio import KamailioPresence

from .harness import PostgresDatabase

# Kamailio's max_expires: every publication and subscription lives 20 s
# at the server, so pua refreshes each every 8 to 10 s.
MAX_EXPIRES = 20


@pytest.fixture
def presence() -> Iterator[KamailioPresence]:
    """A fresh Kamailio presence server that grants at most 20 s."""
    with peer_or_skip(lambda: KamailioPresence(max_expires=MAX_EXPIRES)) as kam:
        yield kam


@pytest.fixture
def database() -> Iterator[PostgresDatabase]:
    """A fresh PostgreSQL database, dropped afterwards."""
    with PostgresDatabase() as db:
        yield db
