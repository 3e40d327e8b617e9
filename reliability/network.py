"""A bad network: what pua keeps alive at a real presence server when the
link loses, duplicates, delays and reorders SIP.

`pua serve` runs in a network namespace of its own, joined by a veth pair
to this one, where a Kamailio presence server listens (reliability/link.py
makes both and the impairments: nftables and htb, as this kernel has no
netem).  Only SIP between them (and a probe that measures the link) is
impaired, in both directions; the API and the checks are not.

For each condition, on a fresh Kamailio (``max_expires`` short, so a
lifetime is seconds) and a fresh pua: RECORDS publications and RECORDS
subscriptions are made through the API under the impairment, asking a
long Expires (pua adopts the server's); then for PERIODS lifetimes
Kamailio's own tables are sampled every second.  A publication is present
when its presentity has a row whose ``expires`` is ahead; a subscription
when ``active_watchers`` has a row for its watcher and presentity whose
``expires`` is ahead (Kamailio writes watchers through, ``subs_db_mode``
1).  Absences are found between samples, so a duration is known to the
sampling interval, and an absence shorter than it may go unseen.

At the end of the window the records absent are counted; then the link is
healed and pua given time to settle: a record still absent then is lost
for good.

    python -m reliability.network [--records N] [--periods N]
        [--max-expires S] [--conditions a,b] [--output FILE.json]
        [--report docs/reliability.md]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import secrets
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.peers import find_free_port
from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import pidf
from tests.service.running import RunningService

from reliability.link import Impairment, Link, Probe, quantile, rates

DOMAIN = "example.com"
PUA_SIP_PORT = 5060  # the namespace is new: its ports are free
PUA_API_PORT = 8765

CONDITIONS = {
    cond.name: cond
    for cond in (
        Impairment("none"),
        Impairment("loss 5%", loss=5),
        Impairment("loss 20%", loss=20),
        Impairment("loss 40%", loss=40),
        Impairment("dup+reorder+delay", loss=5, duplicate=10, delay=10,
                   delay_rate=256, delay_queue=50),
    )
}



def publication(n: int) -> str:
    return f"p{n}"


def subscription(n: int) -> tuple[str, str]:
    """(presentity URI, watcher user) as Kamailio's active_watchers holds them."""
    return (f"sip:p{n}@{DOMAIN}", f"w{n}")


