"""``pua.Agent``: the asyncio face of pua that applications embed.

::

    async with pua.Agent(server="sip:presence.example.com") as agent:
        pub = await agent.publish("sip:alice@example.com", pidf_bytes)
        await pub.update(other_pidf_bytes)

        async with agent.subscribe("sip:bob@example.com", watcher="sip:alice@example.com") as sub:
            async for notification in sub:
                print(notification.state, notification.document)

Publications and subscriptions keep themselves alive (refreshes, recovery
from 412, 423, 481, timeouts) in the engine underneath
(:class:`pua.runtime.PresenceRuntime` over :class:`pua.core.PresenceEngine`);
this module only turns its events into awaitables and iterators.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from pua.adapters.dialogs import DialogOptions, Dialogs
from pua.adapters.registrations import Registrations, RegistrationSettings
from pua.core import (
    Body,
    EngineConfig,
    EngineEvent,
    EventPackage,
    NotifyReceived,
    PublicationFailed,
    PublicationRemoved,
    PublicationSucceeded,
    PublishInfo,
    PubState,
    RecordKey,
    SourceFlag,
    SubscribeInfo,
    SubscriptionAccepted,
    SubscriptionFailed,
    SubscriptionStateChanged,
    SubscriptionTerminated,
    default_registry,
)
from pua.core.requests import parse_next_hop
from pua.errors import PublishError, StateError, SubscribeError, UsageError
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.persistence import StoreSync
from pua.sip.auth import Credential
from pua.sip.timers import TimerConfig
from pua.store import Store

__all__ = ["Agent", "EventStream", "Notification", "Publication", "Subscription"]

# How long a clean exit waits for removals and unsubscribes to be answered.
EXIT_GRACE = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One NOTIFY of a subscription, already answered 200."""

    state: str
    """Subscription-State: active, pending or terminated."""
    reason: str | None
    """The terminated reason (deactivated, rejected, ...), if any."""
    expires: int | None
    """Seconds the notifier will keep the subscription, if it said."""
    content_type: str | None
    """Content-Type of the body."""
    body: bytes
    """The body as received."""
    document: Any
    """The parsed body (a :mod:`pua.bodies` value), or None."""


class Publication:
    """A publication that keeps itself refreshed until removed."""

    def __init__(self, agent: Agent, key: RecordKey, info: PublishInfo) -> None:
        self._agent = agent
        self.key = key
        self._info = info
        self._removed = False

    @property
    def pres_uri(self) -> str:
        """The presentity."""
        return self.key.pres_uri

    @property
    def state(self) -> str:
        """``sending``, ``published``, ``backoff`` or ``removed``."""
        record = self._agent.runtime.record(self.key)
        if record is None or self._removed:
            return "removed"
        return str(record.state.value)

    @property
    def etag(self) -> str | None:
        """The entity-tag the server gave last (None when removed)."""
        record = self._agent.runtime.record(self.key)
        return getattr(record, "etag", None) if record is not None else None

    @property
    def expires_at(self) -> float | None:
        """Unix time at which the server drops the publication unless refreshed."""
        record = self._agent.runtime.record(self.key)
        if record is None or record.state is not PubState.PUBLISHED:
            return None
        return record.expires_at

    async def update(self, body: Body, *, content_type: str | None = None) -> None:
        """Publish a new body; returns after its 2xx.  Updates made while
        another is in flight are merged: the newest body wins.  Raises
        PublishError on a final failure."""
        if self._removed:
            raise PublishError(f"{self.pres_uri}: publication removed", status=0, reason="removed")
        info = _copy_publish(self._info, body=body, content_type=content_type)
        await self._agent.runtime.publish(info)

    async def remove(self) -> None:
        """Remove the publication (a PUBLISH with Expires: 0) and wait for
        the answer.  Raises PublishError when the server could not be told
        (the publication then expires on its own)."""
        if self._removed:
            return
        self._removed = True
        self._agent._publications.pop(self.key, None)
        info = _copy_publish(self._info, body=None, expires=0)
        await self._agent.runtime.publish(info)

    def __repr__(self) -> str:
        return f"<Publication {self.pres_uri} {self.key.id or ''} {self.state}>"


