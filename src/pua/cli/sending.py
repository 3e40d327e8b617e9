"""What ``pua publish`` and ``pua subscribe`` share when they send
requests themselves: the next hop, the agent, printing its events."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import random
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from pua import __version__
from pua.agent import Agent
from pua.core import (
    EventPackage,
    EventRegistry,
    PublicationSucceeded,
    default_registry,
)
from pua.core.packages import parse_event_spec
from pua.core.requests import Destination, parse_next_hop
from pua.errors import RemoteProtocolError, SipError, TransportError, UsageError
from pua.runtime import Listen
from pua.runtime.resolver import Locator, Resolver, parse_dns_server
from pua.sip import SipUri, parse_uri
from pua.sip.auth import Credential
from pua.sip.locate import hop_of

from .app import say


@dataclass(frozen=True, slots=True)
class Target:
    """Where requests go: the next hop named by ``--server``."""

    host: str
    port: int
    transport: str

    @classmethod
    def from_uri(cls, text: str) -> Target:
        """``sip:host[:port][;transport=udp]``, or ``host[:port]`` alone, ->
        Target (port 5060 by default), read by the engine's next-hop parser."""
        if not text.lower().startswith(("sip:", "sips:")):
            text = f"sip:{text}"
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


async def resolve_target(
    target: Target | None, request_uri: str, dns_servers: tuple[str, ...]
) -> list[tuple[str, int]]:
    """The UDP addresses to try, in order: the --server's, else the
    Request-URI host's, located by RFC 3263 (NAPTR, SRV, A/AAAA)."""
    hop_text = target.uri if target is not None else request_uri
    try:
        hop = hop_of(hop_text)
        locator = Locator(Resolver(dns_servers), random.random)
        targets = await locator.locate(hop, ["udp"])
    except (TransportError, RemoteProtocolError) as exc:
        raise SipError(str(exc)) from None
    return [(t.host, t.port) for t in targets]


def next_hop_options(fn: Any) -> Any:
    """--server and --dns-server: where requests sent by the command go."""
    fn = dns_server_option(fn)
    return click.option(
        "--server",
        metavar="URI",
        help="Next hop, e.g. sip:127.0.0.1:5070 (the presence server); "
        "default: the presentity's domain, found by DNS (RFC 3263).",
    )(fn)


def wait_option(method: str) -> Callable[[Any], Any]:
    """--wait/--no-wait for a command that can ask a service (--api)."""

    def add(fn: Any) -> Any:
        return click.option(
            "--wait/--no-wait",
            default=True,
            show_default=True,
            help=f"With --api: wait for the outcome of the first {method}, or only hand it over.",
        )(fn)

    return add


def dns_server_option(fn: Any) -> Any:
    """--dns-server IP[:PORT] (repeatable): the service's dns_servers setting."""
    return click.option(
        "--dns-server",
        "dns_servers",
        multiple=True,
        metavar="IP[:PORT]",
        callback=_check_dns_servers,
        help="DNS server that finds the SIP server (NAPTR, SRV, A/AAAA; repeatable); "
        "default: the system's resolver.",
    )(fn)


def _check_dns_servers(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> tuple[str, ...]:
    for value in values:
        try:
            parse_dns_server(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--dns-server") from None
    return values


def listen_option(values: tuple[str, ...], target: Target | None) -> list[Listen]:
    if not values:
        if target is None:
            return [Listen("udp", "0.0.0.0", 0)]  # the server is found by DNS
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


def event_package_option(fn: Any) -> Any:
    """--event-package NAME=TYPE: an event pua has no package for (the
    command line's form of the service's ``events`` setting)."""
    return click.option(
        "--event-package",
        "event_packages",
        multiple=True,
        metavar="NAME=TYPE/SUBTYPE",
        help="Declare an event package pua does not know, e.g. "
        "as-feature-event=application/x-as-feature-event+xml (repeatable).",
    )(fn)


def packages(declared: tuple[str, ...]) -> EventRegistry:
    """The built-in packages and the declared ones (click errors for bad ones)."""
    registry = default_registry()
    for spec in declared:
        try:
            registry.add_custom(*parse_event_spec(spec))
        except UsageError as exc:
            raise click.BadParameter(str(exc), param_hint="--event-package") from None
    return registry


def event_package(registry: EventRegistry, event: str) -> EventPackage:
    """The package of ``event``: an unknown one is refused, as the service
    refuses it, naming the known ones and how to declare another."""
    try:
        return registry.lookup(event)
    except UsageError as exc:
        raise click.BadParameter(
            f"{exc}; here: --event-package NAME=TYPE/SUBTYPE", param_hint="--event"
        ) from None


def auth_options(fn: Any) -> Any:
    """--auth-user and --auth-password-file: who we are when challenged."""
    fn = click.option(
        "--auth-password-file",
        type=click.Path(exists=True, dir_okay=False),
        metavar="FILE",
        help="File holding the password for --auth-user (or PUA_AUTH_PASSWORD); "
        "a password is never taken as a flag's value.",
    )(fn)
    return click.option(
        "--auth-user",
        envvar="PUA_AUTH_USERNAME",
        metavar="NAME",
        help="Username answering digest challenges (401/407), or PUA_AUTH_USERNAME.",
    )(fn)


def credential_option(user: str | None, password_file: str | None) -> Credential | None:
    """The credential of --auth-user (its password from the file or
    PUA_AUTH_PASSWORD), or None."""
    if user is None:
        if password_file is not None:
            raise click.UsageError("--auth-password-file needs --auth-user")
        return None
    if password_file is not None:
        password = Path(password_file).read_text().rstrip("\r\n")
    else:
        password = os.environ.get("PUA_AUTH_PASSWORD", "")
    if not password:
        raise click.UsageError(
            "--auth-user needs a password: --auth-password-file FILE or PUA_AUTH_PASSWORD"
        )
    return Credential(username=user, password=password)


def make_agent(
    target: Target | None,
    expires: int,
    t1: float,
    listen: list[Listen],
    declared: tuple[str, ...] = (),
    credential: Credential | None = None,
    dns_servers: tuple[str, ...] = (),
) -> Agent:
    agent = Agent(
        server=target.uri if target is not None else None,
        dns_servers=dns_servers,
        listen=listen,
        default_expires=max(expires, 1),
        t1=t1,
        user_agent=f"pua/{__version__}",
        credentials=[credential] if credential is not None else [],
    )
    for spec in declared:
        agent.registry.add_custom(*parse_event_spec(spec))
    return agent


async def print_events(agent: Agent) -> None:
    """One line per publication result (failures are in the log)."""
    async for event in agent.events():
        if isinstance(event, PublicationSucceeded):
            say(f"published ({event.kind}): SIP-ETag {event.etag}, Expires {event.expires}")
