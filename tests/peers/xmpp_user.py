"""XMPP endpoints for the tests, driven from synchronous code (slixmpp).

:class:`XmppUser` is a client (slixmpp ``ClientXMPP``) that logs in with
SASL PLAIN over an unencrypted stream (what :class:`tests.peers.prosody.Prosody`
serves on loopback); :class:`XmppComponent` is an XEP-0114 external
component (slixmpp ``ComponentXMPP``).  Each runs its own asyncio loop in
its own thread; the blocking methods hand work to that loop
(``asyncio.run_coroutine_threadsafe``) and wait at most their timeout.

Every presence, message and iq error received is recorded, in order
(:class:`PresenceSeen`, :class:`MessageSeen`, ``iq_errors``); the
``wait_*`` methods wait (a :class:`threading.Condition`) for a matching
one and raise AssertionError, listing what was seen, on timeout.

Subscriptions are not answered automatically: slixmpp's roster would
approve (``auto_authorize = True``) or, with ``False``, *deny* every
request; both endpoints set ``auto_authorize = None`` and
``auto_subscribe = False`` so that the tests decide.  A plain
``ComponentXMPP`` also answers every probe from a JID not in its
in-memory roster, and every unsubscribe, with ``unsubscribed``;
:class:`XmppComponent` removes those two handlers.

Unlike the rest of ``tests/peers`` this module needs a third-party package:
slixmpp.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import slixmpp
from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath, StanzaPath

from . import PeerError, _track, _untrack

__all__ = ["Logins", "MessageSeen", "PresenceSeen", "XmppComponent", "XmppUser", "bare"]

STANZAS_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"
T = TypeVar("T")


def bare(jid: str) -> str:
    """``user@host`` of ``user@host/resource``."""
    return jid.split("/", 1)[0]


@dataclass(frozen=True)
class PresenceSeen:
    """One received presence stanza.  ``type`` is ``"available"`` when
    the stanza has no ``type`` attribute; ``from_jid`` is as sent (full)."""

    from_jid: str
    type: str
    show: str | None
    status: str | None
    priority: int | None
    error_condition: str | None
    xml: str
    to_jid: str = ""

    @property
    def from_bare(self) -> str:
        return bare(self.from_jid)

    def brief(self) -> str:
        parts = [self.type, f"from={self.from_jid}", f"to={self.to_jid}"]
        for name in ("show", "status", "priority", "error_condition"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        return " ".join(parts)


@dataclass(frozen=True)
class MessageSeen:
    """One received message stanza (``type`` ``"normal"`` when absent)."""

    from_jid: str
    type: str
    body: str | None
    error_condition: str | None
    xml: str
    to_jid: str = ""

    def brief(self) -> str:
        return f"{self.type} from={self.from_jid} body={self.body!r} error={self.error_condition}"


def _child(el: Any, name: str) -> Any:
    ns = el.tag[1:].split("}", 1)[0] if el.tag.startswith("{") else ""
    return el.find(f"{{{ns}}}{name}" if ns else name)


def _text(el: Any, name: str) -> str | None:
    child = _child(el, name)
    return None if child is None else (child.text or "")


def _error_condition(el: Any) -> str | None:
    err = _child(el, "error")
    if err is None:
        return None
    for child in err:
        tag = child.tag
        if tag.startswith("{" + STANZAS_NS + "}") and not tag.endswith("}text"):
            return tag.split("}", 1)[1]
    return ""


def _presence_seen(stanza: Any) -> PresenceSeen:
    el = stanza.xml
    prio = _text(el, "priority")
    try:
        priority = int(prio) if prio is not None else None
    except ValueError:
        priority = None
    return PresenceSeen(
        from_jid=el.get("from", ""),
        type=el.get("type") or "available",
        show=_text(el, "show"),
        status=_text(el, "status"),
        priority=priority,
        error_condition=_error_condition(el),
        xml=str(stanza),
        to_jid=el.get("to", ""),
    )


def _message_seen(stanza: Any) -> MessageSeen:
    el = stanza.xml
    return MessageSeen(
        from_jid=el.get("from", ""),
        type=el.get("type") or "normal",
        body=_text(el, "body"),
        error_condition=_error_condition(el),
        xml=str(stanza),
        to_jid=el.get("to", ""),
    )


class _Endpoint:
    """An slixmpp stream in a thread of its own, with what it received."""

    _label = "XMPP endpoint"

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = int(port)
        self.presences: list[PresenceSeen] = []
        self.messages: list[MessageSeen] = []
        self.iq_errors: list[str] = []
        self.xmpp: Any = None
        self.session_started = False
        self.disconnected = threading.Event()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ----------------------------------------------------------- the thread
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is not None:
            return self._loop
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name=f"{self._label} loop", daemon=True)
        self._thread.start()
        self._loop = loop
        return loop

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run ``coro`` on the endpoint's loop; wait at most ``timeout``."""
        fut = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise TimeoutError(f"{self._label}: no result within {timeout}s") from None

    def _do(self, fn: Callable[[], T], timeout: float = 5.0) -> T:
        """Call ``fn`` on the loop (slixmpp objects live there)."""
        if self.xmpp is None or self._loop is None:
            raise PeerError(f"{self._label} {self._name()} is not connected")

        async def call() -> T:
            return fn()

        return self._run(call(), timeout)

    def _stop_loop(self, timeout: float) -> None:
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # already closed
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    # ------------------------------------------------------------ the stream
    def _make(self) -> Any:
        """The slixmpp object (built on the endpoint's loop)."""
        raise NotImplementedError

    def _after_session_start(self, xmpp: Any, timeout: float) -> Coroutine[Any, Any, None] | None:
        return None

    def _install(self, xmpp: Any) -> None:
        ns = xmpp.default_ns
        # Never answer subscriptions on the tests' behalf (False would deny).
        xmpp.roster.auto_authorize = None
        xmpp.roster.auto_subscribe = False
        xmpp.register_handler(
            Callback("test presence log", MatchXPath(f"{{{ns}}}presence"), self._on_presence)
        )
        xmpp.register_handler(
            Callback("test message log", MatchXPath(f"{{{ns}}}message"), self._on_message)
        )
        xmpp.register_handler(
            Callback("test iq error log", StanzaPath("iq@type=error"), self._on_iq_error)
        )
        xmpp.add_event_handler("disconnected", lambda _e: self.disconnected.set())

    def _on_presence(self, stanza: Any) -> None:
        seen = _presence_seen(stanza)
        with self._cond:
            self.presences.append(seen)
            self._cond.notify_all()

    def _on_message(self, stanza: Any) -> None:
        seen = _message_seen(stanza)
        with self._cond:
            self.messages.append(seen)
            self._cond.notify_all()

    def _on_iq_error(self, stanza: Any) -> None:
        with self._cond:
            self.iq_errors.append(str(stanza))
            self._cond.notify_all()

    async def _connect(self, within: float) -> None:
        xmpp = self._make()
        self._install(xmpp)
        started = asyncio.Event()
        ended = asyncio.Event()
        why: list[str] = []

        def fail(reason: str) -> None:
            why.append(reason)
            ended.set()

        xmpp.add_event_handler("session_start", lambda _e: started.set())
        xmpp.add_event_handler("failed_all_auth", lambda _e: fail("authentication failed"))
        xmpp.add_event_handler(
            "stream_error",
            lambda e: fail(f"stream error <{e['condition']}/> {e['text']!r}".strip()),
        )
        xmpp.add_event_handler("connection_failed", lambda e: fail(f"connection failed: {e}"))
        xmpp.add_event_handler("disconnected", lambda e: fail(f"disconnected: {e}"))
        self.xmpp = xmpp
        self.disconnected.clear()
        xmpp.connect(self.host, self.port)
        waits = [asyncio.ensure_future(started.wait()), asyncio.ensure_future(ended.wait())]
        try:
            await asyncio.wait(waits, timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
        if not started.is_set():
            # No reconnection attempts behind our back.
            xmpp.cancel_connection_attempt()
            xmpp.abort()
            reason = why[0] if why else f"no session within {within}s"
            raise PeerError(
                f"{self._label} {self._name()} could not connect to "
                f"{self.host}:{self.port}: {reason}"
            )
        self.session_started = True
        after = self._after_session_start(xmpp, within)
        if after is not None:
            await after

    def _name(self) -> str:
        raise NotImplementedError

    def _connect_blocking(self, timeout: float) -> None:
        if self.session_started and not self.disconnected.is_set():
            raise PeerError(f"{self._label} {self._name()} is already connected")
        self.session_started = False
        _track(self)  # disconnected at interpreter exit if a test forgot it
        try:
            self._run(self._connect(timeout), timeout + 5.0)
        except BaseException:
            self._stop_loop(5.0)  # ends what is left of the stream's tasks
            _untrack(self)
            raise

    def disconnect(self, timeout: float = 5.0) -> None:
        """Close the stream (waiting at most ``timeout`` for the server's
        end of stream) and stop the thread."""
        xmpp = self.xmpp
        if xmpp is not None and self._loop is not None and not self.disconnected.is_set():

            async def close() -> None:
                done = xmpp.disconnect(wait=min(2.0, timeout))
                try:
                    await asyncio.wait_for(done, timeout)
                except TimeoutError:
                    xmpp.abort()

            with contextlib.suppress(TimeoutError, PeerError):
                self._run(close(), timeout + 1.0)
        self._stop_loop(timeout)
        self.session_started = False
        _untrack(self)

    def stop(self) -> None:
        """The same as :meth:`disconnect` (what the peers' clean-up calls)."""
        self.disconnect()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.disconnect()

    def send_raw(self, xml_text: str) -> None:
        """Send text as it is on the stream (e.g. a malformed stanza)."""
        self._do(lambda: self.xmpp.send_raw(xml_text))

    def send_message(self, to: str, body: str, mtype: str = "chat") -> None:
        self._do(lambda: self.xmpp.send_message(mto=to, mbody=body, mtype=mtype))

    # ------------------------------------------------------------------ waits
    def mark(self) -> int:
        """How many presences were recorded so far (a ``since`` index)."""
        with self._cond:
            return len(self.presences)

    def _wait(
        self,
        records: list[Any],
        what: str,
        predicate: Callable[[Any], bool],
        timeout: float,
        since: int,
    ) -> Any:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in records[since:]:
                    if predicate(item):
                        return item
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = (
                        "\n  ".join(x.brief() if hasattr(x, "brief") else x for x in records)
                        or "(nothing)"
                    )
                    raise AssertionError(
                        f"{self._label} {self._name()}: no matching {what} "
                        f"within {timeout}s; seen:\n  {seen}"
                    )
                self._cond.wait(remaining)

    def wait_presence(
        self, predicate: Callable[[PresenceSeen], bool], timeout: float = 10.0, since: int = 0
    ) -> PresenceSeen:
        """The first recorded presence (from index ``since`` on) that
        matches ``predicate``, waiting at most ``timeout`` for it."""
        return self._wait(self.presences, "presence", predicate, timeout, since)

    def wait_available(self, from_bare: str, timeout: float = 10.0, since: int = 0) -> PresenceSeen:
        return self.wait_presence(
            lambda p: p.type == "available" and p.from_bare == from_bare, timeout, since
        )

    def wait_unavailable(
        self, from_bare: str, timeout: float = 10.0, since: int = 0
    ) -> PresenceSeen:
        return self.wait_presence(
            lambda p: p.type == "unavailable" and p.from_bare == from_bare, timeout, since
        )

    def wait_subscribe_request(
        self, from_bare: str, timeout: float = 10.0, since: int = 0
    ) -> PresenceSeen:
        return self.wait_presence(
            lambda p: p.type == "subscribe" and p.from_bare == from_bare, timeout, since
        )

    def wait_subscribed(
        self, from_bare: str, timeout: float = 10.0, since: int = 0
    ) -> PresenceSeen:
        return self.wait_presence(
            lambda p: p.type == "subscribed" and p.from_bare == from_bare, timeout, since
        )

    def wait_error(self, timeout: float = 10.0, since: int = 0) -> PresenceSeen:
        return self.wait_presence(lambda p: p.type == "error", timeout, since)

    def wait_message(
        self, predicate: Callable[[MessageSeen], bool], timeout: float = 10.0, since: int = 0
    ) -> MessageSeen:
        return self._wait(self.messages, "message", predicate, timeout, since)

    def wait_iq_error(self, timeout: float = 10.0, since: int = 0) -> str:
        return self._wait(self.iq_errors, "iq error", lambda _x: True, timeout, since)

    def wait_disconnected(self, timeout: float = 10.0) -> None:
        if not self.disconnected.wait(timeout):
            raise AssertionError(f"{self._label} {self._name()} still connected after {timeout}s")


class XmppUser(_Endpoint):
    """A client ``jid`` (bare, or full to choose the resource) logging in
    to ``host:port`` with ``password``: no TLS, SASL PLAIN."""

    _label = "XmppUser"

    def __init__(self, jid: str, password: str, host: str, port: int) -> None:
        super().__init__(host, port)
        self.jid = jid
        self.password = password
        self._initial_presence = False

    def _name(self) -> str:
        return self.jid

    @property
    def full_jid(self) -> str:
        """The bound full JID (after connect)."""
        return str(self.xmpp.boundjid.full) if self.xmpp is not None else ""

    @property
    def bare_jid(self) -> str:
        return bare(self.jid)

    def _make(self) -> Any:
        xmpp = slixmpp.ClientXMPP(self.jid, self.password)
        xmpp.enable_starttls = False
        xmpp.enable_direct_tls = False
        xmpp.enable_plaintext = True
        # PLAIN on a stream without TLS: slixmpp refuses it by default.
        xmpp.plugin["feature_mechanisms"].unencrypted_plain = True
        return xmpp

    async def _roster_fetch(self, xmpp: Any, within: float) -> None:
        await xmpp.get_roster(timeout=within)
        if self._initial_presence:
            xmpp.send_presence()

    def _after_session_start(self, xmpp: Any, timeout: float) -> Coroutine[Any, Any, None]:
        return self._roster_fetch(xmpp, timeout)

    def connect(self, timeout: float = 10.0, presence: bool = False) -> Self:
        """Log in, wait for the session and fetch the roster; send the
        initial presence only with ``presence=True``.  PeerError if the
        login fails.  Can be called again after a disconnection."""
        self._initial_presence = presence
        self._connect_blocking(timeout)
        return self

    def roster(self, timeout: float = 5.0) -> dict[str, dict[str, Any]]:
        """The roster as the server has it now: bare JID -> ``subscription``,
        ``ask``, ``name``, ``groups``."""
        xmpp = self.xmpp
        if xmpp is None:
            raise PeerError("XmppUser is not connected")

        async def fetch() -> dict[str, dict[str, Any]]:
            iq = xmpp.Iq()
            iq["type"] = "get"
            iq.enable("roster")  # no 'ver': always the full roster
            result = await iq.send(timeout=timeout)
            return {str(jid): dict(item) for jid, item in result["roster"]["items"].items()}

        return self._run(fetch(), timeout + 1.0)

    def send_presence(
        self,
        show: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        to: str | None = None,
        ptype: str | None = None,
    ) -> None:
        self._do(
            lambda: self.xmpp.send_presence(
                pshow=show, pstatus=status, ppriority=priority, pto=to, ptype=ptype
            )
        )

    def subscribe(self, jid: str) -> None:
        self.send_presence(to=jid, ptype="subscribe")

    def approve(self, jid: str) -> None:
        """Answer a subscription request: ``subscribed``."""
        self.send_presence(to=jid, ptype="subscribed")

    def deny(self, jid: str) -> None:
        """Refuse (or cancel) a subscription: ``unsubscribed``."""
        self.send_presence(to=jid, ptype="unsubscribed")

    def unsubscribe(self, jid: str) -> None:
        self.send_presence(to=jid, ptype="unsubscribe")

    def probe(self, jid: str) -> None:
        self.send_presence(to=jid, ptype="probe")

    def go_offline(self, status: str | None = None) -> None:
        """Broadcast ``unavailable`` (the stream stays open)."""
        self.send_presence(status=status, ptype="unavailable")


class XmppComponent(_Endpoint):
    """An XEP-0114 component ``jid`` (a domain) on ``host:port`` with
    ``secret`` (handshake = sha1(stream id + secret))."""

    _label = "XmppComponent"

    def __init__(self, jid: str, secret: str, host: str, port: int) -> None:
        super().__init__(host, port)
        self.jid = jid
        self.secret = secret

    def _name(self) -> str:
        return self.jid

    def _make(self) -> Any:
        xmpp = ComponentXMPP(self.jid, self.secret, self.host, self.port)
        # Its in-memory roster would answer a probe from a JID it does not
        # know, and any unsubscribe, with 'unsubscribed': leave it to the tests.
        xmpp.del_event_handler("presence_probe", xmpp._handle_probe)
        xmpp.del_event_handler("presence_unsubscribe", xmpp._handle_unsubscribe)
        return xmpp

    def connect(self, timeout: float = 10.0) -> Self:
        """Open the stream and wait for the handshake's answer; PeerError
        (with the stream error) if the server refuses it."""
        self._connect_blocking(timeout)
        return self

    def send_many(self, stanzas: list[dict[str, Any]], timeout: float = 30.0) -> None:
        """Send many presences at once (``send_presence``'s keyword
        arguments each), in one hop to the stream's loop: a load generator."""

        def send_all() -> None:
            for item in stanzas:
                self.xmpp.send_presence(
                    pshow=item.get("show"), pstatus=item.get("status"),
                    ppriority=item.get("priority"), pto=item["to"], pfrom=item["pfrom"],
                    ptype=item.get("ptype"),
                )

        self._do(send_all, timeout)

    def count(self, predicate: Callable[[PresenceSeen], bool]) -> int:
        """How many recorded presences match ``predicate``."""
        with self._cond:
            return sum(1 for p in self.presences if predicate(p))

    def send_presence(
        self,
        pfrom: str,
        to: str,
        show: str | None = None,
        status: str | None = None,
        priority: int | None = None,
        ptype: str | None = None,
    ) -> None:
        """A presence from ``pfrom`` (a JID of the component's domain)."""
        self._do(
            lambda: self.xmpp.send_presence(
                pshow=show, pstatus=status, ppriority=priority, pto=to, pfrom=pfrom, ptype=ptype
            )
        )


class Logins:
    """The XMPP users a test logs in (``logins(prosody, "bob")``: that
    account's password on that server), all logged out by :meth:`close`."""

    def __init__(self) -> None:
        self.made: list[XmppUser] = []

    def __call__(self, server: Any, user: str, *, presence: bool = True,
                 password: str | None = None, resource: str | None = None) -> XmppUser:
        jid = f"{user}@{server.domain}" + (f"/{resource}" if resource else "")
        client = XmppUser(jid, password or server.users[user], server.host, server.c2s_port)
        self.made.append(client)
        return client.connect(presence=presence)

    def close(self) -> None:
        for client in self.made:
            client.disconnect()
