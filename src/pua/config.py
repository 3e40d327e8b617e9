"""Settings of the pua service: the seed's parameters and the service's own.

Each setting can come from a TOML file (top-level keys, or a ``[pua]``
table), from an environment variable ``PUA_<NAME>`` and from a command-line
flag; a flag beats the environment, which beats the file, which beats the
default.  A bad value stops the start with a :class:`ConfigError` naming the
setting and where the value came from.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pua.errors import PuaError, RemoteProtocolError
from pua.runtime.transports import Listen
from pua.sip.uri import SipUri, parse_uri

__all__ = ["ConfigError", "Settings", "load_settings"]

DB_SCHEMES = ("sqlite", "postgres", "postgresql", "mysql")
DB_MODES = ("write-back", "write-through")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(PuaError):
    """A setting has a value pua cannot use."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``pua serve`` is configured with."""

    # The seed's parameters, same names, same defaults.
    hash_size: int = 9
    db_url: str | None = None
    db_table: str = "pua"
    min_expires: int = 0
    default_expires: int = 3600
    update_period: int = 30
    # The service's own.
    listen: tuple[str, ...] = ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060")
    outbound_proxy: str | None = None
    db_mode: str = "write-back"
    api: str = "127.0.0.1:8765"
    api_token: str | None = None
    data_dir: str = "./var"
    refresh_margin: float = 32.0
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    cleanup_on_exit: bool = False
    tls_certificate: str | None = None
    tls_private_key: str | None = None
    tls_ca_file: str | None = None
    tls_verify: bool = True
    log_format: str = "text"
    log_level: str = "info"
    user_agent: str = "pua"

    @property
    def listen_addresses(self) -> list[Listen]:
        """The parsed listen addresses."""
        return [Listen.parse(item) for item in self.listen]

    @property
    def api_address(self) -> tuple[str, int]:
        """(host, port) of the management API."""
        return _split_hostport(self.api, "api")

    @property
    def api_on_loopback(self) -> bool:
        """True when the API is reachable from this machine only."""
        host = self.api_address[0]
        return host == "localhost" or ipaddress.ip_address(host).is_loopback


