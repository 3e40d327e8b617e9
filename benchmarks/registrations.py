"""REGISTERs turned into presence PUBLISHes: pua's registrations adapter
behind a Kamailio registrar, against Kamailio's own pua_usrloc.

The same SIPp phones (``register_many.xml``: one REGISTER per distinct
address of record, at a fixed rate) register with

* the reference: Kamailio registrar + ``pua`` + ``pua_usrloc``, which
  PUBLISHes from inside ``save()``;
* pua: a Kamailio registrar that copies every accepted REGISTER to
  ``pua serve --usrloc`` (``t_replicate``), which PUBLISHes per binding.

Both publish to a SIPp UAS answering 200 (``publish_200.xml``) that traces
every message with its time.  The phones trace theirs too, so each PUBLISH
is matched by address of record (the user part of To) to the REGISTER that
caused it: the lag is the PUBLISH's arrival at the UAS minus the REGISTER's
departure from the phone, both read from SIPp clocks on this machine.

Before the steps, the measuring UAS is checked on its own: SIPp's PUBLISH
UAC sends at the highest step's rate straight to it, traced the same way,
so its own lag and losses bound what the steps can show.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.peers import find_free_port
from tests.peers.kamailio_pua_usrloc import KamailioPuaUsrloc
from tests.peers.kamailio_registrar import KamailioRegistrar
from tests.peers.sipp import SippUAC, SippUAS, register_phones

from .sipp.run_sipp_reference import UAC_SCENARIO

RATES = (200, 300, 500, 1000, 2000)
SECONDS = 10.0          # of REGISTERs at each rate
# The wait for the last PUBLISHes ends after QUIET seconds with no PUBLISH
# and the chain idle (under IDLE_CPU of CPU a second): longer than tm's
# fr_timer (5 s), so a copy the registrar retransmits late still counts.
QUIET = 6.0
IDLE_CPU = 0.05
LONGEST_WAIT = 60.0     # after the phones stop, whatever still arrives
WORKERS = 2             # Kamailio SIP workers, on both sides (one per core here)
PHONES_IN_FLIGHT = 2000  # SIPp -l: REGISTERs waiting for their 200 at once

# One SIPp -trace_msg entry: a dashed line ending in the local time, then
# "UDP message sent (N bytes):" or "UDP message received [N] bytes :", a
# blank line and the message.
_ENTRY = re.compile(
    r"^-{10,} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\n[A-Z]+ message (sent|received)[^\n]*\n\n",
    re.MULTILINE,
)
# RFC 3261 §20.39 To (compact form t), a SIP URI in angle brackets or bare:
# the user part names the phone, whichever side built the request.
_TO_USER = re.compile(r"^(?:To|t)[ \t]*:[^\n<]*<?sips?:([^@;>\s]+)@", re.MULTILINE | re.IGNORECASE)


@dataclass(frozen=True, slots=True, kw_only=True)
class Traced:
    """The first time each address of record's request of one method was
    seen in a trace, and how many more of them came (retransmissions)."""

    first: dict[str, float]
    repeats: int


def traced_requests(text: str, method: str, *, received: bool) -> Traced:
    """The ``method`` requests SIPp sent (or received) in a ``-trace_msg``
    log, by the user part of their To; ``method`` "SIP/2.0 200" takes the
    200 responses instead."""
    first: dict[str, float] = {}
    repeats = 0
    entries = list(_ENTRY.finditer(text))
    for n, entry in enumerate(entries):
        if (entry.group(2) == "received") != received:
            continue
        start = entry.end()
        if not text.startswith(method + " ", start):
            continue
        end = entries[n + 1].start() if n + 1 < len(entries) else len(text)
        to = _TO_USER.search(text, start, end)
        if to is None:
            continue
        user = to.group(1)
        if user in first:
            repeats += 1
            continue
        first[user] = datetime.fromisoformat(entry.group(1)).timestamp()
    return Traced(first=first, repeats=repeats)


def _percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of values already sorted."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def compare(sent: Traced, published: Traced, answered: Traced | None = None) -> dict[str, Any]:
    """Offered and processed rates, lag and backlog of one step; with
    ``answered`` (the 200s the phones got), how many REGISTERs the
    registrar answered but that were never published."""
    starts = sorted(sent.first.values())
    first_register, last_register = starts[0], starts[-1]
    window = max(last_register - first_register, 1e-9)
    matched = [(sent.first[user], at) for user, at in published.first.items()
               if user in sent.first]
    matched.sort()
    lags = sorted(at - departed for departed, at in matched)
    arrivals = [at for _, at in matched]
    last_publish = max(arrivals) if arrivals else first_register
    tenth = max(1, len(matched) // 10)
    early = sorted(at - departed for departed, at in matched[:tenth])
    late = sorted(at - departed for departed, at in matched[-tenth:])
    return {
        "registers": len(sent.first),
        "register_retransmissions": sent.repeats,
        "publishes": len(matched),
        "publish_repeats": published.repeats,
        "unmatched_publishes": len(published.first) - len(matched),
        "missing": len(sent.first) - len(matched),
        "answered": len(answered.first) if answered is not None else len(sent.first),
        "answered_not_published": (
            sum(1 for user in answered.first if user not in published.first)
            if answered is not None else len(sent.first) - len(matched)),
        "offered_per_s": len(starts) / window,
        # PUBLISHes from the first REGISTER to the last PUBLISH: the rate
        # the whole chain sustained, tail included.
        "processed_per_s": len(matched) / max(last_publish - first_register, 1e-9),
        "published_in_window": sum(1 for at in arrivals if at <= last_register),
        "lag_p50_ms": _percentile(lags, 0.50) * 1000,
        "lag_p99_ms": _percentile(lags, 0.99) * 1000,
        "lag_max_ms": (lags[-1] if lags else float("nan")) * 1000,
        "lag_first_tenth_p50_ms": _percentile(early, 0.50) * 1000,
        "lag_last_tenth_p50_ms": _percentile(late, 0.50) * 1000,
        "after_last_register": sum(1 for at in arrivals if at > last_register),
        "tail_s": max(0.0, last_publish - last_register),
    }


def keeps_up(row: dict[str, Any]) -> bool:
    """Every REGISTER published, no queue building up over the step (the
    last tenth's median lag within 100 ms of the first tenth's), and
    nothing left over once the phones stop (last PUBLISH within 0.5 s)."""
    return (row["missing"] == 0
            and row["lag_last_tenth_p50_ms"] < row["lag_first_tenth_p50_ms"] + 100
            and row["tail_s"] < 0.5)


def _cpu_seconds(pids: Sequence[int]) -> float:
    """Time these processes (all their threads) have spent on a CPU."""
    return _sched(pids)[0]


def _sched(pids: Sequence[int]) -> tuple[float, float]:
    """Seconds these processes (all their threads) have spent on a CPU, and
    runnable but waiting for one (``/proc/PID/task/TID/schedstat``): the
    second says how much the machine's other work held them back."""
    running = waiting = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    on_cpu, queued, _ = Path(task.path, "schedstat").read_text().split()
                    running += int(on_cpu)
                    waiting += int(queued)
    return running / 1e9, waiting / 1e9


