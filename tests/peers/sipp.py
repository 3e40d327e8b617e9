"""SIPp as a real test peer (UAS) and as a reference load generator (UAC).

Usage::

    from tests.peers.sipp import SippUAS, SippUAC

    with SippUAS("publish_412") as uas:       # tests/peers/scenarios/publish_412.xml
        ...  # send requests to uas.host:uas.port over UDP
    print(uas.stats.successful)               # stats parsed after SIPp exited

    stats = SippUAC("benchmarks/sipp/uac_publish.xml", "127.0.0.1", uas.port,
                    calls=1000, limit=100).run()

SIPp runs in the foreground of its own process group, in a fresh temp dir
(statistics CSV via ``-trace_stat``, final screens via ``-trace_screen``,
unexpected messages via ``-trace_err``).  The UAS always gets
``-deadcall_wait 0`` (otherwise SIPp silently drops a request that reuses the
Call-ID of a finished call, e.g. a PUBLISH refresh) and ``-nostdin``.

Readiness of the UAS: SIPp only draws its screen when stdout is a terminal,
and it draws the first "Scenario Screen" from its traffic loop, i.e. after
the SIP socket is bound.  The UAS therefore gets a pseudo-terminal as
stdout; a thread drains it and flags the first screen.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import os
import pty
import re
import select
import shutil
import signal
import struct
import subprocess
import tempfile
import termios
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import PeerError, PeerUnavailable, _track, _untrack, find_free_port

__all__ = ["SippUAS", "SippUAC", "SippStats", "SCENARIOS_DIR", "scenario_path",
           "PeerUnavailable", "PeerError", "subscribe_terminated_uas", "register_phone",
           "register_phones", "split_trace", "call_uas", "call_uac", "run_calls"]

HERE = Path(__file__).resolve().parent
SCENARIOS_DIR = HERE / "scenarios"
DEFAULT_BUFF_SIZE = 1 << 20  # SIPp's default (64 KiB) drops datagrams under load


def _find_sipp() -> str:
    env = os.environ.get("SIPP_BIN")
    if env:
        if os.access(env, os.X_OK):
            return env
        raise PeerUnavailable(f"SIPP_BIN={env!r} is not an executable")
    found = shutil.which("sipp") or next(
        (c for c in ("/usr/bin/sipp", "/usr/local/bin/sipp") if os.access(c, os.X_OK)), None)
    if not found:
        raise PeerUnavailable("sipp binary not found; run scripts/install-debian-deps.sh "
                              "(Debian package sip-tester)")
    return found


def scenario_path(scenario: str | os.PathLike) -> Path:
    """Resolve a scenario: a path, or a name in tests/peers/scenarios
    (``"publish_200"`` or ``"publish_200.xml"``)."""
    p = Path(scenario)
    if p.is_file():
        return p.resolve()
    for cand in (SCENARIOS_DIR / p, SCENARIOS_DIR / (str(p) + ".xml")):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"SIPp scenario {scenario!r} not found (looked in {SCENARIOS_DIR})")


def _to_int(v: str | None) -> int:
    try:
        return int(float(v)) if v not in (None, "") else 0
    except ValueError:
        return 0


def _epoch(v: str | None) -> float | None:
    """SIPp time stamps: 'YYYY-MM-DD<TAB>HH:MM:SS.us<TAB>epoch.us' -> epoch."""
    if not v:
        return None
    try:
        return float(v.replace("\t", " ").split()[-1])
    except (ValueError, IndexError):
        return None


def _hms_to_seconds(v: str | None) -> float:
    """SIPp durations: 'HH:MM:SS' or 'HH:MM:SS:uuuuuu'."""
    if not v:
        return 0.0
    parts = v.strip().split(":")
    try:
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        us = int(parts[3]) if len(parts) > 3 else 0
    except (ValueError, IndexError):
        return 0.0
    return h * 3600 + m * 60 + s + us / 1e6


@dataclass
class SippStats:
    """What SIPp reported about one run (cumulative '(C)' counters)."""

    returncode: int | None = None
    successful: int = 0          # SuccessfulCall(C): scenario ran to its end
    failed: int = 0              # FailedCall(C)
    total_created: int = 0       # TotalCallCreated
    incoming: int = 0            # IncomingCall(C)  (UAS)
    outgoing: int = 0            # OutgoingCall(C)  (UAC)
    current: int = 0             # CurrentCall at the last dump
    retransmissions: int = 0     # Retransmissions(C)
    dead_call_msgs: int = 0      # DeadCallMsgs(C)
    sipp_elapsed: float = 0.0    # CurrentTime - StartTime of the last stats dump
    sipp_call_rate: float = 0.0  # CallRate(C), calls/s as computed by SIPp
    wall_seconds: float | None = None  # measured with perf_counter (SippUAC.run)
    raw: dict = field(default_factory=dict, repr=False)   # last CSV row
    screen: str = field(default="", repr=False)            # final screens text
    errors: str = field(default="", repr=False)            # -trace_err log

    @property
    def calls_per_second(self) -> float | None:
        if self.wall_seconds and self.wall_seconds > 0:
            return self.successful / self.wall_seconds
        return None

    def as_dict(self) -> dict:
        return {
            "returncode": self.returncode, "successful": self.successful,
            "failed": self.failed, "total_created": self.total_created,
            "incoming": self.incoming, "outgoing": self.outgoing,
            "current": self.current, "retransmissions": self.retransmissions,
            "dead_call_msgs": self.dead_call_msgs, "sipp_elapsed": self.sipp_elapsed,
            "sipp_call_rate": self.sipp_call_rate, "wall_seconds": self.wall_seconds,
            "calls_per_second": self.calls_per_second,
        }


def _read_stats(stat_file: Path, screen_file: Path, error_file: Path,
                returncode: int | None) -> SippStats:
    st = SippStats(returncode=returncode)
    if screen_file.exists():
        st.screen = screen_file.read_text(errors="replace")
    if error_file.exists():
        st.errors = error_file.read_text(errors="replace")
    if not stat_file.exists():
        return st
    rows = list(csv.reader(io.StringIO(stat_file.read_text(errors="replace")), delimiter=";"))
    rows = [r for r in rows if r]
    if len(rows) < 2:
        return st
    header, last = rows[0], rows[-1]
    raw = {h: (last[i] if i < len(last) else "") for i, h in enumerate(header) if h}
    st.raw = raw
    st.successful = _to_int(raw.get("SuccessfulCall(C)"))
    st.failed = _to_int(raw.get("FailedCall(C)"))
    st.total_created = _to_int(raw.get("TotalCallCreated"))
    st.incoming = _to_int(raw.get("IncomingCall(C)"))
    st.outgoing = _to_int(raw.get("OutgoingCall(C)"))
    st.current = _to_int(raw.get("CurrentCall"))
    st.retransmissions = _to_int(raw.get("Retransmissions(C)"))
    st.dead_call_msgs = _to_int(raw.get("DeadCallMsgs(C)"))
    t0, t1 = _epoch(raw.get("StartTime")), _epoch(raw.get("CurrentTime"))
    if t0 is not None and t1 is not None and t1 >= t0:
        st.sipp_elapsed = t1 - t0
    else:
        st.sipp_elapsed = _hms_to_seconds(raw.get("ElapsedTime(C)"))
    try:
        st.sipp_call_rate = float(raw.get("CallRate(C)") or 0)
    except ValueError:
        st.sipp_call_rate = 0.0
    return st


class _PtyDrain(threading.Thread):
    """Reads SIPp's terminal output so it never blocks; flags the first screen."""

    MARKER = b"Scenario Screen"

    def __init__(self, fd: int) -> None:
        super().__init__(daemon=True, name="sipp-pty-drain")
        self.fd = fd
        self.ready = threading.Event()
        self.closed = threading.Event()
        self.tail = b""

    def run(self) -> None:
        try:
            while True:
                r, _, _ = select.select([self.fd], [], [], 0.5)
                if not r:
                    continue
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: every slave fd closed (SIPp exited)
                    break
                if not data:
                    break
                self.tail = (self.tail + data)[-65536:]
                if not self.ready.is_set() and self.MARKER in self.tail:
                    self.ready.set()
        finally:
            self.closed.set()


