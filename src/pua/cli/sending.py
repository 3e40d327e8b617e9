"""What ``pua publish`` and ``pua subscribe`` share when they send
requests themselves: the next hop, the agent, printing its events."""

from __future__ import annotations

import asyncio
import ipaddress
import signal
import socket
from dataclasses import dataclass

import click

from pua import __version__
from pua.agent import Agent
from pua.core import (
    EventPackage,
    PublicationFailed,
    PublicationSucceeded,
    SubscriptionFailed,
    default_registry,
)
from pua.core.requests import Destination, parse_next_hop
from pua.errors import RemoteProtocolError, SipError, UsageError
from pua.runtime import Listen
from pua.sip import SipUri, parse_uri

from .app import retry_text, say

# The built-in event packages: names and default Content-Types.
PACKAGES = default_registry()


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: the next hop named by ``--server``."""

    host: str
    port: int
    transport: str

    @classmethod
    def from_uri(cls, text: str) -> Target:
        """``sip:host[:port][;transport=udp]`` -> Target (port 5060 by default),
        read by the engine's next-hop parser."""
        try:
            hop = parse_next_hop(text)
        except UsageError as exc:
            raise click.BadParameter(str(exc), param_hint="--server") from None
        if hop.transport not in ("udp", "tcp") or text.lower().startswith("sips:"):
            raise click.BadParameter(
                f"transport {hop.transport!r} is not supported (a sip: URI, udp or tcp)",
                param_hint="--server",
            )
        return cls(hop.host, hop.port, hop.transport)

    @property
    def uri(self) -> str:
        """The next hop as a SIP URI (the engine's outbound proxy)."""
        return Destination(self.host, self.port, self.transport).uri

    def default_listen(self) -> Listen:
        """Where to listen when --listen is not given: loopback for a
        server on loopback, every address otherwise (port chosen by the
        system)."""
        try:
            address = ipaddress.ip_address(self.host)
        except ValueError:
            return Listen(self.transport, "0.0.0.0", 0)
        if address.is_loopback:
            return Listen(self.transport, str(address), 0)
        return Listen(self.transport, "::" if address.version == 6 else "0.0.0.0", 0)


def sip_uri_option(value: str, hint: str) -> SipUri:
    try:
        uri = parse_uri(value)
    except RemoteProtocolError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if not isinstance(uri, SipUri) or uri.user is None:
        raise click.BadParameter("expected sip:user@domain", param_hint=hint)
    return uri


async def resolve_target(target: Target) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise SipError(f"cannot resolve {target.host}: {exc}") from None
    sockaddr = infos[0][4]
    return (str(sockaddr[0]), int(sockaddr[1]))


def listen_option(values: tuple[str, ...], target: Target) -> list[Listen]:
    if not values:
        return [target.default_listen()]
    try:
        return [Listen.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None


def stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def make_agent(
    target: Target,
    expires: int,
    t1: float,
    listen: list[Listen],
    event: str,
    content_type: str | None = None,
) -> Agent:
    agent = Agent(
        server=target.uri,
        listen=listen,
        default_expires=max(expires, 1),
        t1=t1,
        user_agent=f"pua/{__version__}",
    )
    if agent.registry.by_name(event) is None:
        # The command line sends any event the user names (the server
        # decides): one it does not know is registered as a package first.
        used = {int(package.flag) for package in agent.registry}
        flag = 1 << 16
        while flag in used:
            flag <<= 1
        agent.add_event(EventPackage(flag=flag, name=event, content_type=content_type))
    return agent


async def print_events(agent: Agent) -> None:
    """One line per publication result or subscription failure."""
    async for event in agent.events():
        if isinstance(event, PublicationSucceeded):
            say(f"published ({event.kind}): SIP-ETag {event.etag}, Expires {event.expires}")
        elif isinstance(event, PublicationFailed | SubscriptionFailed):
            method = "PUBLISH" if isinstance(event, PublicationFailed) else "SUBSCRIBE"
            retry = retry_text(event.retry_at)
            say(f"pua: {method} failed: {event.status} {event.reason}{retry}", err=True)
