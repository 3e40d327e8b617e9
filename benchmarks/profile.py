"""Where the time goes: py-spy profiles of pua on the benchmarks' loads.

    python -m benchmarks.profile wire OUT.folded      # PUBLISH transactions (pua's side only)
    python -m benchmarks.profile api OUT.folded       # pua serve under pua.publish calls
    python -m benchmarks.profile store OUT.folded     # restore and write-back, 100,000 rows
    python -m benchmarks.profile restore OUT.folded   # the restore alone, 1,000,000 rows
    python -m benchmarks.profile summary OUT.folded [N]

Each load runs as the benchmark of the same name runs it; py-spy (a dev
dependency) samples the process at 400 Hz without stopping it and writes
the stacks folded (``frame;frame;... COUNT`` a line).  ``summary`` prints
markdown tables of the frames with the largest share of samples, by own
time and with what they call.  Samples of threads idle in a wait are not
taken (py-spy's default).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PY_SPY = Path(sys.executable).with_name("py-spy")
RATE = 400


@contextmanager
def sampled(pid: int, out: Path) -> Iterator[None]:
    """py-spy samples process ``pid`` into ``out`` while the block runs."""
    spy = subprocess.Popen(
        [str(PY_SPY), "record", "-r", str(RATE), "-f", "raw", "-o", str(out),
         "-p", str(pid), "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes what it took, then exits
        spy.wait(timeout=60)


def wire(out: Path, calls: int = 30_000) -> None:
    """pua's PUBLISH transactions against a SIPp UAS (benchmarks.publish_rate)."""
    from tests.peers.sipp import SippUAS

    from benchmarks.publish_rate import pua_publishes
    from pua.runtime.loop import run as run_loop

    with SippUAS("publish_200") as uas:
        run_loop(pua_publishes((uas.host, uas.port), 2000, 200))  # warm-up
        with sampled(os.getpid(), out):
            print(run_loop(pua_publishes((uas.host, uas.port), calls, 200)))


def api(out: Path, calls: int = 10_000, concurrency: int = 50) -> None:
    """pua serve answering pua.publish calls (benchmarks.service_rpc)."""
    from tests.peers.sipp import SippUAS

    from benchmarks import service_rpc

    with SippUAS("publish_200") as uas, tempfile.TemporaryDirectory() as tmp:
        service = service_rpc._pua(uas, Path(tmp), "profile")
        try:
            service_rpc.drive("127.0.0.1", service.api_port, "/rpc", 500, concurrency)
            with sampled(service.process.pid, out):
                print(service_rpc.drive("127.0.0.1", service.api_port, "/rpc", calls,
                                        concurrency))
        finally:
            service.stop()


def store(out: Path, rows: int = 100_000) -> None:
    """Restore and write-back on SQLite (benchmarks.persistence)."""
    from benchmarks import persistence

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "pua.db"
        asyncio.run(persistence._fill(db, rows))
        with sampled(os.getpid(), out):
            print(asyncio.run(persistence._restore_and_write(db)))


def restore(out: Path, rows: int = 1_000_000) -> None:
    """The restore alone (load + resume) on SQLite (benchmarks.persistence)."""
    from benchmarks import persistence

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "pua.db"
        asyncio.run(persistence._fill(db, rows))
        with sampled(os.getpid(), out):
            print(asyncio.run(persistence._restore_only(db)))


def _short(frame: str) -> str:
    # "name (/long/path/site-packages/pkg/mod.py:12)" -> "name (pkg/mod.py:12)"
    return re.sub(r"\(.*?(?:site-packages/|/src/|/lib/python3\.\d+/)", "(", frame)


_OUTER = re.compile(
    r"^(<module>|_run_code|_run_module_as_main|run|main|Runner\.run|BaseEventLoop\.run_\w+|"
    r"Thread\.run|Thread\._bootstrap\w*|Command\.\w+|Group\.invoke|Context\.invoke|serve) "
)


def summary(folded: Path, top: int = 20) -> str:
    """Markdown tables of ``folded``'s frames by share of samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [_short(f) for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames[1:]):  # the first frame is the thread
            inclusive[frame] += n
    lines = [f"{total:,} samples at {RATE} Hz.", "",
             "| % own time | function |", "|---:|---|"]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in own.most_common(top)]
    lines += ["", "| % with what it calls | function |", "|---:|---|"]
    kept = [(f, n) for f, n in inclusive.most_common() if not _OUTER.match(f)][:top]
    lines += [f"| {100 * n / total:.1f} | `{f}` |" for f, n in kept]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("wire", "api", "store", "restore", "summary"))
    ap.add_argument("folded", type=Path)
    ap.add_argument("top", type=int, nargs="?", default=20)
    args = ap.parse_args(argv)
    if args.what == "summary":
        print(summary(args.folded, args.top))
    else:
        {"wire": wire, "api": api, "store": store, "restore": restore}[args.what](args.folded)
    return 0


if __name__ == "__main__":
    sys.exit(main())