class SippUAS:
    """SIPp UAS on 127.0.0.1 (a free UDP port) running one scenario.

    ``scenario``: name in tests/peers/scenarios (``"publish_200"``,
    ``"publish_412"``, ``"publish_423"``, ``"publish_503"``, ``"no_answer"``)
    or a path.  ``transport``: SIPp ``-t`` value (default ``"u1"``: one UDP
    socket).  ``trace_msg=True`` also logs every message (see
    :meth:`messages_text`).  ``extra_args`` are appended to the command line.
    """

    host = "127.0.0.1"

    def __init__(self, scenario: str | os.PathLike = "publish_200", *,
                 port: int | None = None, transport: str = "u1",
                 trace_msg: bool = False, extra_args: Sequence[str] = (),
                 startup_timeout: float = 10.0, keep_workdir: bool = False,
                 buff_size: int = DEFAULT_BUFF_SIZE) -> None:
        self.binary = _find_sipp()
        self.scenario = scenario_path(scenario)
        self._requested_port = port
        self.port: int = 0
        self.transport = transport
        self.trace_msg = trace_msg
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.buff_size = buff_size
        self.keep_workdir = keep_workdir or os.environ.get("PUA_KEEP_PEER_DIRS") == "1"
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self.stats: SippStats | None = None
        self._master_fd: int | None = None
        self._drain: _PtyDrain | None = None
        self._stderr = None
        self._messages: str = ""

    # ---------------------------------------------------------------- props
    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _f(self, name: str) -> Path:
        assert self.workdir is not None
        return self.workdir / name

    # ------------------------------------------------------------ lifecycle
    def __enter__(self) -> SippUAS:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> SippUAS:
        if self.proc is not None:
            raise PeerError("SippUAS already started")
        self.workdir = Path(tempfile.mkdtemp(prefix="pua-sipp-uas-"))
        _track(self)
        try:
            attempts = 1 if self._requested_port else 3
            last: Exception | None = None
            for _ in range(attempts):
                self.port = self._requested_port or find_free_port(self.host, tcp=False)
                try:
                    self._spawn()
                    self._wait_ready()
                    return self
                except PeerError as e:
                    last = e
                    self._terminate(force=True)
            raise last  # type: ignore[misc]
        except BaseException:
            self.stop()
            raise

    def _cmd(self) -> list[str]:
        ctrl_port = find_free_port(self.host, tcp=False)
        cmd = [
            self.binary, "-sf", str(self.scenario),
            "-i", self.host, "-p", str(self.port), "-t", self.transport,
            "-ci", self.host, "-cp", str(ctrl_port),
            "-nostdin", "-deadcall_wait", "0",
            "-buff_size", str(self.buff_size),
            "-trace_stat", "-stf", str(self._f("stats.csv")), "-fd", "1",
            "-trace_screen", "-screen_file", str(self._f("screen.log")),
            "-trace_err", "-error_file", str(self._f("errors.log")),
        ]
        if self.trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self._f("messages.log"))]
        return cmd + self.extra_args

    def _spawn(self) -> None:
        for name in ("stats.csv", "screen.log", "errors.log", "messages.log"):
            with contextlib.suppress(FileNotFoundError):
                self._f(name).unlink()
        master, slave = pty.openpty()
        with contextlib.suppress(OSError):
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 132, 0, 0))
        env = dict(os.environ)
        if env.get("TERM", "dumb") in ("", "dumb", "unknown"):
            env["TERM"] = "xterm"
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = open(self._f("stderr.log"), "ab")  # noqa: SIM115 - lives with the process
        try:
            self.proc = subprocess.Popen(
                self._cmd(), stdin=subprocess.DEVNULL, stdout=slave, stderr=self._stderr,
                cwd=str(self.workdir), env=env, start_new_session=True, close_fds=True)
        finally:
            os.close(slave)
        self._master_fd = master
        self._drain = _PtyDrain(master)
        self._drain.start()

    def _wait_ready(self) -> None:
        assert self._drain is not None and self.proc is not None
        deadline = time.monotonic() + self.startup_timeout
        while not self._drain.ready.is_set():
            remaining = deadline - time.monotonic()
            if self.proc.poll() is not None or self._drain.closed.is_set():
                self.proc.wait(5)
                raise PeerError(f"sipp exited with {self.proc.returncode} during startup: "
                                + self._stderr_text()[-2000:])
            if remaining <= 0:
                raise PeerError(f"sipp UAS not ready within {self.startup_timeout}s: "
                                + self._stderr_text()[-2000:])
            self._drain.ready.wait(min(0.2, remaining))

    def _stderr_text(self) -> str:
        try:
            return self._f("stderr.log").read_text(errors="replace")
        except (OSError, AssertionError):
            return ""

    def _terminate(self, force: bool = False, timeout: float = 10.0) -> int | None:
        proc, self.proc = self.proc, None
        rc: int | None = None
        if proc is not None:
            if proc.poll() is None:
                # SIGUSR1 == pressing 'q': graceful quit, final stats/screens dumped.
                steps = ([] if force else [signal.SIGUSR1, signal.SIGUSR1]) + [signal.SIGTERM]
                for sig in steps:
                    try:
                        proc.send_signal(sig)
                        proc.wait(timeout / 2 if sig == signal.SIGUSR1 else 3)
                        break
                    except subprocess.TimeoutExpired:
                        continue
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group only
            try:
                rc = proc.wait(5)
            except subprocess.TimeoutExpired:
                rc = None
        if self._drain is not None:
            self._drain.closed.wait(5)
            self._drain.join(5)
            self._drain = None
        if self._master_fd is not None:
            os.close(self._master_fd)
            self._master_fd = None
        return rc

    def stop(self, timeout: float = 10.0) -> SippStats:
        """Quit SIPp gracefully (SIGUSR1, like pressing 'q'), escalate if
        needed, and return its statistics (also kept in ``.stats``)."""
        if self.workdir is None:
            self.stats = self.stats or SippStats()
            return self.stats
        rc = self._terminate(timeout=timeout)
        _untrack(self)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        self.stats = _read_stats(self._f("stats.csv"), self._f("screen.log"),
                                 self._f("errors.log"), rc)
        if self._f("messages.log").exists():
            self._messages = self._f("messages.log").read_text(errors="replace")
        if not self.keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        return self.stats

    def messages_text(self) -> str:
        """SIP messages traced so far (only with ``trace_msg=True``)."""
        if self.workdir is not None and self._f("messages.log").exists():
            return self._f("messages.log").read_text(errors="replace")
        return self._messages

    def received(self, method: str | None = None) -> list[str]:
        """The SIP requests SIPp received so far, oldest first, each as the
        text of the message (``trace_msg=True`` needed); only ``method``
        ones when given (e.g. ``"REGISTER"``).  SIPp writes the trace as it
        goes, so poll this to wait for a request."""
        return [m for received, m in split_trace(self.messages_text())
                if received and not m.startswith("SIP/2.0 ")
                and (method is None or m.split(" ", 1)[0] == method)]

    def __repr__(self) -> str:
        return f"<SippUAS {self.scenario.name} {self.uri} pid={self.pid}>"


