"""The gateway's link to the XMPP server: an external component (XEP-0114)
made with slixmpp's ``ComponentXMPP``.

slixmpp's roster is bypassed: it would answer probes and subscription
requests on its own (a probe from a JID it never saw gets
``unsubscribed``), where the gateway answers them from the SIP side.
Every presence stanza goes to one handler, raw.  The link comes back by
itself: a lost stream, a refused connection or a handshake that does not
finish is tried again after a pause that doubles up to ``max_backoff``;
while it is down nothing is queued (the gateway announces what it holds
again once the stream is back)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

from slixmpp.componentxmpp import ComponentXMPP
from slixmpp.jid import InvalidJID
from slixmpp.stanza import Presence
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath
from slixmpp.xmlstream.stanzabase import StanzaBase

__all__ = ["Component"]

log = logging.getLogger("pua.xmpp")

STANZA_NS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class _Stream(ComponentXMPP):
    """slixmpp's component with presence handed over whole."""

    def __init__(self, jid: str, secret: str, host: str, port: int) -> None:
        super().__init__(jid, secret, host, port)  # type: ignore[no-untyped-call]
        # No roster: every presence stanza goes to the gateway.
        self.remove_handler("Presence")


class Component:
    """One XEP-0114 stream to ``host``:``port`` as ``jid`` with ``secret``.

    ``on_presence(stanza)`` gets every presence stanza; ``on_up()`` runs
    each time the stream is (again) established."""

    def __init__(
        self,
        jid: str,
        secret: str,
        host: str,
        port: int,
        *,
        on_presence: Callable[[Presence], None],
        on_up: Callable[[], None],
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        handshake_timeout: float = 10.0,
    ) -> None:
        self.jid = jid
        self.host = host
        self.port = port
        self._secret = secret
        self._on_presence = on_presence
        self._on_up = on_up
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.handshake_timeout = handshake_timeout
        self.connected = False
        self.last_error: str | None = None
        self.counters = {"connects": 0, "disconnects": 0, "not_sent": 0}
        self._stream: _Stream | None = None
        self._failures = 0
        self._retry: asyncio.TimerHandle | None = None
        self._handshake: asyncio.TimerHandle | None = None
        self._stopping = False

    async def start(self) -> None:
        """Begin connecting (in the background: a server that is not up
        yet is tried again and again)."""
        stream = _Stream(self.jid, self._secret, self.host, self.port)
        stream.register_handler(
            Callback(
                "pua presence",
                MatchXPath(f"{{{stream.default_ns}}}presence"),
                self._presence,
            )
        )
        stream.add_event_handler("session_start", self._session_start)
        stream.add_event_handler("disconnected", self._disconnected)
        stream.add_event_handler("connection_failed", self._connection_failed)
        stream.add_event_handler("stream_error", self._stream_error)
        self._stream = stream
        self._connect()

    async def stop(self, wait: float = 2.0) -> None:
        """Close the stream; no more reconnecting."""
        self._stopping = True
        for handle in (self._retry, self._handshake):
            if handle is not None:
                handle.cancel()
        stream = self._stream
        if stream is None:
            return
        stream.cancel_connection_attempt()
        if self.connected:
            try:
                async with asyncio.timeout(wait + 1):
                    await stream.disconnect(wait=wait)
            except TimeoutError:
                stream.abort()
        self.connected = False

    # -- sending ---------------------------------------------------------------
    def send_presence(
        self,
        pfrom: str,
        pto: str,
        ptype: str | None = None,
        *,
        show: str | None = None,
        status: str | None = None,
    ) -> bool:
        """Send one presence stanza; False (and counted) when the stream is
        down: nothing waits for it to come back."""
        stream = self._stream
        if stream is None or not self.connected:
            self.counters["not_sent"] += 1
            return False
        stanza = stream.make_presence(pshow=show, pstatus=status, pto=pto, pfrom=pfrom)
        if ptype is not None and ptype != "available":
            stanza["type"] = ptype
        stanza.send()
        return True

    def send_error(self, stanza: Presence, condition: str, text: str, kind: str = "modify") -> bool:
        """Answer a presence stanza with a stanza error (RFC 6120 §8.3)."""
        stream = self._stream
        if stream is None or not self.connected:
            self.counters["not_sent"] += 1
            return False
        try:
            error = stream.make_presence(pto=stanza.xml.get("from"), pfrom=stanza.xml.get("to"))
        except InvalidJID:
            return False  # nobody to answer
        error["type"] = "error"
        error["error"]["type"] = kind
        error["error"]["condition"] = condition
        error["error"]["text"] = text
        error.send()
        return True

    # -- the stream's events ---------------------------------------------------
    def _connect(self) -> None:
        self._retry = None
        if self._stopping or self._stream is None:
            return
        log.info("connecting to the XMPP server at %s:%s as %s", self.host, self.port, self.jid)
        self._stream.connect(self.host, self.port)
        if self._handshake is not None:
            self._handshake.cancel()
        self._handshake = asyncio.get_running_loop().call_later(
            self.handshake_timeout, self._handshake_late
        )

    def _again(self) -> None:
        """Try again after the next pause (one pending retry at most)."""
        if self._stopping or self._retry is not None:
            return
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None
        delay = min(self.max_backoff, self.min_backoff * 2**self._failures)
        self._failures += 1
        self._retry = asyncio.get_running_loop().call_later(delay, self._connect)

    def _handshake_late(self) -> None:
        self._handshake = None
        if self.connected or self._stopping or self._stream is None:
            return
        self.last_error = f"no handshake answer within {self.handshake_timeout:g} s"
        log.warning("XMPP server at %s:%s: %s", self.host, self.port, self.last_error)
        self._stream.cancel_connection_attempt()
        self._stream.abort()
        self._again()

    def _session_start(self, _event: Any) -> None:
        if self._handshake is not None:
            self._handshake.cancel()
            self._handshake = None
        self.connected = True
        self._failures = 0
        self.last_error = None
        self.counters["connects"] += 1
        log.info("XMPP component %s is connected to %s:%s", self.jid, self.host, self.port)
        self._on_up()

    def _disconnected(self, reason: Any) -> None:
        if self.connected:
            self.counters["disconnects"] += 1
            log.warning("XMPP stream lost (%s); connecting again", reason or "closed")
        self.connected = False
        self._again()

    def _connection_failed(self, error: Any) -> None:
        self.last_error = f"cannot connect: {error}"
        log.warning("XMPP server at %s:%s: %s", self.host, self.port, self.last_error)
        if self._stream is not None:
            # Our pause, not slixmpp's (which grows to five minutes).
            self._stream.cancel_connection_attempt()
        self._again()

    def _stream_error(self, error: Any) -> None:
        condition = error["condition"] if error is not None else "unknown"
        if condition == "not-authorized":
            self.last_error = "the XMPP server refused the component (xmpp_component, xmpp_secret)"
            log.error("%s", self.last_error)
        else:
            self.last_error = f"stream error {condition}"
            log.warning("XMPP server: %s", self.last_error)

    def _presence(self, stanza: StanzaBase) -> None:
        try:
            self._on_presence(cast(Presence, stanza))
        except Exception:  # one bad stanza must not end the stream
            log.exception("handling a presence stanza failed: %s", stanza)
