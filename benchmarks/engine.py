"""The presence engine alone, no sockets: set-up and refresh rates, memory
per record, and the cost of idle timers, at 10k and 1M records.

Answers are built as objects (the request's Via, From, To, Call-ID and CSeq
copied, plus SIP-ETag and Expires) and handed to the engine with
``receive_message``, so wire parsing is not part of these figures (it is in
the parse benchmark).  The reference for the timer cost is what Kamailio's
and OpenSIPS's pua do every tick: walk every record to find those due.
"""

from __future__ import annotations

import gc
import itertools
import resource
import statistics
import sys
import time
from typing import Any

from pua.api.metrics import metrics_text
from pua.core import EngineConfig, PresenceEngine, PublishInfo, SubscribeInfo
from pua.runtime import PresenceRuntime
from pua.runtime.ids import SystemIds
from pua.sip import make_response

SERVER = ("192.0.2.1", 5060)
# Set-ups per second of virtual time: the clock moves while records are
# made, so finished transactions end (timer K) as they would on the wire.
RATE = 5000.0
START = 1_700_000_000.0
BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:u@example.com">'
    b"<tuple><status><basic>open</basic></status><note>Available</note></tuple></presence>"
)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def _new_agent() -> PresenceEngine:
    agent = PresenceEngine(EngineConfig(outbound_proxy="sip:192.0.2.1:5060"), SystemIds())
    agent.set_local_address("udp", "192.0.2.9", 5070)
    return agent


def _answers(agent: PresenceEngine, expires: int, *, tag: bool = False) -> list[Any]:
    """A 2xx for every request in flight (the server's work: not timed)."""
    answers = []
    for n, tx in enumerate(agent.requests_in_flight()):
        response = make_response(tx.request, 200, to_tag="srv" if tag else None)
        response.headers.add("SIP-ETag", f"e{n}")
        response.headers.add("Expires", str(expires))
        answers.append(response)
    return answers


def _feed(agent: PresenceEngine, answers: list[Any], now: float) -> None:
    """The engine's work on the answers (timed by the caller)."""
    for response in answers:
        agent.receive_message(response, SERVER, "udp", now)
    agent.datagrams_to_send()
    while agent.next_event() is not None:
        pass


class _Clock:
    """Adds up the time spent inside the engine."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0

    def __enter__(self) -> None:
        self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.seconds += time.perf_counter() - self._start


def publications(count: int) -> dict[str, Any]:
    """Set up ``count`` publications, then refresh them all; only the
    engine's own time is counted."""
    gc.collect()
    agent = _new_agent()
    rss_before = _rss_bytes()
    now = START
    setup = _Clock()
    done = 0
    batch = 1000
    for first in range(0, count, batch):
        with setup:
            for i in range(first, min(first + batch, count)):
                agent.send_publish(
                    PublishInfo(pres_uri=f"sip:u{i}@example.com", body=BODY, expires=-1), now
                )
            agent.datagrams_to_send()
        answers = _answers(agent, 3600)
        with setup:
            _feed(agent, answers, now)
            # The clock moves as it would at this rate (about 5,000 set-ups
            # a second): timer K ends finished transactions as it goes.
            now += batch / RATE
            _fire_due(agent, now)
        done += len(answers)
    # Let timer K end the finished transactions: only records stay.
    now += 10
    _fire_due(agent, now)
    gc.collect()
    rss_records = _rss_bytes() - rss_before
    # Refresh: step through the refresh window, answering what is due.
    refresh = _Clock()
    refreshed = 0
    now = START + 3600 - 45
    while now < START + 3600 + count / RATE:
        now += 1.0
        with refresh:
            _fire_due(agent, now)
            agent.datagrams_to_send()
        answers = _answers(agent, 3600)
        with refresh:
            _feed(agent, answers, now)
        refreshed += len(answers)
    # The body is kept per record (412 recovery needs it): counted apart.
    body_bytes = sum(sys.getsizeof(r.body) for r in itertools.islice(agent.records(), 100)) / 100
    return {
        "records": count, "setups": done, "setup_per_s": done / setup.seconds,
        "refreshed": refreshed, "refresh_per_s": refreshed / refresh.seconds,
        "bytes_per_record": rss_records / count - body_bytes, "body_bytes": body_bytes,
        "agent": agent,
    }


def _fire_due(agent: PresenceEngine, now: float) -> None:
    """Run every timer due at ``now``: a call handles a slice of them."""
    while (deadline := agent.get_timer()) is not None and deadline <= now:
        agent.handle_timer(now)


def subscriptions(count: int) -> dict[str, Any]:
    """Set up ``count`` subscriptions (2xx with a To tag; engine time only);
    memory per record."""
    gc.collect()
    agent = _new_agent()
    rss_before = _rss_bytes()
    now = START
    clock = _Clock()
    done = 0
    for first in range(0, count, 1000):
        with clock:
            for i in range(first, min(first + 1000, count)):
                agent.send_subscribe(SubscribeInfo(
                    pres_uri=f"sip:u{i}@example.com", watcher_uri="sip:w@example.com", expires=-1,
                ), now)
            agent.datagrams_to_send()
        answers = _answers(agent, 3600, tag=True)
        with clock:
            _feed(agent, answers, now)
            now += 1000 / RATE
            _fire_due(agent, now)
        done += len(answers)
    seconds = clock.seconds
    now += 10
    _fire_due(agent, now)
    gc.collect()
    return {
        "records": count, "setup_per_s": done / seconds,
        "bytes_per_record": (_rss_bytes() - rss_before) / count,
    }


def idle_cost(agent: PresenceEngine, seconds: int = 60) -> dict[str, float]:
    """CPU per virtual second of running with nothing due: ours (the runtime
    asks for the next deadline and sleeps), and the reference scan of every
    record per tick."""
    now = START + 100  # every refresh is far in the future
    cpu = time.process_time()
    for _ in range(seconds):
        now += 1.0
        agent.handle_timer(now)
        agent.get_timer()
    ours = (time.process_time() - cpu) / seconds
    records = list(agent.records())
    cpu = time.process_time()
    ticks = 3
    for _ in range(ticks):
        due = [r for r in records if r.expires_at - 30 < now]  # what hashT_clean does
        assert not due
    scan = (time.process_time() - cpu) / ticks
    return {"ours_cpu_s_per_s": ours, "scan_cpu_s_per_tick": scan}


def metrics_cost(agent: PresenceEngine, calls: int = 200) -> float:
    """Seconds per /metrics exposition over the engine's records (median)."""
    runtime = PresenceRuntime(agent.config, engine=agent)
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        metrics_text(runtime)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def run(sizes: tuple[int, ...] = (10_000, 1_000_000)) -> dict[str, Any]:
    """Every figure, per size."""
    out: dict[str, Any] = {}
    for size in sizes:
        pub = publications(size)
        pub["metrics_s"] = metrics_cost(pub["agent"])
        idle = idle_cost(pub.pop("agent"))
        gc.collect()
        sub = subscriptions(size)
        out[size] = {"publications": pub, "subscriptions": sub, "idle": idle}
    return out
