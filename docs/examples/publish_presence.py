"""Publish presence for alice, change it, then take it back.

    PUA_SERVER=sip:127.0.0.1:5060 python docs/examples/publish_presence.py
"""

import asyncio
import os

import pua
from pua.bodies import Presence, Tuple

SERVER = os.environ.get("PUA_SERVER", "sip:127.0.0.1:5060")
ALICE = "sip:alice@example.com"


def presence(basic: str, note: str) -> bytes:
    # The tuple id stays the same across updates, so watchers see one
    # tuple change rather than a new one appear.
    desk = Tuple(id="desk", basic=basic, notes=(note,))
    return Presence(entity=ALICE, tuples=(desk,)).to_bytes()


async def main() -> None:
    async with pua.Agent(server=SERVER) as agent:
        publication = await agent.publish(ALICE, presence("open", "At my desk"), expires=3600)
        print("published:", publication.state, publication.etag)

        await publication.update(presence("closed", "In a meeting"))
        print("updated:", publication.state, publication.etag)

        await publication.remove()
        print("removed:", publication.state)


asyncio.run(main())
