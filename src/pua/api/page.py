"""The status page and the routes it uses beyond the REST mirror.

``GET /``                              the page, rendered with the records,
                                       the counts and the recent events
``GET /events/recent``                 the recent events (JSON, oldest first)
``GET /publications/{id}/body``        the body pua publishes for the record
``GET /subscriptions/{id}/body``       the body of the record's last NOTIFY
``POST /publications/{id}/refresh``    refresh the publication now
``POST /subscriptions/{id}/refresh``   refresh the subscription now

The page is whole without its script: a browser that runs none, or a
screenshot taken at once, sees what the server holds.  The script then
keeps it live from ``GET /events``.  Every text that comes from the wire or
from a caller (URIs, ids, reason phrases, bodies) is escaped.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Callable
from importlib import resources
from typing import Any

from aiohttp import web

from pua.core import PublicationRecord, Record, SubscriptionRecord
from pua.runtime import PresenceRuntime

from .activity import Activity
from .views import key_from_id

__all__ = ["add_page_routes", "render_page"]

# Headers of a served body: it is the notifier's or the caller's document,
# not ours, so a browser must neither sniff it into HTML nor run it.
_BODY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}

_STATE_CLASS = {
    "published": "st-ok",
    "active": "st-ok",
    "sending": "st-busy",
    "subscribing": "st-busy",
    "refreshing": "st-busy",
    "unsubscribing": "st-busy",
    "backoff": "st-warn",
    "done": "st-done",
}
_DASH = '<span class="faint">—</span>'
# Where the template takes the server's text: @@NAME@@.
_MARKER = re.compile(r"@@([A-Z_]+)@@")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _duration(seconds: float) -> str:
    """As the page's script writes it: ``1h 02m 03s``, ``4m 05s``, ``6s``."""
    whole = max(0, math.floor(seconds))
    hours, minutes, secs = whole // 3600, whole % 3600 // 60, whole % 60
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


def _row(view: dict[str, Any], now: float) -> str:
    """One record as the table row the page's script also draws."""
    is_sub = view["kind"] == "subscription"
    kind = "subscription" if is_sub else "publication"
    who = f'<span class="mono uri">{_e(view["pres_uri"])}</span>'
    if is_sub and view.get("watcher_uri"):
        who += (
            '<span class="watcher c-watcher">watcher '
            f'<span class="mono uri">{_e(view["watcher_uri"])}</span></span>'
        )
    if view.get("record_id"):
        who += f'<span class="note">id {_e(view["record_id"])}</span>'
    state = view["state"]
    badge = f'<span class="badge state {_STATE_CLASS.get(state, "st-done")}">{_e(state)}</span>'
    expires_at = view.get("expires_at")
    if expires_at is None or state == "done":
        expiry = _DASH
    else:
        left = float(expires_at) - now
        expiry = _duration(left) if left > 0 else "expired"
    if view.get("last_status"):
        status = int(view["last_status"])
        tone = "ans-err" if status >= 300 else "ans-ok" if status >= 200 else "ans-info"
        reason = f" {_e(view['last_reason'])}" if view.get("last_reason") else ""
        answer = f'<span class="answer {tone}"><b>{status}</b>{reason}</span>'
    else:
        answer = _DASH
    if is_sub:
        tag_class = "c-substate"
        tag = _e(view.get("subscription_state")) or _DASH
    else:
        tag_class = "c-etag"
        tag = f'<span class="mono">{_e(view["etag"])}</span>' if view.get("etag") else _DASH
    last = view.get("last_notify")
    if is_sub and last:
        notify = f'<span class="c-notify-state">{_e(last["state"])}</span>'
        if last.get("reason"):
            notify += f" ({_e(last['reason'])})"
        notify += f' · <span class="c-notify-summary">{_e(last["summary"])}</span>'
        notify += f'<span class="note">at {_e(_clock(last["at"]))}</span>'
    elif is_sub:
        notify = '<span class="faint">none yet</span>'
    else:
        notify = _DASH
    path = f"{'subscriptions' if is_sub else 'publications'}/{_e(view['id'])}"
    actions = (
        f'<a class="act act-body" href="{path}/body">body</a>'
        '<button type="button" class="act act-refresh">refresh now</button>'
        f'<button type="button" class="act act-remove">{"unsubscribe" if is_sub else "unpublish"}'
        "</button>"
    )
    return (
        f'<tr data-id="{_e(view["id"])}" data-kind="{kind}" data-pres-uri="{_e(view["pres_uri"])}"'
        f' data-state="{_e(state)}">'
        f'<td class="c-kind"><span class="badge kind-{kind}">{kind}</span>'
        f'<span class="note c-source">{_e(view.get("source", ""))}</span></td>'
        f'<td class="c-pres">{who}</td>'
        f'<td class="c-event">{_e(view["event"])}</td>'
        f'<td class="c-state">{badge}<span class="note c-retry" hidden></span></td>'
        f'<td class="num c-expires" data-expires-at="{_e(expires_at)}">{expiry}</td>'
        f'<td class="c-answer">{answer}</td>'
        f'<td class="{tag_class}">{tag}</td>'
        f'<td class="c-notify summary">{notify}</td>'
        f'<td class="c-actions">{actions}</td>'
        "</tr>"
    )


