"""Settings of the pua service: the seed's parameters and the service's own.

Each setting can come from a TOML file (top-level keys, or a ``[pua]``
table), from an environment variable ``PUA_<NAME>`` and from a command-line
flag; a flag beats the environment, which beats the file, which beats the
default.  A bad value stops the start with a :class:`ConfigError` naming the
setting and where the value came from.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from pua.core import default_registry
from pua.core.packages import parse_event_spec
from pua.errors import PuaError, RemoteProtocolError
from pua.runtime.resolver import parse_dns_server
from pua.runtime.transports import Listen
from pua.sip.auth import Credential
from pua.sip.uri import SipUri, parse_uri
from pua.store.errors import mask_url

__all__ = [
    "ConfigError",
    "LoadedSettings",
    "Settings",
    "describe_settings",
    "flag_of",
    "load_settings",
    "parse_event_spec",
    "resolve_settings",
]

DB_SCHEMES = ("sqlite", "postgres", "postgresql", "mysql")
DB_MODES = ("write-back", "write-through")
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


class ConfigError(PuaError):
    """A setting has a value pua cannot use."""


def _setting(default: Any, help: str, **extra: Any) -> Any:
    """A field of :class:`Settings` with its help text and flag details
    (``metavar``, ``choices``, ``flag`` when the flag is not the name)."""
    return field(default=default, metadata={"help": help, **extra})


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything ``pua serve`` is configured with.

    This is the one table of settings: each field's metadata holds its help
    text, and ``pua serve`` makes one flag per field from it."""

    # The seed's parameters, same names, same defaults.
    hash_size: int = _setting(
        9, "2^N partitions of the records table (1..20); names only, costs nothing", metavar="N"
    )
    db_url: str | None = _setting(
        None,
        "Database: sqlite:///path, postgresql://user:pw@host/db, mysql://...; "
        "unset: pua.db in data_dir",
        metavar="URL",
    )
    db_table: str = _setting("pua", "Name of Kamailio's pua table", metavar="NAME")
    min_expires: int = _setting(0, "Lower limit of Expires, seconds", metavar="SECONDS")
    default_expires: int = _setting(
        3600, "Expires of 'for ever' records (expires -1), seconds", metavar="SECONDS"
    )
    update_period: int = _setting(
        30, "Seconds between store updates in write-back mode (0: only at exit)", metavar="SECONDS"
    )
    # The service's own.
    listen: tuple[str, ...] = _setting(
        ("udp:127.0.0.1:5060", "tcp:127.0.0.1:5060"),
        "SIP listen address, Kamailio syntax (repeatable)",
        metavar="PROTO:IP:PORT",
    )
    outbound_proxy: str | None = _setting(
        None,
        "Next hop of every request (the presence server or a proxy); "
        "unset: each Request-URI's host by DNS",
        metavar="URI",
    )
    dns_servers: tuple[str, ...] = _setting(
        (),
        "DNS server that locates SIP servers by NAPTR, SRV and A/AAAA (RFC 3263), "
        "IP or IP:PORT (repeatable); unset: the system's resolver configuration",
        metavar="IP[:PORT]",
        flag="dns_server",
    )
    db_mode: str = _setting(
        "write-back",
        "write-back: memory, synced every update_period; write-through: every change at once",
        choices=("write-back", "write-through"),
    )
    api: str = _setting("127.0.0.1:8765", "Management API address", metavar="IP:PORT")
    cluster: bool = _setting(
        False,
        "Share the records with other pua nodes on one PostgreSQL database (db_url): each "
        "of the 2^hash_size partitions is owned by one live node; write-through is forced",
    )
    node_id: str | None = _setting(
        None,
        "This node's name in the cluster; unset: host name and SIP port (host:port)",
        metavar="NAME",
    )
    lease_time: float = _setting(
        0.0,
        "Seconds a node holds its partitions without renewing them; a node silent for "
        "longer loses them to the others (0: update_period less 5 s, at least 2 s)",
        metavar="SECONDS",
    )
    node_api_url: str | None = _setting(
        None,
        "The URL other nodes reach this node's API at (http://host:port); unset: made "
        "from api (a wildcard address becomes the host name)",
        metavar="URL",
    )
    api_max_waiting: int = _setting(
        10_000,
        "API calls that may wait for a SIP outcome at once; beyond, a call is refused "
        "at once (JSON-RPC -32003, HTTP 503 with Retry-After) and nothing is done",
        metavar="CALLS",
    )
    max_in_flight: int = _setting(
        1000,
        "Most requests waiting for their answer at once; beyond, records whose refresh or "
        "retry falls due wait for room (0: no limit)",
        metavar="REQUESTS",
    )
    api_token: str | None = _setting(
        None, "Bearer token of the API; required beyond loopback", metavar="TOKEN", secret=True
    )
    api_max_body: int = _setting(
        1 << 20,
        "Largest API request body in bytes (JSON-RPC and REST); a larger one is answered 413",
        metavar="BYTES",
    )
    api_max_buffered: int = _setting(
        64 << 20,
        "Most bytes of API request bodies held at once (each counted at its announced "
        "length, a chunked one at api_max_body); beyond, a request is refused before its "
        "body is read (HTTP 503 with Retry-After; JSON-RPC -32003)",
        metavar="BYTES",
    )
    max_records: int = _setting(
        1_000_000,
        "Most records (publications and subscriptions) held; an API request for a new one "
        "beyond it is refused (JSON-RPC error, HTTP 503) and nothing is made",
        metavar="N",
    )
    data_dir: str = _setting("./var", "Where the service keeps its files", metavar="DIR")
    refresh_margin: float = _setting(
        32.0,
        "Refresh this many seconds before expiry (at most half the Expires)",
        metavar="SECONDS",
    )
    t1: float = _setting(0.5, "SIP timer T1 (RTT estimate), seconds", metavar="SECONDS")
    t2: float = _setting(
        4.0, "SIP timer T2 (longest retransmit interval), seconds", metavar="SECONDS"
    )
    t4: float = _setting(
        5.0, "SIP timer T4 (how long a message lives in the network), seconds", metavar="SECONDS"
    )
    cleanup_on_exit: bool = _setting(
        False, "Remove publications and end subscriptions when stopping"
    )
    tls_certificate: str | None = _setting(
        None,
        "Certificate (PEM) for tls listen addresses, also shown to TLS servers that ask for one",
        metavar="FILE",
    )
    tls_private_key: str | None = _setting(None, "Its private key (PEM)", metavar="FILE")
    tls_ca_file: str | None = _setting(
        None, "CAs to check TLS servers with; unset: the system's", metavar="FILE"
    )
    tls_verify: bool = _setting(True, "Check TLS servers' certificates")
    log_format: str = _setting("text", "Log lines as text or JSON", choices=LOG_FORMATS)
    log_level: str = _setting("info", "Least level logged", choices=LOG_LEVELS)
    user_agent: str = _setting("pua", "User-Agent header of every request", metavar="TEXT")
    events: tuple[str, ...] = _setting(
        (),
        "Extra event package, NAME=TYPE/SUBTYPE, e.g. "
        "as-feature-event=application/x-as-feature-event+xml (repeatable); "
        "keep the order, new ones last: stored records name them by position",
        metavar="NAME=TYPE",
        flag="event",
    )

    usrloc: bool = _setting(
        False,
        "Keep the bindings of REGISTERs sent to pua (copies from a registrar, "
        "or phones) and publish presence for each (Kamailio's pua_usrloc)",
    )
    reginfo: bool = _setting(
        False,
        "Publish the reg state (RFC 3680) of each address of record with bindings "
        "(Kamailio's pua_reginfo)",
    )
    reginfo_subscribe: tuple[str, ...] = _setting(
        (),
        "Address of record whose reg event (RFC 3680) pua subscribes to, AOR or "
        "AOR=REGISTRAR-URI (repeatable); its NOTIFYs feed the bindings (Kamailio's "
        "reginfo_subscribe)",
        metavar="AOR[=URI]",
    )
    usrloc_allow: tuple[str, ...] = _setting(
        ("127.0.0.0/8", "::1/128"),
        "Addresses or networks (CIDR) whose REGISTERs are taken (repeatable); others get 403",
        metavar="NETWORK",
    )
    usrloc_default_expires: int = _setting(
        3600,
        "Lifetime of a binding whose REGISTER gives no expires parameter or Expires header",
        metavar="SECONDS",
    )
    usrloc_publish_closed: bool = _setting(
        False, "Publish a closed document before removing a binding's publication"
    )
    default_domain: str | None = _setting(
        None, "Domain of addresses of record given without one", metavar="DOMAIN"
    )
    entity_prefix: str | None = _setting(
        None,
        "Scheme of the entity in the PIDF published for a binding, e.g. pres "
        "(default: sip, the AOR's); requests still go to the AOR",
        metavar="SCHEME",
    )
    dialoginfo: bool = _setting(
        False,
        "Publish the dialog state (RFC 4235) of calls reported to POST /dialogs or "
        "pua.dialog, for caller and callee (Kamailio's pua_dialoginfo)",
    )
    include_tags: bool = _setting(True, "Put the calls' From and To tags in dialog documents")
    include_localremote: bool = _setting(
        True, "Put the local and remote identities and targets in dialog documents"
    )
    include_callid: bool = _setting(True, "Put the calls' Call-IDs in dialog documents")
    caller_confirmed: bool = _setting(False, "Show the caller's ringing (early) calls as confirmed")
    callee_trying: bool = _setting(
        False, "Publish trying for the callee too (the caller always gets it)"
    )
    publish_to: str = _setting(
        "both",
        "Whose dialog state is published: the caller's, the callee's or both",
        choices=("caller", "callee", "both"),
    )
    local_domains: tuple[str, ...] = _setting(
        (),
        "Publish dialog state only for addresses in these domains (repeatable; "
        "unset: every domain)",
        metavar="DOMAIN",
    )
    dialog_lifetime: int = _setting(
        43200,
        "Lifetime of a call whose events name none (the Expires of its dialog state)",
        metavar="SECONDS",
    )
    override_lifetime: int = _setting(
        0, "Every call's lifetime, whatever its events say (0: theirs)", metavar="SECONDS"
    )
    terminated_expires: int = _setting(
        10,
        "Expires of the dialog state that shows a user's last call ended; it then lapses",
        metavar="SECONDS",
    )
    bla: bool = _setting(
        False,
        "Bridged line appearance (Kamailio's pua_bla): subscribe to dialog;sla of "
        "phones that register a shared line and publish what they notify",
    )
    bla_lines: tuple[str, ...] = _setting(
        (),
        "Address of record of a shared line (repeatable; pua.bla_add adds more)",
        metavar="AOR",
    )
    bla_register_header: str | None = _setting(
        None,
        "Header a proxy adds to the REGISTERs of shared lines (Kamailio's bla_set_flag)",
        metavar="NAME",
    )
    server_address: str | None = _setting(
        None,
        "Contact of the SUBSCRIBEs sent to phones (default: a SIP address pua listens on)",
        metavar="URI",
    )
    header_name: str = _setting(
        "Sender",
        "Header of a shared line's PUBLISH naming the phone that reported the state",
        metavar="NAME",
    )
    bla_outbound_proxy: str | None = _setting(
        None,
        "Next hop of the SUBSCRIBEs to phones (default: the phone's contact itself)",
        metavar="URI",
    )
    xmpp: bool = _setting(
        False,
        "SIP <-> XMPP presence gateway (Kamailio's pua_xmpp): an XMPP component that "
        "publishes XMPP users' presence and subscribes for them to SIP users",
    )
    xmpp_component: str | None = _setting(
        None,
        "The gateway's JID at the XMPP server (an external component, XEP-0114); SIP users "
        "are <user><domain_separator><domain>@this",
        metavar="DOMAIN",
    )
    xmpp_secret: str | None = _setting(
        None,
        "The component's secret at the XMPP server: read from a file with "
        "--xmpp-secret-file, or PUA_XMPP_SECRET; never a plain flag",
        metavar="FILE",
        secret=True,
        flag="xmpp_secret_file",
        from_file=True,
    )
    xmpp_host: str = _setting(
        "127.0.0.1", "Address of the XMPP server's component port", metavar="HOST"
    )
    xmpp_port: int = _setting(5347, "The XMPP server's component port", metavar="PORT")
    gateway_domain: str | None = _setting(
        None,
        "SIP domain of XMPP users' addresses: sip:<user><domain_separator><domain>@this "
        "(default: xmpp_component)",
        metavar="DOMAIN",
    )
    domain_separator: str = _setting(
        "*", "Joins a user and its domain in one user part or JID localpart", metavar="CHAR"
    )
    xmpp_users: tuple[str, ...] = _setting(
        (),
        "XMPP user (bare JID) whose SIP watchers the gateway asks about from the start "
        "(repeatable; any user that sends the gateway presence is added)",
        metavar="JID",
    )
    xmpp_winfo: bool = _setting(
        True,
        "Watch the watchers (presence.winfo) of XMPP users' SIP addresses and ask the users "
        "about new SIP watchers (the seed's pua_xmpp_req_winfo); off: SIP watchers are "
        "authorized at the presence server alone",
    )
    auth_username: str | None = _setting(
        None,
        "Username answering digest challenges (401/407) for every identity and realm; "
        "credentials narrow it per identity and realm",
        metavar="NAME",
    )
    auth_password: str | None = _setting(
        None,
        "Its password: read from a file with --auth-password-file, or PUA_AUTH_PASSWORD; "
        "never a plain flag",
        metavar="FILE",
        secret=True,
        flag="auth_password_file",
        from_file=True,
    )
    auth_ha1: str | None = _setting(
        None,
        "Or its stored MD5 HA1 (Kamailio's subscriber.ha1): answers MD5 challenges only",
        metavar="HEX",
        secret=True,
    )
    credentials: tuple[Credential, ...] = _setting(
        (),
        "Credentials per identity and realm: [[credentials]] tables (uri, realm, username, "
        "password or ha1) in the config file, or a TOML file of them",
        metavar="FILE",
        secret=True,
        flag="credentials_file",
        from_file=True,
    )

    @property
    def all_credentials(self) -> list[Credential]:
        """The [[credentials]], then the default one (auth_username), if any."""
        out = list(self.credentials)
        if self.auth_username:
            out.append(
                Credential(
                    username=self.auth_username, password=self.auth_password, ha1=self.auth_ha1
                )
            )
        return out

    @property
    def reginfo_subscriptions(self) -> list[tuple[str, str | None]]:
        """The reg subscriptions as (address of record, registrar or None)."""
        return [parse_reginfo_subscribe(item) for item in self.reginfo_subscribe]

    @property
    def event_packages(self) -> list[tuple[str, str]]:
        """The extra event packages as (name, content type), in order."""
        return [parse_event_spec(item) for item in self.events]

    @property
    def listen_addresses(self) -> list[Listen]:
        """The parsed listen addresses."""
        return [Listen.parse(item) for item in self.listen]

    @property
    def api_address(self) -> tuple[str, int]:
        """(host, port) of the management API."""
        return _split_hostport(self.api, "api")

    @property
    def lease_seconds(self) -> float:
        """The cluster lease: lease_time, or update_period less 5 s (at
        least 2 s) when it is 0."""
        if self.lease_time:
            return float(self.lease_time)
        return max(2.0, float(self.update_period or 30) - 5.0)

    @property
    def api_on_loopback(self) -> bool:
        """True when the API is reachable from this machine only."""
        host = self.api_address[0]
        return host == "localhost" or ipaddress.ip_address(host).is_loopback


