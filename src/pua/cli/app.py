"""The ``pua`` command group and what its commands share: the API options,
calling the API, printing."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import click

from pua import __version__
from pua.client import ApiClient, ApiError


def api_options(fn: Any) -> Any:
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
        help="Use a running `pua serve` at this URL, or IP:PORT as `pua serve --api` takes"
        " it (or PUA_API_URL).",
    )(fn)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pua")
def main() -> None:
    """pua: a SIP Presence User Agent (PUBLISH and SUBSCRIBE on behalf of others)."""
    # What goes wrong with a record (pua.runtime.failures) reaches the
    # terminal as the service's log has it; `pua serve` sets its own.
    logging.basicConfig(level=logging.WARNING, format="pua: %(message)s", stream=sys.stderr)


def say(line: str, *, err: bool = False) -> None:
    click.echo(line, err=err)
    (sys.stderr if err else sys.stdout).flush()


def call_api(api: str, token: str | None, method: str, params: list[Any] | dict[str, Any]) -> Any:
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
            say(f"pua: error: the SIP request failed: {exc.code} {exc.message}{tail}", err=True)
        else:
            say(f"pua: error: {exc}", err=True)
        sys.exit(1)


def retry_text(retry_at: float | None) -> str:
    if retry_at is None:
        return ""
    return f", retrying in {max(0.0, retry_at - time.time()):.0f} s"


def need_api(api: str | None) -> str:
    if not api:
        raise click.UsageError("--api URL (or PUA_API_URL) is needed")
    return api