def subscribe_terminated_uas(reason: str = "deactivated", *,
                             retry_after: int | None = None, **kwargs) -> SippUAS:
    """A SippUAS (not started yet) running ``scenarios/subscribe_terminated.xml``.

    Its final NOTIFY carries ``Subscription-State: terminated;reason=<reason>``
    plus ``;retry-after=<retry_after>`` when given, e.g.
    ``subscribe_terminated_uas("probation", retry_after=1)``.  The scenario
    takes the value from SIPp's ``-key reason ...``; other keyword arguments
    go to :class:`SippUAS` (``extra_args`` are appended after the key).
    """
    value = reason if retry_after is None else f"{reason};retry-after={int(retry_after)}"
    extra = ["-key", "reason", value, *kwargs.pop("extra_args", ())]
    return SippUAS("subscribe_terminated", extra_args=extra, **kwargs)


_TRACE_SEP = re.compile(r"^-{10,}[^\n]*\n", re.MULTILINE)


def split_trace(text: str) -> list[tuple[bool, str]]:
    """Split a SIPp ``-trace_msg`` log into ``(received, message)`` pairs
    (``received`` False for what SIPp sent); the message text starts at its
    first line, with the CRLFs SIPp logged."""
    out = []
    for chunk in _TRACE_SEP.split(text):
        head, _, msg = chunk.partition("\n\n")
        if "message received" in head:
            out.append((True, msg.lstrip("\r\n")))
        elif "message sent" in head:
            out.append((False, msg.lstrip("\r\n")))
    return out


