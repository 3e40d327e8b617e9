"""Memory under churn: publications made and removed, over and over.

An in-process :class:`pua.runtime.PresenceRuntime` (no store) runs cycles of
"publish a new presentity (expires 3600), then remove it (expires 0)",
``concurrency`` cycles in flight at a time, against a SIPp UAS that answers
every PUBLISH 200 with SIP-ETag.  Nothing is left alive after a cycle, so
the resident set must stay flat: it is sampled after a warm-up (so the
allocator's pools and the tables have reached their working size) and after
every tenth of the cycles.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import time
from typing import Any

from tests.peers.sipp import SippUAS

from pua.core import EngineConfig, PublishInfo
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.loop import run as run_loop

PAGE = os.sysconf("SC_PAGE_SIZE")

# Timer K (T4 = 5 s over UDP, RFC 3261 §17.1.2.2): finished transactions
# stay that long, so the warm-up lasts at least two of them to reach the
# steady number of finished transactions kept.
TIMER_K = 5.0

# An answer comes within timer F (64*T1 = 32 s) or the PUBLISH has failed.
CYCLE_TIMEOUT = 40.0

TARGET_PERCENT = 5.0

BODY_TEMPLATE = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{uri}">'
    '<tuple id="t1"><status><basic>open</basic></status><note>Available</note></tuple>'
    "</presence>"
)


def rss_bytes() -> int:
    """This process's resident set (/proc/self/statm, second field)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


class _Churn:
    """Runs publish+remove cycles on one runtime, numbering presentities
    on from where the last batch stopped."""

    def __init__(self, runtime: PresenceRuntime, concurrency: int) -> None:
        self.runtime = runtime
        self.concurrency = concurrency
        self.next_id = 0
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []

    async def _cycle(self, n: int) -> None:
        uri = f"sip:churn{n}@example.com"
        body = BODY_TEMPLATE.format(uri=uri).encode()
        try:
            async with asyncio.timeout(CYCLE_TIMEOUT):
                await self.runtime.publish(PublishInfo(pres_uri=uri, body=body, expires=3600))
                await self.runtime.publish(PublishInfo(pres_uri=uri, expires=0))
        except Exception as exc:  # PublishError, TimeoutError: counted
            self.failed += 1
            if len(self.errors) < 5:
                self.errors.append(f"{uri}: {type(exc).__name__}: {exc}")
        else:
            self.ok += 1

    async def cycles(self, count: int) -> None:
        """``count`` cycles, ``concurrency`` at a time."""
        last = self.next_id + count
        numbers = iter(range(self.next_id, last))
        self.next_id = last

        async def worker() -> None:
            for n in numbers:
                await self._cycle(n)

        await asyncio.gather(*(worker() for _ in range(self.concurrency)))


def _sample(label: str, cycles_done: int, started: float) -> dict[str, Any]:
    gc.collect()
    return {"label": label, "cycles": cycles_done, "rss": rss_bytes(),
            "seconds": time.perf_counter() - started}


async def churn(address: tuple[str, int], cycles: int, warmup: int,
                concurrency: int, samples: int) -> dict[str, Any]:
    """The warm-up, then ``cycles`` cycles with ``samples`` readings."""
    host, port = address
    config = EngineConfig(outbound_proxy=f"sip:{host}:{port}")
    async with PresenceRuntime(config, listen=[Listen("udp", "127.0.0.1", 0)]) as runtime:
        work = _Churn(runtime, concurrency)
        warm_started = time.perf_counter()
        await work.cycles(warmup)
        while time.perf_counter() - warm_started < 2 * TIMER_K:
            await work.cycles(max(1, warmup // 10))
        warm = {"cycles": work.next_id, "seconds": time.perf_counter() - warm_started}
        started = time.perf_counter()
        readings = [_sample("after warm-up", 0, started)]
        done = 0
        for step in range(1, samples + 1):
            target = cycles * step // samples
            await work.cycles(target - done)
            done = target
            readings.append(_sample(f"{100 * step // samples}%", done, started))
        seconds = readings[-1]["seconds"]
        if work.failed:
            raise RuntimeError(f"{work.failed} of {work.next_id} cycles failed: {work.errors}")
    first, final = readings[0]["rss"], readings[-1]["rss"]
    return {
        "cycles": cycles, "warmup_cycles": warm["cycles"], "warmup_seconds": warm["seconds"],
        "concurrency": concurrency, "ok": work.ok, "failed": work.failed,
        "rss_after_warmup": first, "rss_end": final,
        "change_percent": 100.0 * (final - first) / first,
        "seconds": seconds, "cycles_per_s": cycles / seconds,
        "samples": readings, "target_percent": TARGET_PERCENT,
    }


def run(cycles: int = 1_000_000, *, warmup: int = 10_000, concurrency: int = 200,
        samples: int = 10) -> dict[str, Any]:
    """Churn against a fresh SIPp UAS; raises RuntimeError when a cycle fails."""
    with SippUAS("publish_200") as uas:
        return run_loop(churn(uas.address, cycles, warmup, concurrency, samples))


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    print(json.dumps(run(count), indent=1))
