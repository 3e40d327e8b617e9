"""A short run of the long-run campaign (reliability/longrun.py; `make
reliability` runs it with 100,000 publications and 10,000 subscriptions):
a population held at a Kamailio whose short max_expires makes every record
refresh several times, sampled as it goes."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.longrun import run

from tests.conftest import peer_or_skip

pytestmark = pytest.mark.interop

PUBLICATIONS, SUBSCRIPTIONS = 2_000, 200


def test_population_held_steady(tmp_path: Path) -> None:
    """Every publication and subscription is alive at the server at the end
    and in every sample, each was refreshed about as often as its lifetime
    says, and resident memory did not keep growing."""
    figures = peer_or_skip(lambda: run(
        publications=PUBLICATIONS, subscriptions=SUBSCRIPTIONS, minutes=0.6,
        lifetime=10, margin=3.0, sample_seconds=6.0, workdir=tmp_path, shm_mb=512,
    ))
    samples = figures["samples"]
    assert len(samples) == 6
    assert figures["publish_errors"] == {} and figures["subscribe_errors"] == {}
    assert figures["lost_publications_count"] == 0, figures["lost_publications"]
    assert figures["lost_subscriptions_count"] == 0, figures["lost_subscriptions"]
    for sample in samples:
        assert sample["publications_present"] == PUBLICATIONS, sample
        assert sample["subscriptions_present"] == SUBSCRIPTIONS, sample
        assert sample["rss_mib"] > 0 and sample["db_mib"] > 0
        assert sample["lateness_p50"] is not None and sample["loop_lag_p50"] is not None
    # Refreshed every 6.3 to 7 s for 36 s: five or six times each.
    expected = figures["refreshes_expected"]
    assert 0.7 * expected <= figures["refreshes"] <= 1.3 * expected, figures["refreshes"]
    assert figures["responses"].get("200", 0) >= figures["refreshes"] * 0.9
    # A leak check, not a timing one: a constant population, so memory
    # after the set-up grows by much less than half.
    assert figures["rss_last_mib"] < 1.5 * figures["rss_first_mib"], (
        [s["rss_mib"] for s in samples])
