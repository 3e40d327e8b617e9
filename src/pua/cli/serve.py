"""``pua serve``: the service, configured from one table of settings."""

from __future__ import annotations

import sys
from dataclasses import fields
from typing import Any

import click

from pua.errors import PresenceError, PuaError, SipError
from pua.runtime.loop import run as run_loop

from .app import main, say


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
        if meta.get("from_file"):
            # A secret comes from a file, never as the flag's own value.
            decls = [flag, item.name]
            kwargs.update(type=click.Path(dir_okay=False), metavar=meta.get("metavar"))
            shown = "unset"
        elif isinstance(default, bool):
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
        say(f"pua: config: {exc}", err=True)
        sys.exit(2)
    if print_config:
        click.echo(describe_settings(loaded), nl=False)
        return
    settings = loaded.settings
    configure_logging(settings.log_format, settings.log_level)

    def ready(service: Any) -> None:
        say(f"pua serve: API {service.api_url}/rpc  status page {service.api_url}/")

    try:
        sys.exit(run_loop(run_service(settings, ready=ready)))
    except (PresenceError, SipError, PuaError) as exc:
        say(f"pua: error: {exc}", err=True)
        sys.exit(1)