class Subscription:
    """A subscription: an async context manager and an async iterator of
    :class:`Notification`.  Iteration ends when the subscription ends for
    good; :attr:`reason` then says why."""

    def __init__(self, agent: Agent, info: SubscribeInfo) -> None:
        self._agent = agent
        self._info = info
        self.key: RecordKey | None = None
        self._queue: asyncio.Queue[Notification | None] = asyncio.Queue()
        self._active = asyncio.Event()
        self._ended = asyncio.Event()
        self.state = "init"
        """init, pending, active, terminated."""
        self.reason: str | None = None
        """Why the subscription ended (None while it lives)."""
        self.expires_at: float | None = None
        self._failed = asyncio.Event()
        self._failure: SubscribeError | None = None
        self._accepted = False

    @property
    def pres_uri(self) -> str:
        """The resource watched."""
        return self._info.pres_uri

    def start(self) -> Subscription:
        """Send the SUBSCRIBE (``async with`` and iteration do it for you)."""
        if self.key is None:
            self.key = self._agent._start_subscription(self)
        return self

    async def __aenter__(self) -> Subscription:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.unsubscribe()

    def __aiter__(self) -> AsyncIterator[Notification]:
        self.start()
        return self

    async def __anext__(self) -> Notification:
        item = await self._queue.get()
        if item is None:
            self._queue.put_nowait(None)  # further iterations end too
            raise StopAsyncIteration
        return item

    async def wait_active(self) -> None:
        """Wait until the notifier says active (a NOTIFY).  Raises
        SubscribeError when an attempt fails first (with the SIP status and
        reason, and ``retrying`` True when pua keeps trying in the
        background), when the subscription ends, or when nothing comes
        within the runtime's ``answer_within``."""
        if self.key is not None:  # started before: wait for what comes next
            self._failed.clear()
            self._failure = None
        self.start()
        waiters = {
            asyncio.ensure_future(self._active.wait()),
            asyncio.ensure_future(self._ended.wait()),
            asyncio.ensure_future(self._failed.wait()),
        }
        limit = self._agent.runtime.answer_within
        try:
            await asyncio.wait(waiters, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        if self._active.is_set():
            return
        if self._failure is not None:
            raise self._failure
        if self._ended.is_set():
            raise SubscribeError(
                f"subscription to {self.pres_uri} ended: {self.reason}",
                status=0,
                reason=self.reason or "ended",
                key=self.key,
            )
        raise SubscribeError(
            f"subscription to {self.pres_uri}: no NOTIFY within {limit:g} s",
            status=408,
            reason=f"No outcome within {limit:g} s",
            retrying=True,
            key=self.key,
        )

    @property
    def last_failure(self) -> str | None:
        """Status and reason of the last failed attempt, if any."""
        failure = self._failure
        return None if failure is None else f"{failure.status} {failure.reason}"

    @property
    def accepted(self) -> bool:
        """Whether the notifier has ever accepted the subscription (a 2xx or
        a NOTIFY)."""
        return self._accepted

    async def unsubscribe(self) -> None:
        """End the subscription (SUBSCRIBE with Expires: 0) and wait for its
        answer (bounded); iteration ends."""
        if self.key is None or self._ended.is_set():
            self._finish("unsubscribed")
            return
        info = _copy_subscribe(self._info, expires=0)
        try:
            async with asyncio.timeout(EXIT_GRACE + 64 * self._agent.config.timers.t1):
                await self._agent.runtime.subscribe(info)
        except (SubscribeError, TimeoutError):
            pass
        self._finish("unsubscribed")

    # -- fed by the agent ---------------------------------------------------
    def _on_event(self, event: EngineEvent) -> None:
        if isinstance(event, SubscriptionAccepted):
            self._accepted = True
            self.expires_at = event.expires_at
            self._failed.clear()
        elif isinstance(event, NotifyReceived):
            self._accepted = True
            self._failed.clear()
            self.state = event.state
            if event.state == "active":
                self._active.set()
            self._queue.put_nowait(
                Notification(
                    state=event.state,
                    reason=event.reason,
                    expires=event.expires,
                    content_type=event.content_type,
                    body=event.body,
                    document=event.document,
                )
            )
        elif isinstance(event, SubscriptionStateChanged):
            self.state = event.state
            self.expires_at = event.expires_at
            if event.state == "active":
                self._active.set()
        elif isinstance(event, SubscriptionFailed):
            if event.retry_at is None:
                self.reason = f"{event.status} {event.reason}"
            retrying = event.retry_at is not None
            self._failure = SubscribeError(
                f"SUBSCRIBE to {self.pres_uri} failed: {event.status} {event.reason}"
                + ("; pua keeps retrying" if retrying else ""),
                status=event.status,
                reason=event.reason,
                retrying=retrying,
                retry_at=event.retry_at,
                key=event.key,
            )
            self._failed.set()
        elif isinstance(event, SubscriptionTerminated):
            self._finish(self.reason or event.reason)

    def _finish(self, reason: str) -> None:
        if self._ended.is_set():
            return
        self.state = "terminated"
        self.reason = self.reason or reason
        self._ended.set()
        self._queue.put_nowait(None)
        if self.key is not None:
            self._agent._subscriptions.pop(self.key, None)

    def __repr__(self) -> str:
        return f"<Subscription {self.pres_uri} {self.state}>"


class EventStream:
    """An async iterator over an agent's engine events (see Agent.events)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent
        self._queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> EngineEvent:
        event = await self._queue.get()
        if event is None:
            self.close()
            raise StopAsyncIteration
        return event

    def close(self) -> None:
        """Stop collecting events."""
        with contextlib.suppress(ValueError):
            self._agent._streams.remove(self._queue)


class Agent:
    """A presence user agent on asyncio.

    ``server`` (or ``outbound_proxy``, the seed's name for it) is the next
    hop of every request (the presence server or an outbound proxy);
    ``listen`` the addresses NOTIFYs come to, in Kamailio's syntax
    (``udp:127.0.0.1:5062``; default: UDP on loopback, port chosen by the
    system).  With ``db_url`` or ``data_dir`` the records
    are kept in a store (see the README's Storage) and taken back when the
    agent starts again.  Other settings are those of
    :class:`~pua.core.EngineConfig` (``default_expires``, ``min_expires``,
    ``hash_size``, ``t1``...).  Without a server, each request goes to its
    Request-URI's host, located by RFC 3263 with ``dns_servers``
    (``IP[:PORT]``; default: the system's resolver).  On a clean exit, publications are removed
    and subscriptions ended unless ``cleanup_on_exit`` is false.
    ``credentials`` (:class:`pua.sip.auth.Credential`) answer digest
    challenges (401/407); :meth:`publish` and :meth:`subscribe` take one
    for their own identity too.  ``registrations`` (True, or a
    :class:`~pua.adapters.registrations.RegistrationSettings`) turns on the
    registrations adapter as :attr:`registrations`: REGISTERs sent to the
    agent's SIP address, and ``await agent.registrations.register(aor,
    contact, expires)``, become bindings published as presence.
    ``dialogs`` (True, or a :class:`~pua.adapters.dialogs.DialogOptions`)
    turns on the dialog state adapter as :attr:`dialogs`: ``await
    agent.dialogs.report(CallEvent(...))`` publishes a call's state for
    its caller and callee.
    """

    def __init__(
        self,
        server: str | None = None,
        *,
        outbound_proxy: str | None = None,
        listen: Iterable[str | Listen] = (),
        cleanup_on_exit: bool = True,
        db_url: str | None = None,
        data_dir: str | Path | None = None,
        db_mode: str = "write-back",
        update_period: float = 30.0,
        config: EngineConfig | None = None,
        t1: float | None = None,
        credentials: Iterable[Credential] = (),
        dns_servers: Iterable[str] = (),
        registrations: RegistrationSettings | bool = False,
        dialogs: DialogOptions | bool = False,
        **settings: Any,
    ) -> None:
        if outbound_proxy is not None:
            if server is not None and server != outbound_proxy:
                raise UsageError(
                    "give the next hop once: server or outbound_proxy (the seed's name), not both"
                )
            server = outbound_proxy
        if config is None:
            if t1 is not None:
                settings["timers"] = TimerConfig(t1=t1, t2=max(4.0, t1))
            config = EngineConfig(outbound_proxy=server, **settings)
        elif server is not None or settings or t1 is not None:
            raise UsageError("give either config or server and settings, not both")
        self.config = config
        listens = [x if isinstance(x, Listen) else Listen.parse(x) for x in listen]
        if not listens:
            listens = [Listen("udp", "127.0.0.1", 0)]
            if server is not None and parse_next_hop(server).transport == "tcp":
                listens.append(Listen("tcp", "127.0.0.1", 0))  # a server reached over TCP
        self.registry = default_registry()
        self.runtime = PresenceRuntime(
            config, listen=listens, registry=self.registry, dns_servers=tuple(dns_servers)
        )
        for credential in credentials:
            self.runtime.credentials.add(credential)
        self.cleanup_on_exit = cleanup_on_exit
        self._store_args = (db_url, data_dir, db_mode, update_period)
        self.sync: StoreSync | None = None
        self._publications: dict[RecordKey, Publication] = {}
        self._subscriptions: dict[RecordKey, Subscription] = {}
        self._streams: list[asyncio.Queue[EngineEvent | None]] = []
        self.runtime.add_listener(self._dispatch)
        if registrations is True:
            registrations = RegistrationSettings()
        self._registration_settings = registrations or None
        self._registrations: Registrations | None = None
        self._dialog_options = DialogOptions() if dialogs is True else dialogs or None
        self._dialogs: Dialogs | None = None

    @property
    def dialogs(self) -> Dialogs:
        """The dialog state adapter (``dialogs=`` given, agent started)."""
        if self._dialogs is None:
            raise StateError("dialog state is off, or the agent is not started")
        return self._dialogs

    @property
    def registrations(self) -> Registrations:
        """The registrations adapter (``registrations=`` given, agent started)."""
        if self._registrations is None:
            raise StateError("registrations are off, or the agent is not started")
        return self._registrations

    async def __aenter__(self) -> Agent:
        db_url, data_dir, db_mode, update_period = self._store_args
        store = None
        if db_url is not None or data_dir is not None:
            store = await Store.open(db_url, data_dir=Path(data_dir or "."))
        await self.runtime.start()
        if store is not None:
            self.sync = StoreSync(self.runtime, store, mode=db_mode, update_period=update_period)
            await self.sync.restore()
            self.sync.start()
        if self._registration_settings is not None:
            self._registrations = Registrations(
                self.runtime,
                self._registration_settings,
                store=store,
                durable=self.sync.flush if self.sync is not None else None,
            )
            await self._registrations.start()
        if self._dialog_options is not None:
            self._dialogs = Dialogs(
                self.runtime,
                self._dialog_options,
                durable=self.sync.flush if self.sync is not None else None,
            )
            await self._dialogs.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close(cleanup=self.cleanup_on_exit and exc_type is None)

    async def close(self, *, cleanup: bool = True) -> None:
        """Remove publications and end subscriptions (when ``cleanup``), then
        close the sockets.  Event streams end."""
        if cleanup:
            jobs = [p.remove() for p in list(self._publications.values())]
            jobs += [s.unsubscribe() for s in list(self._subscriptions.values())]
            if jobs:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(EXIT_GRACE + 64 * self.config.timers.t1):
                        await asyncio.gather(*jobs, return_exceptions=True)
        if self._registrations is not None:
            await self._registrations.stop()
            self._registrations = None
        if self._dialogs is not None:
            await self._dialogs.stop()
            self._dialogs = None
        for sub in list(self._subscriptions.values()):
            sub._finish("agent closed")
        for stream in self._streams:
            stream.put_nowait(None)
        if self.sync is not None:
            await self.sync.close()
            self.sync = None
        await self.runtime.close()

    # -- publications ----------------------------------------------------------
    async def publish(
        self,
        pres_uri: str,
        body: Body,
        *,
        event: str = "presence",
        expires: int = 3600,
        id: str | None = None,
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        credential: Credential | None = None,
    ) -> Publication:
        """Publish ``body`` for ``pres_uri`` and return once the server
        accepted it (first 2xx).  ``expires`` -1 publishes for ever (refreshed
        with default_expires).  Raises PublishError when the first attempt
        fails (its ``retrying`` says whether pua keeps trying, ``key`` names
        the record), ValueError for what cannot be sent."""
        if credential is not None:
            self.runtime.credentials.add(replace(credential, uri=pres_uri))
        info = PublishInfo(
            pres_uri=pres_uri,
            body=body,
            event=self.event_flag(event),
            expires=expires,
            id=id or "",
            content_type=content_type,
            extra_headers=list(extra_headers),
            source_flag=SourceFlag.MI_PUBLISH,
        )
        try:
            result = await self.runtime.publish(info)
        except PublishError as exc:
            if exc.retrying and isinstance(exc.key, RecordKey):
                # pua keeps trying: the publication is ours to remove on exit.
                self._publication(exc.key, info)
            raise
        assert isinstance(result, PublicationSucceeded | PublicationRemoved)
        return self._publication(result.key, info)

    def _publication(self, key: RecordKey, info: PublishInfo) -> Publication:
        publication = self._publications.get(key)
        if publication is None:
            publication = self._publications[key] = Publication(self, key, info)
        return publication

    # -- subscriptions -----------------------------------------------------------
    def subscribe(
        self,
        pres_uri: str,
        *,
        watcher: str,
        event: str = "presence",
        expires: int = 3600,
        id: str | None = None,
        credential: Credential | None = None,
    ) -> Subscription:
        """A subscription of ``watcher`` to ``pres_uri``; it starts when used
        (``async with``, ``async for``, ``wait_active()`` or ``start()``).
        ``credential`` answers challenges for ``watcher``."""
        if credential is not None:
            self.runtime.credentials.add(replace(credential, uri=watcher))
        info = SubscribeInfo(
            pres_uri=pres_uri,
            watcher_uri=watcher,
            event=self.event_flag(event),
            expires=expires,
            id=id or "",
            source_flag=SourceFlag.MI_SUBSCRIBE,
        )
        return Subscription(self, info)

    def _start_subscription(self, subscription: Subscription) -> RecordKey:
        key = self.runtime.send_subscribe(subscription._info)
        assert key is not None
        self._subscriptions[key] = subscription
        return key

    # -- events ---------------------------------------------------------------------
    def events(self) -> EventStream:
        """Every engine event from now on (publication results, NOTIFYs,
        subscription changes) as an async iterator, until the agent closes.
        The stream collects from the moment it is made."""
        stream = EventStream(self)
        self._streams.append(stream._queue)
        return stream

    def event_flag(self, name: str) -> int:
        """The flag of event package ``name``.  An unknown name is an
        UnknownEventError naming the known ones: register a new package
        with :meth:`add_event` first."""
        return int(self.runtime.package(name).flag)

    def add_event(self, package: EventPackage) -> None:
        """Register an event package (the seed's add_event)."""
        self.runtime.add_event(package)

    def _dispatch(self, event: EngineEvent) -> None:
        key = event.key
        subscription = self._subscriptions.get(key) if key is not None else None
        if subscription is not None:
            subscription._on_event(event)
        gone = isinstance(event, PublicationRemoved) or (
            isinstance(event, PublicationFailed) and event.retry_at is None
        )
        if gone and key is not None:
            publication = self._publications.pop(key, None)
            if publication is not None:
                publication._removed = True
        for stream in self._streams:
            stream.put_nowait(event)


def _copy_publish(info: PublishInfo, **changes: Any) -> PublishInfo:
    fields = {name: getattr(info, name) for name in PublishInfo.__dataclass_fields__}
    fields.update({k: v for k, v in changes.items() if v is not None or k == "body"})
    if fields.get("content_type") is None:
        fields["content_type"] = info.content_type
    return PublishInfo(**fields)


def _copy_subscribe(info: SubscribeInfo, **changes: Any) -> SubscribeInfo:
    fields = {name: getattr(info, name) for name in SubscribeInfo.__dataclass_fields__}
    fields.update(changes)
    return SubscribeInfo(**fields)
