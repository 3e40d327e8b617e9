"""What the API keeps of the engine's events (pua.api.activity), on a real
runtime bound to loopback: the last NOTIFY of a live subscription only,
its body cut at the limit, and a bounded history."""

from __future__ import annotations

from pua.api.activity import NOTIFY_BODY_LIMIT, Activity
from pua.core import (
    EngineConfig,
    NotifyReceived,
    PublicationRemoved,
    RecordKey,
    SubscribeInfo,
    SubscriptionTerminated,
)
from pua.runtime import Listen, PresenceRuntime
from tests.peers import find_free_port

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


def notify(key: RecordKey, body: bytes, state: str = "active") -> NotifyReceived:
    return NotifyReceived(key=key, state=state, reason=None, expires=600,
                          content_type="application/pidf+xml", body=body, document=None)


async def test_last_notify_is_kept_for_a_live_subscription_and_dropped_with_it() -> None:
    """A NOTIFY of a subscription the runtime holds is kept (its body cut at
    64 KiB, its summary made); one of a subscription it does not hold is
    not; the subscription's end drops it."""
    # Nobody listens at the next hop: the SUBSCRIBE stays in flight.
    config = EngineConfig(outbound_proxy=f"sip:127.0.0.1:{find_free_port()}")
    async with PresenceRuntime(config, listen=[Listen("udp", "127.0.0.1", 0)]) as runtime:
        activity = Activity(runtime)
        key = runtime.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=600))
        assert key is not None and runtime.record(key) is not None
        stranger = RecordKey(ALICE, key.event, "", key.source_flag, "sip:eve@example.com")

        big = b"<presence/>" + b" " * (NOTIFY_BODY_LIMIT + 10)
        entry = activity.observe(notify(key, big))
        activity.observe(notify(stranger, b"<presence/>"))
        last = activity.last_notify(key)
        assert last is not None and last.state == "active"
        assert len(last.body) == NOTIFY_BODY_LIMIT and last.size == len(big) and last.truncated
        assert last.view()["truncated"] is True and "body" not in last.view()
        assert activity.last_notify(stranger) is None
        assert entry["type"] == "notify" and entry["watcher_uri"] == BOB
        assert entry["summary"] == last.summary and entry["detail"].startswith("active")

        activity.observe(SubscriptionTerminated(key=key, reason="unsubscribed"))
        assert activity.last_notify(key) is None


async def test_history_is_bounded_and_oldest_first() -> None:
    """The history keeps the last N events, oldest first."""
    async with PresenceRuntime(listen=[Listen("udp", "127.0.0.1", 0)]) as runtime:
        activity = Activity(runtime, limit=3)
        for n in range(5):
            activity.observe(PublicationRemoved(key=RecordKey(f"sip:u{n}@example.com", 1, "", 64),
                                                reason="removed"))
        recent = activity.recent()
        assert [e["pres_uri"] for e in recent] == [f"sip:u{n}@example.com" for n in (2, 3, 4)]
        assert all(e["detail"] == "removed" and e["watcher_uri"] is None for e in recent)
