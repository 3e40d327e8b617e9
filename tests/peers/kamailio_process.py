"""What the Kamailio test peers share: one Kamailio process.

:class:`KamailioProcess` finds the binary, the modules and the SQLite
schema files, makes the temporary work dir (``run/``, the rendered
``kamailio.cfg``, a database, ``kamailio.log``), spawns Kamailio in the
foreground (``-DD -E``) in its own process group, waits until it answers
an OPTIONS probe, stops it (SIGTERM, then SIGKILL of the process group),
keeps the log after stop and stops a forgotten peer at interpreter exit.
:class:`KamailioRpcProcess` adds JSON-RPC over HTTP (``jsonrpcs`` +
``xhttp``) on a second port, used as a second readiness check.

A peer says what differs: the cfg template and its values, the ports it
picks, the database it fills, its ``-A`` defines and its readiness extras.
Users import the peers (:mod:`.kamailio`, :mod:`.kamailio_pua`,
:mod:`.kamailio_registrar`), not this module.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import itertools
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Self

from . import PeerError, PeerUnavailable, _track, _untrack

INSTALL_HINT = "run scripts/install-debian-deps.sh (Debian packages kamailio, " \
    "kamailio-presence-modules, kamailio-sqlite-modules)"
# The schema files that must be there for any peer with a database.
SCHEMA_FILES = ("standard-create.sql", "presence-create.sql", "auth_db-create.sql")


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


def _find_modules_dir(required: tuple[str, ...]) -> str:
    env = os.environ.get("KAMAILIO_MODULES_DIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/*/kamailio/modules"))
    candidates += ["/usr/lib/kamailio/modules", "/usr/lib64/kamailio/modules",
                   "/usr/local/lib/kamailio/modules", "/usr/local/lib64/kamailio/modules"]
    checked = []
    for cand in candidates:
        if not cand or not os.path.isdir(cand):
            continue
        missing = [m for m in required if not os.path.exists(os.path.join(cand, m + ".so"))]
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


def _recv_before(sock: socket.socket, deadline: float) -> bytes | None:
    """What ``sock`` receives before ``deadline`` (time.monotonic()); None
    once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return None
    sock.settimeout(remaining)
    try:
        return sock.recv(65535)
    except TimeoutError:
        return None


