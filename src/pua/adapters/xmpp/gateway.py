"""The SIP <-> XMPP presence gateway (Kamailio's pua_xmpp with its xmpp
module): an XMPP component on one side, pua's engine on the other.

XMPP to SIP
    An XMPP user's presence that reaches the gateway (sent to any JID of
    its domain) becomes a PUBLISH for the user's SIP address (source flag
    XMPP_PUBLISH, "for ever": refreshed until removed), one tuple per
    available resource; when the last resource goes the publication is
    removed.  The same presence arriving once per SIP watcher (each is a
    contact of the user) is published once.

SIP to XMPP
    A subscription request from an XMPP user to a SIP user's JID becomes a
    SUBSCRIBE for the SIP user's presence with the XMPP user's SIP address
    as watcher (XMPP_SUBSCRIBE).  The XMPP user is told ``subscribed`` once
    the presence server says the subscription is active, ``unsubscribed``
    when it refuses it; each NOTIFY becomes a presence stanza.  A probe is
    answered from the last NOTIFY; ``unsubscribe`` ends the SUBSCRIBE.

SIP watchers of XMPP users
    For every XMPP user the gateway knows (``xmpp_users``, or any that sent
    it presence) it subscribes to ``presence.winfo`` of the user's SIP
    address (XMPP_INITIAL_SUBS, the seed's ``pua_xmpp_req_winfo``); each new
    SIP watcher is asked of the user as a subscription request from the
    watcher's JID.  Once the user approves, the XMPP server sends the
    user's presence to that JID, which is published as above.

What the gateway knows beyond pua's records (users, resources, the last
presence of SIP users, watchers asked about and approved) is kept in the
store (``<db_table>_xmpp``).  When the stream comes back, the gateway
tells every XMPP subscriber the SIP user's last presence again, and probes
each XMPP user it publishes for, from a JID the user approved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

from slixmpp.jid import JID, InvalidJID
from slixmpp.stanza import Presence

from pua.bodies.pidf import Presence as PidfPresence
from pua.bodies.pidf import parse_pidf
from pua.bodies.watcherinfo import WatcherInfo, parse_watcherinfo
from pua.core import (
    EngineEvent,
    NotifyReceived,
    PublishInfo,
    RecordKey,
    SourceFlag,
    SubscribeInfo,
    SubscriptionFailed,
    SubscriptionTerminated,
)
from pua.errors import BodyError, PresenceError
from pua.runtime import PresenceRuntime
from pua.store import Store
from pua.store.errors import StoreError

from .addresses import AddressError, Addresses
from .component import Component
from .presence import SHOWS, XmppPresence, from_pidf, to_pidf
from .state import GatewayState

__all__ = ["XmppGateway", "XmppSettings"]

log = logging.getLogger("pua.xmpp")

PRESENCE_TYPES = frozenset(
    {"available", "unavailable", "subscribe", "subscribed", "unsubscribe", "unsubscribed",
     "probe", "error"}
)  # fmt: skip
MAX_STATUS = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class XmppSettings:
    """What the gateway does (the service's settings of the same names)."""

    component: str
    """The component's JID (``xmpp_component``), e.g. ``sip.example.com``."""
    secret: str
    """The component's secret with the XMPP server (``xmpp_secret``)."""
    host: str = "127.0.0.1"
    port: int = 5347
    gateway_domain: str | None = None
    """The SIP domain of XMPP users' addresses (default: ``component``)."""
    separator: str = "*"
    users: Sequence[str] = ()
    """XMPP users whose SIP watchers the gateway asks about from the start."""
    winfo: bool = True
    """Watch the watchers of XMPP users' SIP addresses (off: never asked)."""
    server_address: str | None = None
    """Contact of the gateway's SUBSCRIBEs (None: the runtime's own)."""
    max_backoff: float = 30.0


@dataclass(frozen=True, slots=True)
class _Stanza:
    """What the gateway reads of a presence stanza."""

    type: str
    sender: JID
    to: JID
    show: str | None
    status: str | None
    priority: int


class _Refused(Exception):
    def __init__(self, condition: str, text: str) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text


class XmppGateway:
    """The gateway between an XMPP server (as a component) and the SIP
    presence server (through the runtime)."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        settings: XmppSettings,
        *,
        store: Store | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.store = store
        self.addresses = Addresses(
            settings.component, settings.gateway_domain or settings.component, settings.separator
        )
        self.state = GatewayState()
        self.component = Component(
            self.addresses.component,
            settings.secret,
            settings.host,
            settings.port,
            on_presence=self._on_stanza,
            on_up=self._on_up,
            max_backoff=settings.max_backoff,
        )
        self.counters = {
            "stanzas_in": 0,
            "stanzas_out": 0,
            "errors_sent": 0,
            "errors_in": 0,
            "published": 0,
            "notifies": 0,
            "subscribes": 0,
            "unsubscribes": 0,
            "probes": 0,
            "watchers_asked": 0,
            "approvals": 0,
        }
        self._confirmed: set[RecordKey] = set()
        # SIP user -> the XMPP users watching it (its last presence is kept
        # while there is one)
        self._watching: dict[str, set[str]] = {}
        self._writer: asyncio.Task[None] | None = None
        self._presence_flag = 0
        self._winfo_flag = 0

    # -- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Take back what the store holds, follow the engine, subscribe to
        the watchers of the known users, connect to the XMPP server (in the
        background: it is tried until it answers)."""
        self._presence_flag = self.runtime.registry.lookup("presence").flag
        self._winfo_flag = self.runtime.registry.lookup("presence.winfo").flag
        if self.store is not None:
            bad = self.state.load(await self.store.load_xmpp())
            if bad:
                log.warning("%d stored facts of the XMPP gateway could not be read", bad)
        for user in self.settings.users:
            self.state.add_user(str(JID(user).bare))
        for record in self.runtime.records():
            if record.key.source_flag == SourceFlag.XMPP_SUBSCRIBE:
                self._watching.setdefault(record.key.pres_uri, set()).add(record.key.id)
        for uri in [u for u in self.state.sip_presence if u not in self._watching]:
            self.state.forget_sip_presence(uri)
        self.runtime.add_listener(self._on_event)
        for user in sorted(self.state.users):
            self._watch_watchers(user)
        self._save()
        await self.component.start()

    async def stop(self) -> None:
        """Close the stream and store what is not stored yet (records stay,
        refreshed by the engine; the store keeps them)."""
        self.runtime.remove_listener(self._on_event)
        await self.component.stop()
        writer = self._writer
        if writer is not None and not writer.done():
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        if self.store is not None and self.state.pending:
            try:
                await self.store.save_xmpp(self.state.take_changes())
            except StoreError as exc:
                log.error("the XMPP gateway's last changes are not stored: %s", exc)

    # -- what the API shows ---------------------------------------------------------
    def view(self) -> dict[str, Any]:
        """The gateway as plain data."""
        flags = {
            int(SourceFlag.XMPP_PUBLISH): "publications",
            int(SourceFlag.XMPP_SUBSCRIBE): "subscriptions",
            int(SourceFlag.XMPP_INITIAL_SUBS): "watcher_subscriptions",
        }
        records = dict.fromkeys(flags.values(), 0)
        for record in self.runtime.records():
            name = flags.get(record.key.source_flag)
            if name is not None:
                records[name] += 1
        return {
            "component": self.addresses.component,
            "gateway_domain": self.addresses.gateway_domain,
            "server": f"{self.settings.host}:{self.settings.port}",
            "connected": self.component.connected,
            "last_error": self.component.last_error,
            "users": sorted(self.state.users),
            "available": {
                user: {name: p.as_dict() for name, p in sorted(resources.items())}
                for user, resources in sorted(self.state.resources.items())
            },
            "records": records,
            "counters": {**self.counters, **self.component.counters},
        }

    def address(self, address: str) -> dict[str, str]:
        """The other side's address of a SIP URI or a JID: {"sip", "jid",
        "kind"} (kind: "sip user" or "xmpp user").  AddressError (400, or
        404 for an address of neither side's users) when there is none."""
        text = address.strip()
        if text.lower().startswith(("sip:", "sips:")):
            if self.addresses.is_xmpp_user_uri(text):
                return {"kind": "xmpp user", "sip": text, "jid": self.addresses.xmpp_user_jid(text)}
            return {"kind": "sip user", "sip": text, "jid": self.addresses.sip_user_jid(text)}
        bare = text.split("/", 1)[0]
        if bare.rpartition("@")[2].lower() == self.addresses.component:
            return {"kind": "sip user", "jid": bare, "sip": self.addresses.sip_user_uri(bare)}
        return {"kind": "xmpp user", "jid": bare, "sip": self.addresses.xmpp_user_uri(bare)}

    # -- XMPP side ------------------------------------------------------------------
    def _on_up(self) -> None:
        """The stream is (back) up: say again what the gateway holds."""
        for target, users in self._watching.items():
            if target not in self.state.sip_presence:
                continue  # no NOTIFY yet: nothing to say
            for user in users:
                with contextlib.suppress(AddressError):
                    self._tell(target, user, self.state.sip_presence[target])
        probed: set[str] = set()
        for user, contact in sorted(self.state.approvals()):
            if user not in probed:
                probed.add(user)
                self._send(contact, user, "probe")

    def _send(
        self,
        pfrom: str,
        pto: str,
        ptype: str | None = None,
        presence: XmppPresence | None = None,
    ) -> bool:
        sent = self.component.send_presence(
            pfrom,
            pto,
            ptype,
            show=presence.show if presence else None,
            status=presence.status if presence else None,
        )
        if sent:
            self.counters["stanzas_out"] += 1
        return sent

    def _on_stanza(self, stanza: Presence) -> None:
        self.counters["stanzas_in"] += 1
        if stanza.xml.get("type") == "error":
            self.counters["errors_in"] += 1
            log.info("XMPP error from %s to %s: %s", stanza.xml.get("from"),
                     stanza.xml.get("to"), _error_text(stanza.xml))  # fmt: skip
            return
        try:
            read = _read(stanza.xml)
            self._handle(read)
        except (_Refused, AddressError) as exc:
            condition = exc.condition
            text = exc.text if isinstance(exc, _Refused) else str(exc)
            log.info("refused a presence stanza from %s: %s", stanza.xml.get("from"), text)
            if self.component.send_error(stanza, condition, text):
                self.counters["errors_sent"] += 1

    def _handle(self, stanza: _Stanza) -> None:
        kind = stanza.type
        if not stanza.sender.local:
            raise _Refused("jid-malformed", f"{stanza.sender} is a server, not an XMPP user")
        user = str(stanza.sender.bare)
        if kind in ("available", "unavailable"):
            if stanza.to.local:
                self.addresses.sip_user_uri(str(stanza.to))  # a SIP user's JID?
            self._user_presence(stanza, user)
            return
        if not stanza.to.local:
            raise _Refused("jid-malformed", f"{stanza.to} is the gateway, not a SIP user")
        target = self.addresses.sip_user_uri(str(stanza.to.bare))
        if kind == "subscribe":
            self._subscribe(user, target, str(stanza.to.bare))
        elif kind == "probe":
            self._probe(user, target, str(stanza.to.bare))
        elif kind == "unsubscribe":
            self._unsubscribe(user, target, str(stanza.to.bare))
        elif kind in ("subscribed", "unsubscribed"):
            approved = kind == "subscribed"
            self.state.set_approved(user, str(stanza.to.bare), approved)
            if approved:
                self.counters["approvals"] += 1
            self._save()

    def _user_presence(self, stanza: _Stanza, user: str) -> None:
        uri = self.addresses.xmpp_user_uri(user)
        resource = stanza.sender.resource
        if stanza.type == "unavailable" and not resource:
            changed = self.state.clear_resources(user)  # the server's word: none is on
        else:
            presence = (
                XmppPresence(stanza.show, stanza.status, stanza.priority)
                if stanza.type == "available"
                else None
            )
            changed = self.state.set_resource(user, resource, presence)
        if self.state.add_user(user):
            self._watch_watchers(user)
        if changed:
            self._publish(user, uri)
        self._save()

    def _publish(self, user: str, uri: str) -> None:
        resources = self.state.resources.get(user)
        info = PublishInfo(
            pres_uri=uri,
            event="presence",
            body=to_pidf(uri, resources) if resources else None,
            expires=-1 if resources else 0,
            id=user,
            source_flag=SourceFlag.XMPP_PUBLISH,
        )
        if not resources:
            key = RecordKey(uri, self._presence_flag, user, int(SourceFlag.XMPP_PUBLISH))
            if self.runtime.record(key) is None:
                return
        try:
            self.runtime.send_publish(info)
            self.counters["published"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot publish the presence of %s: %s", user, exc)

    def _subscription_key(self, user: str, target: str) -> RecordKey:
        watcher = self.addresses.xmpp_user_uri(user)
        return RecordKey(target, self._presence_flag, user, int(SourceFlag.XMPP_SUBSCRIBE), watcher)

    def _subscribe(self, user: str, target: str, contact: str) -> None:
        key = self._subscription_key(user, target)
        record = self.runtime.record(key)
        if record is None:
            self._sip_subscribe(key, -1)
        elif getattr(record, "authorized", None):
            # Already watching: say so again, with the last presence.
            self._send(contact, user, "subscribed")
            self._tell(target, user, self.state.sip_presence.get(target))
        # else: the presence server has not decided yet; its NOTIFY will tell

    def _sip_subscribe(self, key: RecordKey, expires: int) -> None:
        info = SubscribeInfo(
            pres_uri=key.pres_uri,
            watcher_uri=key.watcher_uri,
            event="presence",
            expires=expires,
            id=key.id,
            contact=self.settings.server_address,
            source_flag=SourceFlag.XMPP_SUBSCRIBE,
        )
        try:
            self.runtime.send_subscribe(info)
            self.counters["subscribes" if expires else "unsubscribes"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot subscribe %s to %s: %s", key.id, key.pres_uri, exc)
            return
        if expires:
            self._watching.setdefault(key.pres_uri, set()).add(key.id)
        else:
            self._unwatched(key)

    def _unwatched(self, key: RecordKey) -> None:
        """An XMPP user no longer watches a SIP user (the last one gone:
        its last presence is forgotten)."""
        self._confirmed.discard(key)
        users = self._watching.get(key.pres_uri)
        if users is not None:
            users.discard(key.id)
            if not users:
                del self._watching[key.pres_uri]
                self.state.forget_sip_presence(key.pres_uri)

    def _probe(self, user: str, target: str, contact: str) -> None:
        self.counters["probes"] += 1
        key = self._subscription_key(user, target)
        if self.runtime.record(key) is None:
            # The user's roster says it watches; the gateway forgot: watch again.
            self._sip_subscribe(key, -1)
            return
        self._tell(target, user, self.state.sip_presence.get(target))

    def _unsubscribe(self, user: str, target: str, contact: str) -> None:
        key = self._subscription_key(user, target)
        if self.runtime.record(key) is not None:
            self._sip_subscribe(key, 0)
        self._unwatched(key)
        self._send(contact, user, "unavailable")

    def _tell(self, target: str, user: str, presence: XmppPresence | None) -> None:
        """Send a SIP user's presence to an XMPP user."""
        jid = self.addresses.sip_user_jid(target)
        self._send(jid, user, None if presence is not None else "unavailable", presence)

    # -- SIP side -------------------------------------------------------------------
    def _on_event(self, event: EngineEvent) -> None:
        key = getattr(event, "key", None)
        if key is not None and key.source_flag in (
            SourceFlag.XMPP_SUBSCRIBE,
            SourceFlag.XMPP_INITIAL_SUBS,
        ):
            # Acted on once the engine's step that delivered it is over.
            asyncio.get_running_loop().call_soon(self._on_sip, event)

    def _on_sip(self, event: EngineEvent) -> None:
        key = event.key
        assert key is not None
        try:
            if key.source_flag == SourceFlag.XMPP_INITIAL_SUBS:
                if isinstance(event, NotifyReceived):
                    self._on_watchers(key, event)
            elif isinstance(event, NotifyReceived):
                self._on_notify(key, event)
            elif isinstance(event, SubscriptionFailed) and event.retry_at is None:
                self._refused(key, f"{event.status} {event.reason}")
            elif isinstance(event, SubscriptionTerminated) and event.reason != "unsubscribed":
                self._refused(key, event.reason)
        except AddressError as exc:
            log.warning(
                "cannot turn %s for %s into XMPP: %s", type(event).__name__, key.pres_uri, exc
            )
        self._save()

    def _on_notify(self, key: RecordKey, event: NotifyReceived) -> None:
        user, target = key.id, key.pres_uri
        contact = self.addresses.sip_user_jid(target)
        if event.state == "terminated":
            if (event.reason or "") == "timeout":
                return  # the seed skips it: the subscription is made again
            # unavailable for now; if the engine gives the subscription up,
            # SubscriptionTerminated follows and says unsubscribed
            self._confirmed.discard(key)
            self._send(contact, user, "unavailable")
            return
        self.counters["notifies"] += 1
        if (
            event.state == "active"
            and key not in self._confirmed
            and self._send(contact, user, "subscribed")
        ):
            self._confirmed.add(key)
        presence = _notified(event)
        self.state.set_sip_presence(target, presence)
        if event.state == "active":
            self._tell(target, user, presence)

    def _refused(self, key: RecordKey, why: str) -> None:
        if key.source_flag != SourceFlag.XMPP_SUBSCRIBE:
            log.warning("watcher information of %s is not watched: %s", key.pres_uri, why)
            return
        self._unwatched(key)
        contact = self.addresses.sip_user_jid(key.pres_uri)
        log.info("%s may not watch %s: %s", key.id, key.pres_uri, why)
        self._send(contact, key.id, "unavailable")
        self._send(contact, key.id, "unsubscribed")

    def _watch_watchers(self, user: str) -> None:
        """Subscribe to the watcher information of an XMPP user's SIP address."""
        if not self.settings.winfo:
            return
        try:
            uri = self.addresses.xmpp_user_uri(user)
        except AddressError as exc:
            log.error("cannot watch the watchers of %s: %s", user, exc)
            return
        key = RecordKey(uri, self._winfo_flag, user, int(SourceFlag.XMPP_INITIAL_SUBS), uri)
        if self.runtime.record(key) is not None:
            return
        info = SubscribeInfo(
            pres_uri=uri,
            watcher_uri=uri,
            event="presence.winfo",
            expires=-1,
            id=user,
            contact=self.settings.server_address,
            source_flag=SourceFlag.XMPP_INITIAL_SUBS,
        )
        try:
            self.runtime.send_subscribe(info)
        except (PresenceError, ValueError) as exc:
            log.error("cannot subscribe to the watchers of %s: %s", uri, exc)

    def _on_watchers(self, key: RecordKey, event: NotifyReceived) -> None:
        document = event.document
        if not isinstance(document, WatcherInfo):
            if not event.body.strip():
                return
            try:
                document = parse_watcherinfo(event.body)
            except BodyError as exc:
                log.warning("watcher information of %s unreadable: %s", key.pres_uri, exc)
                return
        user, uri = key.id, key.pres_uri
        current: set[str] = set()
        for watchers in document.lists:
            if watchers.package != "presence":
                continue
            for watcher in watchers.watchers:
                address = watcher.uri.strip()
                if watcher.status == "terminated":
                    self.state.remove_watcher(user, address)
                    continue
                current.add(address)
                if address == uri or self.addresses.is_xmpp_user_uri(address):
                    continue  # the user, or an XMPP user: not asked
                if address in self.state.watchers.get(user, ()):
                    continue
                try:
                    contact = self.addresses.sip_user_jid(address)
                except AddressError as exc:
                    log.info("watcher %s of %s has no JID: %s", address, user, exc)
                    continue
                if self._send(contact, user, "subscribe"):
                    self.state.add_watcher(user, address)
                    self.counters["watchers_asked"] += 1
        if document.state == "full":
            for gone in self.state.watchers.get(user, set()) - current:
                self.state.remove_watcher(user, gone)

    # -- the store ------------------------------------------------------------------
    def _save(self) -> None:
        """Write what changed (in the background, in groups)."""
        if self.store is None:
            self.state.take_changes()
            return
        if self.state.pending and (self._writer is None or self._writer.done()):
            self._writer = asyncio.get_running_loop().create_task(self._write())

    async def _write(self) -> None:
        assert self.store is not None
        while self.state.pending:
            changes = self.state.take_changes()
            try:
                await self.store.save_xmpp(changes)
            except asyncio.CancelledError:
                # Stopping: stop() stores what is given back (writing it
                # again is harmless if this write did land).
                self.state.give_back(changes)
                raise
            except StoreError as exc:
                self.state.give_back(changes)
                log.error("storing the XMPP gateway's state failed (trying again): %s", exc)
                await asyncio.sleep(1.0)


def _local(tag: object) -> str | None:
    """An element's name without its namespace (None for comments)."""
    return tag.rpartition("}")[2] if isinstance(tag, str) else None


def _read(xml: Element) -> _Stanza:
    """A presence stanza's type, addresses and content; _Refused for one
    that is not well formed (RFC 6121 §4.7)."""
    kind = xml.get("type") or "available"
    if kind not in PRESENCE_TYPES:
        raise _Refused("bad-request", f"presence type {kind!r} is not one of RFC 6121")
    if not xml.get("from") or not xml.get("to"):
        raise _Refused("jid-malformed", "a presence stanza needs its from and to")
    try:
        sender = JID(xml.get("from") or "")
        to = JID(xml.get("to") or "")
    except InvalidJID as exc:
        raise _Refused("jid-malformed", f"bad address: {exc}") from None
    show = status = None
    priority = 0
    for child in xml:
        name = _local(child.tag)
        text = (child.text or "").strip()
        if name == "show":
            if text not in SHOWS:
                raise _Refused("bad-request", f"show {text!r} is not away, chat, dnd or xa")
            show = text
        elif name == "status" and status is None:
            if len(text) > MAX_STATUS:
                raise _Refused("not-acceptable", f"a status over {MAX_STATUS} characters")
            status = text or None
        elif name == "priority":
            try:
                priority = int(text)
            except ValueError:
                raise _Refused("bad-request", f"priority {text!r} is not an integer") from None
            if not -128 <= priority <= 127:
                raise _Refused("bad-request", f"priority {priority} is not within -128..127")
    return _Stanza(kind, sender, to, show, status, priority)


def _notified(event: NotifyReceived) -> XmppPresence | None:
    """The XMPP presence a NOTIFY carries (None: unavailable)."""
    document = event.document
    if not isinstance(document, PidfPresence):
        if not event.body.strip():
            return None
        try:
            document = parse_pidf(event.body)
        except BodyError as exc:
            log.info("a NOTIFY's body is not PIDF (%s): unavailable", exc)
            return None
    return from_pidf(document)


def _error_text(xml: Element) -> str:
    for element in xml.iter():
        if _local(element.tag) == "error":
            conditions = [str(_local(c.tag)) for c in element if _local(c.tag)]
            return ", ".join(conditions) or "error"
    return "error"
