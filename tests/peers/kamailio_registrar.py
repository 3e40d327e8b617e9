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
* ``bla_lines`` (with ``replicate_to``): shared lines (bridged line
  appearance); the copy of a REGISTER whose To AOR is one of them carries
  the header ``<bla_header>: yes`` (default ``X-BLA-Line``), added with
  ``append_hf`` before ``t_replicate``.  Copies of other AORs, and the
  reply to the phone, have no such header.
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

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import PeerError, PeerUnavailable, find_free_port
from .kamailio_process import KamailioRpcProcess

__all__ = ["KamailioRegistrar", "Binding", "PeerUnavailable", "PeerError"]

HERE = Path(__file__).resolve().parent
CFG_TEMPLATE = HERE / "kamailio_registrar.cfg"

BASE_MODULES = ("tm", "sl", "pv", "maxfwd", "textops", "siputils", "xlog", "kex",
                "usrloc", "registrar", "xhttp", "jsonrpcs")
PUA_MODULES = ("db_sqlite", "pua")
PUA_USRLOC_MODULES = ("pua_usrloc",)
REGINFO_MODULES = ("presence", "presence_reginfo", "pua_reginfo")
SCHEMA_FILES = ("standard-create.sql", "presence-create.sql")


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


# what a shared line may be here: no quote, backslash or $ in the cfg strings
_SAFE_AOR = re.compile(r"[A-Za-z0-9_.!~*'+%=-]+@[A-Za-z0-9.-]+")
_TOKEN = re.compile(r"[A-Za-z0-9.!%*_+`'~-]+")


def _bla_line_match(keys: tuple[str, ...]) -> str:
    """The cfg condition true for a REGISTER whose To is one of ``keys``
    (``user@domain``)."""
    if not keys:
        return "0"
    return " || ".join('($tU == "{}" && $td == "{}")'.format(*k.rsplit("@", 1))
                       for k in keys)


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


class KamailioRegistrar(KamailioRpcProcess):
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
    ``bla_lines``       shared-line AORs (``sip:line1@example.com``): the
                        ``t_replicate`` copy of their REGISTERs carries
                        ``<bla_header>: yes`` (needs ``replicate_to``)
    ``bla_header``      that header's name (default ``X-BLA-Line``)
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

    _label = "KamailioRegistrar"
    _workdir_prefix = "pua-kamailio-registrar-"
    _db_name = "registrar.db"
    _cfg_template = CFG_TEMPLATE
    _cfg_name = "kamailio_registrar.cfg"
    _schema_files = SCHEMA_FILES

    def __init__(self, *, replicate_to: str | None = None, default_expires: int = 3600,
                 max_expires: int = 3600, min_expires: int = 0,
                 reject_short_expires: bool = False, timer_interval: int = 10,
                 reginfo: bool = False, publish_to: str | None = None,
                 entity_prefix: str | None = None, default_domain: str = "example.com",
                 children: int = 1, tcp_children: int = 2, debug: int = 2,
                 startup_timeout: float = 15.0, rpc_timeout: float = 10.0,
                 shm_mb: int = 128, pkg_mb: int = 16, keep_workdir: bool = False,
                 bla_lines: Sequence[str] = (), bla_header: str = "X-BLA-Line") -> None:
        if isinstance(bla_lines, str):
            bla_lines = [bla_lines]
        self.bla_lines = tuple(_aor_key(a) for a in bla_lines)
        for key in self.bla_lines:
            if not _SAFE_AOR.fullmatch(key):
                raise ValueError(f"bla_lines: {key!r} is not a plain user@domain AOR")
        if self.bla_lines and replicate_to is None:
            raise ValueError("bla_lines mark the t_replicate copies: give replicate_to too")
        if not _TOKEN.fullmatch(bla_header):
            raise ValueError(f"bla_header must be a header name, got {bla_header!r}")
        self.bla_header = bla_header
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
        super().__init__(debug=debug, startup_timeout=startup_timeout, shm_mb=shm_mb,
                         pkg_mb=pkg_mb, keep_workdir=keep_workdir)
        self.rpc_timeout = float(rpc_timeout)
        self._resolve(self._required_modules(), schema=self._with_pua)

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

    # -------------------------------------------------------------- lifecycle
    def _pick_ports(self) -> bool:
        self.sip_port = find_free_port(self.host)
        self.http_port = find_free_port(self.host, udp=False)
        while self.http_port == self.sip_port:
            self.http_port = find_free_port(self.host, udp=False)
        return True

    # ------------------------------------------------------------------ setup
    def _needs_db(self) -> bool:
        return self._with_pua

    def _defines(self) -> list[str]:
        names = []
        if self.replicate_to is not None:
            names.append("WITH_REPLICATE")
        if self.bla_lines:
            names.append("WITH_BLA_LINES")
        if self._with_pua:
            names.append("WITH_PUA")
        if self.publish_to is not None:
            names.append("WITH_PUA_USRLOC")
        if self.reginfo:
            names.append("WITH_REGINFO")
        return names

    def _cfg_values(self) -> dict[str, str]:
        prefix = ("" if self.entity_prefix is None else
                  f'modparam("pua_usrloc", "entity_prefix", "{self.entity_prefix}")')
        return {
            **super()._cfg_values(),
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
            "BLA_LINE_MATCH": _bla_line_match(self.bla_lines),
            "BLA_HEADER": self.bla_header,
            # pua's outbound_proxy: pua_usrloc's PUBLISHes go there; with
            # reginfo only, pua_reginfo sets its own (this Kamailio).
            "PUBLISH_TO": self.publish_to or self.uri,
        }

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
        doc: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": self._next_id()}
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

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return f"<KamailioRegistrar {self.uri} {state} workdir={self.workdir}>"
