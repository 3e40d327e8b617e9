"""A real Kamailio call proxy as a test peer: it reports calls to pua.

Usage::

    from tests.peers.kamailio_proxy import KamailioCallProxy
    from tests.peers.sipp import SippUAS, call_uas, run_calls

    with call_uas() as uas, KamailioCallProxy(
            callee=uas.address, feed_url="http://127.0.0.1:8080/dialogs") as proxy:
        run_calls(proxy.host, proxy.sip_port, calls=1)   # a SIPp UAC
        # pua's /dialogs got trying, early, confirmed, terminated

    # the reference: Kamailio's own pua_dialoginfo
    with SippUAS("publish_200", trace_msg=True) as pub, call_uas() as uas, \\
            KamailioCallProxy(callee=uas.address, publisher="pua_dialoginfo",
                              publish_to=pub.uri) as proxy:
        run_calls(proxy.host, proxy.sip_port, calls=1)
        pub.received("PUBLISH")      # Event: dialog, for caller and callee

Kamailio 5.6 runs ``tm`` + ``rr`` + ``dialog`` (in memory) on one UDP
socket, 127.0.0.1:<free port> (``.sip_port``).  Every initial INVITE gets a
transaction, a Record-Route and a dialog (``dlg_manage()``), and is relayed
to ``callee`` (``$du``); an INVITE without a From tag gets 400.  In-dialog
requests follow their Route (``loose_route()``), a CANCEL its INVITE;
anything else but OPTIONS (the readiness probe, 200) gets 405.  Two
publishers:

* ``publisher="http"`` (the default) loads ``http_client`` and POSTs each
  dialog state as JSON to ``feed_url`` (pua's ``POST /dialogs``), with
  ``Content-Type: application/json`` and, given ``api_token``,
  ``Authorization: Bearer <token>``:

  ========== ============================== ==================================
  state      where                          what it knows
  ========== ============================== ==================================
  trying     request_route, after           the INVITE: Call-ID, From tag and
             ``dlg_manage()``, before the   URI, To URI, the caller's Contact
             INVITE is relayed              (``local_target``)
  early      ``onreply_route``, a 180..189  the reply's To-tag and Contact
             reply with a To-tag            (``remote_target``)
  confirmed  ``event_route[dialog:start]``  ``$dlg(...)`` (caller's side,
             (the 200 OK)                   ``lifetime``) and the 200's To-tag
                                            and Contact: ``$dlg(to_tag)`` and
                                            ``$dlg(to_contact)`` are still
                                            empty there
  terminated ``event_route[dialog:end]``    ``$dlg(...)``; after a failure the
             (BYE, timeout) and             reply's To-tag (null when there
             ``[dialog:failed]`` (>= 300,   is none, e.g. a timeout) and no
             no answer)                     ``remote_target``
  ========== ============================== ==================================

  Each POST is logged at info level (``FEED POST <url> <json>``, then
  ``FEED POST <state> ci=<call-id> answered <code>``; a failure is logged
  at error level and the call goes on).  ``http_client_query()`` is
  synchronous: a SIP worker waits for pua's answer (at most
  ``http_timeout`` seconds).

* ``publisher="pua_dialoginfo"`` loads ``pua`` (``db_mode`` 0, a SQLite
  ``db_url`` for its table) and ``pua_dialoginfo`` instead, with
  ``send_publish_flag`` set on every INVITE (so any domain is published),
  ``include_callid``, ``include_tags``, ``include_localremote`` and
  ``callee_trying``: PUBLISHes (Event: dialog) for the caller and the
  callee of every call go to ``publish_to`` (pua's ``outbound_proxy``).

``children`` is the number of UDP workers (1 by default: the replies of a
call are handled in order; with more, a 18x and a 200 that arrive within
the same instant may be reported in either order).
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

from . import PeerError, PeerUnavailable, find_free_port
from .kamailio_process import KamailioProcess

__all__ = ["KamailioCallProxy", "PeerUnavailable", "PeerError", "PUBLISHERS"]

HERE = Path(__file__).resolve().parent
CFG_TEMPLATE = HERE / "kamailio_proxy.cfg"

BASE_MODULES = ("tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog", "kex",
                "dialog")
HTTP_MODULES = ("http_client",)
PUA_DIALOGINFO_MODULES = ("db_sqlite", "pua", "pua_dialoginfo")
SCHEMA_FILES = ("standard-create.sql", "presence-create.sql")
PUBLISHERS = ("http", "pua_dialoginfo")
HTTP_INSTALL_HINT = ("run scripts/install-debian-deps.sh (Debian package "
                     "kamailio-utils-modules has http_client)")

# What may be pasted into the cfg: a URL without quotes, blanks, backslashes
# or "$" (single-quoted in the cfg, taken as it is), and an RFC 6750 token.
_URL_RE = re.compile(r"^https?://[^\s'\"\\$]+$")
_TOKEN_RE = re.compile(r"^[A-Za-z0-9._~+/-]+=*$")
_HOST_PORT_RE = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")


def _host_port(callee: str | tuple[str, int]) -> str:
    """``"127.0.0.1:5070"``, ``"sip:127.0.0.1:5070"`` or ``("127.0.0.1", 5070)``
    -> ``"127.0.0.1:5070"``."""
    if isinstance(callee, tuple):
        host, port = callee
        value = f"{host}:{int(port)}"
    else:
        value = str(callee)
        if value.lower().startswith("sip:"):
            value = value[4:]
    if not _HOST_PORT_RE.match(value):
        raise ValueError(f"callee must be host:port, got {callee!r}")
    return value


class KamailioCallProxy(KamailioProcess):
    """Context manager running a Kamailio call proxy on 127.0.0.1 that
    reports each call's dialog states (see the module's doc).

    Keyword-only parameters:

    ``callee``          where every INVITE is relayed: ``"host:port"`` or
                        ``(host, port)`` (e.g. ``SippUAS.address``), UDP
    ``feed_url``        where the states are POSTed (``publisher="http"``),
                        e.g. ``"http://127.0.0.1:8080/dialogs"``
    ``api_token``       bearer token sent with each POST (None: no header)
    ``publisher``       ``"http"`` (http_client) or ``"pua_dialoginfo"``
    ``publish_to``      pua's ``outbound_proxy`` (SIP URI) for
                        ``publisher="pua_dialoginfo"``
    ``http_timeout``    http_client ``connection_timeout``: seconds a POST
                        may take in all (default 2)
    ``dialog_timeout``  dialog ``default_timeout``: a confirmed call ends
                        (``dialog:end``) after this many seconds; also the
                        ``lifetime`` posted with ``confirmed``
    ``invite_timeout``  tm ``fr_inv_timer`` in seconds (and ``fr_timer``,
                        at most 5 s): an unanswered INVITE fails after it
                        (408 to the caller, ``dialog:failed``); the
                        ``lifetime`` posted with ``trying`` and ``early``
    ``children``        UDP workers (default 1)
    ``debug``           Kamailio log level (2: one line per request and per
                        POST; use 1 for benchmarks)
    ``startup_timeout``, ``shm_mb``, ``pkg_mb``, ``keep_workdir``: as for
    the other Kamailio peers.
    """

    _label = "KamailioCallProxy"
    _workdir_prefix = "pua-kamailio-proxy-"
    _db_name = "pua.db"
    _cfg_template = CFG_TEMPLATE
    _cfg_name = "kamailio_proxy.cfg"
    _schema_files = SCHEMA_FILES

    def __init__(self, *, callee: str | tuple[str, int], feed_url: str | None = None,
                 api_token: str | None = None, publisher: str = "http",
                 publish_to: str | None = None, http_timeout: int = 2,
                 dialog_timeout: int = 3600, invite_timeout: int = 60, children: int = 1,
                 debug: int = 2, startup_timeout: float = 15.0, shm_mb: int = 64,
                 pkg_mb: int = 8, keep_workdir: bool = False) -> None:
        if publisher not in PUBLISHERS:
            raise ValueError(f"publisher must be one of {PUBLISHERS}, got {publisher!r}")
        self.publisher = publisher
        self.callee = _host_port(callee)
        if publisher == "http":
            if feed_url is None or not _URL_RE.match(feed_url):
                raise ValueError("publisher 'http' needs feed_url, an http(s) URL without "
                                 f"quotes, blanks, backslashes or '$' (got {feed_url!r})")
            if api_token is not None and not _TOKEN_RE.match(api_token):
                raise ValueError("api_token must be a bearer token (letters, digits, "
                                 "-._~+/ and trailing =)")
            if publish_to is not None:
                raise ValueError("publish_to is for publisher='pua_dialoginfo'")
        else:
            if publish_to is None or not re.match(r"^sips?:[^\s\"\\]+$", publish_to):
                raise ValueError(f"publisher 'pua_dialoginfo' needs publish_to, a SIP URI "
                                 f"(got {publish_to!r})")
            if feed_url is not None or api_token is not None:
                raise ValueError("feed_url and api_token are for publisher='http'")
        self.feed_url = feed_url
        self.api_token = api_token
        self.publish_to = publish_to
        self.http_timeout = int(http_timeout)
        self.dialog_timeout = int(dialog_timeout)
        self.invite_timeout = int(invite_timeout)
        self.children = int(children)
        if self.http_timeout < 1 or self.dialog_timeout < 1 or self.invite_timeout < 1:
            raise ValueError("http_timeout, dialog_timeout and invite_timeout must be >= 1")
        if self.children < 1:
            raise ValueError("children must be >= 1")
        self.sip_port: int = 0
        super().__init__(debug=debug, startup_timeout=startup_timeout, shm_mb=shm_mb,
                         pkg_mb=pkg_mb, keep_workdir=keep_workdir)
        required = BASE_MODULES + (HTTP_MODULES if publisher == "http"
                                   else PUA_DIALOGINFO_MODULES)
        try:
            self._resolve(required, schema=self._needs_db())
        except PeerUnavailable as e:
            if publisher == "http" and "http_client" in str(e):
                raise PeerUnavailable(f"{e}; {HTTP_INSTALL_HINT}") from None
            raise

    # ------------------------------------------------------------------ props
    @property
    def port(self) -> int:
        """Same as ``sip_port``."""
        return self.sip_port

    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:SIP_PORT``: where callers send their INVITEs."""
        return f"sip:{self.host}:{self.sip_port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.sip_port)

    # -------------------------------------------------------------- lifecycle
    def _pick_ports(self) -> bool:
        self.sip_port = find_free_port(self.host, tcp=False)
        return True

    def _sip_port_probed(self) -> int:
        return self.sip_port

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            self._wait_options(sock, deadline, "OPTIONS")
        finally:
            sock.close()

    # ------------------------------------------------------------------ setup
    def _needs_db(self) -> bool:
        return self.publisher == "pua_dialoginfo"

    def _defines(self) -> list[str]:
        if self.publisher == "pua_dialoginfo":
            return ["WITH_PUA_DIALOGINFO"]
        return ["WITH_HTTP_FEED"] + (["WITH_API_TOKEN"] if self.api_token else [])

    def _cfg_values(self) -> dict[str, str]:
        return {
            **super()._cfg_values(),
            "DB_URL": self.db_url if self._needs_db() else "",
            "SIP_PORT": str(self.sip_port),
            "CHILDREN": str(self.children),
            "CALLEE": self.callee,
            "FEED_URL": self.feed_url or "",
            "API_TOKEN": self.api_token or "",
            "HTTP_TIMEOUT": str(self.http_timeout),
            "PUBLISH_TO": self.publish_to or "",
            "DIALOG_TIMEOUT": str(self.dialog_timeout),
            "FR_TIMER": str(min(5000, self.invite_timeout * 1000)),
            "FR_INV_TIMER": str(self.invite_timeout * 1000),
            "INVITE_LIFETIME": str(self.invite_timeout),
        }

    # -------------------------------------------------------------------- log
    def feed_log(self) -> list[str]:
        """The ``FEED POST <url> <json>`` lines logged so far: what was
        POSTed, in order (``publisher="http"``)."""
        out = []
        for line in self.log_text().splitlines():
            _, sep, rest = line.partition("FEED POST ")
            if sep and rest.startswith(("http://", "https://")):
                out.append(rest.split(" ", 1)[1] if " " in rest else "")
        return out

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        target = self.feed_url if self.publisher == "http" else self.publish_to
        return (f"<KamailioCallProxy {self.uri} -> {self.callee} ({self.publisher} "
                f"{target}) {state} workdir={self.workdir}>")
