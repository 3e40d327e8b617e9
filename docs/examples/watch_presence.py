"""Watch a colleague's presence and print what the server says.

    PUA_SERVER=sip:127.0.0.1:5060 python docs/examples/watch_presence.py
"""

import asyncio
import os

import pua

SERVER = os.environ.get("PUA_SERVER", "sip:127.0.0.1:5060")
COLLEAGUE = os.environ.get("PUA_WATCH", "sip:alice@example.com")


async def main() -> None:
    async with pua.Agent(server=SERVER) as agent:
        async with agent.subscribe(COLLEAGUE, watcher="sip:bob@example.com", expires=600) as sub:
            await sub.wait_active()
            async with asyncio.timeout(30):
                async for notification in sub:
                    presence = notification.document
                    if presence is None:
                        print("NOTIFY", notification.state, "(no presence document yet)")
                        continue
                    notes = [t.notes for t in presence.tuples]
                    print("NOTIFY", notification.state, presence.basic, notes)
                    break
        print("subscription ended:", sub.reason)


asyncio.run(main())
