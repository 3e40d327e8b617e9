"""PUBLISH transactions per second: pua over UDP against a SIPp UAS, and
SIPp's own UAC against the same UAS in the same run.

One pua transaction, as measured: a new PUBLISH request object built from a
:class:`~pua.sip.builder.RequestTemplate` prepared once per run (what a
user publishing the same presentity again and again does: the URIs, the
Event, Expires and Content-Type headers and the PIDF body are formatted
once; each request draws a fresh Via branch, From tag and Call-ID from the
stack's random source), serialized, given to ``SipStack.request`` (a
client transaction with its timers E and F, a future), sent with one
``sendto``; then the 200 received, parsed, matched to its transaction,
the transaction completed (timer K armed), the future resolved, and the
caller checking that the answer is a 2xx with a SIP-ETag.  ``window``
transactions are in flight at any time.

SIPp's UAC (``sipp/uac_publish.xml``) sends the same kind of PUBLISH (a
PIDF body, a new Call-ID per call) with the same concurrency limit.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, TypeVar

from tests.peers.sipp import SippUAC, SippUAS

from pua.runtime import Listen, SipStack
from pua.runtime.loop import run as run_loop
from pua.sip import SipUri

from .messages import PIDF
from .sipp.run_sipp_reference import UAC_SCENARIO

T = TypeVar("T", bound=dict[str, Any])

ALICE = SipUri(host="example.com", user="alice")
PUBLISH_HEADERS = (
    ("Event", "presence"),
    ("Expires", "3600"),
    ("Content-Type", "application/pidf+xml"),
)


async def pua_publishes(address: tuple[str, int], calls: int, window: int) -> dict[str, float]:
    """Send ``calls`` PUBLISH transactions, ``window`` at a time; count 2xx."""
    ok = 0
    failed = 0
    async with SipStack(listen=[Listen("udp", "127.0.0.1", 0)]) as stack:
        queue = iter(range(calls))
        template = stack.request_template(
            "PUBLISH", ALICE, address, from_uri=ALICE, to_uri=ALICE,
            headers=PUBLISH_HEADERS, body=PIDF,
        )

        async def worker() -> None:
            nonlocal ok, failed
            for _ in queue:
                response = await stack.request(template.build(stack.ids), address)
                if response.is_success and response.sip_etag:
                    ok += 1
                else:
                    failed += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(window)))
        elapsed = time.perf_counter() - started
        retransmissions = stack.endpoint.counters["retransmissions"]
    return {"successful": ok, "failed": failed, "elapsed_s": elapsed,
            "per_s": ok / elapsed, "retransmissions": retransmissions}


def run(calls: int = 10_000, window: int = 200, rounds: int = 5) -> dict[str, object]:
    """Both measurements against SIPp UASes, alternating for ``rounds``
    rounds so that both see the same machine; the medians and their ratio
    are the figures."""
    mine_runs: list[dict[str, float]] = []
    sipp_runs: list[dict[str, float]] = []
    for round_no in range(rounds):
        # A fresh UAS each round, and the order swapped every round, so
        # neither sender always meets the UAS after the other has filled it.
        with SippUAS("publish_200") as uas:
            order = ("pua", "sipp") if round_no % 2 == 0 else ("sipp", "pua")
            for sender in order:
                if sender == "pua":
                    mine_runs.append(run_loop(pua_publishes((uas.host, uas.port), calls, window)))
                else:
                    stats = SippUAC(UAC_SCENARIO, uas.host, uas.port, calls=calls, limit=window).run()
                    elapsed = stats.wall_seconds or 1.0
                    sipp_runs.append({"successful": stats.successful, "failed": stats.failed,
                                      "elapsed_s": elapsed, "per_s": stats.successful / elapsed})
    mine = median_run(mine_runs)
    sipp = median_run(sipp_runs)
    return {
        "calls": calls, "window": window, "rounds": rounds,
        "pua": mine, "sipp": sipp,
        "pua_rounds": [round(r["per_s"]) for r in mine_runs],
        "sipp_rounds": [round(r["per_s"]) for r in sipp_runs],
        "ratio": mine["per_s"] / sipp["per_s"],
    }


def median_run(runs: list[T]) -> T:
    """The run of median rate (``per_s``; the upper middle one of an even count)."""
    return sorted(runs, key=lambda r: r["per_s"])[len(runs) // 2]