class Absences:
    """Absence intervals per record, from presence samples."""

    def __init__(self) -> None:
        self.open: dict[Any, float] = {}
        self.closed: list[float] = []
        self.ever: set[Any] = set()
        self.samples = 0

    def sample(self, at: float, watched: set[Any], present: set[Any]) -> None:
        self.samples += 1
        for record in watched:
            if record in present:
                started = self.open.pop(record, None)
                if started is not None:
                    self.closed.append(at - started)
            elif record not in self.open:
                self.open[record] = at
                self.ever.add(record)

    def summary(self, end: float) -> dict[str, Any]:
        durations = sorted(self.closed + [end - s for s in self.open.values()])
        return {
            "ever_absent": len(self.ever),
            "absences": len(durations),
            "still_absent": len(self.open),
            "duration_s": {q: round(quantile(durations, f), 1) for q, f in
                           (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        }


def present_now(kam: KamailioPresence) -> tuple[set[str], set[tuple[str, str]]]:
    """Publications and subscriptions live at the server, by its tables."""
    now = time.time()
    pubs = {r["username"] for r in kam.query(
        "SELECT username FROM presentity WHERE event = 'presence' AND expires > ?",
        (now,), sync=False)}
    subs = {(r["presentity_uri"], r["watcher_username"]) for r in kam.query(
        "SELECT presentity_uri, watcher_username FROM active_watchers "
        "WHERE event = 'presence' AND expires > ?", (now,), sync=False)}
    return pubs, subs


def _histogram(metrics: str, name: str) -> dict[float, float]:
    buckets = {}
    for le, value in re.findall(rf'^{name}_bucket{{le="([^"]+)"}} (\S+)$', metrics, re.M):
        buckets[float(le)] = float(value)
    return buckets


def lateness(before: str, after: str) -> dict[str, Any]:
    """Refresh lateness between two /metrics scrapes: count and the bucket
    upper bounds of p50, p99 and the largest (seconds)."""
    name = "pua_timer_lateness_seconds"
    a, b = _histogram(before, name), _histogram(after, name)
    diff = sorted((le, b[le] - a.get(le, 0.0)) for le in b)
    total = diff[-1][1] if diff else 0.0

    def at(fraction: float) -> float | None:
        for le, count in diff:
            if total and count >= fraction * total:
                return le
        return None

    return {"count": int(total), "p50_le": at(0.5), "p99_le": at(0.99), "max_le": at(1.0)}


def _delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    return {k: v - before.get(k, 0) for k, v in after.items() if isinstance(v, int)}


def _create(svc: RunningService, records: int, errors: collections.Counter[str]
            ) -> tuple[set[str], set[tuple[str, str]]]:
    """Publish and subscribe every record through the API, in batches;
    the records acknowledged."""
    calls = []
    for n in range(records):
        uri = f"sip:p{n}@{DOMAIN}"
        calls.append(("pub", n, "pua.publish",
                      [uri, 3600, "presence", ".", ".", ".", ".", ".", pidf(uri)]))
        calls.append(("sub", n, "pua.subscribe",
                      [uri, f"sip:w{n}@{DOMAIN}", "presence", 3600]))
    batches = [calls[i:i + 50] for i in range(0, len(calls), 50)]
    pubs: set[str] = set()
    subs: set[tuple[str, str]] = set()
    lock = threading.Lock()

    def send(batch: list[tuple[str, int, str, list[Any]]]) -> None:
        body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p}
                for i, (_, _, m, p) in enumerate(batch)]
        answers = {a["id"]: a for a in svc.post("/rpc", body)}
        with lock:
            for i, (kind, n, _, _) in enumerate(batch):
                answer = answers.get(i, {})
                if "result" in answer:
                    if kind == "pub":
                        pubs.add(publication(n))
                    else:
                        subs.add(subscription(n))
                else:
                    error = answer.get("error", {})
                    errors[f"{kind} {error.get('code')} {str(error.get('message'))[:50]}"] += 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(send, batches))
    return pubs, subs


def kamailio_errors(log: str) -> dict[str, int]:
    """Kamailio's ERROR lines, by message (numbers and addresses blurred)."""
    found: collections.Counter[str] = collections.Counter()
    for line in log.splitlines():
        if "ERROR:" in line:
            text = line.split("ERROR:", 1)[1]
            found[re.sub(r"[0-9a-f.:-]*\d[0-9a-f.:-]*", "N", text).strip()[:120]] += 1
    return dict(found.most_common(8))


def lost_detail(svc: RunningService, kam: KamailioPresence, pubs: list[str],
                subs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """For records missing at the end: what pua holds of them, and every row
    the server's table has of them (expired ones too)."""
    detail = []
    for user in pubs:
        uri = f"sip:{user}@{DOMAIN}"
        held = [r for r in svc.rpc("pua.show", [uri])["result"] if r["kind"] == "publication"]
        rows = kam.query("SELECT etag, expires FROM presentity WHERE username = ?", (user,),
                         sync=False)
        detail.append({"record": uri, "pua": held, "server_rows": rows,
                       "held_by_server": False})
    for uri, watcher in subs:
        held = [r for r in svc.rpc("pua.show", [uri])["result"]
                if r["kind"] == "subscription" and r["watcher_uri"].startswith(f"sip:{watcher}@")]
        rows = kam.query("SELECT callid, to_tag, expires, status, reason FROM active_watchers "
                         "WHERE presentity_uri = ? AND watcher_username = ?", (uri, watcher),
                         sync=False)
        now = time.time()
        # Kamailio answered pua's latest request in this dialog with a 200
        # and a lifetime still running, yet its table has no row of it: it
        # holds the subscription in memory only.  (Its log shows how: an
        # initial SUBSCRIBE retransmitted after Kamailio's transaction was
        # gone is taken as new, the insert of its dialog fails on the
        # table's unique key, and the dialog's row is deleted.)
        in_memory = any(r["state"] == "active" and r["last_status"] == 200
                        and (r["expires_at"] or 0) > now for r in held)
        detail.append({"record": [uri, watcher], "pua": held, "server_rows": rows,
                       "now": now, "held_by_server": in_memory
                       and not any(r["expires"] > now for r in rows)})
    return detail


class StderrTail:
    """Reads a child's stderr so its pipe never fills; keeps the last lines."""

    def __init__(self, svc: RunningService) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=2000)
        self.count = 0
        assert svc.process.stderr is not None
        self.stream = svc.process.stderr
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.stream:
            self.count += 1
            self.lines.append(line.rstrip())


