"""Kamailio as a presence USER AGENT, driven over JSON-RPC on HTTP.

This is the reference for pua's ``pua.publish`` JSON-RPC service: what users
run today is Kamailio with ``pua`` + ``pua_rpc``, reached through
``jsonrpcs`` on ``xhttp`` (``kamcmd`` cannot wait for the reply, HTTP can).

Usage::

    from tests.peers.kamailio_pua import KamailioPua, publish_params
    from tests.peers.sipp import SippUAS

    with SippUAS("publish_200") as uas, KamailioPua(uas.uri) as kam:
        reply = kam.publish("sip:alice@example.com", pidf_body)
        # {"jsonrpc": "2.0", "result": {"SIP-ETag": "...", "Expires": 3600}, "id": 1}

Each instance runs in a fresh temporary directory holding the rendered
``kamailio.cfg`` (from ``kamailio_pua.cfg``), the SQLite database ``pua.db``
(created from Debian's ``/usr/share/kamailio/db_sqlite/{standard,presence}
-create.sql``; pua needs a ``db_url`` and its ``pua`` table even with
``db_mode`` 0) and ``kamailio.log``.  Kamailio runs in the foreground
(``-DD -E``) in its own process group, with SIP on UDP 127.0.0.1:<free>
(``.sip_port``) and HTTP on TCP 127.0.0.1:<free> (``.http_port``,
``.http_url`` = ``http://127.0.0.1:PORT/jsonrpc``).  Every PUBLISH goes to
``outbound_proxy`` (pua's modparam of that name).

``pua.publish`` on Kamailio 5.6.3, as verified against SIPp
(tests/peers/test_kamailio_pua_selfcheck.py)
=============================================================================

Params: a JSON array of **strings**, by position (names are ignored by
jsonrpcs); ``"."`` means "unset"::

    [pres_uri, expires, event, content_type, id, etag, outbound_proxy,
     extra_headers, body]

* ``pres_uri``      ``sip:alice@example.com``: Request-URI, From and To.
* ``expires``       decimal string, e.g. ``"3600"`` (a JSON number is
                    rejected: ``400 Too few or wrong type of parameters (-1)``).
                    The PUBLISH carries ``Expires: <expires>+1`` (pua adds
                    one second); ``"0"`` sends ``Expires: 0``.
* ``event``         a pua event: ``presence``, ``dialog``, ``message-summary``,
                    ``dialog;sla``, ``presence;winfo``, ``reg`` ... otherwise
                    ``400 Unknown event``.
* ``content_type``  e.g. ``application/pidf+xml``, or ``"."`` when there is no
                    body (then ``body`` must be left out).
* ``id``            series id for several publications of one pres_uri, or ".".
* ``etag``          ``SIP-If-Match`` to send, or ".".  It must be an etag that
                    pua holds in its table (from an earlier reply), otherwise
                    nothing is sent and the call fails with ``500 Wrong ETag``.
                    Without etag, a publication of a (pres_uri, event, id)
                    that pua already holds is sent as a modification with the
                    stored etag in ``SIP-If-Match``.
* ``outbound_proxy`` SIP URI overriding the modparam for this call, or ".".
* ``extra_headers`` raw header lines (CRLF-terminated) or ".".
* ``body``          optional 9th element.  For ``presence`` pua parses the
                    PIDF (it needs a ``<tuple>``; it re-serialises the XML),
                    a body it cannot parse gives ``500 I'm terribly sorry,
                    server error occurred (1/RPC/PUBLISH)``.  Missing body
                    with a content type other than "." -> ``400 Body is
                    missing``.

The call WAITS for the final SIP reply (jsonrpcs delayed reply, HTTP only).

Results (JSON-RPC over HTTP/1.1; the HTTP status line mirrors the RPC code;
``id`` is echoed, and omitted when the request had none):

* final **200** -> HTTP 200,
  ``{"jsonrpc": "2.0", "result": {"SIP-ETag": "<SIP-ETag of the 200>",
  "Expires": <int Expires of the 200>}, "id": ...}``.
* any other final reply (412, 423, 503 ...) and also a transaction timeout
  (no answer within tm's ``fr_timer``, a local 408) -> HTTP 200 with an
  **empty** result ``{"jsonrpc": "2.0", "result": {}, "id": ...}``.  The
  status code is NOT reported on 5.6.3 (newer pua_rpc code that adds
  statusCode/reasonPhrase is not in this build).  pua does not retry: a 423
  with ``Min-Expires`` is not re-sent, a 412 is not turned into an initial
  PUBLISH.
* parameter errors (nothing is sent) -> HTTP <code> <message> and
  ``{"jsonrpc": "2.0", "error": {"code": <code>, "message": "<message>"},
  "id": ...}``: 400 ``Too few or wrong type of parameters (<n>)``,
  400 ``Invalid presentity uri '<uri>'``, 400 ``Invalid expires value '<v>'``,
  400 ``Unknown event``, 400 ``Body is missing``, 500 ``Wrong ETag``,
  500 ``I'm terribly sorry, server error occurred (1/RPC/PUBLISH)``.
* unknown method -> HTTP 500, ``error: {"code": 500, "message":
  "Method Not Found"}``.

jsonrpcs on 5.6.3 does NOT support JSON-RPC batches: a JSON array is
rejected ("missing or invalid jsonrpc field in request" in the log) with
HTTP 200 and ``{"jsonrpc": "2.0", "result": {}}`` (no id, nothing executed).
A body that is not JSON gets no HTTP reply at all (the connection stays
open until the client times out).  An HTTP request larger than the TCP read
buffer (``tcp_rd_buf_size``, raised to 64 KiB in kamailio_pua.cfg from the
16 KiB default) is dropped and the connection closed without a reply.  HTTP
keep-alive works (many requests on one connection).

Workers: HTTP requests are served by the TCP workers (``tcp_children``):
they parse the request, let pua build and send the PUBLISH through tm and
are free again at once (the reply is delayed).  The SIP reply is received
by a UDP worker (``children``), which runs pua's callback and writes the
JSON-RPC answer to the HTTP connection.
"""