def _sip_uri(text: str) -> SipUri | None:
    """``text`` as a SIP URI, or None."""
    try:
        uri = parse_uri(text.strip().strip("<>"))
    except RemoteProtocolError:
        return None
    return uri if isinstance(uri, SipUri) else None


def parse_reginfo_subscribe(item: str) -> tuple[str, str | None]:
    """``AOR`` or ``AOR=REGISTRAR-URI`` as (aor, registrar or None);
    ValueError naming what is wrong."""
    aor, _, registrar = item.partition("=")
    for what, text in (("address of record", aor), ("registrar", registrar)):
        if what == "registrar" and not text:
            continue
        try:
            uri = parse_uri(text.strip())
        except RemoteProtocolError:
            uri = None
        if not isinstance(uri, SipUri) or (what == "address of record" and uri.user is None):
            raise ValueError(
                f"{item!r}: bad {what} {text!r} (want sip:user@domain[=sip:host:port])"
            )
    return aor.strip(), registrar.strip() or None


_FIELDS = {f.name: f for f in fields(Settings)}


def flag_of(name: str) -> str:
    """The command-line flag of setting ``name`` (``--name-with-dashes``,
    or the one its metadata names)."""
    return "--" + str(_FIELDS[name].metadata.get("flag", name)).replace("_", "-")


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


