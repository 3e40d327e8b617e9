"""The management API over HTTP (aiohttp).

``POST /rpc``              JSON-RPC 2.0 (pua.publish, pua.subscribe, ...)
``GET /records``           every record
``/publications``          REST: GET (list), POST (publish, waits for the 2xx)
``/publications/{id}``     GET, DELETE (remove, waits for the answer)
``/subscriptions``         REST: GET, POST (subscribe)
``/subscriptions/{id}``    GET, DELETE (unsubscribe)
``GET /events``            Server-Sent Events: every engine event as JSON
``GET /metrics``           Prometheus
``GET /openapi.json``      the REST description
``GET /``                  the live status page, and the routes it uses
                           (recent events, bodies, refresh now: pua.api.page)

When a token is configured every path but ``/`` needs it, as
``Authorization: Bearer <token>`` or ``?token=<token>`` (EventSource cannot
send headers); ``/`` shows records only to a request that presents it.

Limits: a request body over ``max_body`` bytes is answered 413 before it is
read; a request whose body would take the bodies held at once beyond
``max_buffered`` bytes is answered 503 with Retry-After before it is read
(JSON-RPC: error -32003, as when too many calls wait); a publish or
subscribe that would make a record beyond ``max_records`` is answered 503
(JSON-RPC: error -32002) and makes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from pua.adapters import Adapters
from pua.cluster import ClusterNode, Peers
from pua.core import (
    EngineEvent,
    Record,
)
from pua.errors import PresenceError
from pua.runtime import PresenceRuntime
from pua.runtime.persistence import WriteTimer

from .activity import Activity, history_entry
from .adapters import AdapterMethods, add_adapter_routes
from .cluster import ClusterMethods, ClusterRouter
from .fast_rpc import Answer, BodyBudget, RpcSite
from .metrics import metrics_text
from .openapi import OPENAPI
from .page import add_page_routes
from .rpc import (
    NOT_STORED,
    OVERLOADED,
    PUBLISH_PARAMS,
    SUBSCRIBE_PARAMS,
    TOO_MANY_RECORDS,
    Durable,
    JsonRpc,
    PuaMethods,
    RpcError,
    named_params,
    presence_fault,
    record_of_call,
    truth,
)
from .views import event_view, key_from_id, record_view

__all__ = ["ApiServer", "bind_api", "make_app"]

log = logging.getLogger("pua.api")

# A client of the event stream that falls this far behind is dropped: its
# queue would otherwise grow without bound.
EVENT_QUEUE_LIMIT = 10_000
# An SSE comment this often keeps proxies from closing an idle stream.
KEEPALIVE_SECONDS = 15.0
# Largest request body accepted by default (a publication body plus JSON
# around it); the api_max_body setting.
MAX_REQUEST_BYTES = 1 << 20
# Most bytes of request bodies held at once by default (the api_max_buffered
# setting): without a bound, clients that each send most of a large body and
# hold it make pua hold them all (300 such connections of 1 MiB took it from
# 75 MiB to 500 MiB), whatever api_max_waiting says, since a body is read
# before the call is admitted.  64 MiB is room for tens of thousands of
# calls of ordinary size at once.
MAX_BUFFERED_BYTES = 64 << 20
# Seconds a client refused for load is asked to wait (Retry-After).
RETRY_AFTER = 1

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class EventHub:
    """Hands every engine event to ``activity`` (the history the page
    shows), then to each connected stream with its history entry."""

    def __init__(self, runtime: PresenceRuntime, activity: Activity) -> None:
        self.runtime = runtime
        self.activity = activity
        self.queues: set[asyncio.Queue[dict[str, Any] | None]] = set()
        runtime.add_listener(self._publish)

    def _publish(self, event: EngineEvent) -> None:
        at, summary = self.activity.note(event)
        if not self.queues:
            return
        entry = history_entry(event, at, summary)
        key = event.key
        record = self.runtime.record(key) if key is not None else None
        last = self.activity.last_notify(key) if key is not None else None
        view = event_view(
            event,
            record,
            self.runtime.registry,
            last.view() if last is not None else None,
            summary,
        )
        view["entry"] = entry
        for queue in list(self.queues):
            if queue.qsize() >= EVENT_QUEUE_LIMIT:
                self.queues.discard(queue)
                queue.put_nowait(None)  # tells the stream it was dropped
            else:
                queue.put_nowait(view)

    def close(self) -> None:
        """End every stream."""
        for queue in list(self.queues):
            queue.put_nowait(None)
        self.queues.clear()
        self.runtime.remove_listener(self._publish)


# Answers are encoded by orjson: compact, keys that are not strings (a
# count by status) written as strings, str() of what JSON has no type for.
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def encode_json(data: Any) -> bytes:
    """``data`` as compact JSON bytes."""
    return orjson.dumps(data, default=str, option=_JSON_OPTIONS)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=encode_json(data), status=status, content_type="application/json")


# What ApiServer takes from the application for the short road of POST /rpc.
RPC_ANSWER: web.AppKey[Answer] = web.AppKey("rpc_answer")
BODY_BUDGET = web.AppKey("body_budget", BodyBudget)


def _problem(status: int, message: str, **extra: Any) -> web.Response:
    return _json({"error": {"status": status, "message": message, **extra}}, status)


def _sip_failure(exc: PresenceError) -> web.Response:
    """A failed attempt: 504 when nothing answered in time, 502 for any
    other failure, with the SIP status and reason and whether pua keeps
    trying in the background (as JSON-RPC's error data)."""
    _code, _reason, data = presence_fault(exc)
    for name in ("detail", "status", "reason"):
        data.pop(name)
    status = 504 if exc.status == 408 else 502
    return _problem(status, str(exc), sip_status=exc.status, sip_reason=exc.reason, **data)


def make_app(
    runtime: PresenceRuntime,
    *,
    token: str | None = None,
    durable: Durable | None = None,
    store_timer: WriteTimer | None = None,
    max_waiting: int = 10_000,
    max_body: int = MAX_REQUEST_BYTES,
    max_buffered: int = MAX_BUFFERED_BYTES,
    max_records: int | None = None,
    adapters: Adapters | None = None,
    cluster: ClusterNode | None = None,
    peers: Peers | None = None,
) -> web.Application:
    """The aiohttp application for ``runtime``; ``durable`` is awaited
    before a change is acknowledged (the store's flush); ``store_timer``
    times the store's writes for the metrics; ``max_waiting`` calls may
    wait for a SIP outcome at once (the rest are refused with 503);
    ``max_body`` is the largest request body read, ``max_buffered`` the
    most bytes of bodies held at once, ``max_records`` the most records the
    API makes.  ``cluster`` (with ``peers``, the client of the other
    nodes' APIs): this node's part in a cluster; changes of records other
    nodes own are carried to them (pua.api.cluster)."""
    methods = PuaMethods(
        runtime,
        durable,
        max_waiting=max_waiting,
        max_records=max_records,
    )
    adapters = adapters or Adapters()
    registrations = adapters.registrations
    adapter_methods = AdapterMethods(adapters, methods.stored)
    cluster_methods: ClusterMethods | None = None
    if cluster is not None:
        assert peers is not None, "a cluster node needs the client of the other nodes"
        methods.forward = ClusterRouter(cluster, peers).forward
        cluster_methods = ClusterMethods(
            runtime,
            cluster,
            {
                "pua.publish": lambda v: methods.publish_values(
                    v, wait=truth(v, "wait", True), routed=True
                ),
                "pua.subscribe": lambda v: methods.subscribe_values(
                    v, wait=truth(v, "wait", True), routed=True
                ),
                "pua.unpublish": lambda v: methods.unpublish(v, routed=True),
                "pua.unsubscribe": lambda v: methods.unsubscribe(v, routed=True),
            },
            record_of_call,
        )
    rpc = JsonRpc(
        {
            **methods.table(),
            **adapter_methods.table(),
            **(cluster_methods.table() if cluster_methods is not None else {}),
        }
    )
    activity = Activity(runtime)
    hub = EventHub(runtime, activity)
    registry = runtime.registry

    def token_presented(request: web.Request) -> bool:
        """Whether the request carries the token (true when none is set)."""
        if not token:
            return True
        given = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[7:]
        return hmac.compare_digest(given.encode(), token.encode())

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path != "/" and not token_presented(request):
            return _problem(401, "a bearer token is required")
        return await handler(request)

    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        # Refused on the announced length before anything is read; a body
        # sent without one (chunked) is cut off by client_max_size as it
        # is read, and answered the same way.
        length = request.content_length
        if length is not None and length > max_body:
            return _too_large(length)
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _too_large(None)
        except ConnectionResetError:
            # The client left while its body was read: nobody is there to
            # answer, and it is no fault of ours (left to aiohttp, it is a
            # 500 and a traceback in the log for every such client).
            if request.transport is not None and not request.transport.is_closing():
                raise
            log.debug("client left before sending its whole request: %s", request.path)
            response = web.Response(status=400)
            response.force_close()
            return response

    budget = BodyBudget(max_buffered)  # bytes of the bodies of requests being handled

    @web.middleware
    async def limit_buffered(request: web.Request, handler: Handler) -> web.StreamResponse:
        # A body's room is taken at its announced length (a chunked one may
        # reach max_body) before any of it is read, and given back when its
        # request is answered: the bodies held, and what is parsed from
        # them, stay within max_buffered whatever clients send and hold.
        if not request.body_exists:
            return await handler(request)
        need = request.content_length if request.content_length is not None else max_body
        if not budget.take(need):
            return _overloaded(request)
        try:
            return await handler(request)
        finally:
            budget.give(need)

    def _overloaded(request: web.Request) -> web.Response:
        message = (
            f"overloaded: {budget.held} bytes of requests are being handled, the limit "
            f"(api_max_buffered) is {max_buffered}; nothing was done, retry in {RETRY_AFTER} s"
        )
        data = {"retry_after": RETRY_AFTER, "max_buffered": max_buffered}
        if request.path == "/rpc":
            # The body (and so the call's id) is not read: id null, as
            # JSON-RPC 2.0 answers a call whose id cannot be known.
            response = _json(
                {
                    "jsonrpc": "2.0",
                    "id": None,
                    "error": {"code": OVERLOADED, "message": message, "data": data},
                },
                503,
            )
        else:
            response = _problem(503, message, **data)
        response.headers["Retry-After"] = str(RETRY_AFTER)
        return response

    def _too_large(length: int | None) -> web.Response:
        size = f"of {length} bytes " if length is not None else ""
        response = _problem(
            413,
            f"request body {size}is over the limit of {max_body} bytes (api_max_body)",
            max_body=max_body,
        )
        # What the client has not sent yet is not read: close after this.
        response.force_close()
        return response

    def view_of(record: Record) -> dict[str, Any]:
        """A record's view with, for a subscription, its last NOTIFY."""
        last = activity.last_notify(record.key) if record.key.watcher_uri else None
        return record_view(record, registry, last.view() if last is not None else None)

    async def rpc_answer(body: bytes) -> bytes | None:
        """The JSON-RPC answer to a request body, or None (nothing to answer)."""
        answer = await rpc.handle(body)
        return None if answer is None else encode_json(answer)

    async def rpc_endpoint(request: web.Request) -> web.Response:
        answer = await rpc_answer(await request.read())
        if answer is None:
            return web.Response(status=204)
        return web.Response(body=answer, content_type="application/json")

    def records(kind: str | None) -> list[dict[str, Any]]:
        views = [view_of(r) for r in runtime.records()]
        return [v for v in views if kind is None or v["kind"] == kind]

    async def list_records(request: web.Request) -> web.Response:
        return _json({"records": records(None)})

    def one(request: web.Request, kind: str) -> Any:
        key = key_from_id(request.match_info["id"])
        record = runtime.record(key) if key is not None else None
        if record is None or (kind == "subscription") != bool(record.key.watcher_uri):
            raise web.HTTPNotFound(
                text=json.dumps({"error": {"status": 404, "message": "no such record"}}),
                content_type="application/json",
            )
        return record

    async def read_json(request: web.Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(
                text='{"error": {"status": 400, "message": "body must be JSON"}}',
                content_type="application/json",
            ) from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(
                text='{"error": {"status": 400, "message": "body must be an object"}}',
                content_type="application/json",
            )
        return data

    async def create(request: web.Request) -> web.Response:
        # The same parameters, checks and answers as JSON-RPC's pua.publish
        # and pua.subscribe: one behaviour on every route.
        data = await read_json(request)
        publication = request.path.startswith("/publications")
        try:
            if publication:
                values = named_params(data, PUBLISH_PARAMS, required=1)  # expires: 3600
                result = await methods.publish_values(values, wait=truth(values, "wait", True))
            else:
                values = named_params(data, SUBSCRIBE_PARAMS, required=2)
                result = await methods.subscribe_values(values, wait=truth(values, "wait", True))
        except RpcError as exc:
            if exc.code == OVERLOADED:
                response = _problem(503, exc.message, retry_after=RETRY_AFTER)
                response.headers["Retry-After"] = str(RETRY_AFTER)
                return response
            status = 503 if exc.code in (NOT_STORED, TOO_MANY_RECORDS) else 400
            extra = exc.data if exc.code == TOO_MANY_RECORDS else {}
            return _problem(status, exc.message.removeprefix("Invalid params: "), **extra)
        except PresenceError as exc:
            return _sip_failure(exc)
        except (TypeError, ValueError) as exc:
            return _problem(400, f"bad {'publication' if publication else 'subscription'}: {exc}")
        return _json(result["record"] or {}, 201)

    async def show(request: web.Request) -> web.Response:
        kind = "subscription" if request.path.startswith("/subscriptions") else "publication"
        return _json(view_of(one(request, kind)))

    async def remove(request: web.Request) -> web.Response:
        kind = "subscription" if request.path.startswith("/subscriptions") else "publication"
        if cluster is not None:
            # The record may be another node's: pua.unpublish/unsubscribe by
            # id finds its owner.
            ident = request.match_info["id"]
            try:
                if kind == "subscription":
                    await methods.unsubscribe({"pres_uri": ident})
                else:
                    await methods.unpublish({"pres_uri": ident})
            except RpcError as exc:
                status = 404 if exc.code == 404 else 503
                return _problem(status, exc.message, **(exc.data or {}))
            except PresenceError as exc:
                return _sip_failure(exc)
            return _json({"removed": True})
        record = one(request, kind)
        try:
            await runtime.end(record.key)
        except PresenceError as exc:
            return _sip_failure(exc)
        return _json({"removed": True})

    async def events(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        # Collect from before the headers go out: a client that sees the
        # response start may act at once, and must see what follows.
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        hub.queues.add(queue)
        try:
            await response.prepare(request)
            await response.write(b": pua event stream\n\n")
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        item = await queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if item is None:
                    break
                data = encode_json(item)
                await response.write(b"event: %s\ndata: %s\n\n" % (item["type"].encode(), data))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            hub.queues.discard(queue)
        return response

    async def metrics(request: web.Request) -> web.Response:
        body, content_type = metrics_text(runtime, store_timer, adapters, cluster)
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def cluster_view(request: web.Request) -> web.Response:
        if cluster is None:
            return _problem(404, "this node is not in a cluster (cluster = false)")
        return _json(cluster.view())

    async def openapi(request: web.Request) -> web.Response:
        return _json(OPENAPI)

    app = web.Application(
        middlewares=[authenticate, limit_body, limit_buffered], client_max_size=max_body
    )
    app[RPC_ANSWER] = rpc_answer
    app[BODY_BUDGET] = budget
    app.router.add_post("/rpc", rpc_endpoint)
    app.router.add_get("/records", list_records)
    app.router.add_get("/publications", lambda r: _async_json({"records": records("publication")}))
    app.router.add_post("/publications", create)
    app.router.add_get("/publications/{id}", show)
    app.router.add_delete("/publications/{id}", remove)
    app.router.add_get(
        "/subscriptions", lambda r: _async_json({"records": records("subscription")})
    )
    app.router.add_post("/subscriptions", create)
    app.router.add_get("/subscriptions/{id}", show)
    app.router.add_delete("/subscriptions/{id}", remove)

    add_adapter_routes(app, adapter_methods, read_json, _json, _problem)
    app.router.add_get("/events", events)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/cluster", cluster_view)
    app.router.add_get("/openapi.json", openapi)
    add_page_routes(
        app,
        runtime,
        activity,
        view_of,
        token_presented,
        registrations.bindings if registrations is not None else None,
        adapters.xmpp.view if adapters is not None and adapters.xmpp is not None else None,
        cluster.view if cluster is not None else None,
    )
    app.on_shutdown.append(lambda app: _close_hub(hub))
    return app


async def _store(methods: PuaMethods) -> web.Response | None:
    """Make a change durable; a 503 response when the database cannot be reached."""
    try:
        await methods.stored()
    except RpcError as exc:
        return _problem(503, exc.message)
    return None


async def _async_json(data: Any) -> web.Response:
    return _json(data)


async def _close_hub(hub: EventHub) -> None:
    hub.close()


def bind_api(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) for :class:`ApiServer`, so a
    service can hold its API port before it opens anything else.  Raises
    OSError (EADDRINUSE when the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=128)


class ApiServer:
    """The API application bound to an address."""

    def __init__(
        self,
        runtime: PresenceRuntime,
        host: str,
        port: int,
        *,
        token: str | None,
        durable: Durable | None = None,
        store_timer: WriteTimer | None = None,
        sock: socket.socket | None = None,
        max_waiting: int = 10_000,
        max_body: int = MAX_REQUEST_BYTES,
        max_buffered: int = MAX_BUFFERED_BYTES,
        max_records: int | None = None,
        adapters: Adapters | None = None,
        cluster: ClusterNode | None = None,
        peers: Peers | None = None,
    ) -> None:
        """``sock``, when given, is a listening socket already bound to
        (host, port) (see :func:`bind_api`); otherwise ``start`` binds.
        ``max_waiting``, ``max_body``, ``max_buffered`` and ``max_records``:
        see :func:`make_app`."""
        self.app = make_app(
            runtime,
            token=token,
            durable=durable,
            store_timer=store_timer,
            max_waiting=max_waiting,
            max_body=max_body,
            max_buffered=max_buffered,
            max_records=max_records,
            adapters=adapters,
            cluster=cluster,
            peers=peers,
        )
        self.host = host
        self.port = port
        self._sock = sock
        self._token = token
        self._max_body = max_body
        self._runner: web.AppRunner | None = None

    async def start(self) -> tuple[str, int]:
        """Listen; returns the bound (host, port)."""
        self._runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=1.0
        )
        await self._runner.setup()
        sock = self._sock if self._sock is not None else bind_api(self.host, self.port)
        # POST /rpc takes the short road (pua.api.fast_rpc); every other
        # request, and every refusal, is aiohttp's.
        site = RpcSite(
            self._runner,
            sock,
            answer=self.app[RPC_ANSWER],
            budget=self.app[BODY_BUDGET],
            max_body=self._max_body,
            token=self._token,
        )
        await site.start()
        self.port = int(sock.getsockname()[1])
        return self.host, self.port

    async def stop(self) -> None:
        """Stop listening; event streams end."""
        if self._runner is not None:
            with contextlib.suppress(Exception):
                await self._runner.cleanup()
            self._runner = None
