"""Calls become dialog state: Kamailio's pua_dialoginfo as a user of
:class:`~pua.runtime.PresenceRuntime`.

A proxy (or any feed) reports what happens to each call as a
:class:`~.calls.CallEvent`: through ``POST /dialogs``, ``pua.dialog`` or
:meth:`Dialogs.report`.  Each presentity the call concerns (caller and
callee, as the settings allow) has one ``dialog`` publication
(``DIALOG_PUBLISH.<Call-ID>`` of the call that opened it, source flag
DIALOG_PUBLISH) whose document is its full state: one ``<dialog>`` per
call.  Changes that come faster than the presence server answers are
merged by the engine (one PUBLISH in flight per publication, the newest
document next), so two calls of one user never race for its entity-tag.
A presentity whose calls have all ended is published once more with them
``terminated`` and an Expires of ``terminated_expires``, and then lapses; a
call that comes meanwhile starts a new publication.
The calls are not stored apart: after a restart they are read back from
the stored documents.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from pua.adapters.answers import answer_of
from pua.bodies import parse_dialog_info
from pua.core import EventFlag, PublishInfo, SourceFlag
from pua.core.records import PublicationRecord
from pua.errors import BodyError, PresenceError
from pua.runtime import PresenceRuntime
from pua.runtime.timer import DeadlineTimer

from .calls import (
    CallEvent,
    DialogOptions,
    PresentityCalls,
    apply,
    expire,
    restore,
    sides,
)

__all__ = ["DIALOG_ID_PREFIX", "Dialogs"]

log = logging.getLogger("pua.dialogs")

DIALOG_ID_PREFIX = "DIALOG_PUBLISH."


class Dialogs:
    """The calls of every presentity, and their ``dialog`` publications."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        options: DialogOptions | None = None,
        *,
        durable: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.runtime = runtime
        self.options = options or DialogOptions()
        self._durable = durable
        self._presentities: dict[str, PresentityCalls] = {}
        # (when, uri): each presentity's next deadline (a call's lifetime
        # ends, or an ended call is to be forgotten); _due holds the one
        # that counts, older heap entries are skipped.
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}
        self._timer = DeadlineTimer(runtime.now, self._on_timer)
        self.counters = {"events": 0, "ignored": 0, "publications": 0, "timeouts": 0}

    # -- life cycle ---------------------------------------------------------------
    async def start(self) -> None:
        """Take back the calls of the stored dialog publications."""
        now = self.runtime.now()
        for record in self.runtime.records():
            if (
                record.source_flag != SourceFlag.DIALOG_PUBLISH
                or not isinstance(record, PublicationRecord)
                or not record.body
            ):
                continue
            try:
                document = parse_dialog_info(record.body)
            except BodyError as exc:
                log.warning("stored dialog document of %s unreadable: %s", record.pres_uri, exc)
                continue
            until = record.desired_until or record.expires_at
            calls = restore(record.pres_uri, record.id, document, until, now)
            self._presentities[record.pres_uri] = calls
            self._schedule(calls)
        if self._presentities:
            log.info("calls of %d presentities taken back", len(self._presentities))

    async def stop(self) -> None:
        """Stop the timer (publications stay, refreshed by the engine)."""
        self._timer.cancel()

    # -- the feed -----------------------------------------------------------------
    async def report(self, event: CallEvent, *, wait: bool = True) -> dict[str, Any]:
        """Publish what ``event`` changes.  With ``wait``, answers once the
        first answer to each PUBLISH is in (at most the runtime's
        ``answer_within``) and stored; without, once they are sent.
        ``{"call_id", "state", "publications": [{pres_uri, id, version,
        status, reason}]}``: status 200, the failure's status, or None when
        no answer came (yet); pua keeps trying then."""
        infos = self.apply(event)
        if not wait:
            for info in infos:
                self._send(info)
            outcomes = [self._outcome(info, None, "sent") for info in infos]
        else:
            outcomes = await self._complete(infos)
        return {"call_id": event.call_id, "state": event.state, "publications": outcomes}

    def apply(self, event: CallEvent) -> list[PublishInfo]:
        """Apply ``event``; the PUBLISH of each presentity it changed."""
        now = self.runtime.now()
        self.counters["events"] += 1
        infos = []
        for side, uri, peer in sides(event, self.options):
            calls = self._presentities.get(uri)
            if calls is None:
                calls = PresentityCalls(uri=uri, id=DIALOG_ID_PREFIX + event.call_id)
            elif not calls.live() and (event.call_id, event.from_tag, side) not in calls.legs:
                # Its last document showed every call ended, and it lapses:
                # a new call starts a new publication (a presence server
                # may refuse changes to an ended one: Kamailio does, with
                # a 200 and then a 412); the versions go on.
                calls = PresentityCalls(
                    uri=uri, id=DIALOG_ID_PREFIX + event.call_id, version=calls.version
                )
            if not apply(calls, side, peer, event, now, self.options):
                continue
            self._presentities[uri] = calls
            infos.append(self._info(calls, now))
            self._schedule(calls)
        if not infos:
            self.counters["ignored"] += 1
        return infos

    def _info(self, calls: PresentityCalls, now: float) -> PublishInfo:
        calls.forget_ended(now, self.options)
        document = calls.document(now, self.options)
        return PublishInfo(
            pres_uri=calls.uri,
            event=EventFlag.DIALOG_EVENT,
            body=document.to_bytes(),
            expires=calls.expires(now, self.options),
            id=calls.id,
            source_flag=SourceFlag.DIALOG_PUBLISH,
        )

    @staticmethod
    def _outcome(info: PublishInfo, status: int | None, reason: str) -> dict[str, Any]:
        version = None
        if isinstance(info.body, bytes):
            with contextlib.suppress(BodyError):
                version = parse_dialog_info(info.body).version
        return {
            "pres_uri": info.pres_uri,
            "id": info.id,
            "version": version,
            "status": status,
            "reason": reason,
        }

    async def _complete(self, infos: list[PublishInfo]) -> list[dict[str, Any]]:
        results = [asyncio.ensure_future(self.runtime.publish(info)) for info in infos]
        self.counters["publications"] += len(infos)
        if results:
            await asyncio.wait(results, timeout=self.runtime.answer_within)
        if self._durable is not None:
            await self._durable()
        return [
            self._outcome(info, *answer_of(result))
            for info, result in zip(infos, results, strict=True)
        ]

    def _send(self, info: PublishInfo) -> None:
        try:
            self.runtime.send_publish(info)
            self.counters["publications"] += 1
        except (PresenceError, ValueError) as exc:
            log.error("cannot publish dialog state of %s: %s", info.pres_uri, exc)

    # -- queries ------------------------------------------------------------------
    def calls(self, uri: str | None = None) -> list[dict[str, Any]]:
        """The calls held (of presentity ``uri``, or all), as plain data."""
        now = self.runtime.now()
        if uri is None:
            chosen = list(self._presentities.values())
        else:
            held = self._presentities.get(uri)
            chosen = [held] if held is not None else []
        return [
            {
                "presentity": calls.uri,
                "id": calls.id,
                "version": calls.version,
                "dialogs": [
                    {
                        "call_id": leg.call_id,
                        "from_tag": leg.from_tag,
                        "to_tag": leg.to_tag,
                        "direction": leg.direction,
                        "state": leg.state,
                        "peer": leg.peer,
                        "remaining": max(0, int(leg.until - now)),
                    }
                    for leg in calls.legs.values()
                ],
            }
            for calls in chosen
        ]

    @property
    def presentity_count(self) -> int:
        """Presentities with calls held."""
        return len(self._presentities)

    # -- deadlines ----------------------------------------------------------------
    def _schedule(self, calls: PresentityCalls) -> None:
        ends = [
            leg.until if leg.ended_at is None else leg.ended_at + self.options.terminated_expires
            for leg in calls.legs.values()
        ]
        if not ends:
            self._due.pop(calls.uri, None)
            return
        when = min(ends)
        due = self._due.get(calls.uri)
        if due is not None and due <= when:
            return  # an earlier wake-up comes first and looks again
        self._due[calls.uri] = when
        heapq.heappush(self._heap, (when, calls.uri))
        if self._heap[0] == (when, calls.uri):
            self._timer.arm(asyncio.get_running_loop(), when)

    def _on_timer(self, now: float) -> None:
        while self._heap and self._heap[0][0] <= now:
            when, uri = heapq.heappop(self._heap)
            if self._due.get(uri) != when:
                continue
            del self._due[uri]
            calls = self._presentities.get(uri)
            if calls is None:
                continue
            if expire(calls, now):
                self.counters["timeouts"] += 1
                self._send(self._info(calls, now))
            calls.forget_ended(now, self.options)
            if calls.legs:
                self._schedule(calls)
            else:
                del self._presentities[uri]
        self._timer.arm(asyncio.get_running_loop(), self._heap[0][0] if self._heap else None)
