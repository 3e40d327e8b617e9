"""PUBLISH transactions per second: pua over UDP against a SIPp UAS, and
SIPp's own UAC against the same UAS in the same run."""

from __future__ import annotations

import asyncio
import time

from tests.peers.sipp import SippUAC, SippUAS

from pua.runtime import Listen, SipStack
from pua.runtime.loop import run as run_loop
from pua.sip import SipUri
from pua.sip.builder import new_request

from .messages import PIDF
from .sipp.run_sipp_reference import UAC_SCENARIO

ALICE = SipUri(host="example.com", user="alice")


async def pua_publishes(address: tuple[str, int], calls: int, window: int) -> dict[str, float]:
    """Send ``calls`` PUBLISH transactions, ``window`` at a time; count 2xx."""
    ok = 0
    failed = 0
    async with SipStack(listen=[Listen("udp", "127.0.0.1", 0)]) as stack:
        queue = iter(range(calls))

        async def worker() -> None:
            nonlocal ok, failed
            for _ in queue:
                request = new_request(
                    "PUBLISH", ALICE, from_uri=ALICE, to_uri=ALICE,
                    via=stack.via_for(address), ids=stack.ids,
                )
                request.headers.add("Event", "presence")
                request.headers.add("Expires", "3600")
                request.headers.add("Content-Type", "application/pidf+xml")
                request.body = PIDF
                response = await stack.request(request, address)
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


def run(calls: int = 20_000, window: int = 200) -> dict[str, object]:
    """Both measurements against one SIPp UAS; returns the figures and ratio."""
    with SippUAS("publish_200") as uas:
        mine = run_loop(pua_publishes((uas.host, uas.port), calls, window))
        reference = SippUAC(UAC_SCENARIO, uas.host, uas.port, calls=calls, limit=window).run()
    sipp_rate = reference.successful / (reference.wall_seconds or 1.0)
    return {
        "calls": calls, "window": window,
        "pua": mine,
        "sipp": {"successful": reference.successful, "failed": reference.failed,
                 "elapsed_s": reference.wall_seconds, "per_s": sipp_rate},
        "ratio": mine["per_s"] / sipp_rate,
    }
