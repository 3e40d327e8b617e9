"""What the cluster tests run on: a PostgreSQL database of their own, a gate
in front of it that can cut it off, several `pua serve` nodes sharing it,
and the presence server's request log read back per record.

* :class:`PostgresDatabase` - a fresh database on the machine's PostgreSQL
  (admin URL ``PUA_TEST_POSTGRES_URL``), dropped afterwards.
* :class:`DatabaseGate` - a TCP forwarder in a thread of its own: nodes
  reach the database through it, and ``cut()`` / ``restore()`` make the
  database unreachable and reachable again.
* :class:`Nodes` - `pua serve` processes by name, with common and
  per-node flags; killed, restarted (same ports, same flags), stopped.
* :class:`RequestLog` - the requests Kamailio logged
  (tests/peers/kamailio.cfg's ``REQ`` line), each once (retransmissions
  left out), grouped by record and by sender, and the answer each got
  (the ``ANS`` line).

Everything here is synchronous: background work runs in threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from tests.peers.kamailio import KamailioPresence
from tests.service.running import RunningService
from tests.store.conftest import missing
from tests.store.tcpproxy import pipe

__all__ = ["DatabaseGate", "Nodes", "PostgresDatabase", "Request", "RequestLog"]

ADMIN_URL = os.environ.get("PUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


# -------------------------------------------------------------------- database
def _with_database(url: str, database: str, port: int | None = None) -> str:
    """``url`` naming ``database`` (and ``port``), in the plain
    ``postgresql://`` form pua's --db-url and asyncpg take."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if port is not None:
        netloc = f"{netloc.rpartition(':')[0] if parts.port else netloc}:{port}"
    return urlunsplit(("postgresql", netloc, "/" + database, parts.query, ""))