from __future__ import annotations

import http.client
import json
import sqlite3
from pathlib import Path
from typing import Any

from . import PeerError, PeerUnavailable, find_free_port
from .kamailio_process import KamailioRpcProcess

__all__ = ["KamailioPua", "PeerUnavailable", "PeerError", "publish_params",
           "PUBLISH_PARAM_NAMES"]

HERE = Path(__file__).resolve().parent
CFG_TEMPLATE = HERE / "kamailio_pua.cfg"

REQUIRED_MODULES = (
    "tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
    "db_sqlite", "pua", "pua_rpc", "jsonrpcs", "xhttp",
)
SCHEMA_FILES = ("standard-create.sql", "presence-create.sql")

PUBLISH_PARAM_NAMES = ("pres_uri", "expires", "event", "content_type", "id", "etag",
                       "outbound_proxy", "extra_headers", "body")


def publish_params(pres_uri: str, body: str | None = None, *, expires: int | str = 3600,
                   event: str = "presence", content_type: str | None = None,
                   id: str = ".", etag: str = ".", outbound_proxy: str = ".",
                   extra_headers: str = ".") -> list[str]:
    """The positional ``params`` array of ``pua.publish`` (all strings).

    ``content_type`` defaults to ``application/pidf+xml`` with a body and to
    ``"."`` without one; without a body the 9th element is left out.
    """
    if content_type is None:
        content_type = "application/pidf+xml" if body is not None else "."
    params = [pres_uri, str(expires), event, content_type, id, etag, outbound_proxy,
              extra_headers]
    if body is not None:
        params.append(body)
    return params


