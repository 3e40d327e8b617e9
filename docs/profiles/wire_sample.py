"""Minimal in-process sampling profiler: collapsed stacks like py-spy's raw.

usage: python sample.py OUT RATE_HZ script.py args...
SIGPROF every 1/RATE s of CPU time (ITIMER_PROF); the handler records the
interrupted Python stack.  C time is charged to the Python frame that
called it."""
import collections, os, runpy, signal, sys

out, rate, script = sys.argv[1], float(sys.argv[2]), sys.argv[3]
sys.argv = sys.argv[3:]
counts = collections.Counter()

def label(f):
    co = f.f_code
    fn = co.co_filename
    fn = os.path.relpath(fn, "/work/wt-wire") if "/work/wt-wire/" in fn else os.path.basename(fn)
    return f"{co.co_name} ({fn}:{f.f_lineno})"

def handler(signum, f):
    stack = []
    while f is not None:
        stack.append(label(f))
        f = f.f_back
    counts[";".join(reversed(stack))] += 1

signal.signal(signal.SIGPROF, handler)
signal.setitimer(signal.ITIMER_PROF, 1.0 / rate, 1.0 / rate)
try:
    runpy.run_path(script, run_name="__main__")
finally:
    signal.setitimer(signal.ITIMER_PROF, 0, 0)
    with open(out, "w") as fh:
        for stack, n in counts.most_common():
            fh.write(f"{stack} {n}\n")
