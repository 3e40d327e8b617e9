"""A real Kamailio presence server as a test peer.

Usage::

    from tests.peers.kamailio import KamailioPresence

    with KamailioPresence() as kam:
        ...  # send PUBLISH/SUBSCRIBE to kam.host:kam.port (UDP or TCP)
        rows = kam.presentity_rows()

Each instance runs in a fresh temporary directory holding the rendered
``kamailio.cfg``, the SQLite database (created from Debian's
``/usr/share/kamailio/db_sqlite/{standard,presence}-create.sql``) and the
log file ``kamailio.log``.  Kamailio listens on 127.0.0.1, UDP and TCP, on a
free port, in the foreground (``-DD -E``), with a single SIP worker per
transport (db_sqlite has no busy timeout).

Behaviour of Kamailio 5.6 worth knowing (verified by
tests/peers/test_peers_selfcheck.py):

* An initial PUBLISH row is INSERTed before the 200 OK is sent; a refresh
  (SIP-If-Match) UPDATEs etag/expires before the 200 OK.
* ``Expires: 0`` gets a 200 OK (with the *old* SIP-ETag echoed back and
  ``Expires: 0``) and the row is DELETEd right *after* the reply is sent,
  in the same worker.  Use :meth:`KamailioPresence.sync` (done by default
  by the ``*_rows()`` helpers) before looking at the table.
* Unknown SIP-If-Match -> ``412 Conditional request failed``; a PUBLISH
  without body and without SIP-If-Match -> ``400 Invalid request``; unknown
  Event -> ``489 Bad Event`` with ``Allow-Events``.
* Expired rows are only removed by the ``clean_period`` timer.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import PeerError, PeerUnavailable, find_free_port
from .kamailio_process import SCHEMA_FILES, KamailioProcess, _parse_response, _recv_before

__all__ = ["KamailioPresence", "KamailioTls", "PeerUnavailable", "PeerError"]

HERE = Path(__file__).resolve().parent
CFG_TEMPLATE = HERE / "kamailio.cfg"

REQUIRED_MODULES = (
    "tm", "sl", "rr", "pv", "maxfwd", "textops", "siputils", "xlog",
    "db_sqlite", "presence", "presence_xml", "presence_mwi",
    "presence_dialoginfo",
)
# Digest authentication (with auth_users): the modules, and the check that
# challenges every PUBLISH and SUBSCRIBE without valid credentials for the
# From user (realm: the From domain; plain passwords, calculate_ha1).
_AUTH_MODULES = """loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("auth", "nonce_expire", @@NONCE_EXPIRE@@)
modparam("auth_db", "db_url", "@@DB_URL@@")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "use_domain", 1)
"""
_AUTH_CHECK = """if (is_method("PUBLISH|SUBSCRIBE") && !auth_check("$fd", "subscriber", "0")) {
		auth_challenge("$fd", "1");
		exit;
	}
	consume_credentials();"""

TLS_INSTALL_HINT = "run scripts/install-debian-deps.sh (Debian package kamailio-tls-modules)"


@dataclass(frozen=True)
class KamailioTls:
    """What Kamailio's ``tls`` module is given for its ``[server:default]``
    profile: PEM files, and whether clients must present a certificate
    signed by ``ca_list`` (``require_certificate`` needs ``ca_list``)."""

    certificate: str
    private_key: str
    ca_list: str | None = None
    require_certificate: bool = False

    def profile(self) -> str:
        """The tls.cfg text: Kamailio's TLS server, and a client side that
        checks nothing (Kamailio connects to pua's Contact for NOTIFYs)."""
        require = "yes" if self.require_certificate else "no"
        lines = [
            "[server:default]",
            "method = TLSv1.2+",
            f"certificate = {self.certificate}",
            f"private_key = {self.private_key}",
            f"verify_certificate = {require}",
            f"require_certificate = {require}",
        ]
        if self.ca_list:
            lines.append(f"ca_list = {self.ca_list}")
        lines += ["", "[client:default]", "method = TLSv1.2+",
                  "verify_certificate = no", "require_certificate = no", ""]
        return "\n".join(lines)


class KamailioPresence(KamailioProcess):
    """Context manager running a real Kamailio presence server on 127.0.0.1
    (or on ``host``).

    Parameters (all keyword-only):

    ``port``            listen port for UDP and TCP (default: a free one)
    ``clean_period``    presence ``clean_period`` seconds (expired
                        presentities/watchers removal timer), default 5
    ``db_update_period`` presence ``db_update_period`` seconds, default 5
    ``max_expires``     presence ``max_expires`` (default 3600; larger Expires
                        are lowered to this in the 200 OK)
    ``min_expires``     presence ``min_expires`` (default 0 = none).  In
                        Kamailio 5.6 it is applied to SUBSCRIBE only (a
                        shorter Expires gets ``423 Interval Too Brief``).
    ``publish_min_expires`` minimum PUBLISH Expires enforced by the config
                        script: a PUBLISH with 0 < Expires < this gets
                        ``423 Interval Too Brief`` + ``Min-Expires`` (default
                        0 = disabled, Kamailio itself accepts any Expires)
    ``debug``           Kamailio log level 0..3 (default 2 = info: one line
                        per request/reply)
    ``startup_timeout`` seconds to wait for the OPTIONS readiness probe
    ``shm_mb``/``pkg_mb`` Kamailio shared/private memory (-m/-M).  Every
                        PUBLISH keeps a tm transaction (~5 s) and a publ_cache
                        entry in shared memory: 64 MB runs out after ~4000
                        PUBLISH at full speed, hence 256 MB by default.
    ``keep_workdir``    keep the temp dir after stop (also when the env var
                        ``PUA_KEEP_PEER_DIRS=1`` is set)
    ``tls``             a :class:`KamailioTls`: also listen for SIP over TLS
                        on ``tls_port`` (another free port), with the
                        ``tls`` module (Debian kamailio-tls-modules)
    ``base_dir``        where the temp dir (cfg, database, log) is made
                        (default: the system's temp dir).  db_sqlite
                        commits every request with a sync to disk: on
                        ``/dev/shm`` Kamailio takes thousands per second.
    ``host``            the IPv4 address to listen on (default 127.0.0.1);
                        it must be one of this namespace's addresses (e.g.
                        one end of a veth pair the caller made)
    ``bla``             bridged line appearance (draft-anil-sipping-bla):
                        ``presence_xml`` ``disable_bla=0`` serves the event
                        ``dialog;sla``, and a PUBLISH that carries a
                        ``Sender`` header is handled with
                        ``handle_publish("$hdr(Sender)")``: its NOTIFYs
                        skip the watcher whose Contact URI equals the
                        Sender (a bare SIP URI; ``<...>`` gets 400).  See
                        "BLA peers" in tests/peers/README.md
    """

    _label = "KamailioPresence"
    _workdir_prefix = "pua-kamailio-"
    _db_name = "presence.db"
    _cfg_template = CFG_TEMPLATE
    _cfg_name = "kamailio.cfg template"
    _schema_files = SCHEMA_FILES

    def __init__(self, *, port: int | None = None, clean_period: int = 5,
                 db_update_period: int = 5, max_expires: int = 3600,
                 min_expires: int = 0, publish_min_expires: int = 0, debug: int = 2,
                 startup_timeout: float = 15.0, keep_workdir: bool = False,
                 shm_mb: int = 256, pkg_mb: int = 16, tls: KamailioTls | None = None,
                 auth_users: dict[str, str] | None = None, nonce_expire: int = 30,
                 host: str | None = None, base_dir: str | None = None,
                 bla: bool = False) -> None:
        self.base_dir = base_dir
        self.bla = bool(bla)
        if host is not None:
            self.host = host
        self._requested_port = port
        self.port: int = 0
        self.tls = tls
        self.tls_port: int = 0
        self.clean_period = int(clean_period)
        self.db_update_period = int(db_update_period)
        self.max_expires = int(max_expires)
        self.min_expires = int(min_expires)
        self.publish_min_expires = int(publish_min_expires)
        super().__init__(debug=debug, startup_timeout=startup_timeout, shm_mb=shm_mb,
                         pkg_mb=pkg_mb, keep_workdir=keep_workdir)
        # Digest authentication of PUBLISH and SUBSCRIBE (auth + auth_db,
        # 407 with qop=auth, MD5): username -> password, in realm From's
        # domain; None: no authentication.
        self.auth_users = dict(auth_users) if auth_users is not None else None
        self.nonce_expire = int(nonce_expire)
        self._resolve(REQUIRED_MODULES)
        if tls is not None and not os.path.exists(os.path.join(self.modules_dir, "tls.so")):
            raise PeerUnavailable(f"Kamailio TLS module missing ({self.modules_dir} lacks "
                                  f"tls.so); {TLS_INSTALL_HINT}")

    # ------------------------------------------------------------------ props
    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:PORT`` - the server (and SUBSCRIBE Contact) URI."""
        return f"sip:{self.host}:{self.port}"

    @property
    def tls_uri(self) -> str:
        """``sip:127.0.0.1:TLS_PORT;transport=tls`` (needs ``tls``)."""
        assert self.tls is not None, "KamailioPresence started without tls"
        return f"sip:{self.host}:{self.tls_port};transport=tls"

    # -------------------------------------------------------------- lifecycle
    def _workdir_parent(self) -> str | None:
        return self.base_dir

    def _start_attempts(self) -> int:
        return 1 if self._requested_port else 3

    def _pick_ports(self) -> bool:
        self.port = self._requested_port or find_free_port(self.host)
        if self.tls is not None:
            self.tls_port = find_free_port(self.host, udp=False)
            while self.tls_port == self.port:
                self.tls_port = find_free_port(self.host, udp=False)
        return True

    # ------------------------------------------------------------------ setup
    def _fill_db(self, con: sqlite3.Connection) -> None:
        for user, password in (self.auth_users or {}).items():
            name, _, domain = user.partition("@")
            con.execute(
                "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                (name, domain or "example.com", password),
            )

    def _check_db(self, con: sqlite3.Connection) -> None:
        # WAL: our readers never block Kamailio's writer (no busy timeout
        # in db_sqlite).  The mode is persistent in the file.
        mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise PeerError(f"could not switch {self.db_path} to WAL (got {mode})")

    def _cfg_values(self) -> dict[str, str]:
        return {
            **super()._cfg_values(),
            "PORT": str(self.port),
            "CLEAN_PERIOD": str(self.clean_period),
            "DB_UPDATE_PERIOD": str(self.db_update_period),
            "MAX_EXPIRES": str(self.max_expires),
            "MIN_EXPIRES": str(self.min_expires),
            "PUBLISH_MIN_EXPIRES": str(self.publish_min_expires),
            "AUTH_MODULES": _AUTH_MODULES.replace("@@NONCE_EXPIRE@@", str(self.nonce_expire))
            .replace("@@DB_URL@@", self.db_url) if self.auth_users is not None else "",
            "AUTH_CHECK": _AUTH_CHECK if self.auth_users is not None else "",
            "TLS_PORT": str(self.tls_port),
            "TLS_CONFIG": str(self.workdir / "tls.cfg") if self.workdir else "",
        }

    def _write_cfg(self) -> None:
        super()._write_cfg()
        if self.tls is not None:
            (self.cfg_path.parent / "tls.cfg").write_text(self.tls.profile())

    def _defines(self) -> list[str]:
        names = []  # the cfg's #!ifdef parts
        if self.tls is not None:
            names.append("WITH_TLS")
        if self.bla:
            names.append("WITH_BLA")
        return names

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            self._wait_options(sock, deadline, "OPTIONS")
        finally:
            sock.close()
        # TCP listener is opened by the main process before the workers; check it.
        code = self._options_tcp(max(1.0, deadline - time.monotonic()))
        if code != 200:
            raise PeerError(f"kamailio TCP OPTIONS got {code}:\n" + self._log_tail())
        if self.tls is not None:
            # Opened by the main process with the TCP listener; a connect
            # proves it is there (a handshake may need a client certificate).
            try:
                socket.create_connection((self.host, self.tls_port),
                                         timeout=max(1.0, deadline - time.monotonic())).close()
            except OSError as e:
                raise PeerError(f"kamailio TLS port {self.tls_port}: {e}:\n"
                                + self._log_tail()) from None

    # ---------------------------------------------------------------- probing
    def _sip_port_probed(self) -> int:
        return self.port

    def _options_tcp(self, timeout: float) -> int:
        call_id = "probe-" + uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(self._options_msg("TCP", s.getsockname()[1], call_id))
            buf = b""
            while True:
                chunk = _recv_before(s, deadline)
                if not chunk:  # timed out or closed
                    return 0
                buf += chunk
                while b"\r\n\r\n" in buf:
                    head, rest = buf.split(b"\r\n\r\n", 1)
                    code, hdrs = _parse_response(head + b"\r\n\r\n")
                    clen = int(hdrs.get("content-length", hdrs.get("l", "0")) or 0)
                    if len(rest) < clen:
                        break
                    buf = rest[clen:]
                    if hdrs.get("call-id") == call_id and code >= 200:
                        return code

    def sync(self, timeout: float = 5.0, *, tcp: bool = True) -> None:
        """Barrier: wait until Kamailio has finished every request it received.

        Kamailio runs ONE worker per transport, which handles requests one
        at a time; an OPTIONS answered by it proves that everything it
        received before (e.g. the delete that follows the 200 OK to a
        PUBLISH with Expires: 0) is done.  Probes UDP and (by default) TCP.
        """
        self._require_running()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            deadline = time.monotonic() + timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerError("kamailio did not answer the UDP sync OPTIONS")
                if self._options_udp(sock, min(1.0, remaining)) == 200:
                    break
        finally:
            sock.close()
        if tcp and self._options_tcp(timeout) != 200:
            raise PeerError("kamailio did not answer the TCP sync OPTIONS")

    def _require_running(self) -> None:
        if self.proc is None:
            raise PeerError("KamailioPresence is not running")
        if self.proc.poll() is not None:
            raise PeerError(f"kamailio died with status {self.proc.returncode}:\n"
                            + self._log_tail())

    # ------------------------------------------------------------------- data
    def query(self, sql: str, params: tuple = (), *, sync: bool = True) -> list[dict[str, Any]]:
        """Run a read-only SQL query on Kamailio's database; rows as dicts.

        With ``sync=True`` (default) :meth:`sync` runs first so the result
        reflects every request Kamailio has answered.
        """
        if sync:
            self.sync()
        con = sqlite3.connect(str(self.db_path), timeout=5.0)
        try:
            con.row_factory = sqlite3.Row
            return [dict(r) for r in con.execute(sql, params)]
        finally:
            con.close()

    def _table_rows(self, table: str, filters: dict[str, Any], sync: bool,
                    order: str = "id") -> list[dict[str, Any]]:
        where = [f"{k} = ?" for k, v in filters.items() if v is not None]
        params = tuple(v for v in filters.values() if v is not None)
        sql = f"SELECT * FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.query(sql + f" ORDER BY {order}", params, sync=sync)

    def presentity_rows(self, username: str | None = None, domain: str | None = None,
                        event: str | None = None, *, sync: bool = True) -> list[dict[str, Any]]:
        """All columns of ``presentity`` (optionally filtered), ordered by id.

        Columns: id, username, domain, event, etag, expires (unix time),
        received_time, body (bytes - it is a BLOB), sender, priority, ruid.
        """
        return self._table_rows("presentity", {"username": username, "domain": domain,
                                               "event": event}, sync)

    def active_watchers_rows(self, presentity_uri: str | None = None,
                             event: str | None = None, *,
                             sync: bool = True) -> list[dict[str, Any]]:
        """All columns of ``active_watchers`` (subs_db_mode=1: write-through)."""
        return self._table_rows("active_watchers", {"presentity_uri": presentity_uri,
                                                    "event": event}, sync)

    def watchers_rows(self, *, sync: bool = True) -> list[dict[str, Any]]:
        """All columns of the ``watchers`` (authorisation state) table."""
        return self._table_rows("watchers", {}, sync)

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return f"<KamailioPresence {self.uri} {state} workdir={self.workdir}>"