def _split_hostport(text: str, name: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{name}: expected IP:PORT, not {text!r}")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(f"{name}: {host!r} is not an IP address") from None
    return host, int(port)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a value from TOML, the environment or a flag into the setting's type."""
    where = f"{name} (from {source})"
    defaults = {f.name: f.default for f in fields(Settings)}
    default = defaults[name]
    if name == "listen":
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of PROTO:IP:PORT")
        return tuple(value)
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in (
            "1",
            "true",
            "yes",
            "on",
            "0",
            "false",
            "no",
            "off",
        ):
            return value.lower() in ("1", "true", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, not {value!r}")
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ConfigError(f"{where}: expected an integer, not {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, not {value!r}") from None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{where}: expected a number, not {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, not {value!r}") from None
    if value is None or isinstance(value, str):
        return value or None if default is None else value
    raise ConfigError(f"{where}: expected text, not {value!r}")


def _check(settings: Settings, sources: Mapping[str, str]) -> None:
    def fail(name: str, message: str) -> ConfigError:
        return ConfigError(f"{name} (from {sources.get(name, 'default')}): {message}")

    if not 1 <= settings.hash_size <= 20:
        raise fail("hash_size", f"must be between 1 and 20, not {settings.hash_size}")
    if settings.min_expires < 0:
        raise fail("min_expires", f"must be 0 or more, not {settings.min_expires}")
    if settings.default_expires <= 0:
        raise fail("default_expires", f"must be more than 0, not {settings.default_expires}")
    if settings.update_period < 0 or 0 < settings.update_period <= 5:
        # As in Kamailio: 0 turns the timer off; 1..5 leaves no time to work.
        raise fail("update_period", f"must be 0 or more than 5, not {settings.update_period}")
    if settings.db_mode not in DB_MODES:
        raise fail("db_mode", f"must be one of {', '.join(DB_MODES)}, not {settings.db_mode!r}")
    if settings.log_format not in LOG_FORMATS:
        raise fail("log_format", f"must be text or json, not {settings.log_format!r}")
    if settings.log_level not in LOG_LEVELS:
        raise fail(
            "log_level", f"must be one of {', '.join(LOG_LEVELS)}, not {settings.log_level!r}"
        )
    if not settings.db_table.replace("_", "").isalnum():
        raise fail("db_table", f"must be a plain table name, not {settings.db_table!r}")
    if settings.db_url is not None:
        scheme = settings.db_url.partition("://")[0].split("+")[0].lower()
        if "://" not in settings.db_url or scheme not in DB_SCHEMES:
            raise fail("db_url", "expected sqlite:///path, postgresql://..., or mysql://...")
    if not settings.listen:
        raise fail("listen", "at least one address is needed")
    if any(item.lower().startswith("tls:") for item in settings.listen):
        if not settings.tls_certificate or not settings.tls_private_key:
            raise fail(
                "tls_certificate", "a tls listen address needs tls_certificate and tls_private_key"
            )
        from pua.runtime.tls import server_context  # noqa: PLC0415

        try:
            server_context(settings.tls_certificate, settings.tls_private_key)
        except ValueError as exc:
            raise fail("tls_certificate", str(exc)) from None
    if settings.tls_ca_file is not None:
        from pua.runtime.tls import client_context  # noqa: PLC0415

        try:
            client_context(settings.tls_ca_file)
        except ValueError as exc:
            raise fail("tls_ca_file", str(exc)) from None
    try:
        settings.listen_addresses  # noqa: B018 - parsing is the check
    except ValueError as exc:
        raise fail("listen", str(exc)) from None
    if settings.outbound_proxy is not None:
        try:
            uri = parse_uri(settings.outbound_proxy)
        except RemoteProtocolError as exc:
            raise fail("outbound_proxy", str(exc)) from None
        if not isinstance(uri, SipUri):
            raise fail("outbound_proxy", "must be a sip: or sips: URI")
    try:
        _split_hostport(settings.api, "api")
    except ConfigError as exc:
        raise fail("api", str(exc).partition(": ")[2]) from None
    if not settings.api_on_loopback and not settings.api_token:
        raise fail(
            "api_token", f"is required when the API listens beyond loopback ({settings.api})"
        )
    if not 0 < settings.t1 <= settings.t2 or settings.t4 <= 0:
        raise fail("t1", "timers need 0 < t1 <= t2 and t4 > 0")
    if settings.refresh_margin < 0:
        raise fail("refresh_margin", "must be 0 or more")


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the defaults, the file, ``PUA_*`` variables and flags
    (in that order of strength).  Raises ConfigError on anything unusable."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    names = {f.name for f in fields(Settings)}
    if config_file is not None:
        path = Path(config_file)
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        table = data.get("pua", data)
        if not isinstance(table, dict):
            raise ConfigError(f"config file {path}: [pua] must be a table")
        unknown = sorted(set(table) - names - {"pua"})
        if unknown:
            raise ConfigError(f"config file {path}: unknown setting(s): {', '.join(unknown)}")
        for name, value in table.items():
            if name in names:
                values[name] = _coerce(name, value, str(path))
                sources[name] = str(path)
    env = os.environ if environ is None else environ
    for name in names:
        variable = f"PUA_{name.upper()}"
        if variable in env:
            values[name] = _coerce(name, env[variable], variable)
            sources[name] = variable
    for name, value in (flags or {}).items():
        if name not in names:
            raise ConfigError(f"unknown setting {name}")
        if value is None or value == ():
            continue
        flag = "--" + name.replace("_", "-")
        values[name] = _coerce(name, value, flag)
        sources[name] = flag
    settings = Settings(**values)
    _check(settings, sources)
    return settings
