"""Restart recovery and write-back, on the embedded SQLite store.

- Restart: a table of N rows (90% publications with their body, 10%
  subscriptions with a dialog), all alive; time to load and resume them, and
  the peak memory of the process that did it (each size runs in a process
  of its own, so the peak is its own).
- Write-back: N records all refreshed (their ETag, expiry and CSeq
  columns written), then all changed whole; time to write them, and the
  longest time the event loop went without running (measured by a task
  that asks to wake every millisecond).
"""

from __future__ import annotations

import asyncio
import gc
import json
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pua.core import EngineConfig
from pua.runtime import PresenceRuntime
from pua.runtime.loop import tune_gc
from pua.runtime.persistence import StoreSync
from pua.store import Store

BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:u@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status></tuple></presence>'
)


def _row(i: int, now: int) -> dict[str, Any]:
    common = {
        "pres_uri": f"sip:u{i}@example.com", "pres_id": "", "event": 1,
        "expires": now + 3000 + i % 600, "desired_expires": 0, "version": 1, "cseq": 1,
        "extra_headers": "", "outbound_proxy": None,
    }
    if i % 10:
        return {**common, "flag": 64, "etag": f"e{i}", "tuple_id": f"t{i}", "watcher_uri": "",
                "call_id": f"c{i}", "to_tag": "", "from_tag": "", "record_route": None,
                "contact": "", "remote_contact": "", "body": BODY,
                "content_type": "application/pidf+xml", "remote_target": None}
    return {**common, "flag": 256, "etag": "", "tuple_id": None, "watcher_uri": "sip:w@example.com",
            "call_id": f"c{i}", "to_tag": f"tt{i}", "from_tag": f"ft{i}", "record_route": None,
            "contact": "sip:127.0.0.1:5070", "remote_contact": "sip:ps@127.0.0.1:5060", "body": None,
            "content_type": None, "remote_target": f"sip:u{i}@example.com"}


def _url(db: Path, db_url: str | None) -> str:
    """The store's URL: ``db_url`` (a server's database), else SQLite at ``db``."""
    return db_url or f"sqlite:///{db}"


async def _fill(db: Path, count: int, db_url: str | None = None) -> None:
    store = await Store.open(_url(db, db_url), data_dir=db.parent)
    now = int(time.time())
    for first in range(0, count, 20_000):
        await store.write([_row(i, now) for i in range(first, min(first + 20_000, count))], [])
    await store.close()


async def _restored(
    db: Path, db_url: str | None = None
) -> tuple[socket.socket, Store, PresenceRuntime, StoreSync, dict[str, Any]]:
    """Open the store of ``db`` and restore it as pua serve does; what was
    opened, and the restore's counts, seconds and CPU seconds."""
    tune_gc()
    # The next hop is a socket that never answers: what the restart makes
    # due goes out and waits, as it would for a server that is slow, and no
    # error path runs during the measurement.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    hop = silent.getsockname()[1]
    store = await Store.open(_url(db, db_url), data_dir=db.parent)
    runtime = PresenceRuntime(EngineConfig(outbound_proxy=f"sip:127.0.0.1:{hop}"))
    await runtime.start()  # binds 127.0.0.1, port chosen by the system
    sync = StoreSync(runtime, store, own_gc=True)  # as pua serve does
    started = time.perf_counter()
    cpu, loop_cpu = time.process_time(), time.thread_time()
    counts = await sync.restore(freeze=True)  # as pua serve restores
    seconds = time.perf_counter() - started
    # CPU time of the whole process (the database thread too) and of the
    # event loop's thread alone: on a shared machine, steadier than seconds.
    cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    return silent, store, runtime, sync, {
        "rows": counts["rows"], "resumed": counts["resumed"], "restore_seconds": seconds,
        "restore_cpu_seconds": cpu, "restore_loop_cpu_seconds": loop_cpu,
    }


async def _restore_only(db: Path) -> dict[str, Any]:
    """The restore alone (for a profile of it)."""
    silent, store, runtime, _, result = await _restored(db)
    await store.close()
    await runtime.close()
    silent.close()
    return result


async def _restore_and_write(db: Path, db_url: str | None = None) -> dict[str, Any]:
    silent, store, runtime, sync, restored = await _restored(db, db_url)
    peak_kib = _peak_kib()
    keys = list(runtime.records())  # a record is its own key
    # What a restart loads lives on: keep the collector off it, as pua serve
    # does; the benchmark's own list of a million keys too (young, the
    # collector's next pass would walk it inside the measured write).
    gc.freeze()
    # Write-back: every record refreshed (what a refresh period leaves to
    # write: ETag, expiry, CSeq), then every record changed whole.
    runtime.mark_changed(keys, refreshed=True)
    refresh_seconds, refresh_stall = await _timed_write(sync)
    runtime.mark_changed(keys)
    write_seconds, write_stall = await _timed_write(sync)
    await store.close()
    await runtime.close()
    silent.close()
    return {
        **restored, "peak_rss_mib": peak_kib / 1024,
        "write_back_records": len(keys),
        "refresh_write_seconds": refresh_seconds, "refresh_stall_ms": refresh_stall,
        "write_back_seconds": write_seconds, "longest_stall_ms": write_stall,
    }


async def _timed_write(sync: StoreSync) -> tuple[float, float]:
    """Write what is pending; its seconds and the longest time the event
    loop did not run meanwhile (ms), measured by a task that asks to wake
    every millisecond."""
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            stalls.append(now - last)
            last = now

    watch = asyncio.ensure_future(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    async with sync._lock:
        await sync._write_pending()
    seconds = time.perf_counter() - started
    done.set()
    await watch
    return seconds, max(stalls) * 1000 if stalls else 0.0


def _peak_kib() -> int:
    """The peak resident set since the last reset (VmHWM), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM, so the peak is this
    # restore's, not the filling's nor what a parent process held at fork.
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")


def one(count: int, db_url: str | None = None) -> dict[str, Any]:
    """Fill a fresh table with ``count`` rows (SQLite, or the empty database
    of ``db_url``), then restore and write back in this process."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "pua.db"
        asyncio.run(_fill(db, count, db_url))
        gc.collect()
        _reset_peak()
        return asyncio.run(_restore_and_write(db, db_url))


def run(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict[int, dict[str, Any]]:
    """Each size in a process of its own (peak memory is per process)."""
    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        out[size] = _one_apart(size)
    return out


def run_postgres(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict[int, dict[str, Any]]:
    """The same on the machine's PostgreSQL: each size in a process of its
    own, on a database of the run's own made afresh."""
    from .service_rpc import postgres_database

    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        with postgres_database("puabench_persistence") as db_url:
            out[size] = _one_apart(size, db_url)
    return out


def run_mariadb(sizes: tuple[int, ...] = (100_000, 1_000_000)) -> dict[int, dict[str, Any]]:
    """The same on the machine's MariaDB, a database of the run's own made
    afresh for each size."""
    from .service_rpc import mariadb_database

    out: dict[int, dict[str, Any]] = {}
    for size in sizes:
        with mariadb_database("puabench_persistence") as db_url:
            out[size] = _one_apart(size, db_url)
    return out


def _one_apart(size: int, db_url: str | None = None) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.persistence", str(size), *([db_url] if db_url else [])],
        capture_output=True, text=True, check=True, timeout=3600,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    print(json.dumps(one(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000,
                         sys.argv[2] if len(sys.argv) > 2 else None)))