class KamailioPua(KamailioRpcProcess):
    """Context manager running Kamailio (pua + pua_rpc + jsonrpcs/xhttp).

    ``outbound_proxy``  SIP URI every PUBLISH is sent to (pua modparam), e.g.
                        ``SippUAS.uri`` (``sip:127.0.0.1:PORT``).
    ``children``        UDP SIP workers (receive replies, answer the RPC).
    ``tcp_children``    TCP workers serving HTTP (default: ``children``).
    ``fr_timer_ms``     tm final-response timeout: without a final reply the
                        call returns (empty result) after this long.
    ``update_period``   pua hash-table expiry / DB sync timer, seconds (pua
                        requires 0 = disabled or > 5).
    ``default_expires`` pua ``default_expires``.
    ``db_mode``         pua ``db_mode``: 0 keeps the table in memory and
                        writes it on the update timer (the default here), 2
                        keeps every publication in the database only.
    ``debug``           Kamailio log level 0..3 (default 2 = info; the
                        config logs nothing per request).
    ``startup_timeout`` seconds to wait for readiness (SIP OPTIONS on UDP and
                        a ``core.version`` JSON-RPC call over HTTP).
    ``rpc_timeout``     default timeout of one HTTP call (default:
                        fr_timer + 5 s).
    ``shm_mb``/``pkg_mb`` shared/private memory (-m/-M).  Every PUBLISH keeps
                        a tm transaction, a pua hash entry and a delayed RPC
                        context in shared memory.
    ``keep_workdir``    keep the temp dir (also with ``PUA_KEEP_PEER_DIRS=1``).
    """

    _label = "KamailioPua"
    _workdir_prefix = "pua-kamailio-pua-"
    _db_name = "pua.db"
    _cfg_template = CFG_TEMPLATE
    _cfg_name = "kamailio_pua.cfg template"
    _schema_files = SCHEMA_FILES

    def __init__(self, outbound_proxy: str, *, children: int = 4,
                 tcp_children: int | None = None, fr_timer_ms: int = 5000,
                 update_period: int = 100, default_expires: int = 3600,
                 db_mode: int = 0, debug: int = 2, startup_timeout: float = 15.0,
                 rpc_timeout: float | None = None, shm_mb: int = 256, pkg_mb: int = 16,
                 keep_workdir: bool = False) -> None:
        if not outbound_proxy.startswith(("sip:", "sips:")):
            raise ValueError(f"outbound_proxy must be a SIP URI, got {outbound_proxy!r}")
        self.outbound_proxy = outbound_proxy
        self.children = int(children)
        self.tcp_children = int(tcp_children if tcp_children is not None else children)
        if self.children < 1 or self.tcp_children < 1:
            raise ValueError("children and tcp_children must be >= 1")
        self.fr_timer_ms = int(fr_timer_ms)
        self.update_period = int(update_period)
        if 0 < self.update_period <= 5:
            raise ValueError("pua update_period must be 0 (disabled) or > 5")
        self.default_expires = int(default_expires)
        if db_mode not in (0, 1, 2):
            raise ValueError("pua db_mode must be 0 (memory), 1 (write-through) or 2 (database only)")
        self.db_mode = int(db_mode)
        super().__init__(debug=debug, startup_timeout=startup_timeout, shm_mb=shm_mb,
                         pkg_mb=pkg_mb, keep_workdir=keep_workdir)
        self.rpc_timeout = (float(rpc_timeout) if rpc_timeout is not None
                            else self.fr_timer_ms / 1000 + 5.0)
        self._resolve(REQUIRED_MODULES)

    # ------------------------------------------------------------------ props
    @property
    def sip_uri(self) -> str:
        return f"sip:{self.host}:{self.sip_port}"

    # -------------------------------------------------------------- lifecycle
    def _pick_ports(self) -> bool:
        self.sip_port = find_free_port(self.host, udp=True, tcp=False)
        self.http_port = find_free_port(self.host, udp=False, tcp=True)
        return self.http_port != self.sip_port

    def _retry_after(self, error: PeerError) -> bool:
        # Only a lost port race is worth other ports; not a config or
        # module failure.
        return "already in use" in str(error)

    # ------------------------------------------------------------------ setup
    def _check_db(self, con: sqlite3.Connection) -> None:
        if not con.execute("SELECT name FROM sqlite_master WHERE type='table' "
                           "AND name='pua'").fetchone():
            raise PeerUnavailable(f"no 'pua' table in {self.schema_dir}/presence-create.sql")
        con.execute("PRAGMA journal_mode=WAL")

    def _cfg_values(self) -> dict[str, str]:
        return {
            **super()._cfg_values(),
            "CHILDREN": str(self.children),
            "TCP_CHILDREN": str(self.tcp_children),
            "OUTBOUND_PROXY": self.outbound_proxy,
            "UPDATE_PERIOD": str(self.update_period),
            "FR_TIMER": str(self.fr_timer_ms),
            "DEFAULT_EXPIRES": str(self.default_expires),
            "DB_MODE": str(self.db_mode),
        }

    # -------------------------------------------------------------------- RPC
    def connection(self, timeout: float | None = None) -> http.client.HTTPConnection:
        """A new (keep-alive capable) HTTP connection to the JSON-RPC port."""
        return http.client.HTTPConnection(
            self.host, self.http_port,
            timeout=self.rpc_timeout if timeout is None else timeout)

    def post(self, payload: bytes | str, *, timeout: float | None = None,
             conn: http.client.HTTPConnection | None = None) -> tuple[int, str, bytes]:
        """POST a raw document to ``/jsonrpc``; returns (status, reason, body).

        With ``conn`` the request goes on that (keep-alive) connection,
        otherwise on a new one that is closed afterwards.  Raises OSError /
        ``http.client.HTTPException`` (e.g. TimeoutError) on transport errors.
        """
        if isinstance(payload, str):
            payload = payload.encode()
        own = conn is None
        c = self.connection(timeout) if conn is None else conn
        try:
            c.request("POST", "/jsonrpc", body=payload,
                      headers={"Content-Type": "application/json"})
            resp = c.getresponse()
            return resp.status, resp.reason, resp.read()
        finally:
            if own:
                c.close()

    def rpc(self, method: str, params: list[Any] | dict[str, Any] | None = None, *,
            timeout: float | None = None,
            conn: http.client.HTTPConnection | None = None) -> dict[str, Any]:
        """One JSON-RPC 2.0 call over HTTP; returns the parsed response
        (``{"jsonrpc": "2.0", "result"|"error": ..., "id": N}``) whatever the
        HTTP status (Kamailio mirrors RPC errors in the status line)."""
        doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._next_id()}
        if params is not None:
            doc["params"] = params
        status, reason, body = self.post(json.dumps(doc), timeout=timeout, conn=conn)
        try:
            reply = json.loads(body)
        except ValueError as e:
            raise PeerError(f"non-JSON reply to {method}: HTTP {status} {reason} "
                            f"{body[:200]!r}") from e
        if not isinstance(reply, dict):
            raise PeerError(f"unexpected reply to {method}: {reply!r}")
        return reply

    def publish(self, pres_uri: str, body: str | None = None, *,
                timeout: float | None = None, **kwargs: Any) -> dict[str, Any]:
        """``pua.publish`` via :meth:`rpc`; keyword arguments as
        :func:`publish_params` (expires, event, content_type, id, etag,
        outbound_proxy, extra_headers)."""
        return self.rpc("pua.publish", publish_params(pres_uri, body, **kwargs),
                        timeout=timeout)

    # ------------------------------------------------------------------- data
    def pua_rows(self) -> list[dict[str, Any]]:
        """The SQLite ``pua`` table.  With db_mode 0 pua writes it only from
        its update timer and at shutdown, so it is normally empty."""
        con = sqlite3.connect(str(self.db_path), timeout=5.0)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute("SELECT * FROM pua ORDER BY id")]
        finally:
            con.close()

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return (f"<KamailioPua sip={self.sip_uri} http={self.http_url} {state} "
                f"workdir={self.workdir}>")
