"""A short run of the overload campaign (reliability/overload.py; `make
reliability` runs the long one): the API driven at three and ten times
what pua completes, then the SIP port flooded with NOTIFYs for unknown
dialogs and garbage, against a real Kamailio presence server."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability.overload import CLIENT_TIMEOUT, OVERLOADED, run

from tests.conftest import peer_or_skip

pytestmark = pytest.mark.interop


def test_overload_is_refused_clearly_and_the_standing_records_survive(tmp_path: Path) -> None:
    """Beyond capacity pua refuses with -32003 and a retry hint, never
    anything else and never beyond the bound; memory stays under its limit;
    the NOTIFY flood is answered 481 and the API answers through it; bodies
    held half sent beyond api_max_buffered are refused at once; every
    standing record is still live at the server."""
    figures = peer_or_skip(lambda: run(
        4, publications=100, subscriptions=50, load_pool=100, max_waiting=50,
        connections=400, held=200, max_buffered=8 << 20, workdir=tmp_path,
    ))
    assert figures["standing_failed"] == 0
    phases = {p["phase"]: p for p in figures["phases"]}
    assert phases["capacity"]["answered"] > 0
    for name in ("overload x3", "overload x10"):
        load = phases[name]
        assert load["answered"] > 0, load
        assert load["refused"], load  # beyond what it serves, pua refused
        assert set(load["refused"]) == {str(OVERLOADED)}, load["refused"]
        assert set(load["retry_hints"]) == {"1"}, load["retry_hints"]
        assert load["other"] == {}, load["other"]  # no 500, no cut, no timeout
        assert load["max_latency"] < CLIENT_TIMEOUT
    assert figures["rss_peak_kib"] < figures["rss_limit_kib"], figures
    flood = phases["SIP flood x10"]
    assert flood["notifies"] > 0 and flood["garbage"] > 0
    assert set(flood["answers"]) == {"481"}, flood["answers"]  # garbage gets nothing
    assert flood["answers"]["481"] >= 0.9 * flood["notifies"], flood
    assert flood["stats_failures"] == flood["stats_refused"] == 0
    assert flood["stats_latency"]["max"] is not None
    held = phases["bodies held"]  # 1 MiB announced, 256 KiB sent, by 200
    assert held["held"] <= 8  # api_max_buffered 8 MiB: eight bodies of 1 MiB
    assert held["refused_503"] == held["retry_after"] >= 200 - 8 - held["send_errors"]
    # While the held bodies fill api_max_buffered, any call with a body
    # (pua.stats too) is refused with 503 and Retry-After, never left hanging.
    assert held["other_answers"] == 0 and held["stats_failures"] == 0
    assert figures["missing_at_server"] == {"publications": [], "subscriptions": []}
    assert figures["alive"] and figures["tracebacks"] == 0
