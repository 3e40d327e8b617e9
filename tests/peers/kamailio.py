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

import contextlib
import glob
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import PeerError, PeerUnavailable, _track, _untrack, find_free_port

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

SCHEMA_FILES = ("standard-create.sql", "presence-create.sql", "auth_db-create.sql")
INSTALL_HINT = "run scripts/install-debian-deps.sh (Debian packages kamailio, " \
    "kamailio-presence-modules, kamailio-sqlite-modules)"
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


def _find_kamailio_binary() -> str:
    env = os.environ.get("KAMAILIO_BIN")
    if env:
        if os.access(env, os.X_OK):
            return env
        raise PeerUnavailable(f"KAMAILIO_BIN={env!r} is not an executable")
    found = shutil.which("kamailio")
    if found:
        return found
    for cand in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio", "/sbin/kamailio"):
        if os.access(cand, os.X_OK):
            return cand
    raise PeerUnavailable(f"kamailio binary not found in PATH or /usr/sbin; {INSTALL_HINT}")


def _find_modules_dir() -> str:
    env = os.environ.get("KAMAILIO_MODULES_DIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/*/kamailio/modules"))
    candidates += ["/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules",
                   "/usr/local/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"]
    checked = []
    for cand in candidates:
        if not cand or not os.path.isdir(cand):
            continue
        missing = [m for m in REQUIRED_MODULES if not os.path.exists(os.path.join(cand, m + ".so"))]
        if not missing:
            return cand
        checked.append(f"{cand} lacks {', '.join(m + '.so' for m in missing)}")
    detail = "; ".join(checked) if checked else "no kamailio modules directory found"
    raise PeerUnavailable(f"Kamailio modules missing ({detail}); {INSTALL_HINT}")


def _find_schema_dir() -> Path:
    env = os.environ.get("KAMAILIO_DB_SQLITE_DIR")
    cand = Path(env) if env else Path("/usr/share/kamailio/db_sqlite")
    missing = [f for f in SCHEMA_FILES if not (cand / f).is_file()]
    if missing:
        raise PeerUnavailable(
            f"Kamailio SQLite schema files {missing} not found in {cand}; {INSTALL_HINT}")
    return cand


def _parse_response(data: bytes) -> tuple[int, dict[str, str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("SIP/2.0"):
        return 0, {}
    try:
        code = int(parts[1])
    except ValueError:
        return 0, {}
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), v.strip())
    return code, headers