def _credentials(value: Any, where: str) -> tuple[Credential, ...]:
    """[[credentials]] tables, or the path of a TOML file holding them."""
    if isinstance(value, str):
        try:
            data = tomllib.loads(Path(value).read_text())
        except OSError as exc:
            raise ConfigError(f"{where}: {value}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{where}: {value}: {exc}") from None
        value = data.get("credentials", [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ConfigError(f"{where}: expected [[credentials]] tables")
    out = []
    for n, table in enumerate(value, 1):
        unknown = sorted(set(table) - {"uri", "realm", "username", "password", "ha1"})
        if unknown:
            raise ConfigError(f"{where}: credentials #{n}: unknown key(s) {', '.join(unknown)}")
        if not all(isinstance(v, str) for v in table.values()):
            raise ConfigError(f"{where}: credentials #{n}: every value is text")
        try:
            out.append(Credential(**table))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{where}: credentials #{n}: {exc}") from None
    return tuple(out)


def _coerce(name: str, value: Any, source: str) -> Any:
    """Turn a value from TOML, the environment or a flag into the setting's type."""
    where = f"{name} (from {source})"
    if name == "credentials":
        return _credentials(value, where)
    if _FIELDS[name].metadata.get("from_file") and source.startswith("--"):
        # A secret on the command line is read from a file: a flag's value
        # is seen by every user of the machine (ps).
        try:
            value = Path(str(value)).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(f"{where}: {value}: {exc.strerror or exc}") from None
    defaults = {f.name: f.default for f in fields(Settings)}
    default = defaults[name]
    if isinstance(default, tuple):
        # A list: TOML array, comma-separated text, or a repeated flag.
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            metavar = _FIELDS[name].metadata.get("metavar", "TEXT")
            raise ConfigError(f"{where}: expected a list of {metavar}")
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


def _check_xmpp(settings: Settings, fail: Callable[[str, str], ConfigError]) -> None:
    """The XMPP gateway's settings (slixmpp is imported only when it is on)."""
    from pua.adapters.xmpp.addresses import (  # noqa: PLC0415
        AddressError,
        Addresses,
        check_separator,
    )

    if not settings.xmpp_component:
        raise fail("xmpp_component", "the gateway needs its JID at the XMPP server")
    if not settings.xmpp_secret:
        raise fail("xmpp_secret", "the gateway needs the component's secret (xmpp_secret_file)")
    for name in ("xmpp_component", "gateway_domain"):
        value = getattr(settings, name)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*", value):
            raise fail(name, f"{value!r} is not a domain")
    if not 1 <= settings.xmpp_port <= 65535:
        raise fail("xmpp_port", f"must be a port (1..65535), not {settings.xmpp_port}")
    try:
        check_separator(settings.domain_separator)
    except ValueError as exc:
        raise fail("domain_separator", str(exc)) from None
    addresses = Addresses(
        settings.xmpp_component,
        settings.gateway_domain or settings.xmpp_component,
        settings.domain_separator,
    )
    for user in settings.xmpp_users:
        try:
            addresses.xmpp_user_uri(user)
        except AddressError as exc:
            raise fail("xmpp_users", str(exc)) from None


def _check(settings: Settings, sources: Mapping[str, str]) -> None:
    def fail(name: str, message: str) -> ConfigError:
        return ConfigError(f"{name} (from {sources.get(name, 'default')}): {message}")

    if settings.auth_username and not (settings.auth_password or settings.auth_ha1):
        raise fail("auth_username", "needs auth_password (or auth_ha1)")
    if (settings.auth_password or settings.auth_ha1) and not settings.auth_username:
        raise fail("auth_password", "needs auth_username")
    if settings.auth_username:
        try:
            settings.all_credentials  # noqa: B018 - building them is the check
        except ValueError as exc:
            raise fail("auth_ha1" if settings.auth_ha1 else "auth_password", str(exc)) from None
    for item in settings.reginfo_subscribe:
        try:
            parse_reginfo_subscribe(item)
        except ValueError as exc:
            raise fail("reginfo_subscribe", str(exc)) from None
    for network in settings.usrloc_allow:
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise fail("usrloc_allow", f"{network!r} is not an address or network") from None
    if settings.usrloc_default_expires < 1:
        raise fail(
            "usrloc_default_expires",
            f"must be 1 or more, not {settings.usrloc_default_expires}",
        )
    for name in ("dialog_lifetime", "terminated_expires"):
        if getattr(settings, name) < 1:
            raise fail(name, f"must be 1 or more, not {getattr(settings, name)}")
    if settings.override_lifetime < 0:
        raise fail("override_lifetime", f"must be 0 or more, not {settings.override_lifetime}")
    for domain in settings.local_domains:
        if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]+", domain):
            raise fail("local_domains", f"{domain!r} is not a domain")
    for aor in settings.bla_lines:
        line = _sip_uri(aor)
        if line is None or line.user is None:
            raise fail("bla_lines", f"{aor!r} is not a sip: URI with a user")
    for name in ("server_address", "bla_outbound_proxy"):
        value = getattr(settings, name)
        if value is not None and _sip_uri(value) is None:
            raise fail(name, f"{value!r} is not a SIP URI")
    for name in ("bla_register_header", "header_name"):
        value = getattr(settings, name)
        if value is not None and not re.fullmatch(r"[A-Za-z0-9!%*_+`'~.-]+", value):
            raise fail(name, f"{value!r} is not a header name")
    if settings.xmpp:
        _check_xmpp(settings, fail)
    if settings.entity_prefix is not None and not re.fullmatch(
        r"[A-Za-z][A-Za-z0-9+.-]*", settings.entity_prefix
    ):
        raise fail("entity_prefix", f"{settings.entity_prefix!r} is not a URI scheme")
    if settings.api_max_waiting < 1:
        raise fail("api_max_waiting", f"must be 1 or more, not {settings.api_max_waiting}")
    if settings.max_in_flight < 0:
        raise fail("max_in_flight", f"must be 0 or more, not {settings.max_in_flight}")
    if settings.api_max_body < 1024:
        raise fail("api_max_body", f"must be 1024 bytes or more, not {settings.api_max_body}")
    if settings.api_max_buffered < settings.api_max_body:
        raise fail(
            "api_max_buffered",
            f"must be api_max_body ({settings.api_max_body}) or more,"
            f" not {settings.api_max_buffered}",
        )
    if settings.max_records < 1:
        raise fail("max_records", f"must be 1 or more, not {settings.max_records}")
    if not 1 <= settings.hash_size <= 20:
        raise fail("hash_size", f"must be between 1 and 20, not {settings.hash_size}")
    if settings.min_expires < 0:
        raise fail("min_expires", f"must be 0 or more, not {settings.min_expires}")
    if settings.default_expires <= 0:
        raise fail("default_expires", f"must be more than 0, not {settings.default_expires}")
    if settings.update_period < 0 or 0 < settings.update_period <= 5:
        # As in Kamailio: 0 turns the timer off; 1..5 leaves no time to work.
        raise fail("update_period", f"must be 0 or more than 5, not {settings.update_period}")
    if settings.lease_time < 0 or 0 < settings.lease_time < 1:
        raise fail("lease_time", f"must be 0 or at least 1 s, not {settings.lease_time:g}")
    if settings.cluster:
        scheme = (settings.db_url or "").partition("://")[0].split("+")[0].lower()
        if scheme not in ("postgres", "postgresql"):
            raise fail("cluster", "needs a PostgreSQL db_url (postgresql://user@host/db)")
        alone = [
            name
            for name in ("usrloc", "reginfo", "bla", "dialoginfo", "xmpp")
            if getattr(settings, name)
        ]
        if alone or settings.reginfo_subscribe:
            raise fail(
                "cluster",
                f"the adapters ({', '.join(alone or ['reginfo_subscribe'])}) run on a single"
                " node; turn them off or run them on a pua of their own",
            )
        if settings.cleanup_on_exit:
            raise fail(
                "cleanup_on_exit",
                "cannot be on in a cluster: a node that stops leaves its records to the others",
            )
        if settings.node_id is not None and not settings.node_id.strip():
            raise fail("node_id", "must not be empty")
        if settings.node_api_url is not None and not settings.node_api_url.startswith(
            ("http://", "https://")
        ):
            raise fail("node_api_url", f"must be an http:// URL, not {settings.node_api_url!r}")
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
    if settings.tls_certificate is not None:
        from pua.runtime.tls import client_context  # noqa: PLC0415

        try:
            client_context(
                certificate=settings.tls_certificate, private_key=settings.tls_private_key
            )
        except ValueError as exc:
            raise fail("tls_certificate", str(exc)) from None
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
    for server in settings.dns_servers:
        try:
            parse_dns_server(server)
        except ValueError as exc:
            raise fail("dns_servers", str(exc)) from None
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
    builtin = default_registry()
    seen: set[str] = set()
    for item in settings.events:
        try:
            name, _ = parse_event_spec(item)
        except ValueError as exc:
            raise fail("events", str(exc)) from None
        if builtin.by_name(name) is not None:
            raise fail("events", f"{name!r} is a built-in event package; leave it out")
        if name.lower() in seen:
            raise fail("events", f"{name!r} is given twice")
        seen.add(name.lower())


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    """Settings and where each came from."""

    settings: Settings
    sources: Mapping[str, str]
    """Per setting: ``default``, the config file's path, ``PUA_NAME`` or ``--flag``."""


def load_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> Settings:
    """Settings from the defaults, the file, ``PUA_*`` variables and flags
    (in that order of strength).  Raises ConfigError on anything unusable."""
    return resolve_settings(config_file=config_file, environ=environ, flags=flags).settings


def resolve_settings(
    *,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Any] | None = None,
) -> LoadedSettings:
    """As :func:`load_settings`, with the source of every setting.
    Raises ConfigError on anything unusable."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = dict.fromkeys(_FIELDS, "default")
    names = set(_FIELDS)
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
        flag = flag_of(name)
        values[name] = _coerce(name, value, flag)
        sources[name] = flag
    settings = Settings(**values)
    _check(settings, sources)
    return LoadedSettings(settings, sources)


def _shown(name: str, value: Any) -> str:
    """A value as TOML, secrets masked."""
    if value is None:
        return '""'
    if name == "credentials":
        # Who and where, never the secret.
        shown = [f"{c.username}@{c.realm or '*'} for {c.uri or '*'}" for c in value]
        return "[" + ", ".join(json.dumps(item) for item in shown) + "]"
    if _FIELDS[name].metadata.get("secret"):
        return '"****"'
    if name == "db_url":
        value = mask_url(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(json.dumps(item) for item in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def describe_settings(loaded: LoadedSettings) -> str:
    """The effective settings, one ``name = value  # from SOURCE`` line each
    (an unset one as ``""``), with the API token and database passwords
    masked: what ``pua serve --print-config`` prints."""
    lines = []
    for name in _FIELDS:
        value = getattr(loaded.settings, name)
        note = "  (unset)" if value is None else ""
        lines.append(f"{name} = {_shown(name, value)}  # from {loaded.sources[name]}{note}")
    return "\n".join(lines) + "\n"
