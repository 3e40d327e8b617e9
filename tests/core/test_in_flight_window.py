"""Refreshes and retries wait while max_in_flight requests wait for their
answer: a slow server sees that many transactions, not one per record."""

from __future__ import annotations

import pytest

from pua.core import EngineConfig, PublishInfo

from .harness import Harness

OUTBOUND = "sip:192.0.2.1:5060"


def pidf(uri: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{uri}">'
        "<tuple id='t'><status><basic>open</basic></status></tuple></presence>"
    ).encode()


def population(h: Harness, count: int) -> None:
    """``count`` publications, each made through the API (never held) and
    answered 200 with a 60 s lifetime, all due for refresh together."""
    for n in range(count):
        uri = f"sip:p{n}@example.com"
        h.agent.send_publish(PublishInfo(pres_uri=uri, body=pidf(uri), expires=-1), h.now)
    for n, request in enumerate(h.take()):
        h.ok_publish(request, f"e{n}", 60)


def test_refreshes_wait_for_room_in_the_window() -> None:
    """With a window of 2 and 5 records due, 2 refreshes are sent; each
    answer lets one more go; every record is refreshed in the end."""
    h = Harness(EngineConfig(outbound_proxy=OUTBOUND, max_in_flight=2))
    population(h, 5)
    h.advance(30.0)  # every refresh is due (at 24 to 30 s); no answer yet
    sent = h.take()
    assert len({r.top_via.branch for r in sent}) == 2  # and their retransmissions
    assert len(h.agent.requests_in_flight()) == 2
    # Held records do not spin the clock: only the transactions' timers
    # (retransmissions, timeouts) are next.
    timer = h.agent.get_timer()
    assert timer is not None and timer > h.now
    refreshed = set()
    while waiting := h.agent.requests_in_flight():
        assert len(waiting) <= 2
        request = waiting[0].request
        assert request.headers.get("sip-if-match")
        h.ok_publish(request, "again", 60)
        refreshed.add(str(request.uri))
        h.advance(0.0)  # the held deadlines, due, are handled now
    assert len(refreshed) == 5
    assert h.agent.counters()["refreshes"] == 5


def test_lateness_counts_the_wait_for_room() -> None:
    """A refresh held back is as late as its wait: the lateness histogram
    shows it."""
    h = Harness(EngineConfig(outbound_proxy=OUTBOUND, max_in_flight=1))
    population(h, 2)
    h.advance(30.0)
    lateness = h.agent.timer_lateness()
    assert lateness.count == 1
    (first,) = h.agent.requests_in_flight()
    h.advance(3.0)  # the first is retransmitted; the second waits
    h.ok_publish(first.request, "again", 60)
    h.advance(0.0)
    assert lateness.count == 2
    assert lateness.quantile(1.0) >= 2.0


def test_no_window_sends_every_due_refresh_at_once() -> None:
    """max_in_flight 0: no limit."""
    h = Harness(EngineConfig(outbound_proxy=OUTBOUND, max_in_flight=0))
    population(h, 5)
    h.advance(30.0)
    assert len(h.agent.requests_in_flight()) == 5


def test_a_negative_window_is_refused() -> None:
    """The setting is checked when built."""
    with pytest.raises(ValueError, match="max_in_flight"):
        EngineConfig(max_in_flight=-1)


def test_a_silent_server_times_out_the_window_a_slice_a_call() -> None:
    """Every request in flight times out together when the server says
    nothing: one timer call fails at most TIMER_BURST_BATCH of them (each
    failure is work: an event, a retry scheduled), the rest are due at
    once for the next call, and in the end every record is failed and
    scheduled for its retry."""
    from pua.core.engine import TIMER_BURST_BATCH
    from pua.core.events import PublicationFailed

    count = 2 * TIMER_BURST_BATCH + 50
    h = Harness(EngineConfig(outbound_proxy=OUTBOUND, max_in_flight=count))
    for n in range(count):
        uri = f"sip:p{n}@example.com"
        h.agent.send_publish(PublishInfo(pres_uri=uri, body=pidf(uri), expires=-1), h.now)
    h.take()
    assert len(h.agent.requests_in_flight()) == count
    # Retransmissions until timer F (64*T1 = 32 s): up to then nothing fails.
    h.advance(31.9)
    assert h.take_events(PublicationFailed) == []
    h.now += 0.2
    calls = []
    while (timer := h.agent.get_timer()) is not None and timer <= h.now:
        h.agent.handle_timer(h.now)
        calls.append(len(h.take_events(PublicationFailed)))
    assert calls == [TIMER_BURST_BATCH, TIMER_BURST_BATCH, 50]
    assert h.agent.requests_in_flight() == []
