"""Commands that ask a running service: unpublish, unsubscribe, list,
show, watch."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from pua.client import ApiClient, ApiError

from .app import api_options, call_api, main, need_api, say


@main.command()
@api_options
@click.argument("record", required=False, metavar="[ID]")
@click.option("--pres-uri", metavar="URI", help="The presentity (instead of ID).")
@click.option("--event", default="presence", show_default=True, help="With --pres-uri.")
@click.option(
    "--pres-id", default=None, metavar="TEXT", help="With --pres-uri: the publication's own id."
)
def unpublish(
    api: str | None,
    api_token: str | None,
    record: str | None,
    pres_uri: str | None,
    event: str,
    pres_id: str | None,
) -> None:
    """Ask a running service to remove a publication: the one whose ID
    `pua list` shows, or the one of --pres-uri (and --event, --pres-id)."""
    params = _one_record(record, pres_uri)
    if pres_uri:
        params.update(event=event, id=pres_id)
    call_api(need_api(api), api_token, "pua.unpublish", _given(params))
    say("removed")


@main.command()
@api_options
@click.argument("record", required=False, metavar="[ID]")
@click.option("--pres-uri", metavar="URI", help="The resource watched (instead of ID).")
@click.option("--watcher", metavar="URI", help="With --pres-uri: who watches.")
@click.option("--event", default="presence", show_default=True, help="With --pres-uri.")
def unsubscribe(
    api: str | None,
    api_token: str | None,
    record: str | None,
    pres_uri: str | None,
    watcher: str | None,
    event: str,
) -> None:
    """Ask a running service to end a subscription: the one whose ID
    `pua list` shows, or the one of --pres-uri and --watcher (and --event)."""
    params = _one_record(record, pres_uri)
    if pres_uri:
        if not watcher:
            raise click.UsageError("--pres-uri needs --watcher")
        params.update(watcher_uri=watcher, event=event)
    call_api(need_api(api), api_token, "pua.unsubscribe", _given(params))
    say("unsubscribed")


def _one_record(record: str | None, pres_uri: str | None) -> dict[str, Any]:
    if (record is None) == (pres_uri is None):
        raise click.UsageError("name the record: its ID (as `pua list` shows it) or --pres-uri")
    return {"pres_uri": record or pres_uri}


def _given(params: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in params.items() if value is not None}


def _expiry(record: dict[str, Any]) -> str:
    expires_at = record.get("expires_at")
    if not expires_at:
        return "-"
    left = expires_at - time.time()
    return f"{left:.0f}s" if left >= 0 else "past"


@main.command(name="list")
@api_options
@click.option(
    "--kind",
    type=click.Choice(["publication", "subscription"]),
    help="Only publications or only subscriptions (default: both).",
)
@click.option(
    "--source",
    metavar="NAME",
    help="Only records of this source (XMPP_PUBLISH, BLA_SUBSCRIBE, MI_PUBLISH...).",
)
@click.option("--json", "as_json", is_flag=True, help="The records as JSON, as the API gives them.")
def list_records(
    api: str | None, api_token: str | None, kind: str | None, source: str | None, as_json: bool
) -> None:
    """List the records of a running service: a table with each record's
    source (who asked for it), ID (what show, unpublish and unsubscribe
    take), state, expiry and ETag."""
    records = call_api(need_api(api), api_token, "pua.list", [kind or "."])
    if source is not None:
        records = [r for r in records if str(r.get("source", "")).upper() == source.upper()]
    if as_json:
        say(json.dumps(records, indent=2, default=str))
        return
    rows = [("KIND", "SOURCE", "STATE", "EVENT", "PRESENTITY", "WATCHER", "EXPIRES", "ETAG", "ID")]
    for record in records:
        rows.append(
            (
                record["kind"],
                record.get("source") or str(record.get("source_flag", "-")),
                record["state"],
                record["event"],
                record["pres_uri"],
                record.get("watcher_uri") or "-",
                _expiry(record),
                record.get("etag") or "-",
                record["id"],
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        say("  ".join([*cells, str(row[-1])]))


@main.command()
@api_options
@click.argument("uri_or_id")
@click.option("--json", "as_json", is_flag=True, help="The records as JSON, as the API gives them.")
def show(api: str | None, api_token: str | None, uri_or_id: str, as_json: bool) -> None:
    """Show the records of a presentity (or one record by its ID), with the
    body: what pua publishes, or the last NOTIFY's.  Exits 1 when none."""
    url = need_api(api)
    records = call_api(url, api_token, "pua.show", [uri_or_id])
    if as_json:
        say(json.dumps(records, indent=2, default=str))
    client = ApiClient(url, api_token)
    for record in [] if as_json else records:
        for name in (
            "id",
            "kind",
            "pres_uri",
            "watcher_uri",
            "event",
            "record_id",
            "state",
            "etag",
            "expires_at",
            "last_status",
            "last_reason",
        ):
            if record.get(name) not in (None, ""):
                say(f"{name}: {record[name]}")
        path = f"/{record['kind']}s/{record['id']}/body"
        try:
            content_type, body = client.get(path)
        except ApiError as exc:
            say("body: none" if exc.code == 404 else f"body: {exc}")
        else:
            say(f"body ({content_type}):")
            say(body.decode("utf-8", "replace").rstrip())
        say("")
    if not records:
        sys.exit(1)


def _watch_line(event: dict[str, Any]) -> str:
    """One line per event, naming its record."""
    stamp = time.strftime("%H:%M:%S")
    parts = [stamp, event["type"]]
    if event.get("pres_uri"):
        parts.append(event["pres_uri"])
    if event.get("watcher_uri"):
        parts.append(f"watcher={event['watcher_uri']}")
    if event.get("event"):
        parts.append(f"event={event['event']}")
    record = event.get("record") or {}
    state = event.get("state") or record.get("state")
    if state:
        parts.append(f"state={state}")
    if event.get("status"):
        parts.append(f"{event['status']} {event.get('reason') or ''}".rstrip())
    elif event.get("reason"):
        parts.append(f"reason={event['reason']}")
    if event.get("summary"):
        parts.append(str(event["summary"]))
    elif event.get("etag"):
        parts.append(f"etag={event['etag']}")
    return " ".join(parts)


@main.command()
@api_options
def watch(api: str | None, api_token: str | None) -> None:
    """Print the event stream of a running service until Ctrl-C: one line
    per event with its record (URI, watcher, event, state, reason)."""
    client = ApiClient(need_api(api), api_token)
    try:
        for event in client.events():
            say(_watch_line(event))
    except ApiError as exc:
        say(f"pua: error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        pass