class SippUAC:
    """Run SIPp as a UAC (load generator) against ``remote_host:remote_port``.

    ``calls`` (-m) calls in total, at most ``limit`` (-l) at once, started at
    ``rate`` (-r) calls per ``rate_period_ms`` (-rp).  The run is bounded by
    ``timeout`` seconds (SIPp's own -timeout and a subprocess timeout).
    """

    host = "127.0.0.1"

    def __init__(self, scenario: str | os.PathLike, remote_host: str,
                 remote_port: int, *, calls: int = 1, rate: float = 1_000_000,
                 rate_period_ms: int = 1000, limit: int = 200, transport: str = "u1",
                 timeout: float = 120.0, trace_msg: bool = False,
                 extra_args: Sequence[str] = (), keep_workdir: bool = False,
                 buff_size: int = DEFAULT_BUFF_SIZE) -> None:
        self.binary = _find_sipp()
        self.scenario = scenario_path(scenario)
        self.remote_host = remote_host
        self.remote_port = int(remote_port)
        self.calls = int(calls)
        self.rate = rate
        self.rate_period_ms = int(rate_period_ms)
        self.limit = int(limit)
        self.transport = transport
        self.timeout = float(timeout)
        self.trace_msg = trace_msg
        self.extra_args = list(extra_args)
        self.buff_size = buff_size
        self.keep_workdir = keep_workdir or os.environ.get("PUA_KEEP_PEER_DIRS") == "1"
        self.workdir: Path | None = None
        self.messages: str = ""
        self.stats: SippStats | None = None

    def run(self) -> SippStats:
        """Run to completion; returns stats with ``wall_seconds`` measured by
        ``time.perf_counter`` around the SIPp process."""
        self.workdir = Path(tempfile.mkdtemp(prefix="pua-sipp-uac-"))
        wd = self.workdir
        try:
            port = find_free_port(self.host, tcp=False)
            ctrl_port = find_free_port(self.host, tcp=False)
            cmd = [
                self.binary, f"{self.remote_host}:{self.remote_port}",
                "-sf", str(self.scenario),
                "-i", self.host, "-p", str(port), "-t", self.transport,
                "-ci", self.host, "-cp", str(ctrl_port),
                "-nostdin", "-buff_size", str(self.buff_size),
                "-m", str(self.calls), "-l", str(self.limit),
                "-r", str(self.rate), "-rp", f"{self.rate_period_ms}ms",
                "-timeout", f"{max(1, int(self.timeout))}s", "-timeout_error",
                "-trace_stat", "-stf", str(wd / "stats.csv"), "-fd", "1",
                "-trace_screen", "-screen_file", str(wd / "screen.log"),
                "-trace_err", "-error_file", str(wd / "errors.log"),
            ]
            if self.trace_msg:
                cmd += ["-trace_msg", "-message_file", str(wd / "messages.log")]
            cmd += self.extra_args
            with open(wd / "stderr.log", "wb") as err:
                t0 = time.perf_counter()
                proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=err,
                                        cwd=str(wd), start_new_session=True)
                try:
                    rc: int | None = proc.wait(self.timeout + 10)
                except subprocess.TimeoutExpired:
                    proc.send_signal(signal.SIGUSR1)
                    try:
                        rc = proc.wait(5)
                    except subprocess.TimeoutExpired:
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(proc.pid, signal.SIGKILL)
                        rc = proc.wait(5)
                wall = time.perf_counter() - t0
            stats = _read_stats(wd / "stats.csv", wd / "screen.log", wd / "errors.log", rc)
            stats.wall_seconds = wall
            if rc not in (0, 1) and not stats.raw:
                raise PeerError(f"sipp UAC failed with {rc}: "
                                + (wd / "stderr.log").read_text(errors="replace")[-2000:])
            if (wd / "messages.log").exists():
                self.messages = (wd / "messages.log").read_text(errors="replace")
            self.stats = stats
            return stats
        finally:
            if not self.keep_workdir:
                shutil.rmtree(wd, ignore_errors=True)
                self.workdir = None