class KamailioPresence:
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
    """

    host = "127.0.0.1"

    def __init__(self, *, port: int | None = None, clean_period: int = 5,
                 db_update_period: int = 5, max_expires: int = 3600,
                 min_expires: int = 0, publish_min_expires: int = 0, debug: int = 2,
                 startup_timeout: float = 15.0, keep_workdir: bool = False,
                 shm_mb: int = 256, pkg_mb: int = 16, tls: KamailioTls | None = None,
                 auth_users: dict[str, str] | None = None, nonce_expire: int = 30,
                 host: str | None = None, base_dir: str | None = None) -> None:
        self.base_dir = base_dir
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
        self.debug = int(debug)
        self.shm_mb = int(shm_mb)
        self.pkg_mb = int(pkg_mb)
        self.startup_timeout = float(startup_timeout)
        # Digest authentication of PUBLISH and SUBSCRIBE (auth + auth_db,
        # 407 with qop=auth, MD5): username -> password, in realm From's
        # domain; None: no authentication.
        self.auth_users = dict(auth_users) if auth_users is not None else None
        self.nonce_expire = int(nonce_expire)
        self.keep_workdir = keep_workdir or os.environ.get("PUA_KEEP_PEER_DIRS") == "1"
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._final_log: str | None = None
        # Resolve everything that can be missing up-front -> PeerUnavailable.
        self.binary = _find_kamailio_binary()
        self.modules_dir = _find_modules_dir()
        self.schema_dir = _find_schema_dir()
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

    @property
    def db_path(self) -> Path:
        assert self.workdir is not None, "KamailioPresence not started"
        return self.workdir / "presence.db"

    @property
    def cfg_path(self) -> Path:
        assert self.workdir is not None, "KamailioPresence not started"
        return self.workdir / "kamailio.cfg"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None, "KamailioPresence not started"
        return self.workdir / "kamailio.log"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def db_url(self) -> str:
        return "sqlite:///" + str(self.db_path)  # absolute path -> 4 slashes

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> KamailioPresence:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> KamailioPresence:
        if self.proc is not None:
            raise PeerError("KamailioPresence already started")
        self.workdir = Path(tempfile.mkdtemp(prefix="pua-kamailio-", dir=self.base_dir))
        _track(self)
        (self.workdir / "run").mkdir()
        try:
            self._create_db()
            attempts = 1 if self._requested_port else 3
            last_err: Exception | None = None
            for _ in range(attempts):
                self.port = self._requested_port or find_free_port(self.host)
                if self.tls is not None:
                    self.tls_port = find_free_port(self.host, udp=False)
                    while self.tls_port == self.port:
                        self.tls_port = find_free_port(self.host, udp=False)
                self._write_cfg()
                try:
                    self._spawn()
                    self._wait_ready()
                    return self
                except PeerError as e:  # e.g. lost a port race: try another
                    last_err = e
                    self._kill()
            raise last_err  # type: ignore[misc]
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate Kamailio (SIGTERM, wait, then SIGKILL) and clean up.

        Returns Kamailio's exit status (None if it was never started).
        """
        rc = self._kill(timeout)
        _untrack(self)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.workdir is not None and self.workdir.exists():
            with contextlib.suppress(OSError):
                self._final_log = self.log_path.read_text(errors="replace")
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return rc

    def _kill(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.terminate()  # main process stops its children
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Kamailio runs in its own session/process group (pgid == pid): make
        # sure no child of OUR Kamailio survives.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # ------------------------------------------------------------------ setup
    def _create_db(self) -> None:
        con = sqlite3.connect(str(self.db_path))
        try:
            for name in SCHEMA_FILES:
                con.executescript((self.schema_dir / name).read_text())
            for user, password in (self.auth_users or {}).items():
                name, _, domain = user.partition("@")
                con.execute(
                    "INSERT INTO subscriber (username, domain, password) VALUES (?, ?, ?)",
                    (name, domain or "example.com", password),
                )
            con.commit()
            # WAL: our readers never block Kamailio's writer (no busy timeout
            # in db_sqlite).  The mode is persistent in the file.
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise PeerError(f"could not switch {self.db_path} to WAL (got {mode})")
        finally:
            con.close()

    def _write_cfg(self) -> None:
        text = CFG_TEMPLATE.read_text()
        values = {
            "HOST": self.host,
            "PORT": str(self.port),
            "DB_URL": self.db_url,
            "MODULES_DIR": self.modules_dir,
            "DEBUG": str(self.debug),
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
        for k, v in values.items():
            text = text.replace(f"@@{k}@@", v)
        left = [ln for ln in text.splitlines()
                if "@@" in ln and not ln.lstrip().startswith("#")]
        if left:
            raise PeerError(f"unrendered marker in kamailio.cfg template: {left[0]!r}")
        self.cfg_path.write_text(text)
        if self.tls is not None:
            (self.cfg_path.parent / "tls.cfg").write_text(self.tls.profile())

    def _spawn(self) -> None:
        assert self.workdir is not None
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        cmd = [
            self.binary, "-f", str(self.cfg_path),
            "-DD", "-E",                      # foreground, log to stderr
            "-Y", str(self.workdir / "run"),  # runtime dir
            "-w", str(self.workdir),
            "-m", str(self.shm_mb), "-M", str(self.pkg_mb),
        ]
        if self.tls is not None:
            cmd += ["-A", "WITH_TLS"]  # the cfg's #!ifdef WITH_TLS parts
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, cwd=str(self.workdir),
            start_new_session=True, close_fds=True)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            while True:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise PeerError(
                        f"kamailio exited with {self.proc.returncode} during startup:\n"
                        + self._log_tail())
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerError("kamailio did not answer OPTIONS within "
                                    f"{self.startup_timeout}s:\n" + self._log_tail())
                code = self._options_udp(sock, min(0.25, remaining))
                if code == 200:
                    break
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
    def _options_msg(self, transport: str, lport: int, call_id: str) -> bytes:
        branch = "z9hG4bK" + uuid.uuid4().hex
        return (
            f"OPTIONS {self.uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {self.host}:{lport};rport;branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{self.host}>;tag={uuid.uuid4().hex[:10]}\r\n"
            f"To: <{self.uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def _options_udp(self, sock: socket.socket, timeout: float) -> int:
        """One OPTIONS over UDP; returns the status code or 0 on timeout."""
        call_id = "probe-" + uuid.uuid4().hex
        sock.sendto(self._options_msg("UDP", sock.getsockname()[1], call_id),
                    (self.host, self.port))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return 0
            sock.settimeout(remaining)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                return 0
            except ConnectionRefusedError:
                # ICMP port unreachable: not bound yet.  Keep waiting out this
                # probe's timeout (no busy loop), the caller probes again.
                continue
            code, hdrs = _parse_response(data)
            if hdrs.get("call-id") == call_id and code >= 200:
                return code

    def _options_tcp(self, timeout: float) -> int:
        call_id = "probe-" + uuid.uuid4().hex
        deadline = time.monotonic() + timeout
        with socket.create_connection((self.host, self.port), timeout=timeout) as s:
            s.sendall(self._options_msg("TCP", s.getsockname()[1], call_id))
            buf = b""
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 0
                s.settimeout(remaining)
                try:
                    chunk = s.recv(65535)
                except TimeoutError:
                    return 0
                if not chunk:
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

    # -------------------------------------------------------------------- log
    def log_text(self) -> str:
        """Everything Kamailio logged so far (also available after stop())."""
        if self.workdir is not None and self.log_path.exists():
            if self._log_file is not None:
                self._log_file.flush()
            return self.log_path.read_text(errors="replace")
        return self._final_log or ""

    def _log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return f"<KamailioPresence {self.uri} {state} workdir={self.workdir}>"
