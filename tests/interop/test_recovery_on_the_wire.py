"""The engine's recoveries as SIPp sees them on the wire.

Each SIPp scenario checks the requests it gets (a 400 with a Warning and a
failed call when one breaks the rules), so ``failed == 0`` says the recovery
was what RFC 3903 / RFC 6665 and DESIGN ask for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from pua.core import (
    EngineConfig,
    NotifyReceived,
    PublicationSucceeded,
    PublishInfo,
    SubscribeInfo,
    SubscriptionTerminated,
)
from pua.core.events import EngineEvent
from pua.errors import PublishError
from pua.runtime import Listen, PresenceRuntime
from tests.conftest import peer_or_skip
from tests.peers.sipp import SippUAS, subscribe_terminated_uas

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


def runtime_for(uas: SippUAS) -> PresenceRuntime:
    return PresenceRuntime(
        EngineConfig(outbound_proxy=uas.uri), listen=[Listen("udp", "127.0.0.1", 0)]
    )


async def wait_event(runtime: PresenceRuntime, match: Callable[[EngineEvent], bool],
                     seconds: float = 15) -> EngineEvent:
    """The first engine event that ``match`` accepts."""
    loop = asyncio.get_running_loop()
    found: asyncio.Future[EngineEvent] = loop.create_future()

    def listener(event: EngineEvent) -> None:
        if not found.done() and match(event):
            found.set_result(event)

    runtime.add_listener(listener)
    try:
        async with asyncio.timeout(seconds):
            return await found
    finally:
        runtime.remove_listener(listener)


async def test_412_on_refresh_is_recovered_with_the_stored_body(
    sipp_uas: Callable[[str], SippUAS],
) -> None:
    """Initial 200 (Expires 4), the refresh gets 412, the engine re-publishes
    the same body without SIP-If-Match and gets the second ETag."""
    uas = sipp_uas("publish_412_on_refresh")
    async with runtime_for(uas) as runtime:
        second = asyncio.ensure_future(wait_event(
            runtime, lambda e: isinstance(e, PublicationSucceeded) and e.etag.startswith("e2-")
        ))
        first = await runtime.publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=-1))
        assert isinstance(first, PublicationSucceeded) and first.etag.startswith("e1-")
        recovered = await second
        assert recovered.kind == "initial"  # type: ignore[union-attr]
        assert runtime.counters()["recoveries_412"] == 1
        # the refresh was a record deadline: its lateness was measured
        assert runtime.timer_lateness().count >= 1
    stats = uas.stop(timeout=2)
    assert stats.failed == 0, stats.errors
    assert stats.successful >= 1


async def test_423_adopts_min_expires(sipp_uas: Callable[[str], SippUAS]) -> None:
    """423 with Min-Expires 1800: the same PUBLISH again at once with Expires 1800."""
    uas = sipp_uas("publish_423_then_200")
    async with runtime_for(uas) as runtime:
        ok = await runtime.publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=60))
        assert isinstance(ok, PublicationSucceeded) and ok.expires == 1800
    stats = uas.stop(timeout=2)
    assert stats.failed == 0, stats.errors


async def test_503_retry_after_is_honoured(sipp_uas: Callable[[str], SippUAS]) -> None:
    """503 with Retry-After: 1: the waiting call answers with the 503 and
    when pua tries again (a second later, as the server asked); that try
    succeeds in the background."""
    uas = sipp_uas("publish_503_retry_after")
    async with runtime_for(uas) as runtime:
        succeeded = asyncio.ensure_future(
            wait_event(runtime, lambda e: isinstance(e, PublicationSucceeded))
        )
        with pytest.raises(PublishError) as failed:
            await runtime.publish(PublishInfo(pres_uri=ALICE, body=BODY, expires=60))
        assert failed.value.status == 503 and failed.value.retrying
        assert failed.value.retry_at is not None
        assert failed.value.retry_at - runtime.now() > 0.5  # Retry-After, not an instant retry
        ok = await succeeded
        assert isinstance(ok, PublicationSucceeded)
    stats = uas.stop(timeout=2)
    assert stats.failed == 0, stats.errors


async def test_481_on_refresh_opens_a_new_dialog(sipp_uas: Callable[[str], SippUAS]) -> None:
    """The refresh gets 481: the engine subscribes again with a new Call-ID,
    and the NOTIFY of the new dialog arrives."""
    uas = sipp_uas("subscribe_481_on_refresh")
    async with runtime_for(uas) as runtime:
        call_ids: list[str] = []

        def note(event: EngineEvent) -> None:
            if isinstance(event, NotifyReceived):
                record = runtime.record(event.key)
                assert record is not None
                call_ids.append(record.call_id)  # type: ignore[union-attr]

        runtime.add_listener(note)
        runtime.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=-1))
        await wait_event(runtime, lambda e: isinstance(e, NotifyReceived) and len(call_ids) >= 2)
        assert call_ids[0] != call_ids[1]
    stats = uas.stop(timeout=2)
    assert stats.failed == 0, stats.errors
    assert stats.successful >= 1


@pytest.mark.parametrize(("reason", "retry_after"), [("deactivated", None), ("probation", 1)])
async def test_terminated_notify_resubscribes(reason: str, retry_after: int | None) -> None:
    """terminated;reason=deactivated resubscribes at once, probation after
    retry-after: a second dialog gets its NOTIFY."""
    uas = peer_or_skip(lambda: subscribe_terminated_uas(reason, retry_after=retry_after))
    with uas:
        async with runtime_for(uas) as runtime:
            seen: list[str] = []
            runtime.add_listener(
                lambda e: seen.append(e.state) if isinstance(e, NotifyReceived) else None
            )
            runtime.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=-1))
            await wait_event(runtime, lambda e: isinstance(e, NotifyReceived) and seen.count("active") >= 2)
            assert seen[:3] == ["active", "terminated", "active"]
        stats = uas.stop(timeout=2)
    assert stats.failed == 0, stats.errors


async def test_terminated_rejected_stops() -> None:
    """terminated;reason=rejected: the subscription ends, nothing more is sent."""
    uas = peer_or_skip(lambda: subscribe_terminated_uas("rejected"))
    with uas:
        async with runtime_for(uas) as runtime:
            runtime.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=-1))
            ended = await wait_event(runtime, lambda e: isinstance(e, SubscriptionTerminated))
            assert ended.reason == "rejected"  # type: ignore[union-attr]
            assert runtime.counts()["records"] == 0
        stats = uas.stop(timeout=2)
    assert stats.failed == 0, stats.errors
    assert stats.successful == 1
