"""Resident memory of `pua serve` per live publication.

`pua serve` (embedded SQLite store in a temporary data dir) publishes N
distinct presentities through JSON-RPC ``pua.publish`` (in batches, each call
waiting for its 200), against a SIPp UAS that answers every PUBLISH 200 with
SIP-ETag and Expires.  The service's resident set is read from
``/proc/PID/statm`` after start-up and a few warm-up publications, and again
once all N are acknowledged and the finished transactions have ended
(timer K); the growth divided by N is the cost of one publication, its body
included.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from tests.peers.sipp import SippUAS
from tests.service.running import RunningService

PAGE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# Timer K of a non-INVITE client transaction over UDP is T4 = 5 s
# (RFC 3261 §17.1.2.2, table 4): until then a finished transaction is kept
# to absorb retransmitted answers.
TIMER_K = 5.0

# About 200 bytes, as a phone's simple presence document.
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{uri}">'
    '<tuple id="t1"><status><basic>open</basic></status><note>Available</note></tuple>'
    "</presence>"
)

TARGET_BYTES = 1200


def _uri(prefix: str, i: int) -> str:
    return f"sip:{prefix}{i:06d}@example.com"


def rss_bytes(pid: int) -> int:
    """Resident set of process ``pid`` (/proc/PID/statm, second field)."""
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name (field 2) may hold spaces; count after its ')'.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def settle(pid: int, not_before: float, timeout: float = 60.0, quiet: float = 1.0) -> int:
    """Wait until ``not_before`` (a time.monotonic value) has passed and the
    process has then used no CPU and kept the same resident set for ``quiet``
    seconds; its resident set.  Raises TimeoutError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < not_before:
        time.sleep(min(0.2, max(0.0, not_before - time.monotonic())))
    cpu, rss = cpu_seconds(pid), rss_bytes(pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now_cpu, now_rss = cpu_seconds(pid), rss_bytes(pid)
        if now_cpu == cpu and now_rss == rss:
            return rss
        cpu, rss = now_cpu, now_rss
    raise TimeoutError(f"pua serve (pid {pid}) did not go quiet within {timeout:.0f} s")


def publish_all(port: int, uris: list[str], *, batch_size: int, concurrency: int,
                timeout: float) -> dict[str, Any]:
    """``pua.publish`` (expires 3600, a PIDF body) for every URI, in JSON-RPC
    batches from ``concurrency`` threads on keep-alive connections; counts
    the calls answered with a SIP-ETag."""
    batches = iter([uris[i:i + batch_size] for i in range(0, len(uris), batch_size)])
    lock = threading.Lock()
    totals = {"ok": 0, "failed": 0, "body_bytes": 0}
    errors: list[str] = []

    def worker() -> None:
        good = bad = body_bytes = 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            while True:
                with lock:
                    batch = next(batches, None)
                if batch is None:
                    break
                calls = []
                for n, uri in enumerate(batch):
                    body = PIDF.format(uri=uri)
                    body_bytes += len(body.encode())
                    calls.append({"jsonrpc": "2.0", "id": n, "method": "pua.publish",
                                  "params": {"pres_uri": uri, "expires": 3600,
                                             "event": "presence",
                                             "content_type": "application/pidf+xml",
                                             "body": body}})
                conn.request("POST", "/rpc", json.dumps(calls),
                             {"Content-Type": "application/json"})
                replies = json.loads(conn.getresponse().read())
                for reply in replies if isinstance(replies, list) else [replies]:
                    if (reply.get("result") or {}).get("SIP-ETag"):
                        good += 1
                    else:
                        bad += 1
                        if len(errors) < 5:
                            errors.append(json.dumps(reply)[:300])
        except Exception as exc:  # reported, and the caller fails the run
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            conn.close()
            with lock:
                totals["ok"] += good
                totals["failed"] += bad
                totals["body_bytes"] += body_bytes

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        # Each request is bounded by the connection's timeout; this bounds
        # a worker that keeps going past what the whole run may take.
        thread.join(timeout * (len(uris) // batch_size + 1))
        if thread.is_alive():
            raise TimeoutError("a JSON-RPC client thread did not finish")
    return {**totals, "errors": errors}


def run(publications: int = 100_000, *, warmup: int = 200, batch_size: int = 100,
        concurrency: int = 4, request_timeout: float = 120.0) -> dict[str, Any]:
    """Memory of `pua serve` before and after ``publications`` live
    publications; raises RuntimeError when a publication fails."""
    with SippUAS("publish_200") as uas, tempfile.TemporaryDirectory() as tmp:
        service = RunningService("--outbound-proxy", uas.uri, "--log-level", "error",
                                 "--no-cleanup-on-exit", data_dir=Path(tmp) / "data")
        try:
            pid = service.process.pid
            rss_started = rss_bytes(pid)
            warm = publish_all(service.api_port, [_uri("w", i) for i in range(warmup)],
                               batch_size=batch_size, concurrency=1, timeout=request_timeout)
            if warm["failed"] or warm["errors"]:
                raise RuntimeError(f"warm-up publications failed: {warm['errors']}")
            rss_before = settle(pid, time.monotonic() + TIMER_K + 0.5)

            uris = [_uri("m", i) for i in range(publications)]
            started = time.perf_counter()
            result = publish_all(service.api_port, uris, batch_size=batch_size,
                                 concurrency=concurrency, timeout=request_timeout)
            seconds = time.perf_counter() - started
            if result["failed"] or result["errors"]:
                raise RuntimeError(f"{result['failed']} publications failed: {result['errors']}")
            stats = service.rpc("pua.stats")["result"]
            del uris
            rss_after = settle(pid, time.monotonic() + TIMER_K + 0.5)
        finally:
            service.stop(timeout=60)
    growth = rss_after - rss_before
    return {
        "publications": publications, "warmup": warmup, "batch_size": batch_size,
        "concurrency": concurrency,
        "records": stats["records"], "sip_timeouts": stats["sip"].get("timeouts", 0),
        "retransmissions": stats["sip"].get("retransmissions", 0),
        "rss_started": rss_started, "rss_before": rss_before, "rss_after": rss_after,
        "bytes_per_publication": growth / publications,
        "body_bytes_per_publication": result["body_bytes"] / publications,
        "seconds": seconds, "per_s": publications / seconds,
        "target_bytes": TARGET_BYTES,
    }


if __name__ == "__main__":
    import sys

    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(json.dumps(run(count), indent=1))
