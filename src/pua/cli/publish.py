"""``pua publish``: one PUBLISH sent by the command (to ``--server``, or
the presentity's domain found by DNS), kept
alive by it (``--keep``), or asked of a running service (``--api``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from pua import __version__
from pua.bodies import basic_pidf
from pua.core.packages import prepare_body
from pua.core.requests import build_publish, parse_extra_headers
from pua.errors import BodyError, PresenceError, SipError, TransportError, UsageError
from pua.runtime import Listen, SipStack
from pua.runtime.loop import run as run_loop
from pua.sip import Request, Response, SipUri, TimerConfig
from pua.sip.auth import ALGORITHMS, Credential, choose_challenge, sign
from pua.sip.ids import call_id

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
    resolve_target,
    sip_uri_option,
    stop_event,
    wait_option,
)


@main.command()
@next_hop_options
@api_options
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
@event_package_option
@auth_options
@wait_option("PUBLISH")
def publish(
    server: str | None,
    dns_servers: tuple[str, ...],
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
    event_packages: tuple[str, ...],
    wait: bool,
    auth_user: str | None,
    auth_password_file: str | None,
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
    presentity = sip_uri_option(pres_uri, "--pres-uri")
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
    if api is None:
        # Checked as the service checks what it is asked to publish.
        package = event_package(packages(event_packages), event)
        if body and content_type is None:
            content_type = package.content_type
            if content_type is None:
                raise click.UsageError(f"event {event!r} cannot be published (subscribe only)")
        if body:
            try:
                body = prepare_body(package, body, content_type=content_type, tuple_id=tuple_id)
            except BodyError as exc:
                raise click.BadParameter(str(exc), param_hint="--body-file") from None
    elif event_packages:
        raise click.UsageError(
            "--event-package is for sending ourselves: a service takes packages from its"
            " events setting"
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
            api,
            api_token,
            str(presentity),
            event,
            body,
            content_type,
            expires,
            etag,
            headers,
            wait=wait,
        )
        return
    credential = credential_option(auth_user, auth_password_file)
    target = Target.from_uri(server) if server is not None else None
    if keep:
        if remove or etag is not None:
            raise click.UsageError("--keep starts a new publication: no --etag or --remove")
        listens = listen_option(listen, target)
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
                    event_packages,
                    credential,
                    dns_servers,
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
                credential,
                dns_servers,
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
    target: Target | None,
    presentity: SipUri,
    event: str,
    body: bytes,
    content_type: str | None,
    expires: int,
    etag: str | None,
    extra: list[tuple[str, str]],
    t1: float,
    credential: Credential | None,
    dns_servers: tuple[str, ...],
) -> Response:
    addresses = await resolve_target(target, str(presentity), dns_servers)
    timers = TimerConfig(t1=t1, t2=max(4.0, t1))
    failures: list[str] = []
    for address in addresses:
        host = "::" if ":" in address[0] else "0.0.0.0"
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
            try:
                response = await stack.request(request, address)
                if response.status in (401, 407) and credential is not None:
                    response = await _authenticated(stack, request, response, address, credential)
            except TransportError as exc:
                # RFC 3263 §4.3: on to the next server after a transport error.
                failures.append(f"{address[0]}:{address[1]}: {exc}")
                continue
        return response
    raise TransportError(f"every server failed: {'; '.join(failures)}")


async def _authenticated(
    stack: SipStack,
    request: Request,
    response: Response,
    address: tuple[str, int],
    credential: Credential,
) -> Response:
    """The same PUBLISH again after a challenge, a new transaction (new
    branch, CSeq 2), with the answer to the strongest challenge; once."""
    proxy = response.status == 407
    challenges = response.proxy_authenticate if proxy else response.www_authenticate
    allowed = [a for a in ALGORITHMS if credential.answers(a)]
    challenge = choose_challenge(challenges, proxy=proxy, can_answer=allowed)
    if challenge is None:
        return response
    request.headers.set("Via", str(stack.via_for(address)))
    request.headers.set("CSeq", f"2 {request.method}")
    sign(request, challenge, credential, nc=1, cnonce=stack.ids.token(16))
    return await stack.request(request, address)


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
    *,
    wait: bool,
) -> None:
    params: dict[str, object] = {
        "pres_uri": pres_uri,
        "expires": expires,
        "event": event,
        "content_type": content_type if body else None,
        "etag": etag,
        "extra_headers": [f"{n}: {v}" for n, v in extra],
        "body": body.decode("utf-8", "replace") if body else None,
        "wait": wait,
    }
    result = call_api(api, token, "pua.publish", {k: v for k, v in params.items() if v is not None})
    record = result.get("record") or {}
    if not wait:
        say(f"handed over: {record.get('id', '')} ({record.get('state', '')})")
        return
    if expires == 0:
        say("removed")
        return
    say(f"SIP-ETag: {result.get('SIP-ETag')}")
    say(f"Expires: {result.get('Expires')}")
    say(f"id: {record.get('id', '')}")


async def _keep_publishing(
    target: Target | None,
    pres_uri: str,
    event: str,
    body: bytes,
    content_type: str | None,
    expires: int,
    extra: list[tuple[str, str]],
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
                publication = await agent.publish(
                    pres_uri,
                    body,
                    event=event,
                    expires=-1,
                    content_type=content_type,
                    extra_headers=extra,
                )
            except PresenceError as exc:
                say(f"pua: error: {exc}", err=True)
                return 1
            await stop.wait()
            try:
                async with asyncio.timeout(64 * t1 + 5):
                    await publication.remove()
            except (PresenceError, TimeoutError) as exc:
                say(f"pua: error: removing the publication: {exc or 'timeout'}", err=True)
                return 1
            finally:
                printer.cancel()
            say("removed")
            return 0
    except SipError as exc:
        say(f"pua: error: {exc}", err=True)
        return 1