class KamailioProcess:
    """One Kamailio in a temporary work dir; a context manager.

    Subclasses set the class attributes below and implement
    :meth:`_pick_ports`, :meth:`_sip_port_probed` and :meth:`_wait_ready`,
    add their markers to :meth:`_cfg_values`, and may override :meth:`_defines`,
    :meth:`_fill_db`, :meth:`_check_db` and :meth:`_needs_db`.
    """

    host = "127.0.0.1"
    _label = "Kamailio"              # the class name in error messages
    _workdir_prefix = "pua-kamailio-"
    _db_name = "kamailio.db"
    _cfg_template: Path
    _cfg_name = "kamailio.cfg"       # how a cfg render error names the template
    _schema_files: tuple[str, ...] = ()

    def __init__(self, *, debug: int, startup_timeout: float, shm_mb: int, pkg_mb: int,
                 keep_workdir: bool) -> None:
        self.debug = int(debug)
        self.startup_timeout = float(startup_timeout)
        self.shm_mb = int(shm_mb)
        self.pkg_mb = int(pkg_mb)
        self.keep_workdir = keep_workdir or os.environ.get("PUA_KEEP_PEER_DIRS") == "1"
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._final_log: str | None = None

    def _resolve(self, required_modules: tuple[str, ...], *, schema: bool = True) -> None:
        """Find everything that can be missing up-front -> PeerUnavailable."""
        self.binary = _find_kamailio_binary()
        self.modules_dir = _find_modules_dir(required_modules)
        self.schema_dir = _find_schema_dir() if schema else None

    # ------------------------------------------------------------------ props
    def _path(self, name: str) -> Path:
        assert self.workdir is not None, f"{self._label} not started"
        return self.workdir / name

    @property
    def cfg_path(self) -> Path:
        return self._path("kamailio.cfg")

    @property
    def db_path(self) -> Path:
        return self._path(self._db_name)

    @property
    def log_path(self) -> Path:
        return self._path("kamailio.log")

    @property
    def db_url(self) -> str:
        return "sqlite:///" + str(self.db_path)  # absolute path -> 4 slashes

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Self:
        if self.proc is not None:
            raise PeerError(f"{self._label} already started")
        self.workdir = Path(tempfile.mkdtemp(prefix=self._workdir_prefix,
                                             dir=self._workdir_parent()))
        _track(self)
        (self.workdir / "run").mkdir()
        try:
            if self._needs_db():
                self._create_db()
            last_err: Exception | None = None
            for _ in range(self._start_attempts()):
                if not self._pick_ports():
                    continue
                self._write_cfg()
                try:
                    self._spawn()
                    self._wait_ready()
                    return self
                except PeerError as e:  # e.g. lost a port race: try other ports
                    self._kill()
                    if not self._retry_after(e):
                        raise
                    last_err = e
            raise last_err or PeerError("could not pick two free ports")
        except BaseException:
            self.stop()
            raise

    def _workdir_parent(self) -> str | None:
        """Where the temp dir is made (None: the system's temp dir)."""
        return None

    def _start_attempts(self) -> int:
        return 3

    def _pick_ports(self) -> bool:
        """Choose the ports for the next start attempt; False: skip it."""
        raise NotImplementedError

    def _retry_after(self, error: PeerError) -> bool:
        """Whether a failed start attempt is worth another one."""
        return True

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate Kamailio (SIGTERM, wait, then SIGKILL of its process
        group) and clean up (the temp dir is removed unless kept).

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
                proc.terminate()  # the main process stops its children
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
    def _needs_db(self) -> bool:
        return True

    def _create_db(self) -> None:
        assert self.schema_dir is not None
        con = sqlite3.connect(str(self.db_path))
        try:
            for name in self._schema_files:
                con.executescript((self.schema_dir / name).read_text())
            self._fill_db(con)
            con.commit()
            self._check_db(con)
        finally:
            con.close()

    def _fill_db(self, con: sqlite3.Connection) -> None:
        """Rows to add to the new database (committed with the schema)."""

    def _check_db(self, con: sqlite3.Connection) -> None:
        """Checks and settings after the schema is committed."""

    def _cfg_values(self) -> dict[str, str]:
        """The ``@@NAME@@`` markers of the cfg template and their values;
        subclasses add theirs to these."""
        return {
            "HOST": self.host,
            "DB_URL": self.db_url,
            "MODULES_DIR": self.modules_dir,
            "DEBUG": str(self.debug),
        }

    def _write_cfg(self) -> None:
        text = self._cfg_template.read_text()
        for k, v in self._cfg_values().items():
            text = text.replace(f"@@{k}@@", v)
        left = [ln for ln in text.splitlines()
                if "@@" in ln and not ln.lstrip().startswith("#")]
        if left:
            raise PeerError(f"unrendered marker in {self._cfg_name}: {left[0]!r}")
        self.cfg_path.write_text(text)

    def _defines(self) -> list[str]:
        """Names given to Kamailio with ``-A`` (the cfg's ``#!ifdef`` parts)."""
        return []

    def _spawn_env(self) -> dict[str, str] | None:
        """The environment Kamailio runs with (None: this process's)."""
        return None

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
        for name in self._defines():
            cmd += ["-A", name]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, cwd=str(self.workdir), env=self._spawn_env(),
            start_new_session=True, close_fds=True)

    def _wait_ready(self) -> None:
        raise NotImplementedError

    def _wait_options(self, sock: socket.socket, deadline: float, what: str) -> None:
        """Probe with OPTIONS over UDP (from ``sock``) until one gets a 200;
        PeerError if Kamailio exits or ``deadline`` passes first."""
        while True:
            self._check_alive("during startup")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PeerError(f"kamailio did not answer {what} within "
                                f"{self.startup_timeout}s:\n" + self._log_tail())
            if self._options_udp(sock, min(0.25, remaining)) == 200:
                return

    def _check_alive(self, when: str = "") -> None:
        if self.proc is None:
            raise PeerError(f"{self._label} is not running")
        if self.proc.poll() is not None:
            raise PeerError(f"kamailio exited with {self.proc.returncode} {when}:\n"
                            + self._log_tail())

    # ---------------------------------------------------------------- probing
    def _sip_port_probed(self) -> int:
        """The SIP port the OPTIONS probes go to."""
        raise NotImplementedError

    def _options_msg(self, transport: str, lport: int, call_id: str) -> bytes:
        uri = f"sip:{self.host}:{self._sip_port_probed()}"
        branch = "z9hG4bK" + uuid.uuid4().hex
        return (
            f"OPTIONS {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} {self.host}:{lport};rport;branch={branch}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{self.host}>;tag={uuid.uuid4().hex[:10]}\r\n"
            f"To: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()

    def _options_udp(self, sock: socket.socket, timeout: float) -> int:
        """One OPTIONS over UDP; returns the status code or 0 on timeout."""
        call_id = "probe-" + uuid.uuid4().hex
        sock.sendto(self._options_msg("UDP", sock.getsockname()[1], call_id),
                    (self.host, self._sip_port_probed()))
        deadline = time.monotonic() + timeout
        while True:
            try:
                data = _recv_before(sock, deadline)
            except ConnectionRefusedError:
                # ICMP port unreachable: not bound yet.  Keep waiting out this
                # probe's timeout (no busy loop), the caller probes again.
                continue
            if data is None:
                return 0
            code, hdrs = _parse_response(data)
            if hdrs.get("call-id") == call_id and code >= 200:
                return code

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


class KamailioRpcProcess(KamailioProcess):
    """A :class:`KamailioProcess` with SIP on ``sip_port`` and JSON-RPC over
    HTTP (``jsonrpcs`` on ``xhttp``) on ``http_port``.  Ready when a UDP
    OPTIONS is answered (a SIP worker runs) and then one JSON-RPC call
    (a TCP worker runs jsonrpcs).  Subclasses implement :meth:`rpc`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.sip_port: int = 0
        self.http_port: int = 0
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()

    @property
    def http_url(self) -> str:
        """``http://127.0.0.1:PORT/jsonrpc``."""
        return f"http://{self.host}:{self.http_port}/jsonrpc"

    def _sip_port_probed(self) -> int:
        return self.sip_port

    def _cfg_values(self) -> dict[str, str]:
        return {
            **super()._cfg_values(),
            "SIP_PORT": str(self.sip_port),
            "HTTP_PORT": str(self.http_port),
        }

    def _next_id(self) -> int:
        with self._ids_lock:
            return next(self._ids)

    def rpc(self, method: str, params: Any = None, *,
            timeout: float | None = None) -> dict[str, Any]:
        raise NotImplementedError

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            self._wait_options(sock, deadline, "SIP OPTIONS")
            while True:
                self._check_alive("during startup")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PeerError("kamailio did not answer HTTP JSON-RPC within "
                                    f"{self.startup_timeout}s:\n" + self._log_tail())
                try:
                    reply = self.rpc("core.version", timeout=min(2.0, remaining))
                except (OSError, http.client.HTTPException):
                    # Not accepting yet: pace the next attempt with a bounded
                    # wait on a SIP probe (a socket read), not a sleep.
                    self._options_udp(sock, min(0.1, max(0.01, deadline - time.monotonic())))
                    continue
                if "result" in reply:
                    return
                raise PeerError(f"unexpected core.version reply {reply!r}")
        finally:
            sock.close()
