"""JSON-RPC 2.0 with Kamailio's pua method names.

``pua.publish``, ``pua.send_publish`` and ``pua.subscribe`` take Kamailio's
parameters in Kamailio's order (or by name); ``"."`` means unset, as in
Kamailio.  Beyond Kamailio: ``pua.unpublish``, ``pua.unsubscribe``,
``pua.list``, ``pua.show``, ``pua.cleanup`` and ``pua.stats``.  A SIP failure
is a JSON-RPC error whose code is the SIP status and whose message is the
reason phrase, as Kamailio's jsonrpcs reports faults.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from pua.core import EngineEvent, PublishInfo, RecordKey, SourceFlag, SubscribeInfo
from pua.core.requests import parse_extra_headers
from pua.errors import (
    PresenceError,
    PuaError,
    PublishError,
    UnknownEventError,
    UsageError,
)
from pua.runtime import PresenceRuntime

from .views import key_from_id, record_id, record_view

__all__ = [
    "LOCAL",
    "NOT_STORED",
    "PUBLISH_PARAMS",
    "SUBSCRIBE_PARAMS",
    "TOO_MANY_RECORDS",
    "Forward",
    "JsonRpc",
    "PuaMethods",
    "RpcError",
    "named_params",
    "presence_fault",
    "record_of_call",
    "truth",
]

log = logging.getLogger("pua.api")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Kamailio's order of parameters.
PUBLISH_PARAMS = (
    "pres_uri",
    "expires",
    "event",
    "content_type",
    "id",
    "etag",
    "outbound_proxy",
    "extra_headers",
    "body",
    "wait",
)
SUBSCRIBE_PARAMS = ("pres_uri", "watcher_uri", "event", "expires", "id", "wait")
REGISTER_PARAMS = ("aor", "contact", "expires", "q", "call_id", "cseq")
# A batch larger than this is refused: each entry may start a transaction.
MAX_BATCH = 1000
# A batch's calls are started this many at a time, with a turn of the event
# loop between: each call's first step (checks, the request built and sent)
# runs at once when it starts, and 500 of them in one turn held the loop
# for hundreds of milliseconds.
BATCH_SLICE = 20


class RpcError(PuaError):
    """A JSON-RPC error to answer with."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


Method = Callable[[list[Any] | dict[str, Any]], Awaitable[Any]]


class JsonRpc:
    """A JSON-RPC 2.0 dispatcher (single calls, notifications, batches)."""

    def __init__(self, methods: dict[str, Method]) -> None:
        self.methods = methods

    async def handle(self, body: bytes) -> Any:
        """The response value for a request body, or None when nothing is
        to be answered (only notifications)."""
        try:
            request = orjson.loads(body)
        except (orjson.JSONDecodeError, UnicodeDecodeError):
            return _error(None, PARSE_ERROR, "Parse error")
        if isinstance(request, list):
            if not request:
                return _error(None, INVALID_REQUEST, "Invalid Request: empty batch")
            if len(request) > MAX_BATCH:
                return _error(
                    None, INVALID_REQUEST, f"Invalid Request: more than {MAX_BATCH} calls"
                )
            answers = await self._batch(request)
            replies = [a for a in answers if a is not None]
            return replies or None
        return await self._one(request)

    async def _batch(self, calls: list[Any]) -> list[dict[str, Any] | None]:
        """The answers to ``calls``, in their order; the calls run together,
        started BATCH_SLICE at a time with a turn of the loop between."""
        tasks: list[asyncio.Future[dict[str, Any] | None]] = []
        try:
            for start in range(0, len(calls), BATCH_SLICE):
                if start:
                    await asyncio.sleep(0)
                tasks.extend(
                    asyncio.ensure_future(self._one(item))
                    for item in calls[start : start + BATCH_SLICE]
                )
            return list(await asyncio.gather(*tasks))
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            raise

    async def _one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error(None, INVALID_REQUEST, "Invalid Request")
        ident = request.get("id")
        notification = "id" not in request
        if (
            request.get("jsonrpc") != "2.0"
            or not isinstance(request.get("method"), str)
            or not isinstance(ident, str | int | float | type(None))
            or isinstance(ident, bool)
        ):
            return _error(
                ident if not isinstance(ident, dict | list) else None,
                INVALID_REQUEST,
                "Invalid Request",
            )
        params = request.get("params", [])
        if not isinstance(params, list | dict):
            return _error(
                ident, INVALID_REQUEST, "Invalid Request: params must be an array or object"
            )
        method = self.methods.get(request["method"])
        if method is None:
            return None if notification else _error(ident, METHOD_NOT_FOUND, "Method not found")
        try:
            result = await method(params)
        except RpcError as exc:
            return None if notification else _error(ident, exc.code, exc.message, exc.data)
        except PresenceError as exc:
            return None if notification else _error(ident, *presence_fault(exc))
        except (UsageError, ValueError) as exc:
            # Misuse (pua.errors.UsageError, BodyError) names what is wrong.
            return None if notification else _error(ident, INVALID_PARAMS, f"Invalid params: {exc}")
        except Exception:
            log.exception("RPC method %s failed", request["method"])
            return None if notification else _error(ident, INTERNAL_ERROR, "Internal error")
        if notification:
            return None
        return {"jsonrpc": "2.0", "result": result, "id": ident}