class PostgresDatabase:
    """A fresh database ``pua_cluster_<random>`` on the machine's PostgreSQL,
    dropped (``WITH (FORCE)``) when the ``with`` block ends.

    ``url`` is in the form pua's ``--db-url`` takes; :meth:`url_via` is the
    same database through another port (a :class:`DatabaseGate`).  A server
    that is not there fails the test in CI and skips it elsewhere.
    """

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = _with_database(admin_url, urlsplit(admin_url).path.lstrip("/"))
        self.name = f"pua_cluster_{secrets.token_hex(4)}"
        self.url = _with_database(self.admin_url, self.name)
        self.host = urlsplit(self.url).hostname or "127.0.0.1"
        self.port = urlsplit(self.url).port or 5432
        self._created = False

    def url_via(self, port: int) -> str:
        """This database's URL through ``port`` on the same host."""
        return _with_database(self.url, self.name, port)

    def __enter__(self) -> Self:
        try:
            self._admin(f"CREATE DATABASE {self.name}")
        except Exception as exc:  # whatever the driver raises: no usable server
            missing(f"PostgreSQL server at {self.admin_url}: {exc}")
        self._created = True
        return self

    def __exit__(self, *exc: object) -> None:
        if self._created:
            self._admin(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            self._created = False

    def _admin(self, sql: str) -> None:
        async def run() -> None:
            conn = await asyncpg.connect(self.admin_url, timeout=5)
            try:
                await conn.execute(sql)
            finally:
                await conn.close()

        asyncio.run(run())

    def query(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """The rows of one query (``$1``, ``$2``... take ``args``) as dicts."""

        async def run() -> list[dict[str, Any]]:
            conn = await asyncpg.connect(self.url, timeout=5)
            try:
                return [dict(row) for row in await conn.fetch(sql, *args)]
            finally:
                await conn.close()

        return asyncio.run(run())

    def tables(self) -> set[str]:
        """The names of the tables in the public schema."""
        rows = self.query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        return {row["tablename"] for row in rows}


class DatabaseGate:
    """A TCP forwarder from 127.0.0.1:``port`` to ``target_host:target_port``,
    run by an event loop in a thread of its own (a context manager).

    :meth:`cut` stops listening and cuts every forwarded connection (the
    database is unreachable: connections are refused); :meth:`restore`
    listens again on the same port.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepted = 0  # connections forwarded since the start

    @property
    def is_open(self) -> bool:
        """Whether the gate listens and forwards."""
        return self._server is not None

    @property
    def connections(self) -> int:
        """Connections forwarded now (each counts its two ends)."""
        return self._call(self._count())

    async def _count(self) -> int:
        return len(self._writers)

    def __enter__(self) -> Self:
        self._thread.start()
        self.restore()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def cut(self) -> None:
        """Stop listening and cut every forwarded connection at once."""
        self._call(self._cut())

    def restore(self) -> None:
        """Listen again (on the same port as before)."""
        self._call(self._listen())

    def close(self) -> None:
        """Cut, and end the gate's thread."""
        if not self._thread.is_alive():
            return
        self.cut()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
            self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await task
        self._writers.clear()
        self._tasks.clear()
        if server is not None:
            await server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._server is None:
            writer.transport.abort()
            return
        self._writers.add(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            self._writers.discard(writer)
            writer.transport.abort()
            return
        if self._server is None or writer not in self._writers:  # cut meanwhile
            up_writer.transport.abort()
            writer.transport.abort()
            return
        self.accepted += 1
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.ensure_future(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        await pipe(src, dst, self._writers)


# ----------------------------------------------------------------------- nodes
class Nodes:
    """`pua serve` processes ("nodes") by name, each with its own SIP and
    API port and data dir (``base_dir/NAME``), given ``common`` flags and
    its own; a context manager that stops them all at the end.

    ``nodes[name]`` is the node's :class:`RunningService` (``api_url``,
    ``sip_port``, ``rpc()``...); a restart makes a new one.
    """

    def __init__(self, base_dir: Path, *common: str, env: dict[str, str] | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.common = tuple(common)
        self.env = env
        self._services: dict[str, RunningService] = {}
        self._flags: dict[str, tuple[str, ...]] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(self, name: str, *flags: str) -> RunningService:
        """Start node ``name`` with the common flags and ``flags``; returns
        once its API answers (at most about 20 s, else AssertionError)."""
        assert name not in self._services, f"node {name} already started"
        self._flags[name] = tuple(flags)
        return self._spawn(name)

    def start_many(
        self, names: Iterable[str], per_node: Callable[[str], Sequence[str]] | None = None
    ) -> list[RunningService]:
        """Start each of ``names`` in turn, with the flags ``per_node(name)``
        gives (e.g. ``lambda n: ("--node-id", n)``)."""
        return [self.start(name, *(per_node(name) if per_node else ())) for name in names]

    def _spawn(self, name: str, old: RunningService | None = None) -> RunningService:
        svc = RunningService(
            *self.common,
            *self._flags[name],
            data_dir=self.base_dir / name,
            env=self.env,
            sip_port=old.sip_port if old else None,
            api_port=old.api_port if old else None,
        )
        self._services[name] = svc
        return svc

    def __getitem__(self, name: str) -> RunningService:
        return self._services[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._services)

    @property
    def names(self) -> list[str]:
        """The nodes' names, in the order they were first started."""
        return list(self._services)

    def name_of(self, sip_port: int) -> str | None:
        """The node whose SIP port is ``sip_port`` (what a request's source
        port says), or None."""
        return next((n for n, s in self._services.items() if s.sip_port == sip_port), None)

    def alive(self, name: str) -> bool:
        """Whether node ``name``'s process runs."""
        return self._services[name].process.poll() is None

    def kill(self, name: str, timeout: float = 10.0) -> int:
        """SIGKILL node ``name`` and wait for its exit; the exit status."""
        process = self._services[name].process
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        return process.wait(timeout=timeout)

    def stop(self, name: str) -> int:
        """SIGTERM node ``name`` and wait for its exit (SIGKILL after 20 s)."""
        return self._services[name].stop()

    def restart(self, name: str) -> RunningService:
        """Start node ``name`` again (stopped first if it runs) on the same
        ports, with the same flags and data dir."""
        old = self._services[name]
        if old.process.poll() is None:
            old.stop()
        return self._spawn(name, old)

    def stop_all(self, timeout: float = 20.0) -> None:
        """SIGTERM every running node, then wait for each (SIGKILL after
        ``timeout``)."""
        running = [s for s in self._services.values() if s.process.poll() is None]
        for svc in running:
            svc.process.send_signal(signal.SIGTERM)
        for svc in running:
            try:
                svc.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                svc.process.kill()
                svc.process.wait(timeout=5)


# ----------------------------------------------------------------- request log
# tests/peers/kamailio.cfg's first line of request_route; an absent header
# prints as <null>.
_REQ = re.compile(
    r"<script>: REQ (?P<method>\S+) (?P<uri>\S+) from (?P<host>\S+):(?P<port>\d+)/(?P<proto>\w+)"
    r" cid=(?P<call_id>\S*) cseq=(?P<cseq>\S*) fu=(?P<from_uri>\S*) ifm=(?P<if_match>.*?)"
    r" exp=(?P<expires>\S*) tu=(?P<to_uri>\S*) t=(?P<time>[0-9.]+)$"
)
_NULL = "<null>"
# The line after it: the answer Kamailio gave the request.
_ANS = re.compile(
    r"<script>: ANS (?P<method>\S+) from (?P<host>\S+):(?P<port>\d+)"
    r" cid=(?P<call_id>\S*) cseq=(?P<cseq>\S*) code=(?P<code>\S+)$"
)


@dataclass(frozen=True)
class Request:
    """One request as Kamailio logged it.

    ``port`` is the source port (which node sent it: a node sends from its
    SIP port); ``if_match`` and ``expires`` are None where the header is
    absent; ``time`` is Kamailio's wall clock (``time.time()``'s) when it
    logged the request; ``line`` is the line's index in the log.
    """

    method: str
    uri: str
    host: str
    port: int
    proto: str
    call_id: str
    cseq: int
    from_uri: str
    to_uri: str
    if_match: str | None
    expires: int | None
    time: float
    line: int

    @property
    def identity(self) -> str | tuple[str, str]:
        """The record it is about: a PUBLISH's Request-URI, a SUBSCRIBE's
        (To URI, From URI) - a refresh's Request-URI is the server's
        Contact, its To URI stays the presentity."""
        if self.method == "SUBSCRIBE":
            return (self.to_uri, self.from_uri)
        return self.uri


def _fields(
    lines: Iterable[str], first_line: int, tag: str, pattern: re.Pattern[str]
) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, fields) of each of the script's ``tag`` lines."""
    for n, line in enumerate(lines, first_line):
        if f"<script>: {tag} " not in line:
            continue
        found = pattern.search(line)
        if found is None:
            raise ValueError(f"kamailio.log line {n} is not a {tag} line as expected: {line!r}")
        yield n, found.groupdict()


def _answers(lines: Iterable[str]) -> Iterator[tuple[tuple[str, str, int, str, int], int]]:
    """The answers logged: ((method, Call-ID, CSeq, host, port), status)."""
    for _, v in _fields(lines, 0, "ANS", _ANS):
        code = int(v["code"]) if v["code"].isdigit() else 0
        yield (v["method"], v["call_id"], int(v["cseq"]), v["host"], int(v["port"])), code


def _parse(lines: Iterable[str], first_line: int = 0) -> Iterator[Request]:
    for n, v in _fields(lines, first_line, "REQ", _REQ):
        yield Request(
            method=v["method"],
            uri=v["uri"],
            host=v["host"],
            port=int(v["port"]),
            proto=v["proto"],
            call_id=v["call_id"],
            cseq=int(v["cseq"]),
            from_uri=v["from_uri"],
            to_uri=v["to_uri"],
            if_match=None if v["if_match"] == _NULL else v["if_match"],
            expires=None if v["expires"] == _NULL else int(v["expires"]),
            time=float(v["time"]),
            line=n,
        )


class RequestLog:
    """The requests a :class:`KamailioPresence` logged, read anew at each
    call.  A retransmission (the same method, Call-ID, CSeq and SIP-If-Match
    from the same source) counts once: its first line.  Requests from
    different sources are never merged, so two nodes sending the same
    request both show."""

    def __init__(self, kamailio: KamailioPresence) -> None:
        self.kamailio = kamailio
        self._offset = 0  # bytes of the log read
        self._lines = 0  # lines of the log read
        self._requests: list[Request] = []
        self._seen: set[tuple[Any, ...]] = set()
        self._answers: dict[tuple[str, str, int, str, int], int] = {}

    def _new_bytes(self) -> bytes:
        kam = self.kamailio
        if kam.workdir is not None and kam.log_path.exists():
            with open(kam.log_path, "rb") as log:
                log.seek(self._offset)
                return log.read()
        return kam.log_text().encode()[self._offset :]  # stopped: the log kept

    def _read(self) -> None:
        data = self._new_bytes()
        end = data.rfind(b"\n") + 1  # a line being written waits
        lines = data[:end].decode(errors="replace").split("\n")[:-1]
        for key, code in _answers(lines):
            self._answers.setdefault(key, code)
        for request in _parse(lines, self._lines):
            key = (
                request.method,
                request.call_id,
                request.cseq,
                request.host,
                request.port,
                request.if_match,
            )
            if key not in self._seen:
                self._seen.add(key)
                self._requests.append(request)
        self._offset += end
        self._lines += len(lines)

    def mark(self) -> int:
        """The number of log lines so far: :meth:`since` takes it."""
        self._read()
        return self._lines

    def requests(self, method: str | None = None, *, since: int = 0) -> list[Request]:
        """Every request (of ``method``) logged from line ``since`` on,
        retransmissions once, in the order logged."""
        self._read()
        return [
            r for r in self._requests if r.line >= since and (method is None or r.method == method)
        ]

    def since(self, mark: int, method: str | None = None) -> list[Request]:
        """The requests (of ``method``) logged after :meth:`mark` gave ``mark``."""
        return self.requests(method, since=mark)

    def by_record(
        self, method: str, requests: Iterable[Request] | None = None
    ) -> dict[str | tuple[str, str], list[Request]]:
        """The ``method`` requests (all logged, or ``requests``) by record
        (:attr:`Request.identity`), each list in the order logged."""
        chosen = self.requests(method) if requests is None else requests
        records: dict[str | tuple[str, str], list[Request]] = {}
        for r in chosen:
            if r.method == method:
                records.setdefault(r.identity, []).append(r)
        return records

    def answer(self, request: Request) -> int | None:
        """The status Kamailio answered ``request`` with (0 when it logged
        none it could read), or None while no answer is logged."""
        self._read()
        key = (request.method, request.call_id, request.cseq, request.host, request.port)
        return self._answers.get(key)

    def early(
        self, requests: Sequence[Request], within: float
    ) -> list[tuple[float, Request, int | None]]:
        """Where one of ``requests`` (one record's, in order) came less than
        ``within`` s after the one before: (gap, the one before, its
        answer); save where the one before was answered with a 5xx, the
        presence server's own failure (its SQLite database locked by its
        timer process, say), after which pua tries again in 1 to 2 s."""
        out = []
        for earlier, later in pairwise(requests):
            gap = later.time - earlier.time
            if gap < within:
                code = self.answer(earlier)
                if code is None or code < 500:
                    out.append((gap, earlier, code))
        return out

    @staticmethod
    def senders(requests: Iterable[Request]) -> set[int]:
        """The source ports ``requests`` came from."""
        return {r.port for r in requests}

    @staticmethod
    def refreshes(requests: Sequence[Request]) -> list[Request]:
        """The PUBLISH refreshes among ``requests`` (those with SIP-If-Match)."""
        return [r for r in requests if r.method == "PUBLISH" and r.if_match is not None]
