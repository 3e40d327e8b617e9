"""Commands that ask a running service: unpublish, unsubscribe, list,
show, watch."""

from __future__ import annotations

import json
import sys

import click

from pua.client import ApiClient, ApiError

from .app import api_options, call_api, main, need_api, say


@main.command()
@api_options
@click.option("--pres-uri", required=True, metavar="URI")
@click.option("--event", default="presence", show_default=True)
@click.option("--id", "record_id", default=".", help="The publication's id, if it has one.")
def unpublish(
    api: str | None, api_token: str | None, pres_uri: str, event: str, record_id: str
) -> None:
    """Ask a running service to remove a publication."""
    call_api(need_api(api), api_token, "pua.unpublish", [pres_uri, event, record_id])
    say("removed")


@main.command()
@api_options
@click.option("--pres-uri", required=True, metavar="URI")
@click.option("--watcher", required=True, metavar="URI")
@click.option("--event", default="presence", show_default=True)
def unsubscribe(
    api: str | None, api_token: str | None, pres_uri: str, watcher: str, event: str
) -> None:
    """Ask a running service to end a subscription."""
    call_api(need_api(api), api_token, "pua.unsubscribe", [pres_uri, watcher, event])
    say("unsubscribed")


@main.command(name="list")
@api_options
@click.option("--kind", type=click.Choice(["publication", "subscription"]))
def list_records(api: str | None, api_token: str | None, kind: str | None) -> None:
    """List the records of a running service."""
    records = call_api(need_api(api), api_token, "pua.list", [kind or "."])
    for record in records:
        who = record.get("watcher_uri") or ""
        say(
            f"{record['kind']:<12} {record['state']:<12} {record['event']:<16} "
            f"{record['pres_uri']} {who}".rstrip()
        )


@main.command()
@api_options
@click.argument("uri_or_id")
def show(api: str | None, api_token: str | None, uri_or_id: str) -> None:
    """Show the records of a presentity (or one record by id), as JSON."""
    records = call_api(need_api(api), api_token, "pua.show", [uri_or_id])
    say(json.dumps(records, indent=2, default=str))
    if not records:
        sys.exit(1)


@main.command()
@api_options
def watch(api: str | None, api_token: str | None) -> None:
    """Print the event stream of a running service until Ctrl-C."""
    client = ApiClient(need_api(api), api_token)
    try:
        for event in client.events():
            who = (event.get("record") or {}).get("pres_uri", "")
            detail = event.get("summary") or event.get("reason") or event.get("etag") or ""
            say(f"{event['type']} {who} {detail}".rstrip())
    except ApiError as exc:
        say(f"pua: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
