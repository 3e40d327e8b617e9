"""A short run of the bad-network campaign (reliability/network.py; `make
reliability` runs the long one): pua in a network namespace of its own,
Kamailio across a veth pair that loses 20% of SIP packets each way, two
lifetimes of a few dozen publications and subscriptions."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.network import run

from tests.conftest import peer_or_skip

pytestmark = pytest.mark.interop

RECORDS = 24


def test_nothing_is_lost_for_good_at_20_percent_loss(tmp_path: Path) -> None:
    """Packets were really dropped both ways, and every acknowledged
    publication and subscription is at the server at the end."""
    result = peer_or_skip(lambda: run(records=RECORDS, periods=2, max_expires=10,
                                      conditions=["loss 20%"], workdir=tmp_path))
    [figures] = result["conditions"]
    counters = figures["link"]["counters"]
    for direction in ("to_far", "to_near"):
        assert counters[direction]["lost"] > 0, counters
        assert counters[direction]["lost"] < counters[direction]["arrived"], counters
    assert figures["link"]["probe"]["round_trip_lost_pct"] > 0, figures["link"]["probe"]
    # Retransmissions are what carries pua through the loss.
    assert figures["pua"]["sip"]["retransmissions"] > 0, figures["pua"]
    ack = figures["acknowledged"]
    assert ack["publications"] >= RECORDS * 0.9 and ack["subscriptions"] >= RECORDS * 0.9, figures
    assert figures["after_heal"]["lost_for_good"]["count"] == 0, figures["after_heal"]
    assert figures["samples"] >= figures["window_s"] // 2, figures
