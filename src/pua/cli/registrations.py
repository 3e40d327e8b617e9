"""``pua registrations``: the bindings a running service keeps, and
``pua register``: bind or unbind a contact through it."""

from __future__ import annotations

import json

import click

from .app import api_options, call_api, main, need_api, say


@main.command()
@api_options
@click.argument("aor", required=False, metavar="[AOR]")
@click.option(
    "--json", "as_json", is_flag=True, help="The bindings as JSON, as the API gives them."
)
def registrations(api: str | None, api_token: str | None, aor: str | None, as_json: bool) -> None:
    """List the registration bindings of a running service (of AOR, or all):
    address of record, contact, seconds left, q and the REGISTER's Call-ID."""
    result = call_api(need_api(api), api_token, "pua.registrations", {"aor": aor} if aor else {})
    bindings = result["bindings"]
    if as_json:
        say(json.dumps(result, indent=2, default=str))
        return
    if not bindings:
        say("no bindings")
        return
    for b in bindings:
        q = f" q={b['q']}" if b.get("q") else ""
        say(f"{b['aor']}  {b['contact']}  {b['expires']}s{q}  call-id {b['call_id']}")
    counters = result.get("counters", {})
    say(
        f"{len(bindings)} binding(s); {counters.get('registers', 0)} REGISTERs taken, "
        f"{counters.get('refused', 0)} refused, {counters.get('publications', 0)} publications sent"
    )


@main.command()
@api_options
@click.argument("aor")
@click.argument("contact")
@click.option(
    "--expires",
    type=click.IntRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Lifetime of the binding; 0 unbinds (default: usrloc_default_expires).",
)
@click.option("--q", "q", default=None, metavar="Q", help="The contact's q value (0 to 1).")
def register(
    api: str | None,
    api_token: str | None,
    aor: str,
    contact: str,
    expires: int | None,
    q: str | None,
) -> None:
    """Bind CONTACT to AOR in a running service (as a REGISTER would), or
    unbind it with --expires 0; prints the AOR's bindings."""
    params = {"aor": aor, "contact": contact, "expires": expires, "q": q}
    result = call_api(
        need_api(api), api_token, "pua.register", {k: v for k, v in params.items() if v is not None}
    )
    bindings = result["bindings"]
    for b in bindings:
        say(f"{b['aor']}  {b['contact']}  {b['expires']}s")
    say(f"{len(bindings)} binding(s) for {aor}")
