"""A real Kamailio registrar as a test peer.

Usage::

    from tests.peers.kamailio_registrar import KamailioRegistrar

    with KamailioRegistrar(replicate_to="sip:127.0.0.1:5090") as reg:
        ...  # phones REGISTER at reg.host:reg.sip_port (UDP or TCP)
        reg.bindings("sip:alice@example.com")   # [Binding(...), ...]

Kamailio 5.6 runs ``registrar`` + ``usrloc`` (in memory, ``db_mode`` 0,
``use_domain`` 1: the AOR is ``user@domain``) on 127.0.0.1, SIP on UDP and
TCP on a free port (``.sip_port``), and JSON-RPC over HTTP on another free
TCP port (``.http_port``, ``jsonrpcs`` + ``xhttp``).  Any REGISTER is
accepted, for any domain, without authentication; ``save("location")``
answers it.  Options:

* ``replicate_to``: a SIP URI; after a successful ``save()`` the REGISTER is
  copied there with ``t_replicate`` (a REGISTER that save() refused, e.g.
  423, is not copied).
* ``publish_to``: loads ``pua`` + ``pua_usrloc`` and calls
  ``pua_set_publish()`` before ``save()``: the binding a REGISTER touches is
  PUBLISHed (event presence) to this URI (pua's ``outbound_proxy``).  See
  :class:`tests.peers.kamailio_pua_usrloc.KamailioPuaUsrloc`.
* ``reginfo=True``: loads ``pua`` + ``pua_reginfo`` + ``presence`` +
  ``presence_reginfo``; pua_reginfo PUBLISHes an
  ``application/reginfo+xml`` document (event ``reg``) for the whole AOR on
  every usrloc change, to this very Kamailio, whose presence module stores
  it and NOTIFYs the ``reg`` watchers of that AOR.

Reading the bindings: :meth:`bindings` (``ul.dump`` over JSON-RPC),
:meth:`lookup` (``ul.lookup``), :meth:`binding_count` (usrloc statistics).
Those read the shared memory of the running Kamailio, and ``save()`` has
changed it before the reply to the REGISTER is sent: once a phone has its
200, the binding is there.

Behaviour of Kamailio 5.6.3 worth knowing (verified by
tests/peers/test_registrar_selfcheck.py):

* The copy made by ``t_replicate`` leaves from the registrar's SIP socket
  (``127.0.0.1:<sip_port>``, UDP unless the URI says otherwise), just
  *after* the 200 OK went to the phone.  It is the phone's REGISTER with
  one more Via on top (Kamailio's, ``branch=z9hG4bK...``), ``received`` and
  ``rport`` added to the phone's Via, Max-Forwards lowered by one, the same Request-URI, To, From, Call-ID, CSeq, Contact (with its
  parameters), Expires and body; no Record-Route.  The answer to the copy
  is absorbed by tm (the phone never sees it); with no answer tm
  retransmits the copy (UDP: after 0.5, 1 and 2 s) until ``fr_timer``
  (5 s), then drops it without a log line.  Queries (no Contact) and
  unregisters are copied too.
* ``Expires`` above ``max_expires`` is lowered, below ``min_expires`` raised
  (or ``423 Interval Too Brief`` with ``reject_short_expires=True``); the
  copy carries the phone's original value, not the one granted.
"""

from __future__ import annotations

import contextlib
import glob
import http.client
import itertools
import json
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import PeerError, PeerUnavailable, _track, _untrack, find_free_port
from .kamailio import INSTALL_HINT, _find_kamailio_binary, _find_schema_dir, _parse_response

__all__ = ["KamailioRegistrar", "Binding", "PeerUnavailable", "PeerError"]

HERE = Path(__file__).resolve().parent
CFG_TEMPLATE = HERE / "kamailio_registrar.cfg"

BASE_MODULES = ("tm", "sl", "pv", "maxfwd", "textops", "siputils", "xlog", "kex",
                "usrloc", "registrar", "xhttp", "jsonrpcs")
PUA_MODULES = ("db_sqlite", "pua")
PUA_USRLOC_MODULES = ("pua_usrloc",)
REGINFO_MODULES = ("presence", "presence_reginfo", "pua_reginfo")
SCHEMA_FILES = ("standard-create.sql", "presence-create.sql")


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