def run_condition(link: Link, probe: Probe, cond: Impairment, *, records: int, periods: int,
                  max_expires: int, kam_port: int, workdir: Path,
                  sample_every: float = 1.0) -> dict[str, Any]:
    """One condition on a fresh Kamailio and a fresh pua; its figures."""
    figures: dict[str, Any] = {"condition": cond.name, "impairment": cond.describe()}
    started = time.monotonic()
    token = secrets.token_hex(16)
    # Kamailio's SQLite on a tmpfs where there is one: each commit is an
    # fsync otherwise, and its single worker falls behind thousands of
    # records (answers late, and pua retransmits, even on a clean link).
    # Its timers write to the same file (db_sqlite has no busy timeout, a
    # collision fails the write): kept at the peer's usual 5 s.
    base_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with KamailioPresence(host=link.near, port=kam_port, max_expires=max_expires,
                          debug=1, shm_mb=1024, base_dir=base_dir) as kam:
        link.impair(cond)
        probe.start()
        svc = RunningService(
            "--outbound-proxy", kam.uri, "--log-level", "warning",
            data_dir=workdir / cond.name.replace(" ", "_").replace("%", "pc").replace("+", "_"),
            token=token, host=link.far, sip_port=PUA_SIP_PORT, api_port=PUA_API_PORT,
            command_prefix=link.exec_prefix,
        )
        tail = StderrTail(svc)
        try:
            errors: collections.Counter[str] = collections.Counter()
            created = time.monotonic()
            pubs, subs = _create(svc, records, errors)
            figures["create_s"] = round(time.monotonic() - created, 1)
            figures["acknowledged"] = {"publications": len(pubs), "subscriptions": len(subs)}
            figures["refused"] = dict(errors)
            stats0 = svc.rpc("pua.stats")["result"]
            metrics0 = svc.get("/metrics").decode()
            pub_abs, sub_abs = Absences(), Absences()
            window = periods * max_expires
            end = time.monotonic() + window
            while (now := time.monotonic()) < end:
                present_pubs, present_subs = present_now(kam)
                pub_abs.sample(now, pubs, present_pubs)
                sub_abs.sample(now, subs, present_subs)
                time.sleep(max(0.0, now + sample_every - time.monotonic()))
            now = time.monotonic()
            present_pubs, present_subs = present_now(kam)
            pub_abs.sample(now, pubs, present_pubs)
            sub_abs.sample(now, subs, present_subs)
            figures["window_s"] = window
            figures["samples"] = pub_abs.samples
            figures["publications"] = pub_abs.summary(now)
            figures["subscriptions"] = sub_abs.summary(now)
            stats1 = svc.rpc("pua.stats")["result"]
            metrics1 = svc.get("/metrics").decode()
            counts = link.counters()
            figures["link"] = {"counters": counts, "measured": rates(counts),
                               "probe": probe.finish()}
            figures["pua"] = {
                "engine": _delta(stats0["engine"], stats1["engine"]),
                "sip": _delta(stats0["sip"], stats1["sip"]),
                "responses": _delta({str(k): v for k, v in stats0["responses"].items()},
                                    {str(k): v for k, v in stats1["responses"].items()}),
                "by_state_at_end": stats1["by_state"],
                "refresh_lateness": lateness(metrics0, metrics1),
            }
            # Healed: what pua brings back once the network lets it.
            link.impair(CONDITIONS["none"])
            healed = time.monotonic()
            deadline = healed + 2 * max_expires + 40
            while True:
                present_pubs, present_subs = present_now(kam)
                lost_pubs = pubs - present_pubs
                lost_subs = subs - present_subs
                if not (lost_pubs or lost_subs) or time.monotonic() > deadline:
                    break
                time.sleep(sample_every)
            detail = lost_detail(svc, kam, sorted(lost_pubs), sorted(lost_subs))
            held = [d for d in detail if d["held_by_server"]]
            figures["after_heal"] = {
                "seconds": round(time.monotonic() - healed, 1),
                "lost_for_good": {"publications": sorted(lost_pubs)[:20],
                                  "subscriptions": [list(s) for s in sorted(lost_subs)[:20]],
                                  "count": len(detail) - len(held)},
                "missing_from_table_only": len(held),
                "lost_detail": detail[:20],
            }
        finally:
            if probe.client is not None:
                probe.finish()
            svc.stop()
            figures["pua_stderr_lines"] = tail.count
            figures["pua_stderr_tail"] = list(tail.lines)[-5:]
            lost = figures.get("after_heal", {}).get("lost_detail", [])
            figures["pua_log_of_lost"] = [
                line for line in tail.lines
                if any(f"{d['record'][0] if isinstance(d['record'], list) else d['record']} "
                       in line for d in lost)][-40:]
    figures["kamailio_errors"] = kamailio_errors(kam.log_text())
    figures["seconds"] = round(time.monotonic() - started, 1)
    return figures


