"""Handle a subscription the server refuses.

A SUBSCRIBE can be rejected at once (a 4xx answer) or later (a NOTIFY with
Subscription-State: terminated;reason=rejected).  Either way
`wait_active()` raises SubscribeError and iteration ends with `sub.reason`.

    PUA_SERVER=sip:127.0.0.1:5060 python docs/examples/rejected_subscription.py
"""

import asyncio
import os

import pua
from pua.core import EventPackage

SERVER = os.environ.get("PUA_SERVER", "sip:127.0.0.1:5060")


async def main() -> None:
    async with pua.Agent(server=SERVER) as agent:
        # An event package the server does not support: it answers 489.
        # pua sends only events it knows: register it first (the seed's add_event).
        agent.add_event(EventPackage(flag=1 << 16, name="x-unsupported", content_type=None))
        sub = agent.subscribe(
            "sip:alice@example.com", watcher="sip:bob@example.com", event="x-unsupported"
        )
        try:
            await sub.wait_active()
        except pua.SubscribeError as error:
            print("rejected:", error.reason)
        async for notification in sub:  # ends at once: the subscription is over
            print("unexpected", notification)


asyncio.run(main())
