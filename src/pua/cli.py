"""The ``pua`` command line."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import signal
import socket
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import click

from pua import __version__
from pua.agent import Agent
from pua.bodies import basic_pidf, summarize
from pua.client import ApiClient, ApiError
from pua.core import (
    EventPackage,
    PublicationFailed,
    PublicationSucceeded,
    SubscriptionFailed,
    default_registry,
)
from pua.core.requests import Destination, build_publish, parse_extra_headers, parse_next_hop
from pua.errors import PresenceError, PuaError, RemoteProtocolError, SipError, UsageError
from pua.runtime import Listen, SipStack
from pua.runtime.loop import run as run_loop
from pua.sip import Request, Response, SipUri, TimerConfig, parse_uri
from pua.sip.ids import call_id

__all__ = ["main"]

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


def _parse_sip_uri(value: str, hint: str) -> SipUri:
    try:
        uri = parse_uri(value)
    except RemoteProtocolError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if not isinstance(uri, SipUri) or uri.user is None:
        raise click.BadParameter("expected sip:user@domain", param_hint=hint)
    return uri


async def _resolve(target: Target) -> tuple[str, int]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(target.host, target.port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise SipError(f"cannot resolve {target.host}: {exc}") from None
    sockaddr = infos[0][4]
    return (str(sockaddr[0]), int(sockaddr[1]))


def _api_options(fn: Any) -> Any:
    """--api and --api-token, shared by the commands that can use a service."""
    fn = click.option(
        "--api-token",
        envvar="PUA_API_TOKEN",
        metavar="TOKEN",
        help="Bearer token of the API (or PUA_API_TOKEN).",
    )(fn)
    return click.option(
        "--api",
        envvar="PUA_API_URL",
        metavar="URL",
        help="Use a running `pua serve` at this URL (or PUA_API_URL).",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pua")
def main() -> None:
    """pua: a SIP Presence User Agent (PUBLISH and SUBSCRIBE on behalf of others)."""


@main.command()
@click.option(
    "--server",
    metavar="URI",
    help="Next hop, e.g. sip:127.0.0.1:5070 (the presence server).",
)
@_api_options
@click.option(
    "--pres-uri",
    required=True,
    metavar="URI",
    help="The presentity: Request-URI, From and To of the PUBLISH.",
)
@click.option(
    "--event",
    default="presence",
    show_default=True,
    help="Event package (presence, message-summary, dialog, dialog;sla, reg, ...).",
)
@click.option(
    "--body-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="File holding the body to publish.",
)
@click.option(
    "--basic",
    type=click.Choice(["open", "closed"]),
    help="Publish a minimal PIDF document with this basic status.",
)
@click.option(
    "--content-type",
    metavar="TYPE",
    help="Content-Type of the body (default: the event's usual type).",
)
@click.option(
    "--expires",
    type=click.IntRange(0, 2**32 - 1),
    default=3600,
    show_default=True,
    help="Requested lifetime in seconds.",
)
@click.option(
    "--etag", metavar="ETAG", help="SIP-If-Match: refresh, modify or remove this publication."
)
@click.option("--remove", is_flag=True, help="Remove the publication named by --etag (Expires: 0).")
@click.option(
    "--header",
    "extra_headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="Extra header to add (repeatable).",
)
@click.option(
    "--tuple-id", default="pua", show_default=True, help="Tuple id of the --basic document."
)
@click.option(
    "--t1",
    type=click.FloatRange(0.001, 60),
    default=0.5,
    show_default=True,
    help="RFC 3261 T1 in seconds; the transaction gives up after 64*T1.",
)
@click.option(
    "--keep",
    is_flag=True,
    help="Stay running, keep the publication refreshed; remove it on Ctrl-C or SIGTERM.",
)
@click.option(
    "--listen",
    multiple=True,
    metavar="PROTO:IP:PORT",
    help="With --keep: where to listen (Kamailio syntax, e.g. udp:127.0.0.1:5062).",
)
def publish(
    server: str,
    pres_uri: str,
    event: str,
    body_file: Path | None,
    basic: str | None,
    content_type: str | None,
    expires: int,
    etag: str | None,
    remove: bool,
    extra_headers: tuple[str, ...],
    tuple_id: str,
    t1: float,
    keep: bool,
    listen: tuple[str, ...],
    api: str | None,
    api_token: str | None,
) -> None:
    """Send one PUBLISH (RFC 3903) and print the answer.

    \b
    Initial:  --basic open            (or --body-file FILE)
    Refresh:  --etag E                (no body)
    Modify:   --etag E --basic closed
    Remove:   --etag E --remove

    Keep:     --basic open --keep     (refreshed until Ctrl-C, then removed)
    Service:  --api http://127.0.0.1:8765 --basic open  (a running `pua serve`
              publishes it and keeps it alive)

    Exits 0 on a 2xx, 1 on any other answer or a timeout, 2 on bad arguments.
    """
    presentity = _parse_sip_uri(pres_uri, "--pres-uri")
    if body_file is not None and basic is not None:
        raise click.UsageError("give --body-file or --basic, not both")
    if remove:
        if etag is None:
            raise click.UsageError("--remove needs --etag (the publication to remove)")
        if body_file is not None or basic is not None:
            raise click.UsageError("--remove sends no body")
        expires = 0
    if body_file is None and basic is None and etag is None:
        raise click.UsageError("an initial PUBLISH needs a body: --basic or --body-file")
    body = b""
    if basic is not None:
        body = basic_pidf(str(presentity), basic, tuple_id=tuple_id)
        if event != "presence":
            raise click.UsageError("--basic builds a presence document; use --event presence")
    elif body_file is not None:
        body = body_file.read_bytes()
    if body and content_type is None:
        package = PACKAGES.by_name(event)
        content_type = package.content_type if package is not None else None
        if content_type is None:
            raise click.UsageError(
                f"no default Content-Type for event {event!r}: give --content-type"
            )
    if any("\r" in line or "\n" in line for line in extra_headers):
        raise click.BadParameter("one header per --header", param_hint="--header")
    try:
        headers = list(parse_extra_headers(list(extra_headers)))
    except UsageError as exc:
        raise click.BadParameter(str(exc), param_hint="--header") from None

    if api is not None:
        if keep:
            raise click.UsageError("--keep is for the one-shot mode: the service keeps it anyway")
        _api_publish(
            api, api_token, str(presentity), event, body, content_type, expires, etag, headers
        )
        return
    if server is None:
        raise click.UsageError("give --server (send it ourselves) or --api (ask a pua service)")
    target = Target.from_uri(server)
    if keep:
        if remove or etag is not None:
            raise click.UsageError("--keep starts a new publication: no --etag or --remove")
        listens = _parse_listen(listen, target)
        sys.exit(
            run_loop(
                _keep_publishing(
                    target,
                    str(presentity),
                    event,
                    body,
                    content_type,
                    expires,
                    headers,
                    t1,
                    listens,
                )
            )
        )
    try:
        response = run_loop(
            _publish(
                target,
                presentity,
                event,
                body,
                content_type,
                expires,
                etag,
                headers,
                t1,
            )
        )
    except SipError as exc:
        click.echo(f"pua: error: {exc}", err=True)
        sys.exit(1)
    click.echo(response.start_line())
    for name in ("SIP-ETag", "Expires", "Min-Expires", "Retry-After"):
        field = response.headers.get(name)
        if field is not None:
            click.echo(f"{name}: {field}")
    if not response.is_success:
        click.echo(f"pua: error: {response.status} {response.reason}", err=True)
        sys.exit(1)


async def _publish(
    target: Target,
    presentity: SipUri,
    event: str,
    body: bytes,
    content_type: str | None,
    expires: int,
    etag: str | None,
    extra: list[tuple[str, str]],
    t1: float,
) -> Response:
    address = await _resolve(target)
    host = "::" if ":" in address[0] else "0.0.0.0"
    timers = TimerConfig(t1=t1, t2=max(4.0, t1))
    async with SipStack(listen=[Listen("udp", host, 0)], timers=timers) as stack:
        request: Request = build_publish(
            pres_uri=str(presentity),
            event=event,
            expires=expires,
            via=stack.via_for(address),
            ids=stack.ids,
            call_id=call_id(stack.ids),
            etag=etag,
            body=body or None,
            content_type=content_type,
            extra_headers=extra,
            user_agent=f"pua/{__version__}",
        )
        return await stack.request(request, address)


# ---------------------------------------------------------------------------
# Long-running commands: publish --keep, subscribe
# ---------------------------------------------------------------------------


def _say(line: str, *, err: bool = False) -> None:
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()


def _call(api: str, token: str | None, method: str, params: list[Any] | dict[str, Any]) -> Any:
    try:
        return ApiClient(api, token).call(method, params)
    except ApiError as exc:
        if exc.sip is not None:
            # The API answered: the SIP request failed.
            tail = ""
            if exc.sip.get("retrying"):
                tail = "; pua keeps retrying in the background"
                retry_at = exc.sip.get("retry_at")
                if isinstance(retry_at, int | float):
                    tail += f" (next try in {max(0.0, retry_at - time.time()):.0f} s)"
            _say(f"pua: error: the SIP request failed: {exc.code} {exc.message}{tail}", err=True)
        else:
            _say(f"pua: error: {exc}", err=True)
        sys.exit(1)


def _api_publish(
    api: str,
    token: str | None,
    pres_uri: str,
    event: str,
    body: bytes,
    content_type: str | None,
    expires: int,
    etag: str | None,
    extra: list[tuple[str, str]],
) -> None:
    headers = "\r\n".join(f"{n}: {v}" for n, v in extra) or "."
    params = [pres_uri, expires, event, content_type or ".", ".", etag or ".", ".", headers]
    if body:
        params.append(body.decode("utf-8", "replace"))
    result = _call(api, token, "pua.publish", params)
    if expires == 0:
        _say("removed")
        return
    _say(f"SIP-ETag: {result.get('SIP-ETag')}")
    _say(f"Expires: {result.get('Expires')}")


def _retry_text(retry_at: float | None) -> str:
    if retry_at is None:
        return ""
    return f", retrying in {max(0.0, retry_at - time.time()):.0f} s"


def _parse_listen(values: tuple[str, ...], target: Target) -> list[Listen]:
    if not values:
        return [target.default_listen()]
    try:
        return [Listen.parse(value) for value in values]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--listen") from None


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


def _agent(
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


async def _print_events(agent: Agent) -> None:
    """One line per publication result or subscription failure."""
    async for event in agent.events():
        if isinstance(event, PublicationSucceeded):
            _say(f"published ({event.kind}): SIP-ETag {event.etag}, Expires {event.expires}")
        elif isinstance(event, PublicationFailed | SubscriptionFailed):
            method = "PUBLISH" if isinstance(event, PublicationFailed) else "SUBSCRIBE"
            retry = _retry_text(event.retry_at)
            _say(f"pua: {method} failed: {event.status} {event.reason}{retry}", err=True)


async def _keep_publishing(
    target: Target,
    pres_uri: str,
    event: str,
    body: bytes,
    content_type: str | None,
    expires: int,
    extra: list[tuple[str, str]],
    t1: float,
    listen: list[Listen],
) -> int:
    stop = _stop_event()
    try:
        async with _agent(target, expires, t1, listen, event, content_type) as agent:
            printer = asyncio.ensure_future(_print_events(agent))
            try:
                publication = await agent.publish(
                    pres_uri,
                    body,
                    event=event,
                    expires=-1,
                    content_type=content_type,
                    extra_headers=extra,
                )
            except PresenceError as exc:
                _say(f"pua: error: {exc}", err=True)
                return 1
            await stop.wait()
            try:
                async with asyncio.timeout(64 * t1 + 5):
                    await publication.remove()
            except (PresenceError, TimeoutError) as exc:
                _say(f"pua: error: removing the publication: {exc or 'timeout'}", err=True)
                return 1
            finally:
                printer.cancel()
            _say("removed")
            return 0
    except SipError as exc:
        _say(f"pua: error: {exc}", err=True)
        return 1


@main.command()
@click.option(
    "--server",
    metavar="URI",
    help="Next hop, e.g. sip:127.0.0.1:5070 (the presence server).",
)
@_api_options
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
def subscribe(
    server: str,
    pres_uri: str,
    watcher: str,
    event: str,
    expires: int,
    listen: tuple[str, ...],
    t1: float,
    api: str | None,
    api_token: str | None,
) -> None:
    """Subscribe (RFC 6665) and print every NOTIFY until Ctrl-C or SIGTERM,
    then unsubscribe.  With --api a running `pua serve` subscribes (and
    keeps the subscription); follow its NOTIFYs with `pua watch`.

    Exits 0 when stopped by a signal, 1 when the subscription ends for good
    (rejected, or failed), 2 on bad arguments.
    """
    _parse_sip_uri(pres_uri, "--pres-uri")
    _parse_sip_uri(watcher, "--watcher")
    if api is not None:
        result = _call(api, api_token, "pua.subscribe", [pres_uri, watcher, event, expires])
        record = (result or {}).get("record") or {}
        _say(f"subscribed: {record.get('id', '')}")
        return
    if server is None:
        raise click.UsageError("give --server (subscribe ourselves) or --api (ask a pua service)")
    target = Target.from_uri(server)
    listens = _parse_listen(listen, target)
    sys.exit(run_loop(_watch(target, pres_uri, watcher, event, expires, t1, listens)))


async def _watch(
    target: Target,
    pres_uri: str,
    watcher: str,
    event: str,
    expires: int,
    t1: float,
    listen: list[Listen],
) -> int:
    stop = _stop_event()
    try:
        async with _agent(target, expires, t1, listen, event) as agent:
            printer = asyncio.ensure_future(_print_events(agent))
            try:
                subscription = agent.subscribe(pres_uri, watcher=watcher, event=event, expires=-1)
                subscription.start()
            except ValueError as exc:
                _say(f"pua: error: {exc}", err=True)
                return 2

            async def show() -> None:
                async for notification in subscription:
                    state = notification.state
                    if notification.reason:
                        state += f";reason={notification.reason}"
                    if notification.expires is not None:
                        state += f" (expires {notification.expires})"
                    summary = summarize(notification.content_type, notification.body)
                    _say(f"NOTIFY {state}: {summary}")

            reader = asyncio.ensure_future(show())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({reader, stopper}, return_when=asyncio.FIRST_COMPLETED)
            stopper.cancel()
            printer.cancel()
            if reader.done():
                _say(f"pua: subscription ended: {subscription.reason}", err=True)
                return 1
            reader.cancel()
            await subscription.unsubscribe()
            _say("unsubscribed")
            return 0
    except SipError as exc:
        _say(f"pua: error: {exc}", err=True)
        return 1


# ---------------------------------------------------------------------------
# The service and its clients
# ---------------------------------------------------------------------------


def _settings_options(fn: Any) -> Any:
    """One option per field of :class:`pua.config.Settings`, made from the
    field's metadata: its help, its default shown, ``--x/--no-x`` for a
    boolean, repeatable for a list.  Every option defaults to None, so the
    file and PUA_* variables are not overridden by flags not given."""
    from pua.config import Settings, flag_of  # noqa: PLC0415

    for item in reversed(fields(Settings)):
        meta = item.metadata
        flag = flag_of(item.name)
        default = item.default
        kwargs: dict[str, Any] = {"default": None}
        if isinstance(default, bool):
            decls = [f"{flag}/--no-{flag[2:]}", item.name]
            shown = flag if default else f"--no-{flag[2:]}"
        elif isinstance(default, tuple):
            decls = [flag, item.name]
            kwargs.update(multiple=True, metavar=meta.get("metavar"))
            shown = ", ".join(default) if default else "none"
        else:
            decls = [flag, item.name]
            if "choices" in meta:
                kwargs["type"] = click.Choice(list(meta["choices"]))
            else:
                kwargs["type"] = type(default) if default is not None else str
                kwargs["metavar"] = meta.get("metavar")
            shown = "unset" if default is None else str(default)
        kwargs["help"] = f"{meta['help']}.  [default: {shown}]"
        fn = click.option(*decls, **kwargs)(fn)
    return fn


@main.command()
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="TOML file with the settings (top level or a [pua] table).",
)
@click.option(
    "--print-config",
    is_flag=True,
    help="Print the effective settings and where each came from, then exit.",
)
@_settings_options
def serve(config_file: str | None, print_config: bool, **flags: Any) -> None:
    """Run the pua service: SIP, the engine, and the management API
    (JSON-RPC at /rpc, REST, /events, /metrics, the status page at /).

    Every setting also comes from the config file or PUA_<NAME>; a bad one
    stops the start with a message naming it (exit 2).
    """
    from pua.config import ConfigError, describe_settings, resolve_settings  # noqa: PLC0415
    from pua.service import configure_logging  # noqa: PLC0415
    from pua.service import serve as run_service  # noqa: PLC0415

    try:
        loaded = resolve_settings(config_file=config_file, flags=flags)
    except ConfigError as exc:
        _say(f"pua: config: {exc}", err=True)
        sys.exit(2)
    if print_config:
        click.echo(describe_settings(loaded), nl=False)
        return
    settings = loaded.settings
    configure_logging(settings.log_format, settings.log_level)

    def ready(service: Any) -> None:
        _say(f"pua serve: API {service.api_url}/rpc  status page {service.api_url}/")

    try:
        sys.exit(run_loop(run_service(settings, ready=ready)))
    except (PresenceError, SipError, PuaError) as exc:
        _say(f"pua: error: {exc}", err=True)
        sys.exit(1)


@main.command()
@_api_options
@click.option("--pres-uri", required=True, metavar="URI")
@click.option("--event", default="presence", show_default=True)
@click.option("--id", "record_id", default=".", help="The publication's id, if it has one.")
def unpublish(
    api: str | None, api_token: str | None, pres_uri: str, event: str, record_id: str
) -> None:
    """Ask a running service to remove a publication."""
    _call(_need_api(api), api_token, "pua.unpublish", [pres_uri, event, record_id])
    _say("removed")


@main.command()
@_api_options
@click.option("--pres-uri", required=True, metavar="URI")
@click.option("--watcher", required=True, metavar="URI")
@click.option("--event", default="presence", show_default=True)
def unsubscribe(
    api: str | None, api_token: str | None, pres_uri: str, watcher: str, event: str
) -> None:
    """Ask a running service to end a subscription."""
    _call(_need_api(api), api_token, "pua.unsubscribe", [pres_uri, watcher, event])
    _say("unsubscribed")


@main.command(name="list")
@_api_options
@click.option("--kind", type=click.Choice(["publication", "subscription"]))
def list_records(api: str | None, api_token: str | None, kind: str | None) -> None:
    """List the records of a running service."""
    records = _call(_need_api(api), api_token, "pua.list", [kind or "."])
    for record in records:
        who = record.get("watcher_uri") or ""
        _say(
            f"{record['kind']:<12} {record['state']:<12} {record['event']:<16} "
            f"{record['pres_uri']} {who}".rstrip()
        )


@main.command()
@_api_options
@click.argument("uri_or_id")
def show(api: str | None, api_token: str | None, uri_or_id: str) -> None:
    """Show the records of a presentity (or one record by id), as JSON."""
    records = _call(_need_api(api), api_token, "pua.show", [uri_or_id])
    _say(json.dumps(records, indent=2, default=str))
    if not records:
        sys.exit(1)


@main.command()
@_api_options
def watch(api: str | None, api_token: str | None) -> None:
    """Print the event stream of a running service until Ctrl-C."""
    client = ApiClient(_need_api(api), api_token)
    try:
        for event in client.events():
            who = (event.get("record") or {}).get("pres_uri", "")
            detail = event.get("summary") or event.get("reason") or event.get("etag") or ""
            _say(f"{event['type']} {who} {detail}".rstrip())
    except ApiError as exc:
        _say(f"pua: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass


def _need_api(api: str | None) -> str:
    if not api:
        raise click.UsageError("--api URL (or PUA_API_URL) is needed")
    return api