def run(records: int = 1000, periods: int = 10, max_expires: int = 30,
        conditions: list[str] | None = None, workdir: Path | None = None,
        progress: bool = False) -> dict[str, Any]:
    """The campaign over ``conditions`` (names of CONDITIONS; all by
    default); its figures.  Raises link.NoNamespaces where namespaces
    cannot be made."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="pua-network-"))
    names = conditions or list(CONDITIONS)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "records": records, "periods": periods, "max_expires": max_expires,
        "conditions": [],
    }
    started = time.monotonic()
    with Link(ports=[]) as link:
        kam_port = find_free_port(link.near)
        probe_port = find_free_port(link.near)
        while probe_port == kam_port:
            probe_port = find_free_port(link.near)
        link.ports = [kam_port, probe_port]
        probe = Probe(link, probe_port)
        try:
            for name in names:
                figures = run_condition(link, probe, CONDITIONS[name], records=records,
                                        periods=periods, max_expires=max_expires,
                                        kam_port=kam_port, workdir=workdir)
                result["conditions"].append(figures)
                if progress:
                    print(json.dumps(figures, default=str), file=sys.stderr, flush=True)
        finally:
            probe.close()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


BEGIN = "<!-- network figures: begin -->"
END = "<!-- network figures: end -->"


def _pct(measured: dict[str, Any], key: str) -> str:
    values = [measured[d][key] for d in ("to_far", "to_near")]
    return " / ".join("-" if v is None else f"{v:g}" for v in values)


def report(result: dict[str, Any], command: str) -> str:
    """The figures as markdown, between the section's markers."""
    lines = [
        BEGIN, "",
        f"Produced by `{command}` on {result['date']} in {result['seconds']:,.0f} s: "
        f"{result['records']:,} publications and {result['records']:,} subscriptions per "
        f"condition, Kamailio `max_expires` {result['max_expires']} s, observed for "
        f"{result['periods']} lifetimes ({result['periods'] * result['max_expires']} s), "
        "sampled every second.", "",
        "The link, as measured (nftables counters; per direction: pua to Kamailio / "
        "Kamailio to pua; the probe's round trips cross it both ways):", "",
        "| condition | SIP packets | lost % | duplicated % | slow queue % | queue overflow |"
        " probe: round trip lost % | duplicates | out of order | RTT p50 / p99 / max ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in result["conditions"]:
        link, probe = c["link"], c["link"]["probe"]
        m = link["measured"]
        lines.append(
            f"| {c['condition']} | {m['to_far']['packets'] + m['to_near']['packets']:,} "
            f"| {_pct(m, 'lost_pct')} | {_pct(m, 'duplicated_pct')} "
            f"| {_pct(m, 'delayed_pct')} | {m['to_far']['overflow']} / {m['to_near']['overflow']} "
            f"| {probe['round_trip_lost_pct']:g} | {probe['duplicates']} "
            f"| {probe['out_of_order']} | {probe['rtt_ms']['p50']:g} / "
            f"{probe['rtt_ms']['p99']:g} / {probe['rtt_ms']['max']:g} |")
    lines += [
        "", "The records, at the server (publications / subscriptions):", "",
        "| condition | acknowledged | ever absent | absences | absence p50 / p90 / p99 / max s |"
        " absent at the end | lost for good (healed) | table only | 412 recoveries | 481 answers |"
        " retransmissions | timeouts | refresh lateness p50 / p99 |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in result["conditions"]:
        pub, sub = c["publications"], c["subscriptions"]
        ack = c["acknowledged"]
        pua = c["pua"]
        late = pua["refresh_lateness"]

        def dist(s: dict[str, Any]) -> str:
            d = s["duration_s"]
            return f"{d['p50']:g} / {d['p90']:g} / {d['p99']:g} / {d['max']:g}"

        def le(v: float | None) -> str:
            return "-" if v is None else f"≤ {v * 1000:g} ms"

        lines.append(
            f"| {c['condition']} | {ack['publications']:,} / {ack['subscriptions']:,} "
            f"| {pub['ever_absent']} / {sub['ever_absent']} "
            f"| {pub['absences']} / {sub['absences']} "
            f"| {dist(pub)}<br>{dist(sub)} "
            f"| {pub['still_absent']} / {sub['still_absent']} "
            f"| **{c['after_heal']['lost_for_good']['count']}** "
            f"| {c['after_heal'].get('missing_from_table_only', '-')} "
            f"| {pua['engine'].get('recoveries_412', 0)} | {pua['responses'].get('481', 0)} "
            f"| {pua['sip'].get('retransmissions', 0):,} | {pua['sip'].get('timeouts', 0):,} "
            f"| {le(late['p50_le'])} / {le(late['p99_le'])} |")
    lines += ["", END]
    return "\n".join(lines)


def write_report(path: Path, text: str) -> None:
    """Put ``text`` between the markers in ``path`` (they must be there)."""
    doc = path.read_text()
    start, end = doc.index(BEGIN), doc.index(END) + len(END)
    path.write_text(doc[:start] + text + doc[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.network",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--periods", type=int, default=10)
    parser.add_argument("--max-expires", type=int, default=30)
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help="comma-separated, of: " + ", ".join(CONDITIONS))
    parser.add_argument("--output", type=Path, help="the figures as JSON")
    parser.add_argument("--report", type=Path, help="markdown file with the section's markers")
    args = parser.parse_args(argv)
    # SIGTERM ends the run through its cleanup (namespaces, tables, peers).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    names = [n.strip() for n in args.conditions.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        parser.error(f"unknown conditions: {unknown}")
    result = run(args.records, args.periods, args.max_expires, names, progress=True)
    text = json.dumps(result, indent=2, default=str)
    if args.output:
        args.output.write_text(text)
    print(text)
    if args.report:
        command = "python -m reliability.network " + " ".join(argv or sys.argv[1:])
        write_report(args.report, report(result, command.strip()))
    lost = sum(c["after_heal"]["lost_for_good"]["count"] for c in result["conditions"])
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