@dataclass(frozen=True)
class Binding:
    """One contact of an AOR, as ``ul.dump`` shows it.

    ``aor`` is ``user@domain`` (no scheme), ``contact`` the Contact URI as
    the phone sent it (without the name-addr brackets and header params),
    ``expires`` the seconds left when it was read (``None`` for a permanent
    contact), ``raw`` every field Kamailio reported (``Received``, ``Path``,
    ``Socket``, ``Ruid``, ``Instance``, ``Reg-Id``, ``Methods``, ...).
    """

    aor: str
    contact: str
    expires: int | None
    q: float
    callid: str
    cseq: int
    user_agent: str
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


def _aor_key(aor: str) -> str:
    """``sip:alice@example.com`` / ``<sip:alice@example.com>`` -> the
    usrloc key ``alice@example.com``."""
    a = aor.strip().strip("<>")
    for scheme in ("sip:", "sips:"):
        if a.lower().startswith(scheme):
            a = a[len(scheme):]
    return a.split(";", 1)[0]


def _to_binding(aor: str, c: dict[str, Any]) -> Binding:
    exp = c.get("Expires")
    expires = int(exp) if isinstance(exp, int) or (isinstance(exp, str) and exp.isdigit()) \
        else None
    try:
        q = float(c.get("Q", -1))
    except (TypeError, ValueError):
        q = -1.0
    return Binding(aor=aor, contact=str(c.get("Address", "")), expires=expires, q=q,
                   callid=str(c.get("Call-ID", "")), cseq=int(c.get("CSeq", 0) or 0),
                   user_agent=str(c.get("User-Agent", "")), raw=dict(c))


