"""Overload: the API driven beyond what pua can serve, the SIP port flooded.

pua runs against a real Kamailio presence server whose ``max_expires`` is
short (20 s), holding a standing population of publications and
subscriptions that it must refresh every ten seconds or so throughout.
Then, phase by phase:

- idle: nothing but the standing population's refreshes (and the NOTIFYs
  Kamailio sends for the subscriptions' refreshes: the normal NOTIFY rate);
- capacity: 32 clients call ``pua.publish`` back to back: the rate pua
  completes is its capacity;
- overload at three and ten times that: calls start at a fixed rate on
  whichever of up to ``connections`` keep-alive connections is free,
  whatever pua answers (an open loop); each gives up after
  ``CLIENT_TIMEOUT`` seconds;
- idle again;
- flood: a separate process sends NOTIFYs for dialogs nobody has, and as
  many garbage datagrams, to pua's SIP port, each at ten times the normal
  NOTIFY rate, while ``pua.stats`` is called twice a second;
- bodies held: connections each announce a body of 1 MiB, send a quarter
  of it and hold on (``api_max_buffered`` must refuse those beyond it).

The load and the flood run in processes of their own, at a lower priority
than pua and Kamailio.

Measured per phase: calls answered and refused per second (by error, with
the retry hint each refusal carried), any other outcome (an HTTP error, a
connection refused or cut, a client timeout), the client-observed latency,
pua's resident memory (VmRSS), pua's and Kamailio's CPU time, pua's SIP
retransmissions, datagrams dropped at pua's SIP socket, and from two ``/metrics``
scrapes around the phase the standing population's refresh lateness and
the event loop's lag (bucket differences, so percentiles are upper bounds
of histogram buckets).  At the end every standing record must be live at
Kamailio.

    python -m reliability.overload [SECONDS_PER_PHASE] [OUTPUT.json] [--report FILE.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import selectors
import socket
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import pidf
from tests.service.running import RunningService

from pua.api.rpc import OVERLOADED

DOMAIN = "example.com"
MAX_EXPIRES = 20  # Kamailio's: every standing record is refreshed every ~10 s
# Seconds a load client waits for an answer: beyond the longest a call can
# wait in pua (a UDP transaction's 32 s, then the store's write), so that a
# client timeout is a call pua held beyond its own bound.
CLIENT_TIMEOUT = 40.0
# The memory pua may grow by above what it holds with the standing
# population: room for every API connection the load opens, the calls that
# may wait (api_max_waiting), and the server transactions of 481 answers to
# the flood (kept 32 s, RFC 3261 Timer J), each a few KiB.
RSS_ALLOWANCE_MIB = 128
LATENESS = "pua_timer_lateness_seconds"
LOOP_LAG = "pua_loop_lag_seconds"



def rpc(url: str, method: str, params: Any, timeout: float = 30.0) -> Any:
    """One JSON-RPC call (or a batch when ``method`` is a list of calls)."""
    if isinstance(method, list):
        data: Any = method
    else:
        data = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    request = urllib.request.Request(url + "/rpc", data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


# ---------------------------------------------------------------------------
# What pua shows of itself: /metrics histograms, /proc memory and CPU
# ---------------------------------------------------------------------------


def scrape(url: str) -> dict[str, dict[float, float]]:
    """The cumulative buckets of the lateness and loop-lag histograms."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as reply:
        text = reply.read().decode()
    found: dict[str, dict[float, float]] = {LATENESS: {}, LOOP_LAG: {}}
    for line in text.splitlines():
        for name, buckets in found.items():
            if line.startswith(name + "_bucket{"):
                le = line.split('le="', 1)[1].split('"', 1)[0]
                buckets[float(le)] = float(line.rsplit(" ", 1)[1])
    return found