def register_phone(remote_host: str, remote_port: int, user: str, *,
                   domain: str = "example.com", expires: int = 3600,
                   reregister: bool = True, hold_ms: int = 0, contact_params: str = "",
                   **kwargs) -> SippUAC:
    """A SippUAC (call ``.run()``) running ``scenarios/register_phone.xml``:
    the phone ``sip:<user>@<domain>`` registers (Expires ``expires``),
    re-registers when ``reregister`` (same Call-ID, next CSeq), then
    unregisters (Expires 0), waiting ``hold_ms`` before each step.  Its
    Contact is ``<sip:<user>@127.0.0.1:<its port>>`` + ``contact_params``
    (e.g. ``';+sip.instance="<urn:uuid:...>";reg-id=1'``).  Other keyword
    arguments go to :class:`SippUAC` (``extra_args`` are appended)."""
    extra = ["-s", user, "-key", "domain", domain, "-key", "expires", str(int(expires)),
             "-key", "contact_params", contact_params,
             "-set", "rereg", "1" if reregister else "0", "-set", "hold", str(int(hold_ms)),
             *kwargs.pop("extra_args", ())]
    kwargs.setdefault("calls", 1)
    return SippUAC("register_phone", remote_host, remote_port, extra_args=extra, **kwargs)


def register_phones(remote_host: str, remote_port: int, *, calls: int,
                    rate: float = 1_000_000, user_prefix: str = "phone",
                    domain: str = "example.com", expires: int = 3600,
                    **kwargs) -> SippUAC:
    """A SippUAC (call ``.run()``) running ``scenarios/register_many.xml``:
    ``calls`` phones ``sip:<user_prefix><n>@<domain>`` (n = SIPp's call
    number, from 1) each send one REGISTER (distinct AOR, Contact and
    Call-ID) at ``rate`` per second, at most ``limit`` outstanding.  Other
    keyword arguments go to :class:`SippUAC`."""
    extra = ["-key", "user_prefix", user_prefix, "-key", "domain", domain,
             "-key", "expires", str(int(expires)), *kwargs.pop("extra_args", ())]
    return SippUAC("register_many", remote_host, remote_port, calls=calls, rate=rate,
                   extra_args=extra, **kwargs)


