"""A real XMPP server for the tests: Prosody (Debian ``prosody``) on
loopback, with its own config, data, log and pid file in a temp dir.

``Prosody(domain="localhost", components={"sip.example.com": "secret"},
users={"bob": "bobpw"})`` serves one VirtualHost ``domain`` for clients
(c2s, no TLS, SASL PLAIN over the unencrypted stream, accounts stored in
plain text) and one XEP-0114 external component per entry of
``components`` (name -> secret), each on its free 127.0.0.1 port; s2s and
HTTP are off.  The accounts are made with ``prosodyctl register``;
:meth:`Prosody.add_user` adds one while the server runs.
:meth:`Prosody.restart` stops it and starts it again on the same ports and
data, so accounts and rosters survive.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Self

from . import PeerError, PeerUnavailable, _track, _untrack, find_free_port

__all__ = ["Prosody"]

INSTALL_HINT = "run scripts/install-debian-deps.sh (Debian package prosody)"
# How long prosodyctl may take to write one account.
PROSODYCTL_TIMEOUT = 15.0
# What Prosody logs, and then runs on without that port, when one is taken.
PORT_IN_USE = "Failed to open server port"


def _find_binaries() -> tuple[str, str]:
    found = []
    for name in ("prosody", "prosodyctl"):
        path = shutil.which(name) or f"/usr/bin/{name}"
        if not os.access(path, os.X_OK):
            raise PeerUnavailable(f"{name} not found in PATH or /usr/bin; {INSTALL_HINT}")
        found.append(path)
    return found[0], found[1]


def _lua_str(value: str) -> str:
    """``value`` as a double-quoted Lua string literal (bytes outside
    printable ASCII as three-digit ``\\ddd`` escapes)."""
    out = []
    for byte in value.encode():
        if byte in b'"\\':
            out.append("\\" + chr(byte))
        elif 32 <= byte < 127:
            out.append(chr(byte))
        else:
            out.append(f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def encode_path_part(name: str) -> str:
    """How Prosody's datamanager names a host or user on disk: every byte
    but ASCII letters and digits as ``%xx`` (``sip.example.com`` ->
    ``sip%2eexample%2ecom``)."""
    return "".join(
        chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02x}" for b in name.encode()
    )


class Prosody:
    """Prosody 0.12 on 127.0.0.1 (``c2s_port``, ``component_port``); a
    context manager.  ``debug=True`` logs at debug level."""

    host = "127.0.0.1"

    def __init__(
        self,
        domain: str = "localhost",
        components: dict[str, str] | None = None,
        users: dict[str, str] | None = None,
        startup_timeout: float = 15.0,
        *,
        debug: bool = False,
        keep_workdir: bool = False,
    ) -> None:
        self.binary, self.ctl_binary = _find_binaries()
        self.domain = domain
        self.components = dict({"sip.example.com": "secret"} if components is None else components)
        self.users = dict({"bob": "bobpw"} if users is None else users)
        self.startup_timeout = float(startup_timeout)
        self.debug = debug
        self.keep_workdir = keep_workdir or bool(os.environ.get("PUA_KEEP_PEER_DIRS"))
        self.c2s_port = 0
        self.component_port = 0
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._console = None
        self._final_log: str | None = None
        self._final_console: str | None = None
        self._log_offset = 0

    # ------------------------------------------------------------------ paths
    def _path(self, name: str) -> Path:
        assert self.workdir is not None, "Prosody not started"
        return self.workdir / name

    @property
    def cfg_path(self) -> Path:
        return self._path("prosody.cfg.lua")

    @property
    def data_path(self) -> Path:
        return self._path("data")

    @property
    def log_path(self) -> Path:
        return self._path("prosody.log")

    @property
    def console_path(self) -> Path:
        """Prosody's stdout and stderr (the missing lua-unbound notice,
        errors from before the log is set up)."""
        return self._path("console.log")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def account_path(self, user: str) -> Path:
        """The ``internal_plain`` account file of ``user@domain``."""
        return (
            self.data_path
            / encode_path_part(self.domain)
            / "accounts"
            / f"{encode_path_part(user)}.dat"
        )

    # -------------------------------------------------------------- lifecycle
    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Self:
        """Make the temp dir, the config and the accounts; start Prosody and
        wait until it serves both ports."""
        if self.workdir is not None:
            raise PeerError("Prosody already started (restart() starts it again)")
        self.workdir = Path(tempfile.mkdtemp(prefix="pua-prosody-"))
        _track(self)
        try:
            self.data_path.mkdir()
            # An empty certificate dir: without one Prosody logs an error
            # about it at each start (there is no TLS here anyway).
            self._path("certs").mkdir()
            last_err: PeerError | None = None
            for _ in range(3):
                self.c2s_port = find_free_port(self.host, udp=False)
                self.component_port = find_free_port(self.host, udp=False)
                if self.c2s_port == self.component_port:
                    continue
                self._write_cfg()
                for user, password in self.users.items():
                    self.add_user(user, password)
                try:
                    self._spawn()
                    self._wait_ready()
                    return self
                except PeerError as exc:  # e.g. lost a port race: try other ports
                    self._terminate()
                    last_err = exc
            raise last_err or PeerError("could not pick two free ports")
        except BaseException:
            self.stop()
            raise

    def restart(self, timeout: float = 10.0) -> Self:
        """Stop Prosody (if it runs) and start it again with the same config,
        ports and data: accounts, rosters and all else stored survive."""
        if self.workdir is None:
            raise PeerError("Prosody was never started (or was stopped)")
        self._terminate(timeout)
        self._spawn()
        try:
            self._wait_ready()
        except BaseException:
            self._terminate()
            raise
        return self

    def kill(self) -> None:
        """SIGKILL Prosody (a crash): its temp dir stays, restart() brings it back."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        self._terminate(5.0)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL of the process group after ``timeout``;
        removes the temp dir (unless kept).  Returns the exit status."""
        rc = self._terminate(timeout)
        _untrack(self)
        if self.workdir is not None:
            self._final_log = self._read(self.log_path)
            self._final_console = self._read(self.console_path)
            if not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        return rc

    def _terminate(self, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        rc = None
        if proc is not None:
            if proc.poll() is None:
                proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout)
            # Prosody runs in its own session (pgid == pid): leave nothing behind.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                rc = proc.wait(timeout)
        if self._console is not None:
            self._console.close()
            self._console = None
        return rc

    # ------------------------------------------------------------------ setup
    def _cfg_text(self) -> str:
        assert self.workdir is not None
        level = "debug" if self.debug else "info"
        lines = [
            "-- Written by tests/peers/prosody.py: a test server on loopback.",
        ]
        if os.getuid() == 0:
            # Prosody (mod_posix) refuses to run as root without this, and
            # prosodyctl would switch to the 'prosody' user, who cannot
            # write in this temp dir.
            lines.append("run_as_root = true")
        lines += [
            "daemonize = false",
            f"pidfile = {_lua_str(str(self._path('prosody.pid')))}",
            f"data_path = {_lua_str(str(self.data_path))}",
            f"certificates = {_lua_str(str(self._path('certs')))}",
            f'log = {{ {{ levels = {{ min = {_lua_str(level)} }}, to = "file", '
            f"filename = {_lua_str(str(self.log_path))} }} }}",
            f"interfaces = {{ {_lua_str(self.host)} }}",
            f"c2s_ports = {{ {self.c2s_port} }}",
            f"c2s_interfaces = {{ {_lua_str(self.host)} }}",
            "c2s_direct_tls_ports = {}",
            "legacy_ssl_ports = {}",
            f"component_ports = {{ {self.component_port} }}",
            f"component_interfaces = {{ {_lua_str(self.host)} }}",
            "s2s_ports = {}",
            "s2s_direct_tls_ports = {}",
            "http_ports = {}",
            "https_ports = {}",
            "c2s_require_encryption = false",
            "s2s_require_encryption = false",
            "allow_unencrypted_plain_auth = true",
            'authentication = "internal_plain"',
            'storage = "internal"',
            # presence, message, iq, c2s and posix are always loaded
            'modules_enabled = { "roster", "saslauth", "disco", "ping", "posix" }',
            'modules_disabled = { "s2s", "s2s_auth_certs", "tls" }',
            "",
            f"VirtualHost {_lua_str(self.domain)}",
            "",
        ]
        for name, secret in self.components.items():
            lines += [
                f"Component {_lua_str(name)}",
                f"    component_secret = {_lua_str(secret)}",
                "",
            ]
        return "\n".join(lines)

    def _write_cfg(self) -> None:
        self.cfg_path.write_text(self._cfg_text())

    def add_user(self, name: str, password: str) -> None:
        """Create (or set the password of) ``name@domain``; works before
        start and while Prosody runs (it reads the account at each login)."""
        if self.workdir is None:
            self.users[name] = password
            return
        try:
            done = subprocess.run(
                [
                    self.ctl_binary,
                    "--config",
                    str(self.cfg_path),
                    "register",
                    name,
                    self.domain,
                    password,
                ],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROSODYCTL_TIMEOUT,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired as exc:
            raise PeerError(
                f"prosodyctl register {name} {self.domain} did not finish "
                f"within {PROSODYCTL_TIMEOUT}s"
            ) from exc
        if done.returncode != 0 or not self.account_path(name).is_file():
            out = (done.stdout + done.stderr).decode(errors="replace")
            raise PeerError(
                f"prosodyctl register {name} {self.domain} failed (exit {done.returncode}):\n{out}"
            )
        self.users[name] = password

    def _spawn(self) -> None:
        self._console = open(self.console_path, "ab")  # noqa: SIM115 - lives with the process
        try:
            self._log_offset = self.log_path.stat().st_size
        except OSError:
            self._log_offset = 0
        env = dict(os.environ, HOME=str(self.data_path))
        self.proc = subprocess.Popen(
            [self.binary, "--config", str(self.cfg_path), "-F"],
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
            cwd=str(self.workdir),
            env=env,
            start_new_session=True,
            close_fds=True,
        )

    def _wait_ready(self) -> None:
        """Until the component port accepts a connection and c2s answers a
        stream header with its features (so the main loop runs)."""
        deadline = time.monotonic() + self.startup_timeout
        pause = threading.Event()
        component_ok = c2s_ok = False
        while True:
            self._check_alive("during startup")
            if not component_ok:
                component_ok = self._accepts(self.component_port)
            if component_ok and not c2s_ok:
                c2s_ok = self._c2s_answers(max(0.05, min(1.0, deadline - time.monotonic())))
            # Prosody goes on without a port it cannot bind, so a connection
            # may reach whoever holds it: read the log too.  Its main loop
            # (which answers on c2s) starts after every port was tried, and
            # the log is line-buffered, so a failure shows by then.
            if PORT_IN_USE in self._log_this_run():
                raise PeerError(f"prosody could not listen on a port:\n{self._tails()}")
            if component_ok and c2s_ok:
                return
            if time.monotonic() >= deadline:
                raise PeerError(
                    f"prosody did not serve ports {self.c2s_port} (c2s) and "
                    f"{self.component_port} (component) within "
                    f"{self.startup_timeout}s:\n{self._tails()}"
                )
            pause.wait(0.05)

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5):
                return True
        except OSError:
            return False

    def _c2s_answers(self, timeout: float) -> bool:
        header = (
            f"<?xml version='1.0'?><stream:stream to='{self.domain}' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
            "version='1.0'>"
        )
        deadline = time.monotonic() + timeout
        try:
            with socket.create_connection((self.host, self.c2s_port), timeout=timeout) as sock:
                sock.sendall(header.encode())
                got = b""
                while b"</stream:features>" not in got:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    sock.settimeout(remaining)
                    chunk = sock.recv(4096)
                    if not chunk:
                        return False
                    got += chunk
                with contextlib.suppress(OSError):
                    sock.sendall(b"</stream:stream>")
                return True
        except OSError:
            return False

    def _check_alive(self, when: str = "") -> None:
        if self.proc is None:
            raise PeerError("Prosody is not running")
        if self.proc.poll() is not None:
            raise PeerError(f"prosody exited with {self.proc.returncode} {when}:\n" + self._tails())

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    # -------------------------------------------------------------------- log
    @staticmethod
    def _read(path: Path) -> str:
        try:
            return path.read_text(errors="replace")
        except OSError:
            return ""

    def _log_this_run(self) -> str:
        """What Prosody logged since it was last spawned."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def log_text(self) -> str:
        """Prosody's log so far, over all its runs (also after stop())."""
        if self.workdir is not None:
            return self._read(self.log_path)
        return self._final_log or ""

    def console_text(self) -> str:
        """What Prosody printed on stdout/stderr (also after stop())."""
        if self.workdir is not None:
            if self._console is not None:
                self._console.flush()
            return self._read(self.console_path)
        return self._final_console or ""

    def _tails(self, n: int = 30) -> str:
        log = "\n".join(self.log_text().splitlines()[-n:])
        console = "\n".join(self.console_text().splitlines()[-n // 2 :])
        return f"--- prosody.log (tail)\n{log}\n--- console (tail)\n{console}"
