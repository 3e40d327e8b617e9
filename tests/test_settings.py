"""The settings table: every setting has help and a `pua serve` flag, the
effective settings can be printed with their sources, extra event packages
are checked."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import click
import pytest

from pua.cli import serve
from pua.config import ConfigError, Settings, flag_of, load_settings, resolve_settings


def _options() -> dict[str, click.Option]:
    return {p.name: p for p in serve.params if isinstance(p, click.Option) and p.name}


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUA_")}
    return {**env, **extra}


def test_every_setting_has_help_and_a_flag() -> None:
    """Each field of Settings has help text and a `pua serve` option whose
    help shows the default; lists are repeatable, booleans --x/--no-x."""
    options = _options()
    for item in fields(Settings):
        assert item.metadata.get("help"), f"{item.name} has no help text"
        option = options.get(item.name)
        assert option is not None, f"{item.name} has no flag"
        assert flag_of(item.name) in option.opts
        assert option.help and "[default: " in option.help, item.name
        if isinstance(item.default, bool):
            assert option.secondary_opts == ["--no-" + flag_of(item.name)[2:]]
        if item.metadata.get("from_file"):
            assert not option.multiple and option.metavar == "FILE", item.name
        elif isinstance(item.default, tuple):
            assert option.multiple, item.name
    extra = set(options) - {f.name for f in fields(Settings)}
    assert extra == {"config_file", "print_config"}


def test_existing_flag_names_keep_working() -> None:
    """The flags `pua serve` had before the table still exist, and the new
    ones are there."""
    flags = {opt for p in serve.params for opt in (*p.opts, *getattr(p, "secondary_opts", []))}
    assert {
        "--config", "--listen", "--api", "--api-token", "--db-url", "--db-table", "--db-mode",
        "--data-dir", "--hash-size", "--min-expires", "--default-expires", "--update-period",
        "--outbound-proxy", "--cleanup-on-exit", "--no-cleanup-on-exit", "--tls-certificate",
        "--tls-private-key", "--tls-ca-file", "--tls-verify", "--no-tls-verify",
        "--log-format", "--log-level",
        "--t1", "--t2", "--t4", "--refresh-margin", "--user-agent", "--event", "--print-config",
    } <= flags


def test_print_config_shows_values_sources_and_masks_secrets(tmp_path: Path) -> None:
    """--print-config prints every setting with its source (default, file,
    PUA_*, flag), masks the token and the database password, exits 0 and
    starts nothing (the data directory is not made)."""
    config = tmp_path / "pua.toml"
    config.write_text(
        'db_url = "postgresql://pua:hunter2@db.example.com/pua"\n'
        'default_expires = 1800\nevents = ["as-feature-event=application/x-as-feature-event+xml"]\n'
    )
    data_dir = tmp_path / "var"
    result = subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--config", str(config), "--print-config",
         "--t1", "0.25", "--api-token", "s3cret-token", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, check=False,
        env=_clean_env(PUA_MIN_EXPIRES="60"),
    )
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" = ", 1) for line in result.stdout.splitlines())
    assert set(lines) == {f.name for f in fields(Settings)}
    assert lines["hash_size"] == "9  # from default"
    assert lines["default_expires"] == f"1800  # from {config}"
    assert lines["min_expires"] == "60  # from PUA_MIN_EXPIRES"
    assert lines["t1"] == "0.25  # from --t1"
    assert lines["api_token"] == '"****"  # from --api-token'
    assert lines["db_url"] == f'"postgresql://pua:***@db.example.com/pua"  # from {config}'
    assert lines["events"] == f'["as-feature-event=application/x-as-feature-event+xml"]  # from {config}'
    assert lines["tls_verify"] == "true  # from default"
    assert lines["outbound_proxy"].startswith('""  # from default')
    assert "hunter2" not in result.stdout and "s3cret-token" not in result.stdout
    assert not data_dir.exists()


def test_print_config_output_reads_back_as_the_same_settings(tmp_path: Path) -> None:
    """What --print-config prints (without secrets) is a TOML file that gives
    the same settings."""
    result = subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--print-config", "--listen", "udp:127.0.0.1:5090",
         "--event", "x-feature=text/plain", "--no-tls-verify", "--outbound-proxy", "sip:p.example.com"],
        capture_output=True, text=True, timeout=60, check=False, env=_clean_env(),
    )
    assert result.returncode == 0, result.stderr
    config = tmp_path / "printed.toml"
    config.write_text(result.stdout)
    settings = load_settings(config_file=config, environ={})
    assert settings == Settings(
        listen=("udp:127.0.0.1:5090",), events=("x-feature=text/plain",), tls_verify=False,
        outbound_proxy="sip:p.example.com",
    )


def test_sources_are_exposed_by_resolve_settings(tmp_path: Path) -> None:
    """resolve_settings names the source of every setting; the strongest wins."""
    config = tmp_path / "pua.toml"
    config.write_text("[pua]\nt2 = 8.0\nt4 = 6.0\n")
    loaded = resolve_settings(config_file=config, environ={"PUA_T4": "7"}, flags={"t1": 0.1})
    assert (loaded.settings.t1, loaded.settings.t2, loaded.settings.t4) == (0.1, 8.0, 7.0)
    assert loaded.sources["t1"] == "--t1"
    assert loaded.sources["t2"] == str(config)
    assert loaded.sources["t4"] == "PUA_T4"
    assert loaded.sources["hash_size"] == "default"


def test_events_from_file_environment_and_flags(tmp_path: Path) -> None:
    """events is a TOML list, a comma-separated PUA_EVENTS, or repeated flags."""
    config = tmp_path / "pua.toml"
    config.write_text('events = ["as-feature-event=application/x-as-feature-event+xml"]\n')
    assert load_settings(config_file=config, environ={}).event_packages == [
        ("as-feature-event", "application/x-as-feature-event+xml")
    ]
    from_env = load_settings(environ={"PUA_EVENTS": "a.b=text/plain, c=application/x-c"})
    assert from_env.event_packages == [("a.b", "text/plain"), ("c", "application/x-c")]
    from_flags = load_settings(environ={}, flags={"events": ("d=text/x-d", "e=text/x-e")})
    assert [name for name, _ in from_flags.event_packages] == ["d", "e"]


@pytest.mark.parametrize(("value", "message"), [
    ("presence=application/pidf+xml", "'presence' is a built-in event package"),
    ("Dialog=application/x-d", "'Dialog' is a built-in event package"),
    ("message-summary=text/plain", "built-in"),
    ("two words=text/plain", "is not an event type"),
    ("x;param=1=text/plain", "is not an event type"),
    (".lead=text/plain", "is not an event type"),
    ("x-feature", "expected NAME=TYPE/SUBTYPE"),
    ("x-feature=textplain", "is not a content type"),
    ("x-feature=text/plain; charset=utf-8", "is not a content type"),
])
def test_bad_events_are_refused_naming_the_setting(value: str, message: str) -> None:
    """A bad extra event stops the start naming `events`, its source and
    what is wrong with it."""
    with pytest.raises(ConfigError, match="events") as info:
        load_settings(environ={}, flags={"events": (value,)})
    assert "(from --event)" in str(info.value)
    assert message in str(info.value)


def test_an_event_given_twice_is_refused() -> None:
    """The same extra event twice (in any case) is an error."""
    with pytest.raises(ConfigError, match="given twice"):
        load_settings(environ={"PUA_EVENTS": "x-a=text/plain,X-A=text/plain"})


def test_bad_event_flag_stops_pua_serve() -> None:
    """`pua serve --event` with a built-in name exits 2 naming the setting."""
    result = subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--event", "reg=application/reginfo+xml"],
        capture_output=True, text=True, timeout=60, check=False, env=_clean_env(),
    )
    assert result.returncode == 2
    assert "events (from --event)" in result.stderr and "'reg'" in result.stderr


def test_dns_servers_from_environment_and_flags() -> None:
    """dns_servers takes IP and IP:PORT (IPv6 in brackets); a name or a bad
    port stops the start naming the setting and its source."""
    loaded = load_settings(environ={"PUA_DNS_SERVERS": "127.0.0.1:5353, [::1]:53, 10.0.0.1"})
    assert loaded.dns_servers == ("127.0.0.1:5353", "[::1]:53", "10.0.0.1")
    assert flag_of("dns_servers") == "--dns-server"
    for bad in ("dns.example", "127.0.0.1:99999"):
        with pytest.raises(ConfigError, match="dns_servers") as info:
            load_settings(environ={}, flags={"dns_servers": (bad,)})
        assert "(from --dns-server)" in str(info.value) and bad in str(info.value)


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PUA_XMPP": "true", "PUA_XMPP_SECRET": "s"}, "xmpp_component"),
        ({"PUA_XMPP": "true", "PUA_XMPP_COMPONENT": "sip.example.com"}, "xmpp_secret"),
        ({"PUA_XMPP": "true", "PUA_XMPP_COMPONENT": "sip example", "PUA_XMPP_SECRET": "s"},
         "xmpp_component"),
        ({"PUA_XMPP": "true", "PUA_XMPP_COMPONENT": "c.org", "PUA_XMPP_SECRET": "s",
          "PUA_DOMAIN_SEPARATOR": "@"}, "domain_separator"),
        ({"PUA_XMPP": "true", "PUA_XMPP_COMPONENT": "c.org", "PUA_XMPP_SECRET": "s",
          "PUA_XMPP_PORT": "70000"}, "xmpp_port"),
        ({"PUA_XMPP": "true", "PUA_XMPP_COMPONENT": "c.org", "PUA_XMPP_SECRET": "s",
          "PUA_XMPP_USERS": "jabber.org"}, "xmpp_users"),
        ({"PUA_XMPP": "true", "PUA_XMPP_COMPONENT": "c.org", "PUA_XMPP_SECRET": "s",
          "PUA_GATEWAY_DOMAIN": "a b"}, "gateway_domain"),
    ],
)
def test_the_xmpp_gateways_settings_are_checked(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=environ)


def test_the_xmpp_secret_comes_from_a_file_never_a_flag(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n")
    settings = load_settings(
        environ={}, flags={"xmpp": True, "xmpp_component": "sip.example.com",
                           "xmpp_secret": str(secret), "xmpp_users": ("bob@jabber.org",)})
    assert settings.xmpp_secret == "s3cret"
    assert (settings.xmpp_host, settings.xmpp_port) == ("127.0.0.1", 5347)
    assert settings.domain_separator == "*" and settings.gateway_domain is None
    assert flag_of("xmpp_secret") == "--xmpp-secret-file"


PG = "postgresql://postgres@127.0.0.1/pua"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"PUA_CLUSTER": "true"}, "cluster"),
        ({"PUA_CLUSTER": "true", "PUA_DB_URL": "sqlite:////tmp/pua.db"}, "cluster"),
        ({"PUA_CLUSTER": "true", "PUA_DB_URL": PG, "PUA_USRLOC": "true"}, "cluster"),
        ({"PUA_CLUSTER": "true", "PUA_DB_URL": PG, "PUA_CLEANUP_ON_EXIT": "true"},
         "cleanup_on_exit"),
        ({"PUA_CLUSTER": "true", "PUA_DB_URL": PG, "PUA_NODE_ID": " "}, "node_id"),
        ({"PUA_CLUSTER": "true", "PUA_DB_URL": PG, "PUA_NODE_API_URL": "a:1"}, "node_api_url"),
        ({"PUA_LEASE_TIME": "0.5"}, "lease_time"),
    ],
)
def test_the_cluster_settings_are_checked(environ: dict[str, str], named: str) -> None:
    """A cluster needs PostgreSQL, no single-node adapter, a usable node id
    and API URL; a lease under a second is refused; each names the setting."""
    with pytest.raises(ConfigError, match=named):
        load_settings(environ=environ)


def test_the_lease_defaults_to_a_few_seconds_under_update_period() -> None:
    """lease_time 0 is update_period less 5 s, never under 2 s."""
    cluster = {"PUA_CLUSTER": "true", "PUA_DB_URL": PG}
    assert load_settings(environ=cluster).lease_seconds == 25.0
    with_period = {**cluster, "PUA_UPDATE_PERIOD": "6"}
    assert load_settings(environ=with_period).lease_seconds == 2.0
    given = {**cluster, "PUA_LEASE_TIME": "4"}
    assert load_settings(environ=given).lease_seconds == 4.0
