"""Bridged line appearance (draft-anil-sipping-bla): Kamailio's pua_bla as a
user of :class:`~pua.runtime.PresenceRuntime` and of the registrations
adapter.

Several phones share one line (an address of record).  When a phone's
contact for a shared line registers, pua SUBSCRIBEs to that contact for
``dialog;sla`` (source flag BLA_SUBSCRIBE; to the contact itself, or
through ``bla_outbound_proxy``) and keeps the subscription while the
binding lives; when the binding ends, it unsubscribes.  Each NOTIFY a phone
sends (answered by the engine) is published again for the line as
``PUBLISH`` ``Event: dialog;sla`` (source flag BLA_PUBLISH, through the
publications' outbound proxy) with the header ``header_name`` carrying the
phone's contact, so that the presence server does not send the state back
to the phone it came from.  Each phone has a publication of its own
(``BLA_PUBLISH.<contact>``): two phones reporting at once never race for
one entity-tag, and each publication's version counts its own documents.

A line is shared when it is configured (``bla_lines``), added at run time
(:meth:`SharedLines.add`, kept in the store), or when its REGISTER carries
the header ``bla_register_header`` (a proxy's mark, Kamailio's
``bla_set_flag``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pua.adapters.registrations import Change, Registrations, aor_of
from pua.core import (
    EngineEvent,
    NotifyReceived,
    PublishInfo,
    RecordKey,
    SourceFlag,
    SubscribeInfo,
    SubscriptionTerminated,
)
from pua.errors import PresenceError, RemoteProtocolError
from pua.runtime import PresenceRuntime
from pua.sip import Request
from pua.store import Store

__all__ = ["BLA_EVENT", "BlaSettings", "SharedLines"]

log = logging.getLogger("pua.bla")

BLA_EVENT = "dialog;sla"
PUBLISH_ID_PREFIX = "BLA_PUBLISH."


@dataclass(frozen=True, slots=True, kw_only=True)
class BlaSettings:
    """What the adapter does (the service's settings of the same names)."""

    lines: Sequence[str] = ()
    register_header: str | None = None
    server_address: str | None = None
    """Contact of the SUBSCRIBEs to phones (None: the runtime's own)."""
    header_name: str = "Sender"
    outbound_proxy: str | None = None
    """Next hop of the SUBSCRIBEs (None: each phone's contact)."""
    default_domain: str | None = None


class SharedLines:
    """The shared lines, a ``dialog;sla`` subscription per registered phone
    of each, and the line's publications of what the phones notify."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        registrations: Registrations,
        settings: BlaSettings | None = None,
        *,
        store: Store | None = None,
    ) -> None:
        self.runtime = runtime
        self.registrations = registrations
        self.settings = settings or BlaSettings()
        self.store = store
        self._configured = {self._aor(line) for line in self.settings.lines}
        self._added: set[str] = set()  # by the API, stored
        self._marked: set[str] = set()  # by REGISTERs carrying register_header
        self.counters = {"subscribes": 0, "unsubscribes": 0, "notifies": 0, "publications": 0}

    # -- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Take back the lines added at run time; follow the bindings and
        the phones' NOTIFYs; subscribe to the phones already registered."""
        if self.store is not None:
            self._added = set(await self.store.load_lines())
        self.registrations.add_binding_listener(self._on_bindings)
        self.runtime.add_listener(self._on_event)
        now = self.runtime.now()
        for line in sorted(self.lines()):
            for binding in self.registrations.table.bindings(line):
                if self._subscription(line, binding.contact) is None:
                    self._subscribe(line, binding.contact, binding.remaining(now))

    async def stop(self) -> None:
        """Stop following (subscriptions and publications stay, refreshed
        by the engine; the store keeps them)."""
        self.registrations.remove_binding_listener(self._on_bindings)
        self.runtime.remove_listener(self._on_event)

    # -- the lines ----------------------------------------------------------------
    def _aor(self, aor: str) -> str:
        return aor_of(aor, self.settings.default_domain)

    def lines(self) -> set[str]:
        """Every shared line."""
        return self._configured | self._added | self._marked

    def is_shared(self, aor: str) -> bool:
        """Whether ``aor`` (an address of record key) is a shared line."""
        return aor in self._configured or aor in self._added or aor in self._marked

    async def add(self, aor: str) -> dict[str, Any]:
        """Make ``aor`` a shared line (kept in the store): its phones
        registered now and later are subscribed to.  RemoteProtocolError
        (400) for an address that is not a SIP address of record."""
        line = self._aor(aor)
        if self.store is not None and line not in self._added:
            await self.store.save_line(line, present=True)
        self._added.add(line)
        now = self.runtime.now()
        for binding in self.registrations.table.bindings(line):
            if self._subscription(line, binding.contact) is None:
                self._subscribe(line, binding.contact, binding.remaining(now))
        return self.view(line)

    async def remove(self, aor: str) -> dict[str, Any]:
        """Stop sharing a line added at run time: its phones are
        unsubscribed and its publications removed.  RemoteProtocolError
        (404) when it was not added at run time (a configured line stays)."""
        line = self._aor(aor)
        if line in self._configured:
            raise RemoteProtocolError(f"{line} is configured (bla_lines); not removed", status=409)
        if line not in self._added and line not in self._marked:
            raise RemoteProtocolError(f"{line} is not a shared line", status=404)
        if self.store is not None and line in self._added:
            await self.store.save_line(line, present=False)
        self._added.discard(line)
        self._marked.discard(line)
        for contact in self.phones(line):
            self._unsubscribe(line, contact)
        return {"line": line, "removed": True}

    def phones(self, line: str) -> list[str]:
        """The contacts of ``line`` pua subscribes to."""
        return [
            record.key.id
            for record in self.runtime.records()
            if record.key.source_flag == SourceFlag.BLA_SUBSCRIBE and record.key.pres_uri == line
        ]

    def view(self, line: str) -> dict[str, Any]:
        """A line as plain data: where it comes from and its phones."""
        source = (
            "configured"
            if line in self._configured
            else "added"
            if line in self._added
            else "register header"
        )
        return {"line": line, "source": source, "phones": sorted(self.phones(line))}

    def views(self) -> list[dict[str, Any]]:
        """Every line as plain data."""
        return [self.view(line) for line in sorted(self.lines())]

    # -- bindings -----------------------------------------------------------------
    def _on_bindings(self, changes: list[Change], request: Request | None) -> None:
        header = self.settings.register_header
        now = self.runtime.now()
        for change in changes:
            binding = change.binding
            line = binding.aor
            if header is not None and request is not None and request.header(header) is not None:
                self._marked.add(line)
            if not self.is_shared(line):
                continue
            if change.ended:
                self._unsubscribe(line, binding.contact)
            else:
                # new, or re-registered: the subscription lasts as long as
                # the binding now does (Kamailio's pua_bla does the same)
                self._subscribe(line, binding.contact, binding.remaining(now))
        if header is not None:
            # a line known only by its REGISTERs' mark lasts while it has phones
            for line in [m for m in self._marked if not self.registrations.table.bindings(m)]:
                self._marked.discard(line)

    def _key(self, line: str, contact: str) -> RecordKey:
        flag = self.runtime.registry.lookup(BLA_EVENT).flag
        return RecordKey(line, flag, contact, int(SourceFlag.BLA_SUBSCRIBE), line)

    def _subscription(self, line: str, contact: str) -> Any:
        return self.runtime.record(self._key(line, contact))

    def _info(self, line: str, contact: str, expires: int) -> SubscribeInfo:
        return SubscribeInfo(
            pres_uri=line,
            watcher_uri=line,
            event=BLA_EVENT,
            expires=expires,
            id=contact,
            contact=self.settings.server_address,
            remote_target=contact,
            # to the phone itself, never through the publications' proxy
            outbound_proxy=self.settings.outbound_proxy or contact,
            source_flag=SourceFlag.BLA_SUBSCRIBE,
        )

    def _subscribe(self, line: str, contact: str, expires: int) -> None:
        if expires <= 0:
            return
        try:
            self.runtime.send_subscribe(self._info(line, contact, expires))
            self.counters["subscribes"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot subscribe to %s for %s: %s", contact, line, exc)

    def _unsubscribe(self, line: str, contact: str) -> None:
        if self._subscription(line, contact) is None:
            return
        try:
            self.runtime.send_subscribe(self._info(line, contact, 0))
            self.counters["unsubscribes"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot unsubscribe from %s for %s: %s", contact, line, exc)

    # -- the phones' NOTIFYs ------------------------------------------------------
    def _on_event(self, event: EngineEvent) -> None:
        if (
            isinstance(event, NotifyReceived | SubscriptionTerminated)
            and event.key.source_flag == SourceFlag.BLA_SUBSCRIBE
        ):
            # Acted on once the engine's step that delivered it is over.
            asyncio.get_running_loop().call_soon(self._on_phone, event)

    def _on_phone(self, event: NotifyReceived | SubscriptionTerminated) -> None:
        key = event.key
        if isinstance(event, SubscriptionTerminated):
            self._publish(key, None, 0)
            return
        self.counters["notifies"] += 1
        if event.state == "terminated":
            self._publish(key, None, 0)
        elif event.body.strip():
            self._publish(key, event.body, event.expires)
        else:
            log.info(
                "NOTIFY without a body from %s for %s: nothing published", key.id, key.pres_uri
            )

    def _publish(self, key: RecordKey, body: bytes | None, expires: int | None) -> None:
        """Publish a phone's state for its line (None with 0: remove it)."""
        line, contact = key.pres_uri, key.id
        record = self.runtime.record(key)
        sender = contact
        if record is not None:
            sender = getattr(record, "remote_target", None) or contact
        info = PublishInfo(
            pres_uri=line,
            event=BLA_EVENT,
            body=body,
            expires=expires if expires is not None else 3600,
            id=PUBLISH_ID_PREFIX + contact,
            source_flag=SourceFlag.BLA_PUBLISH,
            extra_headers=[(self.settings.header_name, _bare(sender))],
        )
        if body is None:
            held = RecordKey(line, key.event, info.id, int(SourceFlag.BLA_PUBLISH))
            if self.runtime.record(held) is None:
                return
        try:
            self.runtime.send_publish(info)
            self.counters["publications"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot publish the state of %s for %s: %s", contact, line, exc)


def _bare(uri: str) -> str:
    """A URI without its angle brackets or header parameters (Kamailio takes
    the Sender header's value as a bare SIP URI)."""
    text = uri.strip()
    if text.startswith("<"):
        text = text[1 : text.find(">")] if ">" in text else text[1:]
    return text
