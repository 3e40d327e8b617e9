"""A small sampling profiler for a Python process started through it.

``python benchmarks/sampler.py OUT HZ -- python -m pua serve ...`` runs the
module named after ``-m`` in this process, and a CPU-time timer takes the
main thread's stack every 1/``HZ`` s of CPU time; at exit OUT holds the stacks in
the folded form (``a;b;c COUNT`` a line, outermost first), the form
py-spy's ``-f raw`` writes, so :func:`summary` reads either.  Samples
where the main thread waits in the event loop's selector are kept as
"idle" (the process's CPU went to another thread, or to the kernel,
while the main thread waited in the event loop).
"""

from __future__ import annotations

import collections
import re
import runpy
import signal
import sys
from pathlib import Path
from types import FrameType


def _stack(frame: FrameType | None) -> str:
    names: list[str] = []
    while frame is not None:
        code = frame.f_code
        # Paths from the package on: sqlalchemy/..., asyncio/..., api/...
        where = re.sub(r".*(site-packages/|/src/pua/|/lib/python3\.\d+/)", "", code.co_filename)
        names.append(f"{code.co_name} ({where}:{code.co_firstlineno})")
        frame = frame.f_back
    return ";".join(reversed(names))


def main() -> None:
    out, hz = Path(sys.argv[1]), float(sys.argv[2])
    rest = sys.argv[sys.argv.index("--") + 1:]
    # rest: python -m MODULE args...
    module = rest[rest.index("-m") + 1]
    sys.argv = [module, *rest[rest.index("-m") + 2:]]
    counts: collections.Counter[str] = collections.Counter()

    def sample(signum: int, frame: FrameType | None) -> None:
        counts[_stack(frame)] += 1

    # ITIMER_PROF counts the CPU time the process uses; its signal is taken
    # by the main thread at the next bytecode, so the stack seen is the one
    # that was running (a thread that samples would need the GIL, and get it
    # only where the main thread lets it go: in select and in C calls).
    signal.signal(signal.SIGPROF, sample)
    signal.signal(signal.SIGUSR1, lambda *_: counts.clear())  # start afresh
    signal.setitimer(signal.ITIMER_PROF, 1.0 / hz, 1.0 / hz)
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit:
        pass
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        out.write_text("".join(f"{stack} {n}\n" for stack, n in counts.items()))


# Where a sample's time is charged: the innermost frame whose file matches
# one of these (first match in this order for that frame).
CATEGORIES = (
    ("store (StoreSync, SQLAlchemy, aiosqlite)",
     ("sqlalchemy/", "aiosqlite/", "asyncpg/", "greenlet", "runtime/persistence.py", "store/")),
    ("JSON", ("json/",)),
    ("bodies (lxml)", ("bodies/",)),
    ("SIP messages and transactions", ("sip/",)),
    ("presence core", ("core/",)),
    ("SIP transport", ("runtime/transports.py", "runtime/tcp.py")),
    ("runtime (pump, waiters, timer)", ("runtime/",)),
    ("API (JSON-RPC, handlers, views, activity)", ("api/",)),
    ("aiohttp", ("aiohttp/",)),
    ("asyncio", ("asyncio/",)),
)


def categories(path: Path) -> dict[str, float]:
    """Share of the busy samples by category (innermost matching frame)."""
    shares: collections.Counter[str] = collections.Counter()
    busy = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if _idle(frames[-1]):
            continue
        busy += int(n)
        shares[_category(frames)] += int(n)
    return {name: n / max(busy, 1) for name, n in shares.most_common()}


def _category(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, parts in CATEGORIES:
            if any(part in frame for part in parts):
                return name
    return "other"


def _idle(leaf: str) -> bool:
    return "run (asyncio/runners.py" in leaf or leaf.startswith(("select", "poll"))


# Frames under every sample (start-up, the CLI, the loop's run): left out
# of the inclusive table.
_SCAFFOLD = ("<module>", "<frozen", "sampler.py", "click/", "cli/", "runtime/loop.py",
             "uvloop/", "asyncio/runners.py")


def summary(path: Path, top: int = 15) -> str:
    """Markdown tables: the top functions by inclusive and by self share of
    the busy samples, and the idle share."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = idle = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        count = int(n)
        frames = stack.split(";")
        total += count
        leaf = frames[-1]
        if _idle(leaf):
            idle += count
            continue
        for name in set(frames):
            inclusive[name] += count
        own[leaf] += count
    busy = total - idle
    lines = [f"samples {total}, busy {busy} ({100 * busy / max(total, 1):.0f}%), "
             f"idle {idle}", "", "| inclusive % of busy | function |", "|---:|---|"]
    frames = [(name, n) for name, n in inclusive.most_common()
              if not any(part in name for part in _SCAFFOLD)]
    lines += [f"| {100 * n / max(busy, 1):.1f} | `{name}` |" for name, n in frames[:top]]
    lines += ["", "| self % of busy | function |", "|---:|---|"]
    lines += [f"| {100 * n / max(busy, 1):.1f} | `{name}` |" for name, n in own.most_common(top)]
    lines += ["", "| % of busy | where |", "|---:|---|"]
    lines += [f"| {100 * share:.1f} | {name} |" for name, share in categories(path).items()]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "summary":
        print(summary(Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else 15))
    else:
        main()
