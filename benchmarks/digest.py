"""PUBLISH transactions per second with digest authentication: pua's
engine against a SIPp UAS that challenges a request without credentials
(a nonce, once known, stays good), against one that never challenges, and
against one that challenges every request, in the same run.

M publications, each refreshed R times (R + 1 requests for one identity),
W of them at a time, through the runtime's waiting API; a transaction is a
PUBLISH answered 2xx.  With the nonce used again, each publication pays one
challenge in R + 1 requests.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from tests.peers.sipp import SippUAS

from pua.core import EngineConfig, PublicationSucceeded, PublishInfo
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.loop import run as run_loop
from pua.sip.auth import Credential

from .messages import PIDF

SCENARIOS = {
    "no challenge": "publish_200",
    "challenge without credentials": "publish_401_unless_authorized",
    "challenge every request": "publish_401_always",
}


async def _publish_all(uri: str, publications: int, refreshes: int, window: int) -> dict[str, Any]:
    runtime = PresenceRuntime(EngineConfig(outbound_proxy=uri),
                              listen=[Listen("udp", "127.0.0.1", 0)])
    runtime.credentials.add(Credential(username="bench", password="bench"))
    ok = 0
    queue = iter(range(publications))
    async with runtime:

        async def worker() -> None:
            nonlocal ok
            for n in queue:
                uri_n = f"sip:u{n}@example.com"
                for i in range(refreshes + 1):
                    info = PublishInfo(pres_uri=uri_n, body=PIDF if i == 0 else None,
                                       expires=3600)
                    if isinstance(await runtime.publish(info), PublicationSucceeded):
                        ok += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window)))
        elapsed = time.perf_counter() - started
        counters = runtime.counters()
    return {"per_s": ok / elapsed, "ok": ok, "elapsed_s": elapsed,
            "challenges": counters["challenges_answered"],
            "reused": counters["nonces_reused"]}


def run(publications: int = 400, refreshes: int = 9, window: int = 50,
        rounds: int = 3) -> dict[str, Any]:
    """Each server in turn, ``rounds`` times in rotated order; medians."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SCENARIOS}
    names = list(SCENARIOS)
    for round_no in range(rounds):
        order = names[round_no % len(names):] + names[:round_no % len(names)]
        for name in order:
            with SippUAS(SCENARIOS[name]) as uas:
                runs[name].append(run_loop(_publish_all(uas.uri, publications, refreshes,
                                                        window)))
    medians = {name: statistics.median(r["per_s"] for r in rows) for name, rows in runs.items()}
    base = medians["no challenge"]
    return {
        "publications": publications, "refreshes": refreshes, "window": window,
        "rounds": rounds, "runs": runs, "median_per_s": medians,
        "ratio": {name: value / base for name, value in medians.items()},
    }


if __name__ == "__main__":
    import json
    import sys

    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(run(*args), indent=2, default=str))