def presence_fault(exc: PresenceError) -> tuple[int, str, dict[str, Any]]:
    """A failed publication or subscription as a JSON-RPC error: the SIP
    status as the code, the reason as the message, and in ``data`` the
    whole text and whether pua keeps trying in the background."""
    data: dict[str, Any] = {
        "detail": str(exc),
        "status": exc.status,
        "reason": exc.reason,
        "retrying": exc.retrying,
        "retry_at": exc.retry_at,
    }
    if isinstance(exc.key, RecordKey):
        data["id"] = record_id(exc.key)
    return exc.status or INTERNAL_ERROR, exc.reason, data


def _error(ident: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "error": error, "id": ident}


def named_params(
    params: list[Any] | dict[str, Any], names: tuple[str, ...], required: int
) -> dict[str, Any]:
    """Positional (Kamailio's order) or named parameters as a dict; "." is unset."""
    if isinstance(params, list):
        if len(params) > len(names):
            raise RpcError(INVALID_PARAMS, f"Invalid params: at most {len(names)} expected")
        values = dict(zip(names, params, strict=False))
    else:
        unknown = set(params) - set(names)
        if unknown:
            raise RpcError(INVALID_PARAMS, f"Invalid params: unknown {', '.join(sorted(unknown))}")
        values = dict(params)
    values = {k: (None if v == "." else v) for k, v in values.items()}
    missing = [n for n in names[:required] if values.get(n) is None]
    if missing:
        raise RpcError(INVALID_PARAMS, f"Invalid params: missing {', '.join(missing)}")
    return values


def _int(values: dict[str, Any], name: str, default: int) -> int:
    value = values.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        raise RpcError(INVALID_PARAMS, f"Invalid params: {name} must be an integer")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise RpcError(INVALID_PARAMS, f"Invalid params: {name} must be an integer") from None


def _publish_required(params: list[Any] | dict[str, Any]) -> int:
    # Kamailio's positional form needs pres_uri and expires; by name, as on
    # REST, expires defaults to 3600.
    return 2 if isinstance(params, list) else 1


def truth(values: dict[str, Any], name: str, default: bool) -> bool:
    value = values.get(name)
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
        return value.lower() in ("1", "true", "yes")
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise RpcError(INVALID_PARAMS, f"Invalid params: {name} must be true or false")


