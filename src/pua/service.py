"""``pua serve``: the engine, its sockets and the management API, until a
signal says stop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pua.adapters import Adapters
from pua.adapters.bla import BlaSettings, SharedLines
from pua.adapters.dialogs import DialogOptions, Dialogs
from pua.adapters.registrations import Registrations, RegistrationSettings
from pua.api import ApiServer
from pua.api.http import bind_api
from pua.cluster import ClusterNode, NotifyHandOff, Peers
from pua.config import ConfigError, Settings
from pua.core import EngineConfig
from pua.errors import AddressInUse, PresenceError
from pua.runtime import PresenceRuntime
from pua.runtime.persistence import StoreSync
from pua.runtime.tls import client_context, server_context
from pua.runtime.transports import address_in_use
from pua.sip.timers import TimerConfig
from pua.store import Store
from pua.store.leases import LeaseStore

if TYPE_CHECKING:
    from pua.adapters.xmpp import XmppGateway, XmppSettings

__all__ = ["Service", "configure_logging", "serve"]

log = logging.getLogger("pua")


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(log_format: str, level: str) -> None:
    """Text lines or JSON lines on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(_JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's settings from the service's."""
    return EngineConfig(
        hash_size=settings.hash_size,
        min_expires=settings.min_expires,
        default_expires=settings.default_expires,
        outbound_proxy=settings.outbound_proxy,
        refresh_margin=settings.refresh_margin,
        max_in_flight=settings.max_in_flight,
        user_agent=settings.user_agent,
        timers=TimerConfig(t1=settings.t1, t2=settings.t2, t4=settings.t4),
    )


def registration_settings(settings: Settings) -> RegistrationSettings | None:
    """The registrations adapter's settings from the service's; None when
    registrations are off (no usrloc, reginfo or reginfo_subscribe)."""
    if not (settings.usrloc or settings.reginfo or settings.reginfo_subscribe or settings.bla):
        return None
    return RegistrationSettings(
        usrloc=settings.usrloc,
        reginfo=settings.reginfo,
        allow=settings.usrloc_allow,
        default_expires=settings.usrloc_default_expires,
        publish_closed=settings.usrloc_publish_closed,
        default_domain=settings.default_domain,
        entity_prefix=settings.entity_prefix,
        subscribe=settings.reginfo_subscriptions,
    )


def dialog_options(settings: Settings) -> DialogOptions | None:
    """The dialog state adapter's settings from the service's; None when
    it is off."""
    if not settings.dialoginfo:
        return None
    return DialogOptions(
        include_tags=settings.include_tags,
        include_localremote=settings.include_localremote,
        include_callid=settings.include_callid,
        caller_confirmed=settings.caller_confirmed,
        callee_trying=settings.callee_trying,
        publish_to=settings.publish_to,
        local_domains=tuple(d.lower() for d in settings.local_domains),
        lifetime=settings.dialog_lifetime,
        override_lifetime=settings.override_lifetime or None,
        terminated_expires=settings.terminated_expires,
    )


def bla_settings(settings: Settings) -> BlaSettings | None:
    """The shared lines adapter's settings from the service's; None when
    it is off."""
    if not settings.bla:
        return None
    return BlaSettings(
        lines=settings.bla_lines,
        register_header=settings.bla_register_header,
        server_address=settings.server_address,
        header_name=settings.header_name,
        outbound_proxy=settings.bla_outbound_proxy,
        default_domain=settings.default_domain,
    )


def xmpp_settings(settings: Settings) -> XmppSettings | None:
    """The XMPP gateway's settings from the service's; None when it is off."""
    if not settings.xmpp:
        return None
    from pua.adapters.xmpp import XmppSettings  # noqa: PLC0415 - slixmpp only when on

    assert settings.xmpp_component is not None and settings.xmpp_secret is not None
    return XmppSettings(
        component=settings.xmpp_component,
        secret=settings.xmpp_secret,
        host=settings.xmpp_host,
        port=settings.xmpp_port,
        gateway_domain=settings.gateway_domain,
        separator=settings.domain_separator,
        users=settings.xmpp_users,
        winfo=settings.xmpp_winfo,
        server_address=settings.server_address,
    )


class Service:
    """The running service: engine, SIP sockets, API."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        tls_server = tls_client = None
        if settings.tls_certificate and settings.tls_private_key:
            tls_server = server_context(settings.tls_certificate, settings.tls_private_key)
        if settings.tls_ca_file or not settings.tls_verify or settings.tls_certificate:
            # The certificate we listen with is also the one we show a
            # server that asks its clients for one.
            tls_client = client_context(
                settings.tls_ca_file,
                verify=settings.tls_verify,
                certificate=settings.tls_certificate,
                private_key=settings.tls_private_key,
            )
        self.runtime = PresenceRuntime(
            engine_config(settings),
            listen=settings.listen_addresses,
            tls_server=tls_server,
            tls_client=tls_client,
            dns_servers=settings.dns_servers,
        )
        # Before the store is read: a stored record names its event by flag.
        for credential in settings.all_credentials:
            self.runtime.credentials.add(credential)
        for name, content_type in settings.event_packages:
            self.runtime.registry.add_custom(name, content_type)
        self.api: ApiServer | None = None
        self.sync: StoreSync | None = None
        self.registrations: Registrations | None = None
        self.dialogs: Dialogs | None = None
        self.bla: SharedLines | None = None
        self.xmpp: XmppGateway | None = None
        self.cluster: ClusterNode | None = None
        self.peers: Peers | None = None
        self.hand_off: NotifyHandOff | None = None
        self.api_url = ""

    async def start(self) -> None:
        """Bind SIP and the API port, open the store, take back the stored
        records, start the API.  A failure names what could not be bound or
        opened; a start that fails leaves nothing new on disk.

        Raises ConfigError for a listen or API address that is taken,
        TransportError, StoreError or PresenceError for other failures."""
        settings = self.settings
        try:
            await self.runtime.start()
        except AddressInUse as exc:
            raise ConfigError(
                f"{exc} (another pua or SIP server?); choose another with --listen"
            ) from None
        host, port = settings.api_address
        try:
            api_socket = bind_api(host, port)
        except OSError as exc:
            await self.runtime.close()
            if address_in_use(exc):
                raise ConfigError(
                    f"api {settings.api} is already in use (another pua?); "
                    "choose another with --api"
                ) from None
            raise PresenceError(
                f"cannot listen on api {settings.api}: {exc.strerror or exc}",
                status=0,
                reason="api",
            ) from None
        try:
            store = await self._open_store()
        except BaseException:
            api_socket.close()
            await self.runtime.close()
            raise
        # In a cluster every change is written at once: another node may
        # take the record over at any moment.
        mode = "write-through" if settings.cluster else settings.db_mode
        self.sync = StoreSync(
            self.runtime, store, mode=mode, update_period=settings.update_period, own_gc=True
        )
        if not settings.cluster:
            try:
                await self.sync.restore(freeze=True)
            except BaseException:
                api_socket.close()
                await self.sync.close()
                await self.runtime.close()
                raise
            # The restored records live as long as the service: keep the
            # cyclic collector from walking them again and again.
            gc.freeze()
        self.sync.start()
        if settings.cluster:
            self._make_cluster(host, int(api_socket.getsockname()[1]))
        wanted = registration_settings(settings)
        if wanted is not None:
            self.registrations = Registrations(
                self.runtime, wanted, store=store, durable=self.sync.flush
            )
            await self.registrations.start()
            log.info("taking REGISTERs from %s", ", ".join(settings.usrloc_allow))
            lines = bla_settings(settings)
            if lines is not None:
                self.bla = SharedLines(self.runtime, self.registrations, lines, store=store)
                await self.bla.start()
        options = dialog_options(settings)
        if options is not None:
            self.dialogs = Dialogs(self.runtime, options, durable=self.sync.flush)
            await self.dialogs.start()
        gateway = xmpp_settings(settings)
        if gateway is not None:
            from pua.adapters.xmpp import XmppGateway  # noqa: PLC0415 - slixmpp only when on

            self.xmpp = XmppGateway(self.runtime, gateway, store=store)
            await self.xmpp.start()
            log.info(
                "XMPP gateway %s through the XMPP server at %s:%s",
                gateway.component,
                gateway.host,
                gateway.port,
            )
        self.api = ApiServer(
            self.runtime,
            host,
            port,
            token=settings.api_token,
            durable=self.sync.flush,
            store_timer=self.sync.timer,
            sock=api_socket,
            max_waiting=settings.api_max_waiting,
            max_body=settings.api_max_body,
            max_buffered=settings.api_max_buffered,
            max_records=settings.max_records,
            adapters=Adapters(
                registrations=self.registrations, dialogs=self.dialogs, bla=self.bla, xmpp=self.xmpp
            ),
            cluster=self.cluster,
            peers=self.peers,
        )
        host, port = await self.api.start()
        shown = f"[{host}]" if ":" in host else host
        self.api_url = f"http://{shown}:{port}"
        log.info("records in %s (%s)", store.url, mode)
        if self.cluster is not None:
            # The API answers before the node claims anything: other nodes
            # carry changes here as soon as it owns partitions.
            try:
                await self.cluster.start()
            except BaseException:
                await self.stop()
                raise
            assert self.hand_off is not None
            self.hand_off.install()
            log.info(
                "cluster node %s: %d of %d partitions, lease %g s",
                self.cluster.node_id,
                len(self.cluster.owned),
                self.cluster.partitions,
                self.cluster.lease,
            )
        bound = ", ".join(
            f"{t}:{h}:{p}" for (t, _f), (h, p) in self.runtime.transports.bound().items()
        )
        log.info("SIP on %s", bound)
        if settings.outbound_proxy:
            log.info("requests go to the outbound proxy %s", settings.outbound_proxy)
        else:
            log.info("no outbound proxy: requests go to each URI's host by DNS")
        log.info("API on %s/rpc, status page %s/", self.api_url, self.api_url)

    def _make_cluster(self, api_host: str, api_port: int) -> None:
        """This node's part in the cluster (started once the API runs)."""
        settings = self.settings
        bound = self.runtime.transports.bound()
        sip = ", ".join(f"{t}:{h}:{p}" for (t, _f), (h, p) in bound.items())
        sip_port = next(iter(bound.values()))[1]
        node_id = settings.node_id or f"{socket.gethostname()}:{sip_port}"
        api_url = settings.node_api_url
        if api_url is None:
            host = socket.gethostname() if api_host in ("0.0.0.0", "::") else api_host
            api_url = f"http://{f'[{host}]' if ':' in host else host}:{api_port}"
        assert self.sync is not None
        leases = LeaseStore(
            str(settings.db_url), table=settings.db_table, partitions=1 << settings.hash_size
        )
        self.cluster = ClusterNode(
            self.runtime,
            self.sync,
            leases,
            node_id=node_id,
            api_url=api_url.rstrip("/"),
            sip=sip,
            lease=settings.lease_seconds,
        )
        self.peers = Peers(token=settings.api_token, timeout=self.runtime.answer_within + 5)
        self.hand_off = NotifyHandOff(self.runtime, self.cluster, self.peers)

    async def _open_store(self) -> Store:
        """Open the store, making the data directory; a directory made here
        is removed again when the store cannot be opened (and it is empty)."""
        data_dir = Path(self.settings.data_dir)
        made = not await asyncio.to_thread(data_dir.exists)
        try:
            return await Store.open(
                self.settings.db_url, data_dir=data_dir, table=self.settings.db_table
            )
        except BaseException:
            if made:
                with contextlib.suppress(OSError):
                    await asyncio.to_thread(data_dir.rmdir)
            raise

    async def stop(self) -> None:
        """Stop the API, optionally end what we published and subscribed,
        close the sockets."""
        if self.api is not None:
            await self.api.stop()
        if self.hand_off is not None:
            await self.hand_off.close()
        if self.cluster is not None:
            await self.cluster.stop()
        if self.peers is not None:
            await self.peers.close()
        if self.xmpp is not None:
            await self.xmpp.stop()
        if self.bla is not None:
            await self.bla.stop()
        if self.registrations is not None:
            await self.registrations.stop()
        if self.dialogs is not None:
            await self.dialogs.stop()
        if self.settings.cleanup_on_exit:
            await self._cleanup()
        if self.sync is not None:
            await self.sync.close()
        await self.runtime.close()
        log.info("stopped")

    async def _cleanup(self) -> None:
        jobs = [self.runtime.end(record.key) for record in self.runtime.records()]
        if jobs:
            with contextlib.suppress(TimeoutError, PresenceError):
                async with asyncio.timeout(64 * self.settings.t1 + 5):
                    await asyncio.gather(*jobs, return_exceptions=True)


async def serve(settings: Settings, *, ready: Callable[[Service], None] | None = None) -> int:
    """Run until SIGTERM or SIGINT; returns the exit status."""
    service = Service(settings)
    await service.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready(service)
    await stop.wait()
    log.info("stopping")
    await service.stop()
    return 0
