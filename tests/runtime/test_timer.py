"""DeadlineTimer: one loop timer at a core's next deadline, never early."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pua.runtime.timer import DeadlineTimer


def _recorder() -> tuple[list[float], asyncio.Event, Callable[[float], None]]:
    """What a core's fire() was called with, and an event set at each call."""
    fired: list[float] = []
    done = asyncio.Event()

    def fire(now: float) -> None:
        fired.append(now)
        done.set()

    return fired, done, fire

async def test_fires_once_at_the_deadline_and_not_before() -> None:
    """The core is called once, with a ``now`` not earlier than the
    deadline it asked for."""
    loop = asyncio.get_running_loop()
    fired, done, fire = _recorder()

    timer = DeadlineTimer(loop.time, fire)
    at = loop.time() + 0.02
    timer.arm(loop, at)
    await asyncio.wait_for(done.wait(), timeout=5)
    assert len(fired) == 1 and fired[0] >= at


async def test_a_later_deadline_moves_the_wake_up_without_firing_early() -> None:
    """A deadline that moves later (what was due was answered) is not
    fired at the old time: the core is called once, at the new deadline."""
    loop = asyncio.get_running_loop()
    fired, done, fire = _recorder()

    timer = DeadlineTimer(loop.time, fire)
    first = loop.time() + 0.01
    timer.arm(loop, first)
    later = first + 0.05
    timer.arm(loop, later)
    await asyncio.wait_for(done.wait(), timeout=5)
    assert fired == [fired[0]] and fired[0] >= later


async def test_an_earlier_deadline_and_none() -> None:
    """An earlier deadline wakes earlier; None, then cancel, call nothing."""
    loop = asyncio.get_running_loop()
    fired, done, fire = _recorder()

    timer = DeadlineTimer(loop.time, fire)
    timer.arm(loop, loop.time() + 60)
    soon = loop.time() + 0.01
    timer.arm(loop, soon)
    await asyncio.wait_for(done.wait(), timeout=5)
    assert len(fired) == 1 and fired[0] >= soon

    done.clear()
    timer.arm(loop, loop.time() + 0.01)
    timer.arm(loop, None)
    check = asyncio.Event()
    loop.call_later(0.05, check.set)
    await asyncio.wait_for(check.wait(), timeout=5)
    timer.arm(loop, loop.time() + 0.01)
    timer.cancel()
    check.clear()
    loop.call_later(0.05, check.set)
    await asyncio.wait_for(check.wait(), timeout=5)
    assert len(fired) == 1


async def test_a_core_with_more_to_do_lets_a_woken_task_in_between() -> None:
    """A core that leaves work due for its next call (it handles a slice at
    a time) is called again only after a task whose timer ran out during
    the call has had its step: the core does not run twice in a row while
    the task waits."""
    loop = asyncio.get_running_loop()
    order: list[str] = []
    woken = loop.create_future()
    done = asyncio.Event()

    def fire(now: float) -> None:
        order.append("core")
        if order.count("core") == 1:
            # A task's sleep runs out while the core works: its timer is due.
            loop.call_at(loop.time(), woken.set_result, None)
        if order.count("core") < 3:
            timer.arm(loop, loop.time())  # more is due at once
        else:
            done.set()

    async def sleeper() -> None:
        await woken
        order.append("task")

    task = asyncio.ensure_future(sleeper())
    timer = DeadlineTimer(loop.time, fire)
    timer.arm(loop, loop.time())
    await asyncio.wait_for(done.wait(), timeout=5)
    await asyncio.wait_for(task, timeout=5)
    assert order == ["core", "task", "core", "core"]
