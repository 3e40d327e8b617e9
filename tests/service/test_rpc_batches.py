"""A JSON-RPC batch runs its calls together, started a slice at a time:
the event loop gets a turn between slices, the answers keep the calls'
order, and a batch cancelled midway cancels the calls it started."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from pua.api.rpc import BATCH_SLICE, JsonRpc


def batch(count: int, method: str = "probe") -> bytes:
    return orjson.dumps(
        [{"jsonrpc": "2.0", "id": n, "method": method, "params": {"n": n}} for n in range(count)]
    )


async def test_calls_start_a_slice_a_turn_and_answer_in_order() -> None:
    """Each call notes which turn of the loop it started in (a callback
    that schedules itself again counts the turns): no turn starts more than
    a slice, and the answers come in the calls' order."""
    loop = asyncio.get_running_loop()
    turns = 0
    running = True

    def tick() -> None:
        nonlocal turns
        turns += 1
        if running:
            loop.call_soon(tick)

    started: list[int] = []

    async def probe(params: Any) -> int:
        started.append(turns)
        return int(params["n"])

    loop.call_soon(tick)
    count = 5 * BATCH_SLICE + 3
    answers = await JsonRpc({"probe": probe}).handle(batch(count))
    running = False
    assert [a["result"] for a in answers] == list(range(count))
    per_turn: dict[int, int] = {}
    for turn in started:
        per_turn[turn] = per_turn.get(turn, 0) + 1
    assert max(per_turn.values()) <= BATCH_SLICE, per_turn
    assert len(per_turn) >= 6


async def test_a_cancelled_batch_cancels_the_calls_it_started() -> None:
    """A client gone (the request's task cancelled) leaves no call behind."""
    release = asyncio.Event()
    first_slice, all_cancelled = asyncio.Event(), asyncio.Event()
    cancelled = 0
    began = 0

    async def wait(params: Any) -> None:
        nonlocal cancelled, began
        began += 1
        if began == BATCH_SLICE:
            first_slice.set()
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled += 1
            if cancelled == began:
                all_cancelled.set()
            raise

    rpc = JsonRpc({"wait": wait})
    task = asyncio.ensure_future(rpc.handle(batch(3 * BATCH_SLICE, "wait")))
    await asyncio.wait_for(first_slice.wait(), timeout=5)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert task in done and task.cancelled()
    await asyncio.wait_for(all_cancelled.wait(), timeout=5)
    assert cancelled == began and began >= BATCH_SLICE
