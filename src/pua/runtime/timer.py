"""One asyncio timer armed at a sans-IO core's next deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from pua.sip.timers import LATENESS_BOUNDS, Histogram

__all__ = ["DeadlineTimer", "LoopLag"]


class LoopLag:
    """How late the event loop runs a callback: every ``period`` seconds a
    tick is scheduled, and how long after its time it ran goes into
    ``histogram`` (what a busy loop does to every answer and refresh)."""

    def __init__(self, period: float = 0.25) -> None:
        self.period = period
        self.histogram = Histogram(LATENESS_BOUNDS)
        self._handle: asyncio.TimerHandle | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Begin ticking on ``loop``."""
        if self._handle is None:
            self._schedule(loop)

    def stop(self) -> None:
        """Stop ticking."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        at = loop.time() + self.period
        self._handle = loop.call_at(at, self._tick, loop, at)

    def _tick(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        self.histogram.observe(max(0.0, loop.time() - at))
        self._schedule(loop)


class DeadlineTimer:
    """Keeps one ``loop.call_at`` at the deadline a core asks for.

    ``clock()`` is the core's clock (the loop's, or Unix time); ``fire(now)``
    runs the core's timers, with ``now`` never earlier than the deadline
    (``call_at`` may wake a little early, and a core must not fire a timer
    before its time).

    A deadline that moves later (the transaction at the head of the queue
    was answered) leaves the loop's timer where it is: at its wake-up the
    timer is moved to the deadline then wanted, without calling ``fire``.
    Under load a core's earliest deadline moves with every answer, and
    cancelling and re-scheduling a loop timer each time costs more than
    the one early wake-up per deadline it saves.
    """

    def __init__(self, clock: Callable[[], float], fire: Callable[[float], None]) -> None:
        self._clock = clock
        self._fire = fire
        self._handle: asyncio.Handle | None = None
        self._at: float | None = None  # when the loop's timer wakes us
        self._want: float | None = None  # the core's deadline

    def arm(self, loop: asyncio.AbstractEventLoop, when: float | None) -> None:
        """Wake at ``when`` (core clock); None: no wake-up needed."""
        self._want = when
        at = self._at
        if when is None or (at is not None and at <= when):
            return  # asleep until at: a later wish is checked then
        if self._handle is not None:
            self._handle.cancel()
        self._at = when
        delay = when - self._clock()
        if delay > 0:
            self._handle = loop.call_at(loop.time() + delay, self._wake, loop)
        else:
            # Due already (the core left work for the next call).  A task
            # whose sleep ran out during this call has its timer fire at
            # the next turn of the loop, and its step is queued then, to
            # run after the callbacks that turn found ready: were the core
            # among those, it would run twice before the task once.  So
            # the core waits behind a timer due now (after the task's
            # earlier one), which queues it behind the task's step.
            self._handle = loop.call_at(loop.time(), self._soon, loop)

    def cancel(self) -> None:
        """Forget the wake-up."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = self._at = self._want = None

    def _soon(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = loop.call_soon(self._wake, loop)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        at, want = self._at, self._want
        self._handle = self._at = None
        if want is None:
            return
        now = self._clock()
        if at is None or want > at:
            # Woken for a deadline that has since moved later.
            self.arm(loop, want)
            return
        self._want = None
        self._fire(max(now, want))