class KamailioRegistrar:
    """Context manager running a real Kamailio registrar on 127.0.0.1.

    Keyword-only parameters:

    ``replicate_to``    SIP URI that gets a ``t_replicate`` copy of every
                        REGISTER that ``save("location")`` accepted
                        (e.g. ``"sip:127.0.0.1:5090"``), or None
    ``default_expires`` registrar ``default_expires`` (no Expires at all)
    ``max_expires``     registrar ``max_expires`` (0 = no maximum)
    ``min_expires``     registrar ``min_expires`` (0 = no minimum)
    ``reject_short_expires`` registrar ``min_expires_mode`` 1: an Expires
                        below min_expires gets ``423 Interval Too Brief``
                        instead of being raised
    ``timer_interval``  usrloc timer (removal of expired contacts), seconds
    ``reginfo``         serve the ``reg`` event for the AORs (see module doc)
    ``publish_to``      pua_usrloc: PUBLISH presence for each REGISTER to
                        this SIP URI (see :mod:`.kamailio_pua_usrloc`)
    ``entity_prefix``   pua_usrloc ``entity_prefix`` (PIDF ``entity`` is
                        ``<prefix>:<aor>``; Kamailio's default: none)
    ``default_domain``  pua_usrloc / pua_reginfo ``default_domain``
    ``children``        SIP worker processes per transport (default 1: one
                        worker handles the requests in order, which makes
                        :meth:`sync` a barrier)
    ``tcp_children``    TCP workers (SIP over TCP and the JSON-RPC HTTP)
    ``debug``           Kamailio log level (2: one line per request; use 1
                        for benchmarks)
    ``startup_timeout`` seconds to wait for readiness
    ``rpc_timeout``     default timeout of one JSON-RPC call
    ``shm_mb``/``pkg_mb`` shared/private memory (-m/-M)
    ``keep_workdir``    keep the temp dir (also with ``PUA_KEEP_PEER_DIRS=1``)
    """

    host = "127.0.0.1"

    def __init__(self, *, replicate_to: str | None = None, default_expires: int = 3600,
                 max_expires: int = 3600, min_expires: int = 0,
                 reject_short_expires: bool = False, timer_interval: int = 10,
                 reginfo: bool = False, publish_to: str | None = None,
                 entity_prefix: str | None = None, default_domain: str = "example.com",
                 children: int = 1, tcp_children: int = 2, debug: int = 2,
                 startup_timeout: float = 15.0, rpc_timeout: float = 10.0,
                 shm_mb: int = 128, pkg_mb: int = 16, keep_workdir: bool = False) -> None:
        for name, uri in (("replicate_to", replicate_to), ("publish_to", publish_to)):
            if uri is not None and not uri.startswith(("sip:", "sips:")):
                raise ValueError(f"{name} must be a SIP URI, got {uri!r}")
            if uri is not None and '"' in uri:
                raise ValueError(f"{name} must not contain a double quote")
        self.replicate_to = replicate_to
        self.publish_to = publish_to
        self.reginfo = bool(reginfo)
        self.entity_prefix = entity_prefix
        self.default_domain = default_domain
        self.default_expires = int(default_expires)
        self.max_expires = int(max_expires)
        self.min_expires = int(min_expires)
        self.reject_short_expires = bool(reject_short_expires)
        self.timer_interval = int(timer_interval)
        self.children = int(children)
        self.tcp_children = int(tcp_children)
        if self.children < 1 or self.tcp_children < 1:
            raise ValueError("children and tcp_children must be >= 1")
        self.debug = int(debug)
        self.startup_timeout = float(startup_timeout)
        self.rpc_timeout = float(rpc_timeout)
        self.shm_mb = int(shm_mb)
        self.pkg_mb = int(pkg_mb)
        self.keep_workdir = keep_workdir or os.environ.get("PUA_KEEP_PEER_DIRS") == "1"
        self.sip_port: int = 0
        self.http_port: int = 0
        self.workdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None
        self._final_log: str | None = None
        self._ids = itertools.count(1)
        self._ids_lock = threading.Lock()
        # Everything that can be missing is resolved now -> PeerUnavailable.
        self.binary = _find_kamailio_binary()
        self.modules_dir = _find_modules_dir(self._required_modules())
        self.schema_dir = _find_schema_dir() if self._with_pua else None

    @property
    def _with_pua(self) -> bool:
        return self.reginfo or self.publish_to is not None

    def _required_modules(self) -> tuple[str, ...]:
        mods = BASE_MODULES
        if self._with_pua:
            mods += PUA_MODULES
        if self.publish_to is not None:
            mods += PUA_USRLOC_MODULES
        if self.reginfo:
            mods += REGINFO_MODULES
        return mods

    # ------------------------------------------------------------------ props
    @property
    def port(self) -> int:
        """Same as ``sip_port``."""
        return self.sip_port

    @property
    def uri(self) -> str:
        """``sip:127.0.0.1:SIP_PORT``: where phones send REGISTER."""
        return f"sip:{self.host}:{self.sip_port}"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.sip_port)

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/jsonrpc"

    def _path(self, name: str) -> Path:
        assert self.workdir is not None, "KamailioRegistrar not started"
        return self.workdir / name

    @property
    def cfg_path(self) -> Path:
        return self._path("kamailio.cfg")

    @property
    def db_path(self) -> Path:
        return self._path("registrar.db")

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
    def __enter__(self) -> KamailioRegistrar:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> KamailioRegistrar:
        if self.proc is not None:
            raise PeerError("KamailioRegistrar already started")
        self.workdir = Path(tempfile.mkdtemp(prefix="pua-kamailio-registrar-"))
        _track(self)
        (self.workdir / "run").mkdir()
        try:
            if self._with_pua:
                self._create_db()
            last_err: Exception | None = None
            for _ in range(3):
                self.sip_port = find_free_port(self.host)
                self.http_port = find_free_port(self.host, udp=False)
                while self.http_port == self.sip_port:
                    self.http_port = find_free_port(self.host, udp=False)
                self._write_cfg()
                try:
                    self._spawn()
                    self._wait_ready()
                    return self
                except PeerError as e:  # e.g. lost a port race: try again
                    last_err = e
                    self._kill()
            raise last_err  # type: ignore[misc]
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> int | None:
        """Terminate Kamailio (SIGTERM, then SIGKILL on its process group)
        and remove the temp dir; returns Kamailio's exit status."""
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
                proc.terminate()
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Kamailio runs in its own session (pgid == pid): none of OUR
        # Kamailio's children may survive.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # ------------------------------------------------------------------ setup
    def _create_db(self) -> None:
        assert self.schema_dir is not None
        con = sqlite3.connect(str(self.db_path))
        try:
            for name in SCHEMA_FILES:
                con.executescript((self.schema_dir / name).read_text())
            con.commit()
        finally:
            con.close()

    def _defines(self) -> list[str]:
        names = []
        if self.replicate_to is not None:
            names.append("WITH_REPLICATE")
        if self._with_pua:
            names.append("WITH_PUA")
        if self.publish_to is not None:
            names.append("WITH_PUA_USRLOC")
        if self.reginfo:
            names.append("WITH_REGINFO")
        return names

    def _write_cfg(self) -> None:
        text = CFG_TEMPLATE.read_text()
        prefix = ("" if self.entity_prefix is None else
                  f'modparam("pua_usrloc", "entity_prefix", "{self.entity_prefix}")')
        values = {
            "HOST": self.host,
            "SIP_PORT": str(self.sip_port),
            "HTTP_PORT": str(self.http_port),
            "DB_URL": self.db_url,
            "MODULES_DIR": self.modules_dir,
            "DEBUG": str(self.debug),
            "CHILDREN": str(self.children),
            "TCP_CHILDREN": str(self.tcp_children),
            "DEFAULT_EXPIRES": str(self.default_expires),
            "MAX_EXPIRES": str(self.max_expires),
            "MIN_EXPIRES": str(self.min_expires),
            "MIN_EXPIRES_MODE": "1" if self.reject_short_expires else "0",
            "TIMER_INTERVAL": str(self.timer_interval),
            "DEFAULT_DOMAIN": self.default_domain,
            "ENTITY_PREFIX": prefix,
            "REPLICATE_TO": self.replicate_to or "",
            # pua's outbound_proxy: pua_usrloc's PUBLISHes go there; with
            # reginfo only, pua_reginfo sets its own (this Kamailio).
            "PUBLISH_TO": self.publish_to or self.uri,
        }
        for k, v in values.items():
            text = text.replace(f"@@{k}@@", v)
        left = [ln for ln in text.splitlines()
                if "@@" in ln and not ln.lstrip().startswith("#")]
        if left:
            raise PeerError(f"unrendered marker in kamailio_registrar.cfg: {left[0]!r}")
        self.cfg_path.write_text(text)

    def _spawn(self) -> None:
        assert self.workdir is not None
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives with the process
        cmd = [
            self.binary, "-f", str(self.cfg_path),
            "-DD", "-E",
            "-Y", str(self.workdir / "run"),
            "-w", str(self.workdir),
            "-m", str(self.shm_mb), "-M", str(self.pkg_mb),
        ]
        for name in self._defines():
            cmd += ["-A", name]
        self.proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=self._log_file,
            stderr=subprocess.STDOUT, cwd=str(self.workdir),
            start_new_session=True, close_fds=True)

    def _wait_ready(self) -> None:
        """UDP OPTIONS answered (a SIP worker runs), then one JSON-RPC call
        answered (a TCP worker runs jsonrpcs)."""
        deadline = time.monotonic() + self.startup_timeout
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            sip_ok = False
            while True:
                self._check_alive("during startup")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    what = "HTTP JSON-RPC" if sip_ok else "SIP OPTIONS"
                    raise PeerError(f"kamailio did not answer {what} within "
                                    f"{self.startup_timeout}s:\n" + self._log_tail())
                if not sip_ok:
                    sip_ok = self._options_udp(sock, min(0.25, remaining)) == 200
                    continue
                try:
                    reply = self.rpc("core.version", timeout=min(2.0, remaining))
                except (OSError, http.client.HTTPException):
                    # not accepting yet: pace the next try with a bounded
                    # wait for a SIP answer (a socket read)
                    self._options_udp(sock, min(0.1, max(0.01, deadline - time.monotonic())))
                    continue
                if "result" in reply:
                    return
                raise PeerError(f"unexpected core.version reply {reply!r}")
        finally:
            sock.close()

    def _check_alive(self, when: str = "") -> None:
        if self.proc is None:
            raise PeerError("KamailioRegistrar is not running")
        if self.proc.poll() is not None:
            raise PeerError(f"kamailio exited with {self.proc.returncode} {when}:\n"
                            + self._log_tail())

    def _options_udp(self, sock: socket.socket, timeout: float) -> int:
        """One OPTIONS over UDP; returns the status code, 0 on timeout."""
        call_id = "probe-" + uuid.uuid4().hex
        lport = sock.getsockname()[1]
        msg = (
            f"OPTIONS {self.uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.host}:{lport};rport;branch=z9hG4bK{uuid.uuid4().hex}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{self.host}>;tag={uuid.uuid4().hex[:10]}\r\n"
            f"To: <{self.uri}>\r\n"
            f"Call-ID: {call_id}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        sock.sendto(msg, (self.host, self.sip_port))
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
                continue  # ICMP port unreachable: not bound yet
            code, hdrs = _parse_response(data)
            if hdrs.get("call-id") == call_id and code >= 200:
                return code

    def sync(self, timeout: float = 5.0) -> None:
        """Barrier: with one UDP worker (``children=1``) an OPTIONS answered
        proves that every UDP request received before it was handled."""
        self._check_alive()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, 0))
            deadline = time.monotonic() + timeout
            while self._options_udp(sock, min(1.0, max(0.0, deadline - time.monotonic()))) != 200:
                if time.monotonic() >= deadline:
                    raise PeerError("kamailio did not answer the sync OPTIONS")
        finally:
            sock.close()

    # -------------------------------------------------------------------- RPC
    def rpc(self, method: str, params: list[Any] | None = None, *,
            timeout: float | None = None) -> dict[str, Any]:
        """One JSON-RPC 2.0 call over HTTP; returns the parsed reply
        (``{"jsonrpc": "2.0", "result"|"error": ..., "id": N}``)."""
        with self._ids_lock:
            rid = next(self._ids)
        doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": rid}
        if params is not None:
            doc["params"] = params
        conn = http.client.HTTPConnection(self.host, self.http_port,
                                          timeout=self.rpc_timeout if timeout is None
                                          else timeout)
        try:
            conn.request("POST", "/jsonrpc", body=json.dumps(doc).encode(),
                         headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            status, body = resp.status, resp.read()
        finally:
            conn.close()
        try:
            reply = json.loads(body)
        except ValueError as e:
            raise PeerError(f"non-JSON reply to {method}: HTTP {status} {body[:200]!r}") from e
        if not isinstance(reply, dict):
            raise PeerError(f"unexpected reply to {method}: {reply!r}")
        return reply

    def _result(self, method: str, params: list[Any] | None = None) -> Any:
        reply = self.rpc(method, params)
        if "error" in reply:
            raise PeerError(f"{method} failed: {reply['error']!r}")
        return reply.get("result")

    # ------------------------------------------------------------------- data
    def dump(self) -> dict[str, Any]:
        """The raw ``ul.dump`` result."""
        return self._result("ul.dump")

    def bindings(self, aor: str | None = None) -> list[Binding]:
        """Every binding in the ``location`` table (``ul.dump``), or only
        those of ``aor`` (``sip:alice@example.com`` or ``alice@example.com``).
        One JSON-RPC reply holds the whole table: fine for functional tests,
        use :meth:`binding_count` for thousands of bindings."""
        want = _aor_key(aor) if aor is not None else None
        out: list[Binding] = []
        for dom in self.dump().get("Domains", []):
            for rec in (dom.get("Domain") or {}).get("AoRs", []) or []:
                info = rec.get("Info") or {}
                key = str(info.get("AoR", ""))
                if want is not None and key != want:
                    continue
                for c in info.get("Contacts", []) or []:
                    out.append(_to_binding(key, c.get("Contact") or {}))
        return out

    def lookup(self, aor: str) -> list[Binding]:
        """The live bindings of one AOR (``ul.lookup location <aor>``); []
        when it has none.  Expired contacts are left out at once, while
        :meth:`bindings` and :meth:`binding_count` still show them until
        the usrloc timer (``timer_interval``) removes them."""
        key = _aor_key(aor)
        reply = self.rpc("ul.lookup", ["location", key])
        if "error" in reply:
            # Kamailio 5.6: 500 "AOR not found in location table", or
            # "AOR has no contacts" (all expired, not yet removed)
            msg = str(reply["error"].get("message", "")).lower()
            if "not found" in msg or "no contacts" in msg:
                return []
            raise PeerError(f"ul.lookup failed: {reply['error']!r}")
        res = reply.get("result") or {}
        aor_info = res.get("AoR", key) if isinstance(res, dict) else key
        contacts = res.get("Contacts", []) if isinstance(res, dict) else []
        return [_to_binding(str(aor_info), c.get("Contact") or {}) for c in contacts]

    def binding_count(self) -> int:
        """Number of contacts in the ``location`` table (usrloc statistic
        ``location_contacts``), cheap whatever the table size."""
        res = self._result("stats.get_statistics", ["usrloc:"])
        for item in res if isinstance(res, list) else []:
            name, _, value = str(item).partition(" = ")
            if name.strip() == "usrloc:location_contacts":
                return int(value)
        raise PeerError(f"no usrloc:location_contacts statistic in {res!r}")

    def wait_bindings(self, aor: str, predicate, timeout: float = 10.0,
                      interval: float = 0.05) -> list[Binding]:
        """Poll :meth:`lookup` until ``predicate(bindings)`` is true (e.g.
        an expired contact removed by the usrloc timer); returns the last
        bindings, raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.lookup(aor)
            if predicate(found):
                return found
            if time.monotonic() >= deadline:
                raise TimeoutError(f"bindings of {aor} still {found!r}")
            ev = threading.Event()
            ev.wait(interval)

    # -------------------------------------------------------------------- log
    def log_text(self) -> str:
        """Everything Kamailio logged so far (also after stop())."""
        if self.workdir is not None and self.log_path.exists():
            if self._log_file is not None:
                self._log_file.flush()
            return self.log_path.read_text(errors="replace")
        return self._final_log or ""

    def _log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return f"<KamailioRegistrar {self.uri} {state} workdir={self.workdir}>"
