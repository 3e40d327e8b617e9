"""The engine's set-up and refresh rates on two source trees, same procedure.

    python -m benchmarks.compare_engine BEFORE_SRC AFTER_SRC [N] [ROUNDS]

e.g. after ``git worktree add /tmp/before <commit>``:
``python -m benchmarks.compare_engine /tmp/before/src src 30000 3``.

Each round runs both trees in fresh processes, in swapped order every other
round, and the medians are reported with the ratio after / before.  The
procedure uses only what every version of the engine offers (send_publish,
send_subscribe, receive_message, handle_timer, datagrams_to_send,
next_event): N publications set up and answered 200 as the clock moves at
5,000 set-ups a second, every refresh answered, then N subscriptions.  The
server's work (parsing the requests, building the answers) is not timed.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from typing import Any

CHILD = r"""
import gc, json, sys, time
sys.path.insert(0, sys.argv[1])
import pua.core as core
from pua.runtime.ids import SystemIds
from pua.runtime.loop import tune_gc
from pua.sip import make_response, parse_message

tune_gc()
Engine = getattr(core, "PresenceEngine", None) or getattr(core, "PresenceAgent")
N = int(sys.argv[2])
START = 1_700_000_000.0
RATE = 5000.0
SERVER = ("192.0.2.1", 5060)
BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:u@example.com">'
    b"<tuple><status><basic>open</basic></status><note>Available</note></tuple></presence>"
)


def new():
    engine = Engine(core.EngineConfig(outbound_proxy="sip:192.0.2.1:5060"), SystemIds())
    engine.set_local_address("udp", "192.0.2.9", 5070)
    return engine


def answers(engine, tag):
    out = []
    for n, datagram in enumerate(engine.datagrams_to_send()):
        response = make_response(parse_message(datagram.data), 200, to_tag="srv" if tag else None)
        response.headers.add("SIP-ETag", f"e{n}")
        response.headers.add("Expires", "3600")
        out.append(response)
    return out


def feed(engine, batch, now):
    for response in batch:
        engine.receive_message(response, SERVER, "udp", now)
    while engine.next_event() is not None:
        pass


def setup(engine, make, tag):
    spent, now = 0.0, START
    for first in range(0, N, 1000):
        started = time.perf_counter()
        for i in range(first, min(first + 1000, N)):
            make(engine, i, now)
        spent += time.perf_counter() - started
        batch = answers(engine, tag)
        started = time.perf_counter()
        feed(engine, batch, now)
        now += 1000 / RATE
        fire_due(engine, now)
        spent += time.perf_counter() - started
    return N / spent


def fire_due(engine, now):
    # Every timer due at now: a call may handle a slice of them.
    while (deadline := engine.get_timer()) is not None and deadline <= now:
        engine.handle_timer(now)


def publish(engine, i, now):
    info = core.PublishInfo(pres_uri=f"sip:u{i}@example.com", body=BODY, expires=-1)
    engine.send_publish(info, now)


def subscribe(engine, i, now):
    info = core.SubscribeInfo(
        pres_uri=f"sip:u{i}@example.com", watcher_uri="sip:w@example.com", expires=-1
    )
    engine.send_subscribe(info, now)


engine = new()
out = {"publications_set_up_per_s": setup(engine, publish, False)}
spent, done, now = 0.0, 0, START + 3600 - 45
while now < START + 3600 + N / RATE:
    now += 1.0
    started = time.perf_counter()
    fire_due(engine, now)
    spent += time.perf_counter() - started
    batch = answers(engine, False)
    started = time.perf_counter()
    feed(engine, batch, now)
    spent += time.perf_counter() - started
    done += len(batch)
out["refreshed_per_s"] = done / spent
del engine
gc.collect()
out["subscriptions_set_up_per_s"] = setup(new(), subscribe, True)
print(json.dumps(out))
"""


def _one(src: str, count: int) -> dict[str, float]:
    result = subprocess.run(
        [sys.executable, "-c", CHILD, src, str(count)],
        capture_output=True, text=True, check=True, timeout=3600,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def compare(before: str, after: str, count: int = 30_000, rounds: int = 3) -> dict[str, Any]:
    """Medians per tree and the ratio after / before, per figure."""
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for n in range(rounds):
        order = [("before", before), ("after", after)]
        for name, src in order if n % 2 == 0 else reversed(order):
            runs[name].append(_one(src, count))
    figures = list(runs["before"][0])
    medians = {
        name: {f: statistics.median(r[f] for r in rows) for f in figures}
        for name, rows in runs.items()
    }
    return {
        "count": count,
        "rounds": rounds,
        "runs": runs,
        "median": medians,
        "ratio": {f: medians["after"][f] / medians["before"][f] for f in figures},
    }


def main(argv: list[str]) -> int:
    before, after = argv[0], argv[1]
    count = int(argv[2]) if len(argv) > 2 else 30_000
    rounds = int(argv[3]) if len(argv) > 3 else 3
    print(json.dumps(compare(before, after, count, rounds), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
