"""Kamailio's own SIP <-> XMPP presence gateway as a test peer: the
``xmpp`` module (an XEP-0114 component of an XMPP server), ``pua`` and
``pua_xmpp``, relaying to a presence server.

Usage::

    from tests.peers.kamailio import KamailioPresence
    from tests.peers.kamailio_xmpp import KamailioXmppGateway
    from tests.peers.prosody import Prosody

    with Prosody("localhost", {"sip.example.com": "secret"}) as xmpp, \\
            KamailioPresence() as kam, \\
            KamailioXmppGateway(xmpp_port=xmpp.component_port,
                                presence_server=kam.uri) as gw:
        ...   # XMPP users talk to  user*domain@sip.example.com
              # SIP users see XMPP users as sip:user*domain@sip.example.com

``KamailioXmppGateway(*, xmpp_port, presence_server, xmpp_domain=
"sip.example.com", xmpp_secret="secret", gateway_domain=None (=
xmpp_domain), xmpp_host="127.0.0.1", sip_domains=("example.com",),
children=2, default_expires=3600, update_period=100, fr_timer_ms=5000,
xmpp_log_level=3, fix_attrs=True, debug=2, startup_timeout=15.0,
shm_mb=128, pkg_mb=16, keep_workdir=False)``.  Attributes ``host``,
``sip_port``, ``uri`` (``sip:127.0.0.1:PORT``, also pua_xmpp's
``server_address``), ``address``, ``xmpp_domain``, ``gateway_domain``,
``sip_domains``, ``started_in`` (seconds from spawn to ready).
:meth:`sip_address_of` / :meth:`jid_of` map addresses as Kamailio does;
:meth:`local_requests` / :meth:`wait_local_request` are the PUBLISHes and
SUBSCRIBEs pua sent (headers, from the log; ``debug`` >= 2), and
:meth:`replies` / :meth:`wait_reply` the replies this Kamailio received
(``reply_route``, just before pua's callback runs);
:meth:`xmpp_sent` the stanzas the xmpp module wrote; :meth:`wait_log`,
:meth:`log_mark`, :meth:`log_text`.

**The xmpp module of Kamailio 5.2 and later crashes** at the first XML
element it receives: the loop that copies an element's attributes stops
at an empty *name*, ``*(atts[i]) != '\\0'``, but expat ends the list with
a NULL pointer (a 2017 change meant to silence a gcc warning turned the
pointer test into a dereference).  The "XMPP Manager" process dies with
SIGSEGV at Prosody's stream header, before the handshake, and Kamailio
shuts down ("child process N exited by a signal 11", "terminating due to
SIGCHLD"; kamailio/kamailio#4154, closed unfixed).  Neither direction can
work with Debian's xmpp.so as it is.  So by default (``fix_attrs=True``)
the peer builds ``kamailio_xmpp_attrs.c`` with ``cc`` into its temp dir
and runs Kamailio with it in ``LD_PRELOAD``: it hands the start-element
handlers of xmpp.so (and only those) the same attribute list, ended by
an empty string after the NULL's place.  Nothing else changes; with
``fix_attrs=False`` the crash is what the self-check sees.

The config (``kamailio_xmpp.cfg``) in a few lines:

* PUBLISH: pua's ``outbound_proxy`` is ``presence_server``.
* SUBSCRIBE: pua 5.6 ignores ``outbound_proxy`` for it and sends it to
  the domain of its Request-URI.  ``sip_domains`` and ``gateway_domain``
  are put in Kamailio's DNS cache (``jsonrpc_exec`` of ``dns.add_a`` and
  ``dns.add_srv``, permanent, in ``event_route[core:worker-one-init]``;
  nothing is looked up elsewhere) as served by this Kamailio, whose
  script Record-Routes every SUBSCRIBE and relays it to
  ``presence_server``.  pua_xmpp's Contact is the XMPP user's SIP address
  (``sip:user*domain@<gateway_domain>``) or, for presence.winfo,
  ``server_address``: the presence server's NOTIFYs come back along the
  route set either way.
* In-dialog NOTIFY to this Kamailio (``uri == myself``; the gateway
  domain is an alias) -> ``pua_xmpp_notify()``, then ``t_reply`` 200, as
  the module's README asks.  On any error the function returns 0, which
  ends the script: no reply at all (e.g. "Notify in a non existing
  dialog"; tm: "script writer didn't release transaction").  Other
  in-dialog requests not for this Kamailio are relayed along their
  Route; to it: 404.
* A SUBSCRIBE (Event presence) from elsewhere for an XMPP user's SIP
  address calls ``pua_xmpp_req_winfo("$ru", "$hdr(Expires)")`` before it
  is relayed.  Other out-of-dialog requests: 405; OPTIONS: 200.
* pua ``check_remote_contact`` is 0: pua_xmpp never tells pua the remote
  target, and with the default (1) pua finds none of its dialogs again
  (an XMPP ``unsubscribe`` sends nothing; each ``subscribe`` or ``probe``
  starts one more SUBSCRIBE dialog: seen).

Readiness, in ``start()``: the peer waits for (1) a 200 to OPTIONS,
which the script gives only once route SIP_DOMAINS has filled the DNS
cache (``$shv(domains_ready)``; 503 before), then (2) the xmpp module's
"handshake succeeded" in ``kamailio.log``.  The module logs that only at
debug level, so the config raises the level of the ``xmpp`` and
``pua_xmpp`` modules alone to 3 (debugger module, ``xmpp_log_level``).
Prosody sends the empty ``<handshake/>`` only after it has made the
component the route of its domain, so stanzas to the domain reach
Kamailio from then on.  A child that dies fails the start at once.
Without a running XMPP server the module logs "connect() failed" every
3 s and ``start()`` times out.  It takes about 0.5 s in all (the C
build about 0.1 s, spawn to ready about 0.25 s).  At level 3 the two
modules log a few lines per stanza (also what :meth:`xmpp_sent` reads).

Kamailio 5.6.3 as observed (tests/peers/test_kamailio_xmpp_selfcheck.py;
*read* marks what comes from the source only):

* XMPP -> SIP.  A ``<presence>`` without type from ``bob@localhost/r``
  to any JID of the component's domain -> PUBLISH
  ``sip:bob*localhost@sip.example.com`` (Request-URI = From = To;
  resource dropped; no Contact), Event presence, ``Expires: 3601``
  (pua's ``default_expires`` + 1; the presence server keeps 3600), a PIDF
  with ``entity="pres:bob*localhost@sip.example.com"``, one tuple with
  ``<basic>open</basic>`` and, when there is a ``<show>``, a ``<note>``
  with it mapped (dnd -> "Busy (DND)", xa -> "Away", chat -> "Online",
  others as they are) and an empty ``<person/>``.  pua gives the tuple
  and the person the same id, ``0x`` and a hexadecimal address.  The
  ``<status>`` text is never published, nor (*read*) the priority; a
  status without a show gives an empty ``<note/>``.  The next presence
  is a PUBLISH with ``SIP-If-Match`` and the new body; all resources of a
  user share that one publication (the latest presence wins).  But a
  presence that pua handles before the 200 of the previous PUBLISH is
  back goes out as another initial PUBLISH: a second presentity (seen
  with tests run in parallel; the self-checks wait for each 200).  ``unavailable`` from any resource -> PUBLISH ``Expires: 0``
  with ``SIP-If-Match``, no body: the publication is gone.
* SIP -> XMPP.  ``subscribe`` to ``alice*example.com@sip.example.com``
  -> SUBSCRIBE ``sip:alice@example.com``, From
  ``sip:bob*localhost@sip.example.com``, Contact
  ``<sip:bob*localhost@sip.example.com>``, Event presence,
  ``Expires: 3610`` (``default_expires`` + 10).  Its 200 ->
  ``<presence type="subscribed">`` from the bare
  ``alice*example.com@sip.example.com`` to ``bob@localhost``; two SIP
  workers handle the 200 and the first NOTIFY, so that presence may
  reach the XMPP user before the ``subscribed`` (seen both ways).  Each
  NOTIFY -> a presence from that bare JID: ``open`` -> available, with
  ``<status>`` = the first ``<note>`` and a ``<show>`` for some notes
  ("away" and "On the phone" -> away, "busy" -> xa, "dnd" and "Busy
  (DND)" -> dnd), no note -> neither; ``closed``, or no body (publication
  removed) -> ``unavailable``.  A further ``probe`` or ``subscribe`` ->
  a re-SUBSCRIBE in the same dialog (no new ``subscribed``);
  ``unsubscribe`` -> ``Expires: 0`` in that dialog; the final NOTIFY
  (``terminated;reason=timeout``) races with pua's handling of the 200:
  it is answered and dropped, or, once pua has forgotten the dialog,
  left unanswered ("Notify in a non existing dialog"); no stanza either
  way.  *read*: another
  ``terminated`` -> ``unsubscribed``; a SUBSCRIBE error >= 300 ->
  ``type="error"`` with a condition; ``<contact priority>`` is copied.
* SIP watchers of XMPP users.  carol's SUBSCRIBE for
  ``sip:erin*localhost@sip.example.com`` through this Kamailio ->
  pua SUBSCRIBEs presence.winfo for it (From = To = Request-URI = that
  address, Contact = ``server_address``, ``Expires: 3610``); each watcher
  in the winfo NOTIFY -> ``<presence type="subscribe">`` from
  ``carol*example.com@sip.example.com`` to ``erin@localhost``.  Once
  erin approves, Prosody sends erin's presence to carol's JID, which is
  published as above and so reaches carol.  *read*: the Expires given to
  ``pua_xmpp_req_winfo`` is not read (its fixup turns both parameters
  into formats, then the first byte of the second one's structure is
  compared with "0"): the winfo subscription is "for ever" but by
  chance, also for a watcher's ``Expires: 0``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from . import PeerError, PeerUnavailable, find_free_port
from .kamailio_process import SCHEMA_FILES, KamailioProcess

__all__ = ["KamailioXmppGateway", "PeerError", "PeerUnavailable", "HANDSHAKE_LINE"]

HERE = Path(__file__).resolve().parent
CFG_TEMPLATE = HERE / "kamailio_xmpp.cfg"
# The preloaded library that keeps the xmpp module from crashing on the
# first element it receives (see its comment and the module docstring).
ATTRS_SHIM_SOURCE = HERE / "kamailio_xmpp_attrs.c"
SHIM_BUILD_TIMEOUT = 60.0

REQUIRED_MODULES = (
    "debugger", "tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
    "db_sqlite", "presence", "presence_xml", "pua", "xmpp", "pua_xmpp",
)
XMPP_INSTALL_HINT = ("run scripts/install-debian-deps.sh (Debian packages "
                     "kamailio-xmpp-modules, kamailio-presence-modules)")
# What the xmpp module logs (at debug level) when the XMPP server has
# accepted its XEP-0114 handshake.
HANDSHAKE_LINE = "handshake succeeded"
# How the xmpp module logs a stanza it writes to the stream (debug level).
_SENT_RE = re.compile(r"do_send_bulk_message_component from=\[[^\]]*\] to=\[[^\]]*\] "
                      r"body=\[(.*?)\]$", re.S | re.M)
# What Kamailio's main process logs when one of its children dies.
_CHILD_DIED_RE = re.compile(r"child process \d+ exited by a signal \d+")
# The config's reply_route line (one per reply received).
_REPLY_RE = re.compile(r"<script>: REPLY (\d+) ([^\s|]+)\|(.*)$", re.M)
# The config's tm:local-request line (one per request pua sends).
_LOCAL_RE = re.compile(r"<script>: LOCAL (\S+) ([^\s|]+)\|(.*)$", re.M)
_SIP_URI = ("sip:", "sips:")
_DOMAIN_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*")
# How long the cached records live (they are permanent anyway).
_DNS_TTL = 86400


class KamailioXmppGateway(KamailioProcess):
    """Kamailio 5.6 with ``xmpp`` (component backend), ``pua`` and
    ``pua_xmpp``; a context manager.  See the module docstring.

    ``xmpp_port``       the XMPP server's component port (XEP-0114)
    ``xmpp_domain``     the component's domain: XMPP users write to
                        ``user*domain@xmpp_domain``
    ``xmpp_secret``     the component secret
    ``gateway_domain``  the SIP domain of the XMPP users (default
                        ``xmpp_domain``): ``bob@localhost`` is
                        ``sip:bob*localhost@gateway_domain``
    ``presence_server`` SIP URI where PUBLISH and SUBSCRIBE are relayed
    ``xmpp_host``       the XMPP server's address
    ``children``        UDP SIP workers
    ``default_expires`` pua ``default_expires`` (the "for ever"
                        publications and subscriptions are sent with
                        this + 1)
    ``update_period``   pua refresh/expiry timer (0 or > 5 s)
    ``fr_timer_ms``     tm final-response timeout
    ``xmpp_log_level``  log level of the xmpp and pua_xmpp modules; 3
                        (debug) is needed for the readiness check
    ``debug``           core log level (2: one line per request)
    """

    _label = "KamailioXmppGateway"
    _workdir_prefix = "pua-kamailio-xmpp-"
    _db_name = "gateway.db"
    _cfg_template = CFG_TEMPLATE
    _cfg_name = "kamailio_xmpp.cfg template"
    _schema_files = SCHEMA_FILES

    def __init__(self, *, xmpp_port: int, presence_server: str,
                 xmpp_domain: str = "sip.example.com", xmpp_secret: str = "secret",
                 gateway_domain: str | None = None, xmpp_host: str = "127.0.0.1",
                 sip_domains: Sequence[str] = ("example.com",),
                 children: int = 2, default_expires: int = 3600,
                 update_period: int = 100, fr_timer_ms: int = 5000,
                 xmpp_log_level: int = 3, fix_attrs: bool = True, debug: int = 2,
                 startup_timeout: float = 15.0, shm_mb: int = 128, pkg_mb: int = 16,
                 keep_workdir: bool = False) -> None:
        if not presence_server.startswith(_SIP_URI):
            raise ValueError(f"presence_server must be a SIP URI, got {presence_server!r}")
        for name, value in (("xmpp_domain", xmpp_domain), ("xmpp_secret", xmpp_secret),
                            ("gateway_domain", gateway_domain or xmpp_domain),
                            ("xmpp_host", xmpp_host)):
            if not value or any(c in value for c in '"\n\r@'):
                raise ValueError(f"{name} {value!r} cannot go into the config")
        self.xmpp_port = int(xmpp_port)
        self.presence_server = presence_server
        self.xmpp_domain = xmpp_domain
        self.xmpp_secret = xmpp_secret
        self.gateway_domain = gateway_domain or xmpp_domain
        self.xmpp_host = xmpp_host
        # the domains this Kamailio resolves to itself: the SIP users' and
        # its own gateway domain (pua_xmpp_req_winfo subscribes there)
        self.sip_domains = tuple(dict.fromkeys([*sip_domains, self.gateway_domain]))
        for d in self.sip_domains:
            if not _DOMAIN_RE.fullmatch(d):
                raise ValueError(f"sip_domains: {d!r} is not a host name")
        self.children = int(children)
        if self.children < 1:
            raise ValueError("children must be >= 1")
        self.default_expires = int(default_expires)
        self.update_period = int(update_period)
        if 0 < self.update_period <= 5:
            raise ValueError("pua update_period must be 0 (disabled) or > 5")
        self.fr_timer_ms = int(fr_timer_ms)
        self.xmpp_log_level = int(xmpp_log_level)
        if self.xmpp_log_level < 3:
            raise ValueError("xmpp_log_level must be 3 (debug): start() waits for "
                             f"the xmpp module's {HANDSHAKE_LINE!r} line")
        self.fix_attrs = bool(fix_attrs)
        self.sip_port = 0
        self.started_in: float | None = None
        super().__init__(debug=debug, startup_timeout=startup_timeout, shm_mb=shm_mb,
                         pkg_mb=pkg_mb, keep_workdir=keep_workdir)
        try:
            self._resolve(REQUIRED_MODULES)
        except PeerUnavailable as e:
            raise PeerUnavailable(f"{e}; for xmpp.so/pua_xmpp.so: {XMPP_INSTALL_HINT}") from None
        self._cc = shutil.which("cc") or shutil.which("gcc")
        if self.fix_attrs and not self._cc:
            raise PeerUnavailable("no C compiler (cc) to build the xmpp module's "
                                  "attribute fix (kamailio_xmpp_attrs.c); install gcc")

    # ------------------------------------------------------------------ props
    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:PORT``: the gateway's SIP address (pua_xmpp's
        ``server_address``)."""
        return f"sip:{self.host}:{self.sip_port}"

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.sip_port

    def sip_address_of(self, jid: str) -> str:
        """The SIP address Kamailio gives an XMPP user (resource dropped):
        ``bob@localhost/r`` -> ``sip:bob*localhost@<gateway_domain>``."""
        user, _, domain = jid.split("/", 1)[0].partition("@")
        return f"sip:{user}*{domain}@{self.gateway_domain}"

    def jid_of(self, sip_uri: str) -> str:
        """The JID Kamailio gives a SIP user: ``sip:alice@example.com`` ->
        ``alice*example.com@<xmpp_domain>``."""
        user, _, domain = sip_uri.split(":", 1)[1].partition("@")
        return f"{user}*{domain}@{self.xmpp_domain}"

    # -------------------------------------------------------------- lifecycle
    def _pick_ports(self) -> bool:
        self.sip_port = find_free_port(self.host, udp=True, tcp=False)
        return True

    def _retry_after(self, error: PeerError) -> bool:
        # only a lost port race is worth another port
        return "already in use" in str(error)

    def _sip_port_probed(self) -> int:
        return self.sip_port

    def _cfg_values(self) -> dict[str, str]:
        return {
            **super()._cfg_values(),
            "SIP_PORT": str(self.sip_port),
            "CHILDREN": str(self.children),
            "PRESENCE_SERVER": self.presence_server,
            "XMPP_HOST": self.xmpp_host,
            "XMPP_PORT": str(self.xmpp_port),
            "XMPP_DOMAIN": self.xmpp_domain,
            "XMPP_SECRET": self.xmpp_secret,
            "GATEWAY_DOMAIN": self.gateway_domain,
            "DEFAULT_EXPIRES": str(self.default_expires),
            "UPDATE_PERIOD": str(self.update_period),
            "FR_TIMER": str(self.fr_timer_ms),
            "XMPP_LOG_LEVEL": str(self.xmpp_log_level),
            "RUN_DIR": str(self._path("run")),
            "SIP_DOMAINS_ROUTE": self._sip_domains_route(),
        }

    def _sip_domains_route(self) -> str:
        """route[SIP_DOMAINS]: each domain has an A record (this host) and
        an SRV record for SIP over UDP (this port) in Kamailio's DNS cache;
        then ``$shv(domains_ready)`` is 1 and OPTIONS get 200."""
        lines = ["\t$var(failed) = 0;"]
        for i, d in enumerate(self.sip_domains):
            for method, params in (
                    ("dns.add_a", [d, _DNS_TTL, self.host, 2]),
                    ("dns.add_srv", [f"_sip._udp.{d}", _DNS_TTL, 0, 0, self.sip_port, d, 2])):
                doc = json.dumps({"jsonrpc": "2.0", "method": method, "params": params,
                                  "id": i + 1}, separators=(",", ":"))
                lines += [f"\tjsonrpc_exec('{doc}');",
                          "\tif ($jsonrpl(code) != 200) {",
                          f'\t\txlog("L_ERR", "SIP_DOMAINS: {method} {d} failed: '
                          '$jsonrpl(body)\\n");',
                          "\t\t$var(failed) = 1;",
                          "\t}"]
        lines += ["\tif ($var(failed) == 0) {",
                  "\t\t$shv(domains_ready) = 1;",
                  "\t}"]
        return "\n".join(lines)

    @property
    def shim_path(self) -> Path:
        return self._path("kamailio_xmpp_attrs.so")

    def _write_cfg(self) -> None:
        super()._write_cfg()
        if self.fix_attrs and not self.shim_path.exists():
            self._build_shim()

    def _build_shim(self) -> None:
        assert self._cc is not None
        cmd = [self._cc, "-shared", "-fPIC", "-O2", "-o", str(self.shim_path),
               str(ATTRS_SHIM_SOURCE), "-ldl", "-lpthread"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=SHIM_BUILD_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise PeerError(f"building {ATTRS_SHIM_SOURCE.name} took over "
                            f"{SHIM_BUILD_TIMEOUT}s") from None
        if done.returncode != 0:
            raise PeerError(f"could not build {ATTRS_SHIM_SOURCE.name}:\n{done.stderr}")

    def _spawn_env(self) -> dict[str, str] | None:
        if not self.fix_attrs:
            return None
        env = dict(os.environ)
        env["LD_PRELOAD"] = " ".join(p for p in (str(self.shim_path),
                                                  env.get("LD_PRELOAD", "")) if p)
        return env

    def _wait_ready(self) -> None:
        began = time.monotonic()
        deadline = began + self.startup_timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            self._wait_options(sock, deadline, "SIP OPTIONS")
        finally:
            sock.close()
        self.wait_log(HANDSHAKE_LINE, timeout=max(0.0, deadline - time.monotonic()),
                      what="the xmpp module's XEP-0114 handshake")
        self.started_in = time.monotonic() - began

    def _check_alive(self, when: str = "") -> None:
        super()._check_alive(when)
        # A dead child (the XMPP process, say) makes Kamailio shut down,
        # which can take a while: fail at once.
        died = _CHILD_DIED_RE.search(self.log_text())
        if died:
            raise PeerError(f"kamailio's {died.group(0)} {when}:\n" + self._log_tail())

    # -------------------------------------------------------------------- log
    def wait_log(self, text: str, *, timeout: float = 5.0, since: int = 0,
                 what: str | None = None, interval: float = 0.05) -> str:
        """Poll ``kamailio.log`` (from offset ``since``) until it contains
        ``text``; returns the log from ``since``.  PeerError when Kamailio
        exits or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            log = self.log_text()[since:]
            if text in log:
                return log
            self._check_alive(f"while waiting for {what or repr(text)}")
            if time.monotonic() >= deadline:
                raise PeerError(f"kamailio did not log {text!r} ({what or 'waited for'}) "
                                f"within {timeout:.1f}s:\n" + self._log_tail())
            pause.wait(interval)

    def log_mark(self) -> int:
        """The log's current length, for ``since=`` of :meth:`wait_log` and
        :meth:`xmpp_sent`."""
        return len(self.log_text())

    def local_requests(self, since: int = 0) -> list[dict[str, str | None]]:
        """The requests pua sent (PUBLISH, SUBSCRIBE) since log offset
        ``since``, from the config's ``tm:local-request`` log line (needs
        ``debug`` >= 2): ``method``, ``ruri``, ``from``, ``to``, ``contact``,
        ``event``, ``expires``, ``if-match``, ``content-type``, ``length``
        (None: no such header)."""
        out: list[dict[str, str | None]] = []
        for m in _LOCAL_RE.finditer(self.log_text()[since:]):
            req: dict[str, str | None] = {"method": m.group(1), "ruri": m.group(2)}
            for field in m.group(3).split("|"):
                name, _, value = field.partition("=")
                req[name] = None if value == "<null>" else value
            out.append(req)
        return out

    def replies(self, since: int = 0) -> list[dict[str, str | None]]:
        """The replies this Kamailio received since log offset ``since``
        (``reply_route``, before pua's callback runs; ``debug`` >= 2):
        ``status``, ``method``, ``call-id``, ``etag``, ``expires``."""
        out: list[dict[str, str | None]] = []
        for m in _REPLY_RE.finditer(self.log_text()[since:]):
            rep: dict[str, str | None] = {"status": m.group(1), "method": m.group(2)}
            for field in m.group(3).split("|"):
                name, _, value = field.partition("=")
                rep[name] = None if value == "<null>" else value
            out.append(rep)
        return out

    def wait_reply(self, predicate: Callable[[dict[str, str | None]], bool], *,
                   timeout: float = 5.0, since: int = 0,
                   interval: float = 0.05) -> dict[str, str | None]:
        """The first of :meth:`replies` (from ``since``) that matches;
        AssertionError listing them after ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            reps = self.replies(since)
            for rep in reps:
                if predicate(rep):
                    return rep
            self._check_alive("while waiting for a reply")
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching reply within {timeout}s; got: {reps}")
            pause.wait(interval)

    def wait_local_request(self, predicate: Callable[[dict[str, str | None]], bool], *,
                           timeout: float = 5.0, since: int = 0,
                           interval: float = 0.05) -> dict[str, str | None]:
        """The first of :meth:`local_requests` (from ``since``) that
        matches; AssertionError listing them after ``timeout``."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while True:
            reqs = self.local_requests(since)
            for req in reqs:
                if predicate(req):
                    return req
            self._check_alive("while waiting for a request from pua")
            if time.monotonic() >= deadline:
                raise AssertionError(f"no matching request from pua within {timeout}s; "
                                     f"sent: {reqs}")
            pause.wait(interval)

    def xmpp_sent(self, since: int = 0) -> list[str]:
        """The stanzas pua_xmpp handed the xmpp module since log offset
        ``since`` (as the module logs them, at debug level), in order."""
        return [m.group(1) for m in _SENT_RE.finditer(self.log_text()[since:])]

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return (f"<KamailioXmppGateway {self.uri} xmpp={self.xmpp_host}:{self.xmpp_port} "
                f"as {self.xmpp_domain} {state} workdir={self.workdir}>")
