"""A long run: a large population held steady for a long time.

`pua serve` (SQLite store, write-back) makes many publications and
subscriptions at a real Kamailio presence server whose ``max_expires`` is
short, so every record is refreshed many times over the run.  Every sample
period (a minute by default) the campaign takes:

- pua's resident memory (VmRSS) and the size of its database files;
- the event-loop lag and the refresh lateness of the period (p50/p99 from
  the differences of two scrapes of the `/metrics` histograms);
- pua's counters (refreshes, retries, 412/423 recoveries, timeouts,
  answers by status);
- Kamailio's rows: publications and subscriptions of ours alive there.

At the end every publication and subscription must be alive at Kamailio
(nothing lost) and resident memory must be flat (first sample after the
set-up against the last, and the least-squares slope).

The defaults (45 minutes at a 120 s lifetime, refreshed 20 s before
expiry, up to 10 s earlier by jitter: about 1,150 requests a second for
110,000 records, each refreshed about 28 times) are what a 2-core machine
held; docs/reliability.md says what other lifetimes did.

    python -m reliability.longrun [--publications N] [--subscriptions N]
        [--minutes M] [--lifetime S] [--margin S] [--sample S]
        [--json OUT.json] [--png OUT.png]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import pidf
from tests.service.running import RunningService

DOMAIN = "example.com"
BATCH = 500  # calls in one JSON-RPC batch
LATENESS = "pua_timer_lateness_seconds"
LOOP_LAG = "pua_loop_lag_seconds"


def presentity(n: int) -> str:
    return f"sip:p{n}@{DOMAIN}"


def watcher(n: int) -> str:
    return f"sip:w{n}@{DOMAIN}"



def _post(url: str, payload: Any, timeout: float = 600.0) -> Any:
    request = urllib.request.Request(url + "/rpc", data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as reply:
        return json.loads(reply.read())


def _get(url: str, path: str) -> str:
    with urllib.request.urlopen(url + path, timeout=60) as reply:
        return reply.read().decode()


def call(url: str, method: str, params: Any = None) -> Any:
    """One JSON-RPC call; its result (an error raises)."""
    answer = _post(url, {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []})
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


def make(url: str, calls: list[tuple[str, list[Any]]], spread: float = 0.0,
         threads: int = 8) -> dict[str, int]:
    """Sends ``calls`` in JSON-RPC batches, evenly over ``spread`` seconds
    (the records' refreshes then fall due evenly too), from up to
    ``threads`` threads; the errors by code and message (an empty dict:
    every call succeeded)."""
    batches = [calls[i:i + BATCH] for i in range(0, len(calls), BATCH)]
    errors: dict[str, int] = {}
    lock = threading.Lock()

    def send(batch: list[tuple[str, list[Any]]]) -> None:
        payload = [{"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                   for i, (method, params) in enumerate(batch)]
        for answer in _post(url, payload):
            if "error" in answer:
                what = f"{answer['error'].get('code')} {answer['error'].get('message')}"
                with lock:
                    errors[what] = errors.get(what, 0) + 1

    gap = spread / len(batches) if batches else 0.0
    start = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        futures = []
        for n, batch in enumerate(batches):
            time.sleep(max(0.0, start + n * gap - time.monotonic()))  # pacing
            futures.append(pool.submit(send, batch))
        for future in futures:
            future.result()
    return errors


# ----------------------------------------------------------------- sampling
def histograms(text: str) -> dict[str, list[tuple[float, float]]]:
    """The cumulative buckets (upper bound, count) of the two lateness
    histograms in a /metrics scrape."""
    found: dict[str, list[tuple[float, float]]] = {LATENESS: [], LOOP_LAG: []}
    for line in text.splitlines():
        for name, buckets in found.items():
            if line.startswith(name + "_bucket{"):
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    return found


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]],
             q: float) -> float | None:
    """The q-quantile (a bucket's upper bound) of what was observed between
    two scrapes of one cumulative histogram; None if nothing was."""
    old = dict(before)
    counts = [(bound, count - old.get(bound, 0.0)) for bound, count in after]
    total = counts[-1][1] if counts else 0.0
    if total <= 0:
        return None
    for bound, count in counts:
        if count >= q * total:
            return bound
    return counts[-1][0]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def db_bytes(data_dir: Path) -> int:
    """pua's SQLite database with its WAL and shared-memory index."""
    return sum(p.stat().st_size for p in data_dir.glob("pua.db*") if p.is_file())


def present(kam: KamailioPresence) -> tuple[set[str], set[tuple[str, str]]]:
    """Publications (presentity) and subscriptions (presentity, watcher)
    alive at Kamailio now; read from its database without waiting for its
    worker (the WAL lets us read beside its writes)."""
    now = int(time.time())
    pubs = {f"sip:{r['username']}@{r['domain']}" for r in kam.query(
        "SELECT username, domain FROM presentity WHERE event = 'presence' AND expires > ?",
        (now,), sync=False)}
    subs = {(r["presentity_uri"], f"sip:{r['watcher_username']}@{r['watcher_domain']}")
            for r in kam.query(
                "SELECT presentity_uri, watcher_username, watcher_domain FROM active_watchers"
                " WHERE event = 'presence' AND expires > ?", (now,), sync=False)}
    return pubs, subs


class Sampler:
    """Takes one sample each call: the figures since the previous one."""

    def __init__(self, svc: RunningService, kam: KamailioPresence, data_dir: Path,
                 publications: set[str], subscriptions: set[tuple[str, str]]) -> None:
        self.svc = svc
        self.kam = kam
        self.data_dir = data_dir
        self.publications = publications
        self.subscriptions = subscriptions
        self.started = time.monotonic()
        self.last_hist = histograms(_get(svc.api_url, "/metrics"))
        self.last_counters = self._counters()
        self.samples: list[dict[str, Any]] = []

    def _counters(self) -> dict[str, Any]:
        stats = call(self.svc.api_url, "pua.stats")
        engine, sip = stats["engine"], stats["sip"]
        return {
            "refreshes": engine["refreshes"], "retries": engine["retries"],
            "recoveries_412": engine["recoveries_412"],
            "recoveries_423": engine["recoveries_423"],
            "publish_sent": engine["publish_sent"], "subscribe_sent": engine["subscribe_sent"],
            "notify_received": engine["notify_received"],
            "timeouts": sip["timeouts"], "retransmissions": sip["retransmissions"],
            "responses": {str(k): v for k, v in stats["responses"].items()},
            "by_state": stats["by_state"],
        }

    def sample(self) -> dict[str, Any]:
        hist = histograms(_get(self.svc.api_url, "/metrics"))
        counters = self._counters()
        pubs, subs = present(self.kam)
        last = self.last_counters
        delta = {k: counters[k] - last[k] for k in counters
                 if k not in ("responses", "by_state")}
        responses = {code: n - last["responses"].get(code, 0)
                     for code, n in counters["responses"].items()
                     if n - last["responses"].get(code, 0)}
        row = {
            "minute": round((time.monotonic() - self.started) / 60.0, 2),
            "rss_mib": round(rss_kib(self.svc.process.pid) / 1024.0, 1),
            "db_mib": round(db_bytes(self.data_dir) / 2**20, 2),
            "loop_lag_p50": quantile(self.last_hist[LOOP_LAG], hist[LOOP_LAG], 0.5),
            "loop_lag_p99": quantile(self.last_hist[LOOP_LAG], hist[LOOP_LAG], 0.99),
            "lateness_p50": quantile(self.last_hist[LATENESS], hist[LATENESS], 0.5),
            "lateness_p99": quantile(self.last_hist[LATENESS], hist[LATENESS], 0.99),
            **delta,
            "responses": responses,
            "by_state": counters["by_state"],
            "kamailio_presentities": len(pubs),
            "kamailio_watchers": len(subs),
            "publications_present": len(self.publications & pubs),
            "subscriptions_present": len(self.subscriptions & subs),
        }
        self.last_hist, self.last_counters = hist, counters
        self.samples.append(row)
        return row


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def _drain(stream: IO[str] | None, sink: IO[str]) -> None:
    """Copies a child's output to a file so its pipe never fills."""
    if stream is None:
        return
    for line in stream:
        sink.write(line)


def run(publications: int = 100_000, subscriptions: int = 10_000, minutes: float = 45.0,
        lifetime: int = 120, margin: float = 20.0, sample_seconds: float = 60.0,
        workdir: Path | None = None, shm_mb: int = 4096,
        progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """The campaign; returns its figures and per-sample table.

    ``lifetime`` is Kamailio's ``max_expires`` (every Expires is lowered to
    it); pua refreshes at max(lifetime/2, lifetime - margin), up to 10%
    earlier.  Samples are taken every ``sample_seconds`` for ``minutes``
    after the set-up."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="pua-longrun-"))
    data_dir = workdir / "var"
    pubs = {presentity(n) for n in range(publications)}
    # Each watcher watches one presentity, among those published, so that
    # Kamailio has a document to NOTIFY.
    subs = {(presentity(n % publications), watcher(n)) for n in range(subscriptions)}
    figures: dict[str, Any] = {
        "publications": publications, "subscriptions": subscriptions, "minutes": minutes,
        "lifetime": lifetime, "margin": margin, "sample_seconds": sample_seconds,
        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    # Kamailio's database on tmpfs: db_sqlite syncs each request's write to
    # disk, which on this disk would cap it far below the refresh rate.
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with KamailioPresence(max_expires=lifetime, shm_mb=shm_mb, debug=1, base_dir=shm) as kam:
        svc = RunningService("--outbound-proxy", kam.uri, "--refresh-margin", str(margin),
                             "--log-level", "warning", data_dir=data_dir)
        log = (workdir / "pua.log").open("w")
        drains = [threading.Thread(target=_drain, args=(s, log), daemon=True)
                  for s in (svc.process.stdout, svc.process.stderr)]
        for thread in drains:
            thread.start()
        try:
            # Made over one refresh interval, so that the refreshes do
            # not all fall due in one burst.
            spread = max(lifetime / 2.0, lifetime - margin) * 0.9
            t0 = time.monotonic()
            figures["publish_errors"] = make(svc.api_url, [
                ("pua.publish", [uri, 3600, "presence", ".", ".", ".", ".", ".", pidf(uri)])
                for uri in sorted(pubs)], spread)
            figures["publish_seconds"] = round(time.monotonic() - t0, 1)
            t0 = time.monotonic()
            figures["subscribe_errors"] = make(svc.api_url, [
                ("pua.subscribe", [p, w, "presence", 3600]) for p, w in sorted(subs)], spread)
            figures["subscribe_seconds"] = round(time.monotonic() - t0, 1)
            if progress is not None:
                progress({k: figures[k] for k in ("publish_seconds", "publish_errors",
                                                   "subscribe_seconds", "subscribe_errors")})
            sampler = Sampler(svc, kam, data_dir, pubs, subs)
            end = sampler.started + minutes * 60.0
            next_at = sampler.started + sample_seconds
            while next_at <= end + 1e-6:
                # Sleeping is the point here: a sample each period.
                time.sleep(max(0.0, next_at - time.monotonic()))
                row = sampler.sample()
                if progress is not None:
                    progress(row)
                next_at += sample_seconds
            have_pubs, have_subs = present(kam)
            figures["lost_publications"] = sorted(pubs - have_pubs)[:20]
            figures["lost_publications_count"] = len(pubs - have_pubs)
            figures["lost_subscriptions"] = [list(p) for p in sorted(subs - have_subs)[:20]]
            figures["lost_subscriptions_count"] = len(subs - have_subs)
            figures["kamailio_log_errors"] = sum(
                1 for line in kam.log_text().splitlines() if "ERROR" in line)
        finally:
            svc.stop(timeout=120)
            log.close()
    samples = sampler.samples
    figures["samples"] = samples
    if samples:
        rss = [(s["minute"], s["rss_mib"]) for s in samples]
        figures["rss_first_mib"] = rss[0][1]
        figures["rss_last_mib"] = rss[-1][1]
        figures["rss_max_mib"] = max(r for _, r in rss)
        figures["rss_slope_mib_per_minute"] = round(slope(rss), 3)
        # Expected refreshes per record: one every refresh interval, which
        # the jitter makes up to 10% (at most 10 s) shorter.
        interval = max(lifetime / 2.0, lifetime - margin)
        figures["refresh_interval_seconds"] = [
            round(interval - min(lifetime / 10.0, 10.0), 1), interval]
        figures["refreshes"] = sum(s["refreshes"] for s in samples)
        figures["refreshes_expected"] = round(
            (publications + subscriptions) * minutes * 60.0
            / (interval - min(lifetime / 10.0, 10.0) / 2))
        for key in ("retries", "recoveries_412", "recoveries_423", "timeouts",
                    "retransmissions", "notify_received"):
            figures[key] = sum(s[key] for s in samples)
        responses: dict[str, int] = {}
        for s in samples:
            for code, n in s["responses"].items():
                responses[code] = responses.get(code, 0) + n
        figures["responses"] = responses
        figures["db_last_mib"] = samples[-1]["db_mib"]
    figures["workdir"] = str(workdir)
    return figures


def plot(figures: dict[str, Any], path: Path) -> None:
    """The per-sample figures over time, one panel each, as a PNG."""
    # Imported here: only the plot needs matplotlib (the short run in the
    # test suite does not plot), and it must be told its backend first.
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    samples = figures["samples"]
    x = [s["minute"] for s in samples]
    ms = 1000.0

    def series(key: str, scale: float = 1.0) -> list[float | None]:
        return [None if s[key] is None else s[key] * scale for s in samples]

    fig, axes = plt.subplots(5, 1, figsize=(8, 13), sharex=True)
    axes[0].plot(x, series("rss_mib"), marker="o")
    axes[0].set_ylabel("pua RSS (MiB)")
    axes[0].set_ylim(bottom=0)
    axes[1].plot(x, series("loop_lag_p50", ms), marker="o", label="p50")
    axes[1].plot(x, series("loop_lag_p99", ms), marker="o", label="p99")
    axes[1].set_ylabel("loop lag (ms)")
    axes[1].set_yscale("log")
    axes[1].legend()
    axes[2].plot(x, series("lateness_p50", ms), marker="o", label="p50")
    axes[2].plot(x, series("lateness_p99", ms), marker="o", label="p99")
    axes[2].set_ylabel("refresh lateness (ms)")
    axes[2].set_yscale("log")
    axes[2].legend()
    axes[3].plot(x, series("db_mib"), marker="o")
    axes[3].set_ylabel("pua db + wal (MiB)")
    axes[3].set_ylim(bottom=0)
    axes[4].plot(x, series("publications_present"), marker="o", label="publications")
    axes[4].plot(x, series("subscriptions_present"), marker="o", label="subscriptions")
    axes[4].set_ylabel("alive at Kamailio")
    axes[4].set_ylim(bottom=0)
    axes[4].legend()
    axes[4].set_xlabel("minutes after set-up")
    fig.suptitle(
        f"{figures['publications']:,} publications, {figures['subscriptions']:,} "
        f"subscriptions, Kamailio max_expires {figures['lifetime']} s")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reliability.longrun",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--publications", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--minutes", type=float, default=45.0)
    parser.add_argument("--lifetime", type=int, default=120,
                        help="Kamailio's max_expires, seconds")
    parser.add_argument("--margin", type=float, default=20.0,
                        help="pua's --refresh-margin, seconds")
    parser.add_argument("--sample", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, default=Path("docs/reliability-longrun.json"))
    parser.add_argument("--png", type=Path, default=Path("docs/reliability-longrun.png"))
    args = parser.parse_args()

    def progress(row: dict[str, Any]) -> None:
        brief = {k: v for k, v in row.items() if k != "by_state"}
        print(json.dumps(brief), flush=True)

    figures = run(args.publications, args.subscriptions, args.minutes, args.lifetime,
                  args.margin, args.sample, progress=progress)
    args.json.write_text(json.dumps(figures, indent=1) + "\n")
    plot(figures, args.png)
    print(json.dumps({k: v for k, v in figures.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