def _headers(values: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """Extra headers: Kamailio's text (``Name: value`` lines) or a list of lines."""
    value = values.get("extra_headers")
    if value is None:
        return ()
    if isinstance(value, str) or (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        return parse_extra_headers(value)
    raise RpcError(
        INVALID_PARAMS, "Invalid params: extra_headers must be text or a list of 'Name: value'"
    )


def _text(values: dict[str, Any], name: str) -> str | None:
    value = values.get(name)
    if value is not None and not isinstance(value, str):
        raise RpcError(INVALID_PARAMS, f"Invalid params: {name} must be a string")
    return value


# JSON-RPC error for a change made in memory whose write to the database
# failed: the change stands and is written when the database is back.
NOT_STORED = -32001
# JSON-RPC error for a call refused because too many wait already: nothing
# was done; ``data.retry_after`` says when to try again.
OVERLOADED = -32003

# JSON-RPC error for a request that would make a record beyond
# max_records: nothing is made.
TOO_MANY_RECORDS = -32002

Durable = Callable[[], Awaitable[None]]

Forward = Callable[[str, dict[str, Any], str, str | None], Awaitable[Any]]
"""Carries a change (method, values, pres_uri, watcher_uri) to the node
that owns the record and returns its result, or :data:`LOCAL`."""

LOCAL: Any = object()
"""What a :data:`Forward` returns for a change to make on this node."""


def record_of_call(method: str, values: dict[str, Any]) -> tuple[str, str | None]:
    """The (pres_uri, watcher_uri) a change is about: its parameters, or
    the record id given in place of pres_uri (pua.unpublish and
    pua.unsubscribe)."""
    pres_uri = str(_text(values, "pres_uri"))
    if method in ("pua.unpublish", "pua.unsubscribe"):
        key = key_from_id(pres_uri)
        if key is not None:
            return key.pres_uri, key.watcher_uri or None
    if method in ("pua.subscribe", "pua.unsubscribe"):
        return pres_uri, _text(values, "watcher_uri")
    return pres_uri, None


class PuaMethods:
    """The pua.* methods over a running engine.

    ``durable`` (the store's flush) runs before a change is acknowledged, so
    an acknowledged change is in the database.  ``max_records``: a publish
    or subscribe that would make a record beyond this many is refused
    (:data:`TOO_MANY_RECORDS`) before anything is made.
    """

    def __init__(
        self,
        runtime: PresenceRuntime,
        durable: Durable | None = None,
        *,
        max_waiting: int = 10_000,
        max_records: int | None = None,
    ) -> None:
        self.runtime = runtime
        self.registry = runtime.registry
        self.durable = durable
        self.max_records = max_records
        # Calls waiting for a SIP outcome at most; beyond, a call is refused
        # at once (OVERLOADED) instead of queueing without bound.
        self.max_waiting = max_waiting
        self.waiting = 0
        # In a cluster: carries a change of a record another node owns to it.
        self.forward: Forward | None = None

    def _admit(self) -> None:
        """Refuse a waiting call, early and clearly, when too many wait."""
        if self.waiting >= self.max_waiting:
            raise RpcError(
                OVERLOADED,
                f"overloaded: {self.waiting} calls are waiting for the SIP side; "
                "nothing was done, retry in 1 s",
                {"retry_after": 1, "waiting": self.waiting},
            )

    async def _wait_for(self, outcome: Awaitable[EngineEvent]) -> EngineEvent:
        self.waiting += 1
        try:
            return await outcome
        finally:
            self.waiting -= 1

    def _check_room(self, key: RecordKey, expires: int) -> None:
        """Refuse a request that would make a record beyond max_records
        (a change to a record held, or a removal, always goes through)."""
        if self.max_records is None or expires == 0 or self.runtime.record(key) is not None:
            return
        held = self.runtime.counts()["records"]
        if held >= self.max_records:
            raise RpcError(
                TOO_MANY_RECORDS,
                f"too many records: pua holds {held}, the limit (max_records) is"
                f" {self.max_records}; nothing was made",
                {"max_records": self.max_records, "records": held},
            )

    async def stored(self) -> None:
        if self.durable is None:
            return
        try:
            await self.durable()
        except Exception as exc:
            raise RpcError(
                NOT_STORED,
                "done, but not stored: the database is unreachable "
                "(kept in memory, written when it is back)",
                {"detail": str(exc)},
            ) from None

    def table(self) -> dict[str, Method]:
        """Method name -> coroutine function."""
        return {
            "pua.publish": self.publish,
            "pua.send_publish": self.send_publish,
            "pua.subscribe": self.subscribe,
            "pua.unpublish": self.unpublish,
            "pua.unsubscribe": self.unsubscribe,
            "pua.list": self.list_records,
            "pua.show": self.show,
            "pua.cleanup": self.cleanup,
            "pua.stats": self.stats,
        }

    def _event(self, name: str | None, default: str = "presence") -> int:
        try:
            return int(self.runtime.package(name or default).flag)
        except UnknownEventError as exc:
            raise RpcError(INVALID_PARAMS, f"Invalid params: {exc}") from None

    def publish_info(self, values: dict[str, Any]) -> PublishInfo:
        """A PublishInfo from the values of :func:`_named` (Kamailio's
        parameters; REST's JSON object takes the same names)."""
        body = _text(values, "body")
        content_type = _text(values, "content_type")
        if body is None and content_type is not None:
            raise RpcError(
                INVALID_PARAMS, "Invalid params: content_type must be '.' without a body"
            )
        return PublishInfo(
            pres_uri=str(_text(values, "pres_uri")),
            expires=_int(values, "expires", 3600),
            event=self._event(_text(values, "event")),
            content_type=content_type,
            id=_text(values, "id") or "",
            etag=_text(values, "etag"),
            outbound_proxy=_text(values, "outbound_proxy"),
            extra_headers=_headers(values),
            body=body.encode() if body is not None else None,
            source_flag=SourceFlag.MI_PUBLISH,
        )

    def subscribe_info(self, values: dict[str, Any]) -> SubscribeInfo:
        """A SubscribeInfo from the values of :func:`_named`."""
        return SubscribeInfo(
            pres_uri=str(_text(values, "pres_uri")),
            watcher_uri=str(_text(values, "watcher_uri")),
            event=self._event(_text(values, "event")),
            expires=_int(values, "expires", 3600),
            id=_text(values, "id") or "",
            source_flag=SourceFlag.MI_SUBSCRIBE,
        )

    def _view(self, key: RecordKey | None) -> dict[str, Any] | None:
        record = self.runtime.record(key) if key is not None else None
        return record_view(record, self.registry) if record is not None else None

    async def publish(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Publish and wait for the outcome of the first attempt:
        {"SIP-ETag", "Expires"} as Kamailio answers, and the record.  A
        failure is an error whose code is the SIP status (see
        :func:`presence_fault`; Kamailio 5.6 returns an empty result
        instead).  With ``wait`` false it answers at once, as
        ``pua.send_publish`` does."""
        values = named_params(params, PUBLISH_PARAMS, required=_publish_required(params))
        return await self.publish_values(values, wait=truth(values, "wait", True))

    async def send_publish(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Publish without waiting (Kamailio's pua.send_publish); the outcome
        comes on the event stream.  ``wait`` true makes it ``pua.publish``."""
        values = named_params(params, PUBLISH_PARAMS, required=_publish_required(params))
        return await self.publish_values(values, wait=truth(values, "wait", False))

    async def publish_values(
        self, values: dict[str, Any], *, wait: bool, routed: bool = False
    ) -> dict[str, Any]:
        """Publish from checked values (what every route shares).  In a
        cluster, a record another node owns is published there (unless
        ``routed``: the call was carried here by another node)."""
        info = self.publish_info(values)
        if self.forward is not None and not routed:
            answer = await self.forward(
                "pua.publish", {**values, "wait": wait}, info.pres_uri, None
            )
            if answer is not LOCAL:
                return dict(answer)
        self._check_room(
            RecordKey(info.pres_uri, int(info.event), info.id, int(info.source_flag)), info.expires
        )
        if not wait:
            key = self.runtime.send_publish(info)
            if key is None:
                raise PublishError("nothing to remove", status=404, reason="No such publication")
            await self.stored()
            return {"record": self._view(key)}
        self._admit()
        event = await self._wait_for(self.runtime.publish(info))
        await self.stored()
        return {
            "SIP-ETag": getattr(event, "etag", None),
            "Expires": getattr(event, "expires", 0),
            "record": self._view(event.key),
        }

    async def subscribe(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Subscribe (Kamailio's pua.subscribe: pres_uri, watcher_uri, event,
        expires; then id and wait) and wait for the outcome of the first
        attempt: the first NOTIFY (its state) or the 2xx; a failure is an
        error whose code is the SIP status.  With ``wait`` false it answers
        at once; NOTIFYs come on the event stream."""
        values = named_params(params, SUBSCRIBE_PARAMS, required=2)
        return await self.subscribe_values(values, wait=truth(values, "wait", True))

    async def subscribe_values(
        self, values: dict[str, Any], *, wait: bool, routed: bool = False
    ) -> dict[str, Any]:
        """Subscribe from checked values (what every route shares); in a
        cluster, at the node that owns the record (see publish_values)."""
        info = self.subscribe_info(values)
        if self.forward is not None and not routed:
            answer = await self.forward(
                "pua.subscribe", {**values, "wait": wait}, info.pres_uri, info.watcher_uri
            )
            if answer is not LOCAL:
                return dict(answer)
        self._check_room(
            RecordKey(
                info.pres_uri, int(info.event), info.id, int(info.source_flag), info.watcher_uri
            ),
            info.expires,
        )
        if not wait:
            key = self.runtime.send_subscribe(info)
            await self.stored()
            return {"record": self._view(key)}
        self._admit()
        event = await self._wait_for(self.runtime.subscribe(info))
        await self.stored()
        return {
            "state": getattr(event, "state", "accepted"),
            "record": self._view(event.key),
        }

    async def _elsewhere(self, method: str, values: dict[str, Any], routed: bool) -> Any:
        """The owner's answer to a change of a record another node of the
        cluster owns, or LOCAL."""
        if self.forward is None or routed:
            return LOCAL
        pres_uri, watcher_uri = record_of_call(method, values)
        return await self.forward(method, values, pres_uri, watcher_uri)

    async def unpublish(
        self, params: list[Any] | dict[str, Any], *, routed: bool = False
    ) -> dict[str, Any]:
        """Remove a publication (pres_uri, event, id; or the record's id, as
        pua.list shows it, in place of pres_uri) and wait for the answer."""
        values = named_params(params, ("pres_uri", "event", "id"), required=1)
        if (answer := await self._elsewhere("pua.unpublish", values, routed)) is not LOCAL:
            return dict(answer)
        if await self._end_by_id(_text(values, "pres_uri"), subscription=False):
            return {"removed": True}
        info = PublishInfo(
            pres_uri=str(_text(values, "pres_uri")),
            event=self._event(_text(values, "event")),
            id=_text(values, "id") or "",
            expires=0,
            source_flag=SourceFlag.MI_PUBLISH,
        )
        self._admit()
        await self._wait_for(self.runtime.publish(info))
        await self.stored()
        return {"removed": True}

    async def unsubscribe(
        self, params: list[Any] | dict[str, Any], *, routed: bool = False
    ) -> dict[str, Any]:
        """End a subscription (pres_uri, watcher_uri, event, id; or the
        record's id alone, as pua.list shows it) and wait for the answer."""
        values = named_params(params, ("pres_uri", "watcher_uri", "event", "id"), required=1)
        if (answer := await self._elsewhere("pua.unsubscribe", values, routed)) is not LOCAL:
            return dict(answer)
        if await self._end_by_id(_text(values, "pres_uri"), subscription=True):
            return {"unsubscribed": True}
        if values.get("watcher_uri") is None:
            raise RpcError(INVALID_PARAMS, "Invalid params: missing watcher_uri")
        info = SubscribeInfo(
            pres_uri=str(_text(values, "pres_uri")),
            watcher_uri=str(_text(values, "watcher_uri")),
            event=self._event(_text(values, "event")),
            id=_text(values, "id") or "",
            expires=0,
            source_flag=SourceFlag.MI_SUBSCRIBE,
        )
        self._admit()
        await self._wait_for(self.runtime.subscribe(info))
        await self.stored()
        return {"unsubscribed": True}

    async def _end_by_id(self, text: str | None, *, subscription: bool) -> bool:
        """End the record named by its API id; False when ``text`` is no id."""
        key = key_from_id(text or "")
        if key is None:
            return False
        record = self.runtime.record(key)
        if record is None or bool(key.watcher_uri) != subscription:
            kind = "subscription" if subscription else "publication"
            raise RpcError(404, f"no such {kind}: {text}")
        self._admit()
        await self._wait_for(self.runtime.end(key))
        await self.stored()
        return True

    async def list_records(self, params: list[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        """Every record (kind: "publication", "subscription" or all)."""
        values = named_params(params, ("kind",), required=0)
        kind = _text(values, "kind")
        if kind not in (None, "publication", "subscription"):
            raise RpcError(INVALID_PARAMS, "Invalid params: kind is publication or subscription")
        views = [record_view(r, self.registry) for r in self.runtime.records()]
        return [v for v in views if kind is None or v["kind"] == kind]

    async def show(self, params: list[Any] | dict[str, Any]) -> list[dict[str, Any]]:
        """The records of a presentity URI, or the one with this record id."""
        values = named_params(params, ("uri_or_id",), required=1)
        wanted = str(_text(values, "uri_or_id"))
        key = key_from_id(wanted)
        if key is not None:
            record = self.runtime.record(key)
            return [record_view(record, self.registry)] if record is not None else []
        return [
            record_view(r, self.registry)
            for r in self.runtime.records()
            if r.key.pres_uri == wanted
        ]

    async def cleanup(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Run every timer that is due now (Kamailio's pua.cleanup: expired
        records go) and write the store; returns how many records remain."""
        named_params(params, (), required=0)
        self.runtime.run_timers()
        await self.stored()
        return {"records": self.runtime.counts()["records"]}

    async def stats(self, params: list[Any] | dict[str, Any]) -> dict[str, Any]:
        """Records by kind and state, the engine's and SIP layer's counters,
        and how late timers ran (count, mean, p50/p99/p99.9 in seconds, as
        bucket upper bounds)."""
        named_params(params, (), required=0)
        by_state = {
            f"{kind}.{state}": count
            for (kind, state), count in self.runtime.records_by_state().items()
            if count
        }
        return {
            "records": self.runtime.counts()["records"],
            "by_state": by_state,
            "engine": self.runtime.counters(),
            "sip": self.runtime.sip_counters(),
            "responses": self.runtime.responses_by_status(),
            "timer_lateness": self.runtime.timer_lateness().summary(),
            "loop_lag": self.runtime.loop_lag.histogram.summary(),
        }
