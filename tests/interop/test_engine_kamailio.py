"""The presence engine on real sockets against a real Kamailio presence server."""

from __future__ import annotations

import asyncio

import pytest

from pua.core import (
    EngineConfig,
    EventFlag,
    NotifyReceived,
    PublicationSucceeded,
    PublishInfo,
    SubscribeInfo,
    SubscriptionTerminated,
)
from pua.runtime import Listen, PresenceRuntime
from tests.peers.kamailio import KamailioPresence

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


def pidf(basic: str, note: str) -> bytes:
    # No tuple id: the engine gives the tuple its own, stable one.
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
        f"<tuple><status><basic>{basic}</basic></status><note>{note}</note></tuple></presence>"
    ).encode()


async def next_notify(queue: asyncio.Queue[NotifyReceived], predicate: object = None) -> NotifyReceived:
    async with asyncio.timeout(10):
        while True:
            notify = await queue.get()
            if predicate is None or predicate(notify):  # type: ignore[operator]
                return notify


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_presence_publish_then_watch_then_modify(kamailio: KamailioPresence, transport: str) -> None:
    """alice publishes, bob subscribes: the NOTIFY carries alice's PIDF with
    the engine's tuple id; a modify shows in the next NOTIFY; unsubscribing
    ends the subscription."""
    proxy = f"{kamailio.uri};transport={transport}"
    config = EngineConfig(outbound_proxy=proxy)
    async with PresenceRuntime(config, listen=[Listen(transport, "127.0.0.1", 0)]) as runtime:
        notifies: asyncio.Queue[NotifyReceived] = asyncio.Queue()
        runtime.add_listener(lambda e: notifies.put_nowait(e) if isinstance(e, NotifyReceived) else None)
        published = await runtime.publish(PublishInfo(pres_uri=ALICE, body=pidf("open", "at work"), expires=-1))
        assert isinstance(published, PublicationSucceeded)
        record = runtime.record(published.key)
        assert record is not None
        tuple_id = record.tuple_id  # type: ignore[union-attr]
        rows = kamailio.presentity_rows(username="alice", domain="example.com")
        assert [r["etag"] for r in rows] == [published.etag]

        await runtime.subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=600))
        first = await next_notify(notifies, lambda n: n.body)
        assert first.state == "active"
        assert first.document.tuples[0].id == tuple_id
        assert first.document.tuples[0].basic == "open"

        await runtime.publish(PublishInfo(pres_uri=ALICE, body=pidf("closed", "gone home"), expires=-1))
        second = await next_notify(notifies, lambda n: n.document is not None and n.document.tuples[0].basic == "closed")
        assert second.document.tuples[0].id == tuple_id
        assert "gone home" in second.body.decode()

        ended = await runtime.subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=0))
        assert isinstance(ended, SubscriptionTerminated)
        await runtime.publish(PublishInfo(pres_uri=ALICE, expires=0))
        assert kamailio.presentity_rows(username="alice", domain="example.com") == []


async def test_message_summary_and_dialog(kamailio: KamailioPresence) -> None:
    """message-summary and dialog publications reach a watcher through Kamailio."""
    config = EngineConfig(outbound_proxy=kamailio.uri)
    async with PresenceRuntime(config, listen=[Listen("udp", "127.0.0.1", 0)]) as runtime:
        notifies: asyncio.Queue[NotifyReceived] = asyncio.Queue()
        runtime.add_listener(lambda e: notifies.put_nowait(e) if isinstance(e, NotifyReceived) else None)
        mwi = b"Messages-Waiting: yes\r\nMessage-Account: sip:vm@example.com\r\nVoice-Message: 2/8 (0/2)\r\n"
        await runtime.publish(PublishInfo(pres_uri="sip:vm@example.com", event=EventFlag.MWI_EVENT, body=mwi))
        await runtime.subscribe(SubscribeInfo(pres_uri="sip:vm@example.com", watcher_uri=BOB,
                                              event=EventFlag.MWI_EVENT))
        summary = await next_notify(notifies, lambda n: n.body)
        assert summary.document.waiting is True
        assert summary.document.counts["voice-message"].new == 2

        dialog = (
            b'<?xml version="1.0"?><dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
            b'version="0" state="full" entity="sip:carol@example.com">'
            b'<dialog id="d1" direction="initiator"><state>confirmed</state></dialog></dialog-info>'
        )
        await runtime.publish(PublishInfo(pres_uri="sip:carol@example.com", event=EventFlag.DIALOG_EVENT, body=dialog))
        await runtime.subscribe(SubscribeInfo(pres_uri="sip:carol@example.com", watcher_uri=BOB,
                                              event=EventFlag.DIALOG_EVENT))
        got = await next_notify(notifies, lambda n: n.content_type == "application/dialog-info+xml" and n.document and n.document.dialogs)
        assert got.document.dialogs[0].state == "confirmed"