def call_uas(callee: str = "bob", *, ring_ms: int = 200, busy: bool = False,
             **kwargs) -> SippUAS:
    """A SippUAS (not started yet) answering calls: ``scenarios/call_uas.xml``
    (100, 180 with a To-tag and a Contact, ``ring_ms`` of ringing, 200 with
    Contact <sip:<callee>@127.0.0.1:<its port>> and the Record-Route, ACK,
    then BYE -> 200), or with ``busy=True`` ``scenarios/call_uas_busy.xml``
    (the same ringing, then 486 Busy Here instead of the 200).  Other
    keyword arguments go to :class:`SippUAS` (``extra_args`` are appended)."""
    extra = ["-s", callee, "-d", str(int(ring_ms)), *kwargs.pop("extra_args", ())]
    return SippUAS("call_uas_busy" if busy else "call_uas", extra_args=extra, **kwargs)


def call_uac(proxy_host: str, proxy_port: int, *, calls: int = 1, rate: float = 1_000_000,
             caller: str = "alice", callee: str = "bob", domain: str = "example.com",
             hold_ms: int = 0, numbered: bool = False, **kwargs) -> SippUAC:
    """A SippUAC (call ``.run()``) running ``scenarios/call_uac.xml`` against
    a proxy: ``calls`` calls from ``sip:<caller>@<domain>`` to
    ``sip:<callee>@<domain>`` (with ``numbered``: ``<caller><n>`` to
    ``<callee><n>``, n = SIPp's call number from 1), each INVITE -> 200 ->
    ACK, ``hold_ms`` of talk, BYE -> 200 (a final error is ACKed instead), at
    ``rate`` calls per second, at most ``limit`` at once.  Other keyword
    arguments go to :class:`SippUAC` (``extra_args`` are appended)."""
    extra = ["-key", "caller", caller, "-s", callee, "-key", "domain", domain,
             "-set", "numbered", "1" if numbered else "0", "-d", str(int(hold_ms)),
             *kwargs.pop("extra_args", ())]
    return SippUAC("call_uac", proxy_host, proxy_port, calls=calls, rate=rate,
                   extra_args=extra, **kwargs)


def run_calls(proxy_host: str, proxy_port: int, *, calls: int = 1, rate: float = 1_000_000,
              caller: str = "alice", callee: str = "bob", **kwargs) -> SippStats:
    """Make the calls of :func:`call_uac` and return SIPp's statistics."""
    return call_uac(proxy_host, proxy_port, calls=calls, rate=rate, caller=caller,
                    callee=callee, **kwargs).run()
