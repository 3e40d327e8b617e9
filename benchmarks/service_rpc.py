"""Publications set up per second through pua's JSON-RPC (single calls and
batches), against a SIPp UAS that answers every PUBLISH 200."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.peers.sipp import SippUAS
from tests.service.running import RunningService

from .publish_rate import median_run
from .service_memory import cpu_seconds

PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{uri}">'
    "<tuple><status><basic>open</basic></status></tuple></presence>"
)


def _doc(i: int, ident: int) -> dict[str, Any]:
    uri = f"sip:u{i}@example.com"
    return {"jsonrpc": "2.0", "id": ident, "method": "pua.publish",
            # Kamailio's pua.publish takes expires as a string; pua takes both.
            "params": [uri, "3600", "presence", "application/pidf+xml", ".", ".", ".", ".",
                       PIDF.format(uri=uri)]}


def drive(host: str, port: int, path: str, calls: int, concurrency: int,
          batch_size: int | None = None, first: int = 0) -> dict[str, Any]:
    """``calls`` pua.publish calls from ``concurrency`` threads, each on its
    own keep-alive connection (in batches of ``batch_size`` when given),
    for presentities numbered from ``first``."""
    counter = iter(range(first, first + calls))
    lock = threading.Lock()
    ok = failed = 0

    def take(n: int) -> list[int]:
        with lock:
            return [i for _, i in zip(range(n), counter, strict=False)]

    def worker() -> None:
        nonlocal ok, failed
        conn = http.client.HTTPConnection(host, port, timeout=60)
        good = bad = 0
        try:
            while items := take(batch_size or 1):
                docs = [_doc(i, i) for i in items]
                body = json.dumps(docs if batch_size else docs[0])
                conn.request("POST", path, body, {"Content-Type": "application/json"})
                reply = json.loads(conn.getresponse().read())
                replies = reply if isinstance(reply, list) else [reply]
                for answer in replies:
                    if "result" in answer and answer["result"].get("SIP-ETag"):
                        good += 1
                    else:
                        bad += 1
        finally:
            conn.close()
            with lock:
                ok += good
                failed += bad

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return {"calls": calls, "ok": ok, "failed": failed, "seconds": seconds, "per_s": ok / seconds}


def _cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of the processes ``pids`` and, for each,
    of its children that are running (Kamailio's workers)."""
    total = 0.0
    seen: set[int] = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            total += cpu_seconds(pid)
            with open(f"/proc/{pid}/task/{pid}/children") as children:
                todo += [int(child) for child in children.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measured(pids: list[int], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``drive(*args, **kwargs)``, with the server's CPU time per call (µs):
    what the processes ``pids`` and their children used meanwhile."""
    before = _cpu_seconds(pids)
    result = drive(*args, **kwargs)
    used = _cpu_seconds(pids) - before
    return {**result, "cpu_us_per_call": used / max(1, result["calls"]) * 1e6}


# The PostgreSQL server the machine runs (trust authentication on loopback);
# the benchmark makes a database of its own there and drops it after.
POSTGRES_HOST = os.environ.get("PUA_BENCH_POSTGRES_HOST", "127.0.0.1")
POSTGRES_USER = os.environ.get("PUA_BENCH_POSTGRES_USER", "postgres")
POSTGRES_DB = "puabench_service_rpc"


def _pua(uas: SippUAS, tmp: Path, name: str, *flags: str) -> RunningService:
    return _pua_to(uas.uri, tmp, name, *flags)


def _pua_to(next_hop: str, tmp: Path, name: str, *flags: str) -> RunningService:
    return RunningService("--outbound-proxy", next_hop, "--log-level", "warning", *flags,
                          data_dir=tmp / name)


# Client threads against the presence server.
PRESENCE_THREADS = 8


@contextlib.contextmanager
def postgres_database(name: str = POSTGRES_DB) -> Any:
    """A new, empty PostgreSQL database for the run; yields its db_url."""
    where = ["-h", POSTGRES_HOST, "-U", POSTGRES_USER]
    subprocess.run(["dropdb", *where, "--if-exists", name], check=True, capture_output=True)
    subprocess.run(["createdb", *where, name], check=True, capture_output=True)
    try:
        yield f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:5432/{name}"
    finally:
        subprocess.run(["dropdb", *where, "--if-exists", name], check=False,
                       capture_output=True)


# The MariaDB server the machine runs (root, no password, on loopback).
MARIADB_HOST = os.environ.get("PUA_BENCH_MARIADB_HOST", "127.0.0.1")
MARIADB_USER = os.environ.get("PUA_BENCH_MARIADB_USER", "root")


@contextlib.contextmanager
def mariadb_database(name: str) -> Any:
    """A new, empty MariaDB database for the run; yields its db_url."""
    where = ["-h", MARIADB_HOST, "-u", MARIADB_USER]
    subprocess.run(["mariadb", *where, "-e", f"DROP DATABASE IF EXISTS {name}; "
                    f"CREATE DATABASE {name}"], check=True, capture_output=True)
    try:
        yield f"mysql://{MARIADB_USER}@{MARIADB_HOST}:3306/{name}"
    finally:
        subprocess.run(["mariadb", *where, "-e", f"DROP DATABASE IF EXISTS {name}"],
                       check=False, capture_output=True)


def run(calls: int = 5000, concurrency: int = 50, batch_size: int = 50,
        rounds: int = 3) -> dict[str, Any]:
    """pua serve and Kamailio (pua + pua_rpc over jsonrpcs/xhttp) doing the
    same publications against the same SIPp UAS, with the same client.  The
    single calls of both are measured ``rounds`` times, in swapped order
    every other round, and the median round of each taken."""
    from tests.peers.kamailio import KamailioPresence
    from tests.peers.kamailio_pua import KamailioPua

    from benchmarks.kamailio_pua_reference import DEFAULT_WORKERS

    with SippUAS("publish_200") as uas, tempfile.TemporaryDirectory() as tmp:
        singles: list[dict[str, Any]] = []
        references: list[dict[str, Any]] = []
        for round_no in range(rounds):
            for who in ("pua", "kamailio") if round_no % 2 == 0 else ("kamailio", "pua"):
                # Each run on presentities of its own.
                first = (2 * round_no + (who == "kamailio")) * calls
                if who == "pua":
                    service = _pua(uas, Path(tmp), f"single-{round_no}")
                    try:
                        singles.append(measured([service.process.pid], "127.0.0.1",
                                                service.api_port, "/rpc", calls, concurrency,
                                                first=first))
                    finally:
                        service.stop()
                else:
                    with KamailioPua(uas.uri, children=DEFAULT_WORKERS, debug=1) as kamailio:
                        references.append(measured([kamailio.proc.pid], "127.0.0.1",
                                                   kamailio.http_port, "/jsonrpc", calls,
                                                   concurrency, first=first))
        single, reference = median_run(singles), median_run(references)
        service = _pua(uas, Path(tmp), "batch")
        try:
            batched = measured([service.process.pid], "127.0.0.1", service.api_port, "/rpc",
                               calls, max(1, concurrency // 5), batch_size=batch_size)
        finally:
            service.stop()
        with postgres_database() as db_url:
            service = _pua(uas, Path(tmp), "postgres", "--db-url", db_url)
            try:
                postgres = measured([service.process.pid], "127.0.0.1", service.api_port,
                                    "/rpc", calls, concurrency)
            finally:
                service.stop()
        # Kamailio keeping every publication in its database (db_mode 2),
        # as pua stores each before it answers; the rows it kept, counted.
        with KamailioPua(uas.uri, children=DEFAULT_WORKERS, debug=0, db_mode=2) as kamailio:
            durable = measured([kamailio.proc.pid], "127.0.0.1", kamailio.http_port,
                               "/jsonrpc", calls, concurrency, first=2 * rounds * calls)
            durable["rows"] = len({row["pres_uri"] for row in kamailio.pua_rows()})
        # The same against a real presence server (Kamailio's presence
        # module, which stores each publication), PRESENCE_THREADS clients.
        with KamailioPresence() as server:
            service = _pua_to(server.uri, Path(tmp), "presence")
            try:
                at_server = drive("127.0.0.1", service.api_port, "/rpc", calls, PRESENCE_THREADS)
            finally:
                service.stop()
            with KamailioPua(server.uri, children=DEFAULT_WORKERS, debug=1) as kamailio:
                server_reference = drive("127.0.0.1", kamailio.http_port, "/jsonrpc", calls,
                                         PRESENCE_THREADS, first=calls)
    return {
        "calls": calls, "concurrency": concurrency, "batch_size": batch_size,
        "single": single, "batch": batched, "postgres": postgres, "kamailio": reference,
        "kamailio_db": durable, "rounds": rounds,
        "single_rounds": [r["per_s"] for r in singles],
        "kamailio_rounds": [r["per_s"] for r in references],
        "kamailio_workers": DEFAULT_WORKERS,
        "ratio_single": single["per_s"] / reference["per_s"],
        "ratio_batch": batched["per_s"] / reference["per_s"],
        "ratio_postgres": postgres["per_s"] / reference["per_s"],
        "presence_server": at_server, "presence_server_reference": server_reference,
        "presence_threads": PRESENCE_THREADS,
        "ratio_presence_server": at_server["per_s"] / server_reference["per_s"],
    }


if __name__ == "__main__":
    print(json.dumps(run(2000, 50), indent=1))
