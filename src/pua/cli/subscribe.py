"""``pua subscribe``: a subscription held by the command until stopped
(sent to ``--server``, or to the presentity's domain found by DNS), or
asked of a running service (``--api``)."""

from __future__ import annotations

import asyncio
import sys

import click

from pua.bodies import summarize
from pua.errors import SipError
from pua.runtime import Listen
from pua.runtime.loop import run as run_loop
from pua.sip.auth import Credential

from .app import api_options, call_api, main, say
from .sending import (
    Target,
    auth_options,
    credential_option,
    event_package,
    event_package_option,
    listen_option,
    make_agent,
    next_hop_options,
    packages,
    print_events,
    sip_uri_option,
    stop_event,
    wait_option,
)


@main.command()
@next_hop_options
@api_options
@click.option("--pres-uri", required=True, metavar="URI", help="The resource to watch.")
@click.option(
    "--watcher", required=True, metavar="URI", help="Who watches (From of the SUBSCRIBE)."
)
@click.option(
    "--event",
    default="presence",
    show_default=True,
    help="Event package (presence, presence.winfo, message-summary, dialog, reg, ...).",
)
@click.option(
    "--expires",
    type=click.IntRange(1, 2**32 - 1),
    default=3600,
    show_default=True,
    help="Lifetime asked for in each SUBSCRIBE; refreshed until stopped.",
)
@click.option(
    "--listen",
    multiple=True,
    metavar="PROTO:IP:PORT",
    help="Where NOTIFYs are received (Kamailio syntax; default: chosen for --server).",
)
@click.option(
    "--t1",
    type=click.FloatRange(0.001, 60),
    default=0.5,
    show_default=True,
    help="RFC 3261 T1 in seconds.",
)
@event_package_option
@auth_options
@wait_option("SUBSCRIBE")
def subscribe(
    server: str | None,
    dns_servers: tuple[str, ...],
    pres_uri: str,
    watcher: str,
    event: str,
    expires: int,
    listen: tuple[str, ...],
    t1: float,
    api: str | None,
    api_token: str | None,
    event_packages: tuple[str, ...],
    wait: bool,
    auth_user: str | None,
    auth_password_file: str | None,
) -> None:
    """Subscribe (RFC 6665) and print every NOTIFY until Ctrl-C or SIGTERM,
    then unsubscribe.  With --api a running `pua serve` subscribes (and
    keeps the subscription); follow its NOTIFYs with `pua watch`.

    Exits 0 when stopped by a signal, 1 when the subscription ends for good
    (rejected, or failed), 2 on bad arguments.
    """
    sip_uri_option(pres_uri, "--pres-uri")
    sip_uri_option(watcher, "--watcher")
    if api is not None:
        if event_packages:
            raise click.UsageError(
                "--event-package is for subscribing ourselves: a service takes packages"
                " from its events setting"
            )
        params = {
            "pres_uri": pres_uri,
            "watcher_uri": watcher,
            "event": event,
            "expires": expires,
            "wait": wait,
        }
        result = call_api(api, api_token, "pua.subscribe", params)
        record = (result or {}).get("record") or {}
        if wait:
            say(f"subscribed ({result.get('state')}): {record.get('id', '')}")
        else:
            say(f"handed over: {record.get('id', '')} ({record.get('state', '')})")
        return
    event_package(packages(event_packages), event)
    credential = credential_option(auth_user, auth_password_file)
    target = Target.from_uri(server) if server is not None else None
    listens = listen_option(listen, target)
    sys.exit(
        run_loop(
            _watch(
                target,
                pres_uri,
                watcher,
                event,
                expires,
                t1,
                listens,
                event_packages,
                credential,
                dns_servers,
            )
        )
    )


async def _watch(
    target: Target | None,
    pres_uri: str,
    watcher: str,
    event: str,
    expires: int,
    t1: float,
    listen: list[Listen],
    declared: tuple[str, ...],
    credential: Credential | None,
    dns_servers: tuple[str, ...],
) -> int:
    stop = stop_event()
    try:
        async with make_agent(
            target, expires, t1, listen, declared, credential=credential, dns_servers=dns_servers
        ) as agent:
            printer = asyncio.ensure_future(print_events(agent))
            try:
                subscription = agent.subscribe(pres_uri, watcher=watcher, event=event, expires=-1)
                subscription.start()
            except ValueError as exc:
                say(f"pua: error: {exc}", err=True)
                return 2

            async def show() -> None:
                async for notification in subscription:
                    state = notification.state
                    if notification.reason:
                        state += f";reason={notification.reason}"
                    if notification.expires is not None:
                        state += f" (expires {notification.expires})"
                    summary = summarize(notification.content_type, notification.body)
                    say(f"NOTIFY {state}: {summary}")

            reader = asyncio.ensure_future(show())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            printer.cancel()
            if reader.done():
                say(f"pua: subscription ended: {subscription.reason}", err=True)
                return 1
            reader.cancel()
            accepted = subscription.accepted
            await subscription.unsubscribe()
            if not accepted:
                # Nothing to end at the server: say so, not "unsubscribed".
                last = f" (last: {subscription.last_failure})" if subscription.last_failure else ""
                say(f"pua: stopped: the subscription was never accepted{last}", err=True)
                return 1
            say("unsubscribed")
            return 0
    except SipError as exc:
        say(f"pua: error: {exc}", err=True)
        return 1
