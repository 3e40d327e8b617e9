"""The service log of failures: each streak starts with a line, a record
that keeps failing is logged at most once a minute, recovery and giving up
are said, and what ends a streak forgets it."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from pua.core import (
    PublicationFailed,
    PublicationSucceeded,
    RecordKey,
    SubscriptionFailed,
    SubscriptionTerminated,
)
from pua.runtime.failures import FailureLog

PUB = RecordKey("sip:alice@example.com", 1, "desk", 64, "")
SUB = RecordKey("sip:bob@example.com", 1, "", 256, "sip:alice@example.com")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(caplog: pytest.LogCaptureFixture) -> tuple[FailureLog, Clock, pytest.LogCaptureFixture]:
    clock = Clock()
    failures = FailureLog(
        logging.getLogger("test.failures"), lambda flag: {1: "presence"}[flag],
        every=60.0, clock=clock, wall=clock,
    )
    caplog.set_level(logging.WARNING, logger="test.failures")
    return failures, clock, caplog


def failed(key: RecordKey, clock: Clock, retry_in: float | None = 5.0) -> PublicationFailed:
    retry_at = None if retry_in is None else clock.now + retry_in
    return PublicationFailed(key=key, status=503, reason="Service Unavailable", retry_at=retry_at)


def test_a_dead_server_is_logged_once_a_minute_per_record(setup: tuple) -> None:
    """Thirty failures in a minute make one line; the next minute one more,
    counting the failures that were not logged."""
    failures, clock, caplog = setup
    for _ in range(30):
        failures(failed(PUB, clock))
        clock.now += 1.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "PUBLISH sip:alice@example.com event=presence id=desk failed: "
        "503 Service Unavailable; backing off, next try in 5.0 s"
    ]
    clock.now += 31.0
    failures(failed(PUB, clock))
    assert "still failing: 503 Service Unavailable; 31 failures so far (29 not logged)" in (
        caplog.records[-1].getMessage()
    )
    assert len(failures) == 1


def test_recovery_and_giving_up_end_the_streak(setup: tuple) -> None:
    """A success after failures says the backoff is over; a final failure
    says it gave up; neither keeps anything about the record."""
    failures, clock, caplog = setup
    failures(failed(PUB, clock))
    failures(failed(PUB, clock))
    failures(PublicationSucceeded(key=PUB, status=200, etag="e", expires=60, expires_at=0.0,
                                  kind="initial"))
    assert caplog.records[-1].getMessage().endswith("recovered after 2 failures: backoff over")
    assert len(failures) == 0

    failures(SubscriptionFailed(key=SUB, status=403, reason="Forbidden", retry_at=None))
    message = caplog.records[-1].getMessage()
    assert message.startswith("SUBSCRIBE sip:bob@example.com event=presence")
    assert "watcher=sip:alice@example.com failed: 403 Forbidden; given up after 1 failure" in message
    assert len(failures) == 0


def test_an_ending_that_is_not_asked_for_is_a_warning(setup: tuple) -> None:
    """A subscription ended by the notifier (rejected) is logged; an
    unsubscribe is not; and an ending forgets a streak."""
    failures, clock, caplog = setup
    failures(SubscriptionFailed(key=SUB, status=408, reason="Request Timeout", retry_at=clock.now))
    failures(SubscriptionTerminated(key=SUB, reason="unsubscribed"))
    assert len(failures) == 0
    count = len(caplog.records)
    failures(SubscriptionTerminated(key=SUB, reason="rejected"))
    assert len(caplog.records) == count + 1
    assert caplog.records[-1].getMessage().endswith("ended: rejected")


def test_many_records_failing_together_are_told_in_one_line_past_the_budget(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server gone silent fails every record in flight at once: the first
    lines of a window are written, the rest are counted and told in one
    line when the window is over (called back by the runtime's loop),
    counted by what they would have said; the next window starts afresh."""
    clock = Clock()
    calls: list[tuple[float, Callable[[], None]]] = []
    failures = FailureLog(
        logging.getLogger("test.failures.budget"), lambda flag: "presence",
        budget=5, window=10.0, clock=clock, wall=clock,
        later=lambda delay, callback: calls.append((delay, callback)) or True,
    )  # fmt: skip
    caplog.set_level(logging.WARNING, logger="test.failures.budget")
    keys = [RecordKey(f"sip:p{n}@example.com", 1, "", 64, "") for n in range(50)]
    clock.now += 2.0
    for key in keys:
        failures(PublicationFailed(key=key, status=408, reason="Request Timeout (local)",
                                   retry_at=clock.now + 1.5))
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 5 and all("failed: 408 Request Timeout (local)" in line for line in lines)
    assert [delay for delay, _ in calls] == [8.0]  # the window's end, once
    assert len(failures) == 50  # every streak is kept, written or not

    clock.now += 8.0
    calls[0][1]()
    assert caplog.records[-1].getMessage() == (
        "45 more lines about records left out in the last 10 s (at most 5 a window): "
        "45 failed: 408 Request Timeout (local)"
    )
    # The next window: recoveries, five written, the rest told at the
    # first line after the window (no call back needed).
    caplog.clear()
    for key in keys:
        failures(PublicationSucceeded(key=key, status=200, etag="e", expires=60, expires_at=0.0,
                                      kind="refresh"))
    assert len(caplog.records) == 5
    clock.now += 10.0
    failures(failed(PUB, clock))
    messages = [r.getMessage() for r in caplog.records]
    assert messages[5] == (
        "45 more lines about records left out in the last 10 s (at most 5 a window): "
        "45 recovered"
    )
    assert messages[6].startswith("PUBLISH sip:alice@example.com event=presence id=desk failed")
    assert len(failures) == 1


def test_lines_left_out_are_told_when_the_runtime_closes() -> None:
    """A runtime's failure log tells what it left out when it closes."""
    import asyncio

    from pua.core import EngineConfig
    from pua.runtime import PresenceRuntime
    from pua.runtime.transports import Listen

    async def run() -> list[str]:
        runtime = PresenceRuntime(EngineConfig(outbound_proxy="sip:127.0.0.1:9"),
                                  listen=[Listen("udp", "127.0.0.1", 0)])
        await runtime.start()
        got: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda record: got.append(record.getMessage())  # type: ignore[method-assign]
        logger = logging.getLogger("pua.engine")
        logger.addHandler(handler)
        try:
            for n in range(30):
                key = RecordKey(f"sip:q{n}@example.com", 1, "", 64, "")
                runtime._failure_log(PublicationFailed(key=key, status=503, reason="Busy",
                                                       retry_at=runtime.now() + 5))
            await runtime.close()
        finally:
            logger.removeHandler(handler)
        return got

    got = asyncio.run(run())
    assert len(got) == 21
    assert got[-1].startswith("10 more lines about records left out") and "10 failed: 503 Busy" in got[-1]