def _log_row(entry: dict[str, Any]) -> str:
    kind = entry["type"]
    if kind in ("publication.succeeded", "subscription.state"):
        tone = "ev-ok"
    elif kind.endswith(".failed"):
        tone = "ev-bad"
    elif kind == "notify":
        tone = "ev-info"
    else:
        tone = "ev-gone"
    who = _e(entry.get("pres_uri"))
    if entry.get("watcher_uri"):
        who += f'<span class="faint"> ← {_e(entry["watcher_uri"])}</span>'
    return (
        f'<tr><td class="when">{_e(_clock(entry["at"]))}</td>'
        f'<td class="what {tone}">{_e(kind)}</td>'
        f'<td class="who mono">{who}</td><td>{_e(entry.get("detail"))}</td></tr>'
    )


def _script_json(data: Any) -> str:
    """JSON that is safe inside a ``<script>`` element: no ``<``, ``>`` or
    ``&`` can end the element or open a comment."""
    text = json.dumps(data, default=str, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _sort_key(view: dict[str, Any]) -> tuple[str, ...]:
    return (
        "0" if view["kind"] == "publication" else "1",
        view["pres_uri"],
        view["event"],
        view.get("watcher_uri") or "",
        view["record_id"],
    )


def render_page(
    template: str,
    views: list[dict[str, Any]],
    recent: list[dict[str, Any]],
    now: float,
    *,
    authorized: bool,
    bindings: list[dict[str, Any]] | None = None,
    gateway: dict[str, Any] | None = None,
    cluster: dict[str, Any] | None = None,
) -> str:
    """The status page with ``views`` (record views), the ``recent`` history
    (oldest first) and the counts in it, the registration ``bindings``
    when registrations are on (None: off) and the XMPP ``gateway``'s view
    when it runs, and the ``cluster``'s view on a node of one.  Not
    ``authorized``: the page
    without any record, saying that a token is needed."""
    if not authorized:
        views, recent = [], []
        bindings = [] if bindings is not None else None
        gateway = None
        cluster = None
    views = sorted(views, key=_sort_key)
    publications = sum(1 for v in views if v["kind"] == "publication")
    trouble = sum(1 for v in views if v["state"] == "backoff")
    empty = (
        '<tr id="empty-row"'
        + (" hidden" if views else "")
        + '><td class="empty" colspan="9">No publications or subscriptions yet.</td></tr>'
    )
    log_empty = (
        '<tr id="log-empty"'
        + (" hidden" if recent else "")
        + '><td class="empty" colspan="4">Waiting for events…</td></tr>'
    )
    initial = {"now": now, "authorized": authorized, "records": views, "recent": recent}
    fills = {
        "COUNT_PUB": str(publications),
        "COUNT_SUB": str(len(views) - publications),
        "COUNT_TROUBLE": str(trouble),
        "TROUBLE_HIDDEN": "" if trouble else " hidden",
        "CONN_STATE": "connecting" if authorized else "unauthorized",
        "CONN_TEXT": "connecting" if authorized else "unauthorized: open this page with ?token=…",
        "ROWS": empty + "".join(_row(v, now) for v in views),
        "LOG_ROWS": log_empty + "".join(_log_row(e) for e in reversed(recent)),
        "INITIAL": _script_json(initial),
        "REGISTRATIONS": _cluster_section(cluster)
        + _registrations_section(bindings)
        + _gateway_section(gateway),
    }
    # One pass: a filled text is never searched again, so a record's text
    # that looks like a marker stays text.
    return _MARKER.sub(lambda m: fills[m.group(1)], template)


def _cluster_section(cluster: dict[str, Any] | None) -> str:
    """The nodes of the cluster, their leases and partitions (as of the
    page's load); nothing on a node alone."""
    if cluster is None:
        return ""
    rows = "".join(
        "<tr>"
        f'<td class="mono">{_e(n["node_id"])}{" (this node)" if n["self"] else ""}</td>'
        f"<td>{'alive' if n['alive'] else 'gone'}</td>"
        f'<td class="num">{_e(n["partitions"])}</td>'
        f'<td class="num">{_e(n["records"])}</td>'
        f'<td class="num">{_e(_duration(n["seen_ago"]))} ago</td>'
        f'<td class="mono">{_e(n["sip"])}</td>'
        f'<td class="mono">{_e(n["api_url"])}</td>'
        "</tr>"
        for n in cluster["nodes"]
    )
    free = len(cluster["free"])
    return (
        '<h2 style="margin-top:26px">Cluster '
        f'<span class="sub">node {_e(cluster["node_id"])}: {len(cluster["owned"])} of '
        f"{cluster['partitions']} partitions, {free} without an owner, lease "
        f"{cluster['lease_time']:g} s, database {_e(cluster['database'])}; "
        "as of this page's load</span></h2>"
        '<div class="panel scroll"><table id="cluster-nodes"><thead><tr>'
        '<th>Node</th><th>State</th><th class="num">Partitions</th>'
        '<th class="num">Records</th><th class="num">Last seen</th><th>SIP</th><th>API</th>'
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _registrations_section(bindings: list[dict[str, Any]] | None) -> str:
    """The bindings as a table (as of the page's load), or nothing when
    registrations are off."""
    if bindings is None:
        return ""
    rows = "".join(
        "<tr>"
        f'<td class="mono">{_e(b["aor"])}</td>'
        f'<td class="mono">{_e(b["contact"])}</td>'
        f'<td class="num">{_e(_duration(b["expires"]))}</td>'
        f"<td>{_e(b['q']) if b.get('q') else _DASH}</td>"
        f"<td>{_e(b['event'])}</td>"
        f'<td class="mono faint">{_e(b["call_id"])}</td>'
        "</tr>"
        for b in sorted(bindings, key=lambda b: (b["aor"], b["contact"]))
    )
    if not rows:
        rows = '<tr><td class="empty" colspan="6">No bindings.</td></tr>'
    return (
        '<h2 style="margin-top:26px">Registrations '
        f'<span class="sub">{len(bindings)} binding(s), as of this page\'s load</span></h2>'
        '<div class="panel scroll"><table id="registrations"><thead><tr>'
        '<th>Address of record</th><th>Contact</th><th class="num">Expires in</th>'
        "<th>q</th><th>Last event</th><th>Call-ID</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _gateway_section(gateway: dict[str, Any] | None) -> str:
    """The XMPP gateway (as of the page's load): its link, its records by
    source, the XMPP users it knows and their resources; nothing when it
    does not run."""
    if gateway is None:
        return ""
    link = "connected" if gateway["connected"] else "not connected"
    if gateway.get("last_error"):
        link += f" ({gateway['last_error']})"
    available = gateway.get("available", {})
    rows = "".join(
        "<tr>"
        f'<td class="mono">{_e(user)}</td>'
        f'<td class="mono">{_e(", ".join(available.get(user, {})) or _DASH)}</td>'
        "<td>"
        + _e(
            "; ".join(
                " ".join(str(x) for x in (p.get("show") or "available", p.get("status")) if x)
                for p in available.get(user, {}).values()
            )
            or "unavailable"
        )
        + "</td></tr>"
        for user in gateway.get("users", [])
    )
    if not rows:
        rows = '<tr><td class="empty" colspan="3">No XMPP users yet.</td></tr>'
    records = gateway.get("records", {})
    counters = gateway.get("counters", {})
    return (
        '<h2 style="margin-top:26px">XMPP gateway '
        f'<span class="sub">{_e(gateway["component"])} at {_e(gateway["server"])}: '
        f"{_e(link)}, as of this page's load</span></h2>"
        f'<p class="muted" id="xmpp-records">XMPP_PUBLISH {records.get("publications", 0)} · '
        f"XMPP_SUBSCRIBE {records.get('subscriptions', 0)} · "
        f"XMPP_INITIAL_SUBS {records.get('watcher_subscriptions', 0)} · "
        f"stanzas in {counters.get('stanzas_in', 0)}, out {counters.get('stanzas_out', 0)}</p>"
        '<div class="panel scroll"><table id="xmpp-users"><thead><tr>'
        "<th>XMPP user</th><th>Resources</th><th>Presence</th>"
        f"</tr></thead><tbody>{rows}</tbody></table></div>"
    )


def _template() -> str:
    return resources.files("pua.api").joinpath("static/status.html").read_text("utf-8")


def _not_found(message: str) -> web.HTTPNotFound:
    return web.HTTPNotFound(
        text=json.dumps({"error": {"status": 404, "message": message}}),
        content_type="application/json",
    )


def add_page_routes(
    app: web.Application,
    runtime: PresenceRuntime,
    activity: Activity,
    view_of: Callable[[Record], dict[str, Any]],
    authorized: Callable[[web.Request], bool],
    bindings: Callable[[], list[dict[str, Any]]] | None = None,
    gateway: Callable[[], dict[str, Any]] | None = None,
    cluster: Callable[[], dict[str, Any]] | None = None,
) -> None:
    """Add the status page and its routes to ``app``.  ``view_of`` makes a
    record's JSON view (with its last NOTIFY); ``authorized`` tells whether
    a request presented the API token (or none is needed).  ``/`` is open
    to all, as the page must load to read its token, but shows records only
    to a request that presented it; the other routes are guarded by the
    app's middleware."""
    template = _template()

    def record_of(request: web.Request) -> Record:
        key = key_from_id(request.match_info["id"])
        record = runtime.record(key) if key is not None else None
        wanted = SubscriptionRecord if request.path.startswith("/subscriptions") else None
        if record is None or isinstance(record, SubscriptionRecord) != (wanted is not None):
            raise _not_found("no such record")
        return record

    async def page(request: web.Request) -> web.Response:
        allowed = authorized(request)
        views = [view_of(r) for r in runtime.records()] if allowed else []
        text = render_page(
            template,
            views,
            activity.recent(),
            runtime.now(),
            authorized=allowed,
            bindings=bindings() if bindings is not None else None,
            gateway=gateway() if gateway is not None else None,
            cluster=cluster() if cluster is not None else None,
        )
        return web.Response(
            text=text,
            content_type="text/html",
            charset="utf-8",
            headers={"Cache-Control": "no-store"},
        )

    async def recent(request: web.Request) -> web.Response:
        return web.json_response(
            {"events": activity.recent(), "now": runtime.now()},
            dumps=lambda v: json.dumps(v, default=str),
        )

    async def body(request: web.Request) -> web.Response:
        record = record_of(request)
        if isinstance(record, PublicationRecord):
            data = record.body
            content_type = record.content_type or runtime.package(record.event).content_type
        else:
            last = activity.last_notify(record.key)
            data = last.body if last is not None else None
            content_type = (last.content_type if last is not None else None) or ""
        if not data:
            raise _not_found("no body")
        response = web.Response(body=data, headers=_BODY_HEADERS)
        # The header as it came: aiohttp's content_type would drop parameters.
        response.headers["Content-Type"] = content_type or "application/octet-stream"
        return response

    async def refresh(request: web.Request) -> web.Response:
        record = record_of(request)
        if not runtime.refresh(record.key):
            state = record.state.value
            return web.json_response(
                {
                    "error": {
                        "status": 409,
                        "message": f"nothing to refresh now: the record is {state}",
                    }
                },
                status=409,
            )
        fresh = runtime.record(record.key)
        return web.json_response(
            {"refreshing": True, "record": view_of(fresh) if fresh is not None else None},
            status=202,
            dumps=lambda v: json.dumps(v, default=str),
        )

    app.router.add_get("/", page)
    app.router.add_get("/events/recent", recent)
    app.router.add_get("/publications/{id}/body", body)
    app.router.add_get("/subscriptions/{id}/body", body)
    app.router.add_post("/publications/{id}/refresh", refresh)
    app.router.add_post("/subscriptions/{id}/refresh", refresh)
