"""Tell a mailbox's phones that voicemail is waiting (RFC 3842).

    PUA_SERVER=sip:127.0.0.1:5060 python docs/examples/publish_voicemail.py
"""

import asyncio
import os

import pua
from pua.bodies import Counts, MessageSummary

SERVER = os.environ.get("PUA_SERVER", "sip:127.0.0.1:5060")
MAILBOX = "sip:1001@example.com"


async def main() -> None:
    summary = MessageSummary(
        waiting=True,
        account=MAILBOX,
        counts={"voice-message": Counts(new=2, old=8)},
    )
    async with pua.Agent(server=SERVER, cleanup_on_exit=False) as agent:
        # expires=-1: keep it published (refreshed) until removed.
        publication = await agent.publish(
            MAILBOX, summary.to_bytes(), event="message-summary", expires=-1
        )
        print("voicemail waiting published:", publication.etag)
        # A voicemail system would keep the agent running and call
        # publication.update(...) whenever the mailbox changes.
        await publication.remove()
        print("removed")


asyncio.run(main())