def udp_drops(port: int) -> int:
    """Datagrams the kernel dropped at the loopback UDP socket bound to
    ``port`` (its receive buffer was full): the ``drops`` column of
    /proc/net/udp."""
    total = 0
    with contextlib.suppress(OSError), open("/proc/net/udp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].rpartition(":")[2], 16) == port:
                total += int(fields[-1])
    return total


def _group(leader: int) -> list[int]:
    """The processes of a process group (Kamailio and its workers)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(entry.path, "stat").read_text().rpartition(")")[2].split()
            if int(fields[2]) == leader:
                found.append(int(entry.name))
    return found


def _wait_for_publishes(uas: SippUAS, expected: int, pids: Sequence[int]) -> None:
    """Until ``expected`` PUBLISHes reached the UAS, or none came for
    QUIET seconds and ``pids`` used less than IDLE_CPU in the last second,
    or LONGEST_WAIT passed."""
    assert uas.workdir is not None
    path = uas.workdir / "messages.log"
    marker = b"bytes :\n\nPUBLISH "
    seen = offset = 0
    carry = b""
    last_publish = last_busy = checked = time.monotonic()
    deadline = last_publish + LONGEST_WAIT
    cpu = _cpu_seconds(pids)
    while (now := time.monotonic()) < deadline:
        with open(path, "rb") as trace:
            trace.seek(offset)
            chunk = trace.read()
        offset += len(chunk)
        if chunk:
            data = carry + chunk
            seen += data.count(marker)
            carry = data[-len(marker) + 1:]
            last_publish = now
        if now - checked >= 1.0:
            used, cpu = _cpu_seconds(pids) - cpu, _cpu_seconds(pids)
            if used > IDLE_CPU * (now - checked):
                last_busy = now
            checked = now
        if seen >= expected or (now - last_publish > QUIET and now - last_busy > 1.0):
            return
        time.sleep(0.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class Chain:
    """What the phones register with, and the processes whose CPU is counted."""

    host: str
    port: int
    registrar: list[int]
    pua: list[int]
    ports: dict[str, int]
    api: str | None = None

    def pua_counters(self) -> dict[str, Any]:
        """pua's SIP counters (``pua.stats``), or {} for the reference."""
        if self.api is None:
            return {}
        call = {"jsonrpc": "2.0", "method": "pua.stats", "id": 1}
        request = urllib.request.Request(f"{self.api}/rpc", data=json.dumps(call).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as reply:
            return dict(json.loads(reply.read())["result"]["sip"])


@contextlib.contextmanager
def _reference(uas: SippUAS) -> Iterator[Chain]:
    with KamailioPuaUsrloc(uas.uri, children=WORKERS, debug=1) as registrar:
        assert registrar.proc is not None
        yield Chain(host=registrar.host, port=registrar.sip_port,
                    registrar=_group(registrar.proc.pid), pua=[],
                    ports={"registrar": registrar.sip_port, "uas": uas.port})


@contextlib.contextmanager
def _serve(*flags: str, data_dir: Path) -> Iterator[tuple[int, int, str]]:
    """``pua serve`` on free loopback ports, as tests/service/running.py
    starts it, but with its output in files: a pipe nobody reads would stop
    pua at its first screenful of warnings, in the middle of a step."""
    sip_port, api_port = find_free_port(), find_free_port(udp=False)
    out, err = data_dir / "stdout.log", data_dir / "stderr.log"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "pua", "serve",
             "--listen", f"udp:127.0.0.1:{sip_port}", "--listen", f"tcp:127.0.0.1:{sip_port}",
             "--api", f"127.0.0.1:{api_port}", "--data-dir", str(data_dir / "var"), *flags],
            stdout=stdout, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while "pua serve: API" not in out.read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pua serve did not start: {err.read_text()[-2000:]}")
            time.sleep(0.1)
        yield sip_port, process.pid, f"http://127.0.0.1:{api_port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def _pua(uas: SippUAS) -> Iterator[Chain]:
    with tempfile.TemporaryDirectory(prefix="pua-bench-reg-", dir=_tmpfs()) as data, \
            _serve("--usrloc", "--outbound-proxy", uas.uri, "--log-level", "warning",
                   data_dir=Path(data)) as (sip_port, pid, api), \
            KamailioRegistrar(replicate_to=f"sip:127.0.0.1:{sip_port}",
                              children=WORKERS, debug=1) as registrar:
        assert registrar.proc is not None
        yield Chain(host=registrar.host, port=registrar.sip_port,
                    registrar=_group(registrar.proc.pid), pua=[pid], api=api,
                    ports={"registrar": registrar.sip_port, "pua": sip_port, "uas": uas.port})


def _tmpfs() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


SIDES = {"kamailio": _reference, "pua": _pua}


def step(side: str, rate: int, seconds: float) -> dict[str, Any]:
    """One side at one rate: phones -> registrar (-> pua) -> traced UAS."""
    calls = max(1, round(rate * seconds))
    uas = SippUAS("publish_200", trace_msg=True).start()
    try:
        with SIDES[side](uas) as chain:
            before = _sched(chain.registrar), _sched(chain.pua)
            load = os.getloadavg()[0]
            started = time.monotonic()
            phones = register_phones(chain.host, chain.port, calls=calls,
                                     rate=rate, limit=PHONES_IN_FLIGHT, trace_msg=True,
                                     timeout=seconds * 3 + 30)
            stats = phones.run()
            _wait_for_publishes(uas, calls, [*chain.registrar, *chain.pua])
            wall = time.monotonic() - started
            after = _sched(chain.registrar), _sched(chain.pua)
            registrar_cpu = after[0][0] - before[0][0]
            pua_cpu, pua_waiting = after[1][0] - before[1][0], after[1][1] - before[1][1]
            counters = chain.pua_counters()
            drops = {name: udp_drops(port) for name, port in chain.ports.items()}
    finally:
        uas.stop()
    row = compare(traced_requests(phones.messages, "REGISTER", received=False),
                  traced_requests(uas.messages_text(), "PUBLISH", received=True),
                  traced_requests(phones.messages, "SIP/2.0 200", received=True))
    row.update(side=side, rate=rate, calls=calls, load_1min=load,
               phones_ok=stats.successful, phones_failed=stats.failed,
               registrar_cpu_us=registrar_cpu / calls * 1e6,
               pua_cpu_us=pua_cpu / calls * 1e6, pua_sip=counters, wall_s=wall,
               pua_on_cpu_share=pua_cpu / wall, pua_waiting_share=pua_waiting / wall,
               udp_drops=drops)
    row["keeps_up"] = keeps_up(row)
    return row


def check_sink(rate: int, seconds: float) -> dict[str, Any]:
    """The measuring UAS alone: SIPp's PUBLISH UAC straight to it at ``rate``."""
    calls = max(1, round(rate * seconds))
    with SippUAS("publish_200", trace_msg=True) as uas:
        uac = SippUAC(UAC_SCENARIO, uas.host, uas.port, calls=calls, rate=rate,
                      limit=PHONES_IN_FLIGHT, trace_msg=True, timeout=seconds * 3 + 30)
        uac.run()
        _wait_for_publishes(uas, calls, [])
    row = compare(traced_requests(uac.messages, "PUBLISH", received=False),
                  traced_requests(uas.messages_text(), "PUBLISH", received=True))
    row.update(rate=rate, calls=calls)
    return row


def run(rates: Sequence[int] = RATES, seconds: float = SECONDS) -> dict[str, Any]:
    """The sink check, then every rate on both sides (the side that goes
    first alternates from one rate to the next)."""
    sink = check_sink(max(rates), seconds)
    steps: list[dict[str, Any]] = []
    for n, rate in enumerate(rates):
        order = ("kamailio", "pua") if n % 2 == 0 else ("pua", "kamailio")
        by_side = {side: step(side, rate, seconds) for side in order}
        ref, ours = by_side["kamailio"], by_side["pua"]
        steps.append({
            "rate": rate, "kamailio": ref, "pua": ours,
            "ratio_processed": ours["processed_per_s"] / ref["processed_per_s"],
            "ratio_lag_p50": ours["lag_p50_ms"] / ref["lag_p50_ms"],
            "ratio_lag_p99": ours["lag_p99_ms"] / ref["lag_p99_ms"],
        })
    return {"seconds": seconds, "workers": WORKERS, "quiet_s": QUIET, "sink": sink, "steps": steps,
            "cpus": os.cpu_count()}


if __name__ == "__main__":
    rates = tuple(int(r) for r in sys.argv[1].split(",")) if len(sys.argv) > 1 else (200, 1000)
    print(json.dumps(run(rates, float(sys.argv[2]) if len(sys.argv) > 2 else 5.0), indent=1))
