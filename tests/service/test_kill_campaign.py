"""A short run of the kill -9 campaign (reliability/kill.py; `make
reliability` runs it 100 times): pua killed under API load and started
again, three times; at the end the presence server holds exactly what the
API acknowledged."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.kill import run

from tests.conftest import peer_or_skip

pytestmark = pytest.mark.interop


def test_nothing_acknowledged_is_lost_across_kills(tmp_path: Path) -> None:
    """No acknowledged publication lost or stale, no acknowledged removal or
    end undone, no record duplicated (apart from what a cut call left)."""
    figures = peer_or_skip(lambda: run(kills=3, seed=7, workdir=tmp_path))
    problems = figures["problems"]
    assert figures["kills"] == 3 and figures["acknowledged"] > 100
    assert figures["bindings_checked"] > 0  # registrations (--usrloc) are in the load
    assert len(figures["checks"]) == 4  # after each restart and at the end
    assert all(check["settled"] for check in figures["checks"])
    for kind in ("lost", "stale", "revived", "duplicated"):
        assert problems[kind] == [], (kind, problems[kind])
        assert figures["total"][kind] == 0, (kind, figures["checks"])
    assert set(figures["refusals"]) <= {
        "unpublish 404 No such publication", "unsubscribe 404 No such subscription",
    }, figures["refusals"]
