"""A real DNS server for the tests: dnsmasq (Debian ``dnsmasq-base``)
serving a zone given as flags, on a free loopback port.

``Dnsmasq(["srv-host=_sip._udp.example.test,pbx.example.test,5060,10,0",
"host-record=pbx.example.test,127.0.0.1"], local="test")`` answers those
records and NXDOMAIN for any other name under ``test`` (nothing is
forwarded).  Started with ``start()`` or ``with``; stopped by its pid.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from . import PeerError, PeerUnavailable, _track, _untrack, find_free_port

__all__ = ["Dnsmasq"]


def _find_binary() -> str:
    for candidate in (shutil.which("dnsmasq"), "/usr/sbin/dnsmasq"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise PeerUnavailable("dnsmasq not found (Debian package dnsmasq-base)")


def _query(name: str, qtype: int, ident: int) -> bytes:
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0) + question + struct.pack("!HH", qtype, 1)


class Dnsmasq:
    """dnsmasq on 127.0.0.1:``port`` (UDP and TCP) with the given records
    (dnsmasq options without the leading ``--``); ``local``: a domain
    answered only from them (NXDOMAIN for other names)."""

    host = "127.0.0.1"

    def __init__(self, records: list[str], *, local: str = "test", startup_timeout: float = 10.0) -> None:
        self.binary = _find_binary()
        self.records = list(records)
        self.local = local
        self.startup_timeout = startup_timeout
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir: Path | None = None

    @property
    def server(self) -> str:
        """``IP:PORT`` as pua's --dns-server takes it."""
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "dnsmasq.log"

    def __enter__(self) -> Dnsmasq:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> Dnsmasq:
        self.workdir = Path(tempfile.mkdtemp(prefix="pua-dnsmasq-"))
        _track(self)
        try:
            self.port = find_free_port(self.host)
            cmd = [
                self.binary, "--keep-in-foreground", "--no-daemon",
                "--no-resolv", "--no-hosts", "--no-poll", "--local-ttl=60",
                f"--port={self.port}", f"--listen-address={self.host}", "--bind-interfaces",
                f"--local=/{self.local}/", "--log-queries", f"--log-facility={self.log_path}",
                f"--pid-file={self.workdir / 'dnsmasq.pid'}", "--user=" + _user(),
                *(f"--{record}" for record in self.records),
            ]
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True, close_fds=True,
            )
            self._wait_ready()
            return self
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self) -> None:
        """Until a question is answered (any answer: the server is up)."""
        deadline = time.monotonic() + self.startup_timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            ident = 0
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    raise PeerError(f"dnsmasq exited with {self.proc.returncode}: {err}")
                ident += 1
                sock.sendto(_query(f"probe.{self.local}", 1, ident), (self.host, self.port))
                with contextlib.suppress(OSError):
                    data = sock.recv(512)
                    if len(data) >= 2 and struct.unpack("!H", data[:2])[0] == ident:
                        return
        raise PeerError(f"dnsmasq did not answer within {self.startup_timeout}s")

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()
        _untrack(self)
        if self.workdir is not None and not os.environ.get("PUA_KEEP_PEER_DIRS"):
            shutil.rmtree(self.workdir, ignore_errors=True)


def _user() -> str:
    """Run as ourselves: dnsmasq started by root would switch to nobody
    and could not write its log in our directory."""
    return pwd.getpwuid(os.getuid()).pw_name