def window(before: dict[float, float], after: dict[float, float]) -> dict[str, Any]:
    """Count and p50/p99/max (bucket upper bounds, seconds) of what a
    histogram saw between two scrapes."""
    diff = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    count = diff[-1][1] if diff else 0.0

    def quantile(q: float) -> float | None:
        for le, cumulative in diff:
            if cumulative >= q * count and count:
                return le
        return None

    top = next((le for le, c in diff if c >= count), None) if count else None
    return {"count": int(count), "p50": quantile(0.5), "p99": quantile(0.99), "max": top}


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the UDP socket bound to ``port`` on
    127.0.0.1 (its receive buffer was full)."""
    with open("/proc/net/udp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == f"0100007F:{port:04X}":
                return int(fields[-1])
    return 0


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children (Kamailio's workers)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            if int(entry) == pid or ppid == pid:
                total += cpu_seconds(int(entry))
        except (OSError, ValueError):
            continue
    return total


class Drain:
    """Reads pua's stdout and stderr as they come (a pipe nobody reads
    fills, and a process writing to it stops), counting the log lines and
    tracebacks and keeping the first few of each kind of line."""

    def __init__(self, svc: RunningService) -> None:
        self.lines = 0
        self.tracebacks = 0
        self.kinds: dict[str, int] = {}
        self.samples: list[str] = []
        self.threads = [threading.Thread(target=self._read, args=(stream,), daemon=True)
                        for stream in (svc.process.stdout, svc.process.stderr) if stream]
        for thread in self.threads:
            thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self.lines += 1
            if line.startswith("Traceback"):
                self.tracebacks += 1
            kind = " ".join(line.split()[:4])[:80]
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            if self.kinds[kind] <= 2 and len(self.samples) < 40:
                self.samples.append(line.rstrip()[:300])

    def join(self) -> None:
        for thread in self.threads:
            thread.join(timeout=30)


class Sampler:
    """pua's VmRSS every 0.2 s, and, when ``probe`` is set, the latency of
    ``pua.stats`` every 0.5 s, from a thread of the campaign's process."""

    def __init__(self, pid: int, url: str, probe: bool) -> None:
        self.pid, self.url, self.probe = pid, url, probe
        self.rss: list[int] = []
        self.stats_latency: list[float] = []
        self.stats_failures = 0
        self.stats_refused = 0  # 503 with Retry-After: the API's limits
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._memory, daemon=True)]
        if probe:
            self.threads.append(threading.Thread(target=self._stats, daemon=True))

    def __enter__(self) -> Sampler:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _memory(self) -> None:
        while not self.stop.is_set():
            self.rss.append(rss_kib(self.pid))
            self.stop.wait(0.2)

    def _stats(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                rpc(self.url, "pua.stats", [], timeout=CLIENT_TIMEOUT)
                self.stats_latency.append(time.monotonic() - started)
            except urllib.error.HTTPError as exc:
                if exc.code == 503 and exc.headers.get("Retry-After"):
                    self.stats_refused += 1
                else:
                    self.stats_failures += 1
            except OSError:
                self.stats_failures += 1
            self.stop.wait(0.5)


# ---------------------------------------------------------------------------
# The API load: closed loop (capacity) and open loop (overload)
# ---------------------------------------------------------------------------


class Connection:
    """One keep-alive HTTP/1.1 connection to the API, spoken by hand (the
    cheapest client there is, so that the load is pua's work, not ours)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """The status and body of one POST; raises OSError or
        asyncio.IncompleteReadError when the connection fails."""
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _load(url: str, rate: float | None, connections: int, seconds: float, pool: int,
          seed: int, out: Any) -> None:
    """In a process of its own, at a lower priority than pua and Kamailio
    (as a client on another machine would be): ``pua.publish`` calls over
    ``pool`` load presentities for ``seconds``.  ``rate`` None: each of
    ``connections`` calls back to back; else calls start at ``rate`` a
    second on whichever of ``connections`` keep-alive connections is free
    (an arrival that finds none free is counted, not sent).  Sends its
    tally to ``out``."""
    os.nice(10)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    tally: dict[str, Any] = {"sent": 0, "answered": 0, "refused": {}, "retry_hints": {},
                             "other": {}, "latencies_ok": [], "latencies_refused": [],
                             "max_latency": 0.0, "not_sent_all_busy": 0}
    rng = random.Random(seed)

    async def one(conn: Connection) -> None:
        uri = f"sip:load{rng.randrange(pool)}@{DOMAIN}"
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "pua.publish",
                           "params": [uri, 600, "presence", ".", ".", ".", ".", ".",
                                      pidf(uri, note=uuid.uuid4().hex[:8])]}).encode()
        tally["sent"] += 1
        started = time.monotonic()
        what = ""
        try:
            async with asyncio.timeout(CLIENT_TIMEOUT):
                status, text = await conn.post("/rpc", body)
            elapsed = time.monotonic() - started
            if status != 200:
                what = f"HTTP {status}"
            else:
                answer = json.loads(text)
                if "result" in answer:
                    tally["answered"] += 1
                    tally["latencies_ok"].append(elapsed)
                else:
                    error = answer["error"]
                    code = str(error.get("code"))
                    tally["refused"][code] = tally["refused"].get(code, 0) + 1
                    hint = str((error.get("data") or {}).get("retry_after"))
                    tally["retry_hints"][hint] = tally["retry_hints"].get(hint, 0) + 1
                    tally["latencies_refused"].append(elapsed)
        except TimeoutError:
            what = "client timeout"
            conn.close()
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            what = type(exc).__name__
            conn.close()
        tally["max_latency"] = max(tally["max_latency"], time.monotonic() - started)
        if what:
            tally["other"][what] = tally["other"].get(what, 0) + 1

    async def main() -> None:
        free = [Connection(host, int(port)) for _ in range(connections)]
        end = time.monotonic() + seconds
        if rate is None:
            async def worker(conn: Connection) -> None:
                while time.monotonic() < end:
                    await one(conn)
            await asyncio.gather(*(worker(c) for c in free))
            for conn in free:
                conn.close()
            return
        busy: set[asyncio.Task[None]] = set()

        async def call(conn: Connection) -> None:
            try:
                await one(conn)
            finally:
                free.append(conn)

        start = time.monotonic()
        n = 0
        while (now := time.monotonic()) < end:
            for _ in range(int((now - start) * rate) - n):
                n += 1
                if not free:
                    tally["not_sent_all_busy"] += 1
                    continue
                task = asyncio.create_task(call(free.pop()))
                busy.add(task)
                task.add_done_callback(busy.discard)
            await asyncio.sleep(0.002)
        tally["offered"] = n
        if busy:
            await asyncio.wait(busy)
        for conn in free:
            conn.close()

    started = time.monotonic()
    cpu = time.process_time()
    import uvloop  # noqa: PLC0415 (the load process's own loop)

    uvloop.run(main())
    tally["seconds"] = time.monotonic() - started
    tally["client_cpu"] = round((time.process_time() - cpu) / tally["seconds"], 2)
    out.put(tally)


def drive(url: str, *, rate: float | None, connections: int, seconds: float, pool: int,
          seed: int) -> dict[str, Any]:
    """Run :func:`_load` in a process of its own; its tally, summarized."""
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    process = context.Process(target=_load, args=(url, rate, connections, seconds, pool, seed, out))
    process.start()
    tally = out.get(timeout=seconds + CLIENT_TIMEOUT + 120)
    process.join(timeout=30)
    ok = sorted(tally.pop("latencies_ok"))
    refused = sorted(tally.pop("latencies_refused"))
    span = tally["seconds"]
    tally.update(
        answered_per_s=round(tally["answered"] / span, 1),
        refused_per_s=round(sum(tally["refused"].values()) / span, 1),
        offered_per_s=round(tally.get("offered", tally["sent"]) / span, 1),
        sent_per_s=round(tally["sent"] / span, 1),
        latency_ok=_percentiles(ok),
        latency_refused=_percentiles(refused),
        max_latency=round(tally["max_latency"], 3),
        seconds=round(span, 1),
    )
    return tally


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    return {
        "p50": round(values[len(values) // 2], 4),
        "p99": round(values[min(len(values) - 1, int(len(values) * 0.99))], 4),
        "max": round(values[-1], 4),
    }


# ---------------------------------------------------------------------------
# The SIP flood
# ---------------------------------------------------------------------------


def _stray_notify(port: int, own: int) -> bytes:
    token = uuid.uuid4().hex
    lines = [
        "NOTIFY sip:pua@127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{own};branch=z9hG4bK{token};rport",
        "Max-Forwards: 70",
        f"From: <sip:nobody@{DOMAIN}>;tag={token[:10]}",
        f"To: <sip:w0@{DOMAIN}>;tag={token[10:20]}",
        f"Call-ID: {token}@flood.test",
        "CSeq: 1 NOTIFY",
        "Event: presence",
        "Subscription-State: active;expires=600",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _garbage(rng: random.Random) -> bytes:
    kinds: list[Callable[[], bytes]] = [
        lambda: rng.randbytes(rng.randrange(1, 1400)),
        lambda: b"NOTIFY sip:x SIP/2.0\r\nVia: broken\r\n\r\n",
        lambda: b"SIP/2.0 200 OK\r\nCSeq: 1 PUBLISH\r\n\r\n",
        lambda: b"\r\n\r\n",
        lambda: b"INVITE " + b"a" * 1200 + b" SIP/2.0\r\n\r\n",
    ]
    return rng.choice(kinds)()


def _flood(port: int, rate: float, seconds: float, seed: int, out: Any) -> None:
    """In a process of its own: stray NOTIFYs and garbage, ``rate`` a second
    each, to pua's SIP port for ``seconds``; counts the answers."""
    os.nice(10)
    rng = random.Random(seed)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # none of pua's answers lost
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    own = sock.getsockname()[1]
    tally: dict[str, Any] = {"notifies": 0, "garbage": 0, "answers": {}, "send_errors": 0}
    drops = udp_drops(own)

    def drain() -> None:
        while True:
            try:
                data = sock.recv(70_000)
            except BlockingIOError:
                return
            status = data.split(b" ", 2)[1].decode(errors="replace") if data.startswith(
                b"SIP/2.0 ") else "other"
            tally["answers"][status] = tally["answers"].get(status, 0) + 1

    start = time.monotonic()
    sent = 0
    while (now := time.monotonic()) < start + seconds:
        for _ in range(int((now - start) * rate) - sent):
            sent += 1
            for data, kind in ((_stray_notify(port, own), "notifies"), (_garbage(rng), "garbage")):
                try:
                    sock.sendto(data, ("127.0.0.1", port))
                    tally[kind] += 1
                except OSError:
                    tally["send_errors"] += 1
        drain()
        time.sleep(0.002)
    deadline = time.monotonic() + 2.0  # answers still on their way
    while time.monotonic() < deadline:
        drain()
        time.sleep(0.01)
    tally["seconds"] = round(time.monotonic() - start, 1)
    tally["flood_socket_drops"] = udp_drops(own) - drops
    out.put(tally)


def flood(port: int, rate: float, seconds: float, seed: int) -> dict[str, Any]:
    context = multiprocessing.get_context("fork")
    out = context.Queue()
    process = context.Process(target=_flood, args=(port, rate, seconds, seed, out))
    process.start()
    tally = out.get(timeout=seconds + 120)
    process.join(timeout=30)
    return tally  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------
# Bodies announced large and held half sent
# ---------------------------------------------------------------------------


def hold_bodies(port: int, count: int, announced: int, sent: int,
                seconds: float) -> dict[str, Any]:
    """``count`` connections each announce a JSON-RPC body of ``announced``
    bytes, send ``sent`` of them and hold on for ``seconds``; how many pua
    refused (503) at once and how many it kept reading."""
    head = (b"POST /rpc HTTP/1.1\r\nHost: pua\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % announced)
    socks: list[socket.socket] = []
    tally: dict[str, Any] = {"connections": count, "announced": announced, "sent": sent,
                             "refused_503": 0, "retry_after": 0, "other_answers": 0,
                             "send_errors": 0}
    started = time.monotonic()
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        try:
            sock.sendall(head + b"[" + b" " * (sent - 1))
        except OSError:
            tally["send_errors"] += 1
        socks.append(sock)
    deadline = started + seconds
    answered: set[socket.socket] = set()
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(timeout=left):
                sock = key.fileobj  # type: ignore[assignment]
                selector.unregister(sock)
                answered.add(sock)
                try:
                    data = sock.recv(65_536)
                except OSError:
                    data = b""
                if data.startswith(b"HTTP/1.1 503"):
                    tally["refused_503"] += 1
                    tally["retry_after"] += b"\r\nRetry-After: " in data
                else:
                    tally["other_answers"] += 1
    tally["held"] = count - len(answered)
    for sock in socks:
        sock.close()
    tally["seconds"] = round(time.monotonic() - started, 1)
    return tally


# ---------------------------------------------------------------------------
# The campaign
# ---------------------------------------------------------------------------


def standing_uris(publications: int, subscriptions: int) -> tuple[list[str], list[tuple[str, str]]]:
    pubs = [f"sip:s{n}@{DOMAIN}" for n in range(publications)]
    subs = [(pubs[n % len(pubs)], f"sip:w{n}@{DOMAIN}") for n in range(subscriptions)]
    return pubs, subs


def make_standing(url: str, pubs: list[str], subs: list[tuple[str, str]]) -> int:
    """Publish and subscribe the standing population in batches; how many
    calls failed."""
    calls: list[dict[str, Any]] = []
    for n, uri in enumerate(pubs):
        calls.append({"jsonrpc": "2.0", "id": n, "method": "pua.publish",
                      "params": [uri, 600, "presence", ".", ".", ".", ".", ".",
                                 pidf(uri, note="standing")]})
    for n, (uri, watcher) in enumerate(subs):
        calls.append({"jsonrpc": "2.0", "id": len(pubs) + n, "method": "pua.subscribe",
                      "params": [uri, watcher, "presence", 600]})
    failed = 0
    for at in range(0, len(calls), 50):
        answers = rpc(url, calls[at:at + 50], None, timeout=120)
        failed += sum(1 for a in answers if "error" in a)
    return failed


def missing_at_server(kam: KamailioPresence, pubs: list[str],
                      subs: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Standing records that are not live at Kamailio."""
    now = time.time()
    live = {f"sip:{r['username']}@{r['domain']}"
            for r in kam.presentity_rows(event="presence") if r["expires"] > now}
    active = {(r["presentity_uri"], f"sip:{r['watcher_username']}@{r['watcher_domain']}")
              for r in kam.active_watchers_rows(event="presence") if r["expires"] > now}
    return {
        "publications": [u for u in pubs if u not in live],
        "subscriptions": [f"{u} <- {w}" for u, w in subs if (u, w) not in active],
    }


def phase(svc: RunningService, kam: KamailioPresence, name: str,
          action: Callable[[], dict[str, Any]], probe: bool = False) -> dict[str, Any]:
    """Run ``action`` while sampling; the phase's figures."""
    assert kam.pid is not None
    before = scrape(svc.api_url)
    cpu_before = cpu_seconds(svc.process.pid)
    kam_before = tree_cpu_seconds(kam.pid)
    drops_before = udp_drops(svc.sip_port)
    stats_before = rpc(svc.api_url, "pua.stats", [])["result"]
    started = time.monotonic()
    with Sampler(svc.process.pid, svc.api_url, probe) as sampler:
        figures = action()
    span = time.monotonic() - started
    after = scrape(svc.api_url)
    stats_after = rpc(svc.api_url, "pua.stats", [])["result"]
    figures.update(
        phase=name,
        lateness=window(before[LATENESS], after[LATENESS]),
        loop_lag=window(before[LOOP_LAG], after[LOOP_LAG]),
        rss_peak_kib=max(sampler.rss) if sampler.rss else None,
        rss_end_kib=sampler.rss[-1] if sampler.rss else None,
        pua_cpu=round((cpu_seconds(svc.process.pid) - cpu_before) / span, 2),
        kamailio_cpu=round((tree_cpu_seconds(kam.pid) - kam_before) / span, 2),
        sip_socket_drops=udp_drops(svc.sip_port) - drops_before,
        refreshes=stats_after["engine"]["refreshes"] - stats_before["engine"]["refreshes"],
        notifies_per_s=round((stats_after["engine"]["notify_received"]
                              - stats_before["engine"]["notify_received"]) / span, 1),
        records=stats_after["records"],
        retransmissions=stats_after["sip"]["retransmissions"]
        - stats_before["sip"]["retransmissions"],
        sip_timeouts=stats_after["sip"]["timeouts"] - stats_before["sip"]["timeouts"],
        sip_answers={code: n - stats_before["responses"].get(code, 0)
                     for code, n in stats_after["responses"].items()
                     if n - stats_before["responses"].get(code, 0)},
    )
    if probe:
        figures["stats_latency"] = _percentiles(sorted(sampler.stats_latency))
        figures["stats_failures"] = sampler.stats_failures
        figures["stats_refused"] = sampler.stats_refused
    return figures


def idle(seconds: float) -> Callable[[], dict[str, Any]]:
    def action() -> dict[str, Any]:
        time.sleep(seconds)
        return {}
    return action


def run(seconds: float = 60.0, *, publications: int = 1000, subscriptions: int = 500,
        load_pool: int = 500, max_waiting: int = 200, connections: int = 1000,
        multiples: tuple[float, ...] = (3, 10), held: int = 1000,
        max_buffered: int = 64 << 20,
        flood_multiple: float = 10.0, seed: int = 1,
        workdir: Path | None = None) -> dict[str, Any]:
    """The campaign; returns its figures."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="pua-overload-"))
    pubs, subs = standing_uris(publications, subscriptions)
    max_records = publications + subscriptions + load_pool
    figures: dict[str, Any] = {
        "settings": {"seconds_per_phase": seconds, "publications": publications,
                     "subscriptions": subscriptions, "load_pool": load_pool,
                     "api_max_waiting": max_waiting, "max_records": max_records,
                     "max_expires": MAX_EXPIRES, "client_timeout": CLIENT_TIMEOUT,
                     "connections": connections, "held": held,
                     "api_max_buffered": max_buffered,
                     "cpus": os.cpu_count()},
        "phases": [],
        "overloaded_code": OVERLOADED,
    }
    started = time.monotonic()
    with KamailioPresence(max_expires=MAX_EXPIRES) as kam:
        svc = RunningService(
            "--outbound-proxy", kam.uri, "--api-max-waiting", str(max_waiting),
            "--max-records", str(max_records), "--api-max-buffered", str(max_buffered),
            data_dir=workdir / "var",
        )
        drain = Drain(svc)
        try:
            figures["rss_start_kib"] = rss_kib(svc.process.pid)
            figures["standing_failed"] = make_standing(svc.api_url, pubs, subs)
            # Let the first refreshes come round, so that every phase sees
            # the standing population's steady state.
            time.sleep(MAX_EXPIRES / 2 + 2)
            figures["rss_standing_kib"] = rss_kib(svc.process.pid)
            figures["rss_limit_kib"] = figures["rss_standing_kib"] + RSS_ALLOWANCE_MIB * 1024
            phases: list[dict[str, Any]] = figures["phases"]
            phases.append(phase(svc, kam, "idle", idle(seconds), probe=True))
            capacity = phase(svc, kam, "capacity", lambda: drive(
                svc.api_url, rate=None, connections=32, seconds=seconds, pool=load_pool, seed=seed))
            phases.append(capacity)
            figures["capacity_per_s"] = capacity["answered_per_s"]
            for multiple in multiples:
                rate = multiple * capacity["answered_per_s"]
                phases.append(phase(svc, kam, f"overload x{multiple:g}", lambda r=rate: drive(
                    svc.api_url, rate=r, connections=connections, seconds=seconds, pool=load_pool,
                    seed=seed)))
            phases.append(phase(svc, kam, "idle again", idle(seconds), probe=True))
            normal = max(phases[0]["notifies_per_s"], 1.0)
            figures["normal_notify_per_s"] = normal
            phases.append(phase(svc, kam, f"SIP flood x{flood_multiple:g}", lambda: flood(
                svc.sip_port, flood_multiple * normal, seconds, seed), probe=True))
            api_port = int(svc.api_url.rsplit(":", 1)[1])
            phases.append(phase(svc, kam, "bodies held", lambda: hold_bodies(
                api_port, held, 1 << 20, 256 << 10, min(seconds, 10.0)), probe=True))
            # Let what the load and the flood left in flight settle, then
            # compare the standing population with the server.
            time.sleep(3)
            figures["missing_at_server"] = missing_at_server(kam, pubs, subs)
            figures["rss_end_kib"] = rss_kib(svc.process.pid)
            figures["rss_peak_kib"] = max(p["rss_peak_kib"] for p in phases)
            figures["alive"] = svc.process.poll() is None
        finally:
            stop_started = time.monotonic()
            figures["exit_status"] = svc.stop()
            figures["stop_seconds"] = round(time.monotonic() - stop_started, 1)
            drain.join()
        figures["tracebacks"] = drain.tracebacks
        figures["log_lines"] = drain.lines
        figures["log_kinds"] = dict(sorted(drain.kinds.items(), key=lambda kv: -kv[1])[:15])
        figures["log_samples"] = drain.samples
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


# ---------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------

BEGIN = "<!-- overload figures: begin -->"
END = "<!-- overload figures: end -->"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:g}"


def report(figures: dict[str, Any], command: str) -> str:
    """The figures as the Markdown that goes between the markers."""
    s = figures["settings"]
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        BEGIN, "",
        f"Produced by `{command}` on {when}, in {figures['seconds']:g} s "
        f"({s['cpus']} cores, shared with other work: the load clients, Kamailio and pua "
        "all run on them).",
        "",
        f"Standing population: {s['publications']} publications and {s['subscriptions']}"
        f" subscriptions, Kamailio `max_expires` {s['max_expires']} s; pua started with "
        f"`--api-max-waiting {s['api_max_waiting']} --max-records {s['max_records']} "
        f"--api-max-buffered {s['api_max_buffered']}`; load "
        f"calls publish over {s['load_pool']} other presentities; clients give up after "
        f"{s['client_timeout']:g} s, and open at most {s['connections']} keep-alive "
        "connections (an arrival that finds them all busy is counted in \"offered\", not "
        "sent). Capacity (32 clients back to back): "
        f"**{figures['capacity_per_s']:g} publish/s**.",
        "",
        "| phase | offered /s (sent) | answered /s | refused /s (code: count) | retry hint |"
        " other outcomes | answer p50 / p99 / max ms | refusal p50 / p99 / max ms |"
        " pua CPU | Kamailio CPU | SIP retransmissions | dropped at pua's SIP socket |"
        " peak RSS MiB |"
        " refresh lateness p50 / p99 ms (count) | loop lag p50 / p99 ms |",
        "|---|---:|---:|---|---|---|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for p in figures["phases"]:
        lat, lag = p["lateness"], p["loop_lag"]
        if "answered_per_s" in p:
            ok, ref = p["latency_ok"], p["latency_refused"]
            refused = ", ".join(f"{c}: {n:,}" for c, n in p["refused"].items()) or "none"
            hints = ", ".join(f"{h} s: {n:,}" for h, n in p["retry_hints"].items()) or "-"
            other = ", ".join(f"{k}: {n}" for k, n in p["other"].items()) or "none"
            cells = [f"{p['offered_per_s']:g} ({p['sent_per_s']:g})", f"{p['answered_per_s']:g}",
                     f"{p['refused_per_s']:g} ({refused})", hints, other,
                     f"{_ms(ok['p50'])} / {_ms(ok['p99'])} / {_ms(ok['max'])}",
                     f"{_ms(ref['p50'])} / {_ms(ref['p99'])} / {_ms(ref['max'])}"]
        else:
            st = p["stats_latency"]
            stats = f"pua.stats {_ms(st['p50'])} / {_ms(st['p99'])} / {_ms(st['max'])}"
            if p["stats_refused"]:
                stats += f" ({p['stats_refused']} refused: 503)"
            if "notifies" in p:
                answers = ", ".join(f"{k}: {n:,}" for k, n in sorted(p["answers"].items()))
                cells = [f"{p['notifies'] / p['seconds']:.0f} NOTIFYs + "
                         f"{p['garbage'] / p['seconds']:.0f} garbage", "-", "-", "-",
                         f"answers to the flood: {answers}", stats, "-"]
            elif "held" in p:
                cells = [f"{p['connections']:,} connections, each 1 MiB announced, "
                         f"{p['sent'] >> 10} KiB sent", "-",
                         f"{p['refused_503']:,} refused at once (503)",
                         f"Retry-After: {p['retry_after']:,}",
                         f"read and held: {p['held']:,}, other answers: {p['other_answers']}",
                         stats, "-"]
            else:
                cells = ["-", "-", "-", "-", "-", stats, "-"]
        lines.append(
            f"| {p['phase']} | " + " | ".join(cells)
            + f" | {p['pua_cpu']:g} | {p['kamailio_cpu']:g} | {p['retransmissions']:,} |"
            f" {p['sip_socket_drops']:,} |"
            f" {p['rss_peak_kib'] / 1024:.1f} |"
            f" {_ms(lat['p50'])} / {_ms(lat['p99'])} ({lat['count']:,}) |"
            f" {_ms(lag['p50'])} / {_ms(lag['p99'])} |"
        )
    missing = figures["missing_at_server"]
    lines += [
        "",
        f"RSS: {figures['rss_start_kib'] / 1024:.1f} MiB at start, "
        f"{figures['rss_standing_kib'] / 1024:.1f} MiB with the standing population, "
        f"{figures['rss_peak_kib'] / 1024:.1f} MiB at the peak (limit "
        f"{figures['rss_limit_kib'] / 1024:.1f} MiB), "
        f"{figures['rss_end_kib'] / 1024:.1f} MiB at the end. Normal NOTIFY rate (idle): "
        f"{figures['normal_notify_per_s']:g}/s. At the end, standing records missing at "
        f"Kamailio: {len(missing['publications'])} publications, "
        f"{len(missing['subscriptions'])} subscriptions; tracebacks in pua's log: "
        f"{figures['tracebacks']}.",
        "", END,
    ]
    return "\n".join(lines)


def write_report(path: Path, text: str) -> None:
    """Put ``text`` between the markers in ``path``."""
    doc = path.read_text()
    head, rest = doc.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    path.write_text(head + text + tail)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m reliability.overload")
    parser.add_argument("seconds", nargs="?", type=float, default=60.0,
                        help="seconds per phase (60)")
    parser.add_argument("output", nargs="?", type=Path, help="write the figures here (JSON)")
    parser.add_argument("--report", type=Path, help="put the figures in this Markdown file")
    args = parser.parse_args(argv)
    result = run(args.seconds)
    text = json.dumps(result, indent=2, default=str)
    if args.output is not None:
        args.output.write_text(text)
    print(text)
    if args.report is not None:
        command = " ".join(["python -m reliability.overload", *argv])
        write_report(args.report, report(result, command))


if __name__ == "__main__":
    main(sys.argv[1:])
