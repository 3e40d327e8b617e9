"""`make bench`: run every benchmark and write docs/benchmarks.md.

Each figure is reported beside a reference measured in the same run, and the
ratio is the number to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pua.runtime.loop import GC_THRESHOLDS, tune_gc, uvloop_available

from . import engine, parse, persistence, publish_rate, service_rpc

COMMAND = "make bench   # = .venv/bin/python -m benchmarks.run --output docs/benchmarks.md"


def _fmt(rate: float) -> str:
    return f"{rate:,.0f}"


def render_engine(results: dict[int, dict[str, Any]]) -> list[str]:
    """The engine section."""
    lines = [
        "",
        "## The presence engine alone (no sockets)",
        "",
        "`benchmarks/engine.py`: N presentities each published (a small PIDF "
        "document, for ever) and answered 200 with SIP-ETag and Expires 3600; "
        "then the clock is moved through the refresh window and every refresh "
        "is answered; the same for N subscriptions (2xx with a To tag). Only "
        "time spent inside the engine is counted (building the answers is the "
        "server's work); answers are handed over as objects, so wire parsing "
        "is not included (see above for it). Memory is the growth of the "
        "process's resident set per live record, after the finished "
        "transactions are gone.",
        "",
        "| records | publications set up /s | refreshed /s | bytes per publication "
        "| subscriptions set up /s | bytes per subscription |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in results.items():
        pub, sub = row["publications"], row["subscriptions"]
        lines.append(
            f"| {size:,} | {_fmt(pub['setup_per_s'])} | {_fmt(pub['refresh_per_s'])} | "
            f"{_fmt(pub['bytes_per_record'])} | {_fmt(sub['setup_per_s'])} | "
            f"{_fmt(sub['bytes_per_record'])} |"
        )
    sizes = list(results)
    lines += [
        "",
        "### Idle timers",
        "",
        "CPU per second of running while no refresh is due: pua keeps one heap "
        "of deadlines and the runtime sleeps until the earliest, so this is "
        "one timer check per second of virtual time. Reference: one pass over "
        "every record per tick, which is what Kamailio's and OpenSIPS's pua "
        "timer does to find the records due (measured here on the same records).",
        "",
        "| records | pua: CPU s per s | reference scan: CPU s per tick |",
        "|---:|---:|---:|",
    ]
    for size, row in results.items():
        idle = row["idle"]
        lines.append(
            f"| {size:,} | {idle['ours_cpu_s_per_s']:.2e} | {idle['scan_cpu_s_per_tick']:.2e} |"
        )
    if len(sizes) >= 2:
        small, large = results[sizes[0]]["idle"], results[sizes[-1]]["idle"]
        lines += [
            "",
            f"Ratio {sizes[-1]:,} / {sizes[0]:,} records: pua "
            f"{large['ours_cpu_s_per_s'] / small['ours_cpu_s_per_s']:.2f}, "
            f"reference scan {large['scan_cpu_s_per_tick'] / small['scan_cpu_s_per_tick']:.1f}.",
        ]
    return lines


def render_service(result: dict[str, Any]) -> list[str]:
    """The management API section."""
    rows = [
        ("pua serve, one call per request", result["single"]),
        (f"pua serve, batches of {result['batch_size']}", result["batch"]),
        (f"Kamailio 5.6 pua + pua_rpc ({result['kamailio_workers']} workers), one call per request",
         result["kamailio"]),
    ]
    lines = [
        "",
        "## Publications set up through the management API",
        "",
        f"`benchmarks/service_rpc.py`: {result['calls']:,} `pua.publish` JSON-RPC calls over HTTP "
        f"(Kamailio's parameter order; each a new presentity, so each an initial PUBLISH that "
        f"waits for its 200) from {result['concurrency']} client threads on keep-alive "
        "connections, against a SIPp UAS answering 200 with SIP-ETag. Reference: Kamailio with "
        "the pua and pua_rpc modules behind its JSON-RPC HTTP transport (jsonrpcs + xhttp), "
        "driven by the same client against the same UAS in the same run. Kamailio 5.6's "
        "jsonrpcs refuses batch arrays, so it has no batch figure.",
        "",
        "| service | ok | failed | seconds | publications/s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, row in rows:
        lines.append(f"| {name} | {row['ok']} | {row['failed']} | {row['seconds']:.2f} | "
                     f"{_fmt(row['per_s'])} |")
    lines += [
        "",
        f"**Ratio pua / Kamailio: {result['ratio_single']:.2f} one call per request, "
        f"{result['ratio_batch']:.2f} with batches.** The client, pua or Kamailio, and SIPp "
        "share the machine's two cores.",
    ]
    return lines


def render_persistence(results: dict[int, dict[str, Any]]) -> list[str]:
    """The store section."""
    lines = [
        "",
        "## Restart and write-back on the embedded SQLite store",
        "",
        "`benchmarks/persistence.py`: a `pua` table of N live rows (90% publications with "
        "their PIDF body, 10% subscriptions with a dialog) is loaded and every record resumed "
        "(scheduled, nothing sent), in a process of its own whose peak resident memory is "
        "reported. Then every record is marked changed and written back; meanwhile a task that "
        "asks to wake every millisecond records the longest time the event loop did not run.",
        "",
        "| rows | restore (load + resume) s | peak memory MiB | write-back of all records s "
        "| longest event-loop stall ms |",
        "|---:|---:|---:|---:|---:|",
    ]
    for size, row in results.items():
        lines.append(
            f"| {size:,} | {row['restore_seconds']:.1f} | {row['peak_rss_mib']:,.0f} | "
            f"{row['write_back_seconds']:.1f} | {row['longest_stall_ms']:.1f} |"
        )
    return lines


def render(parse_rows: list[dict[str, object]], publish: dict[str, object]) -> str:
    """The Markdown report."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `{COMMAND}` on {now}.",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"event loop: {'uvloop' if uvloop_available() else 'asyncio'}, "
        f"collector thresholds {GC_THRESHOLDS} as pua's programs set them. "
        "Absolute rates on these machines are noisy; the ratios against the "
        "reference measured in the same run are the figures to compare.",
        "",
        "## Parsing and serializing (messages per second, one core)",
        "",
        "Reference: a plain split-and-partition parser (blank line, lines, "
        "colon) that checks and builds nothing. *parse* is `parse_message` "
        "(framing, start line, header names, Content-Length, limits); "
        "*parse + read* also reads Call-ID, CSeq, the top Via's branch, "
        "SIP-ETag and Expires as typed values.",
        "",
        "| message | bytes | reference | parse | parse / reference | parse + read | serialize |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in parse_rows:
        ref = float(row["reference_parse_per_s"])  # type: ignore[arg-type]
        p = float(row["parse_per_s"])  # type: ignore[arg-type]
        lines.append(
            f"| {row['message']} | {row['bytes']} | {_fmt(ref)} | {_fmt(p)} | {p / ref:.2f} | "
            f"{_fmt(float(row['parse_and_read_per_s']))} | {_fmt(float(row['serialize_per_s']))} |"  # type: ignore[arg-type]
        )
    mine = publish["pua"]
    sipp = publish["sipp"]
    assert isinstance(mine, dict) and isinstance(sipp, dict)
    lines += [
        "",
        "## PUBLISH transactions per second over UDP loopback",
        "",
        f"{publish['calls']:,} PUBLISH transactions (a 770-byte PIDF PUBLISH), "
        f"{publish['window']} in flight at a time, against a SIPp UAS "
        "(`tests/peers/scenarios/publish_200.xml`: 200 with SIP-ETag and "
        "Expires). Reference: SIPp's own UAC "
        "(`benchmarks/sipp/uac_publish.xml`) against the same UAS. Each round "
        "starts a fresh UAS and runs both senders, in swapped order every other "
        f"round; {publish['rounds']} rounds, and the table shows the median "
        f"round of each (all rounds, transactions/s: pua {publish['pua_rounds']}, "
        f"SIPp {publish['sipp_rounds']}).",
        "",
        "| sender (median round) | successful | failed | seconds | transactions/s |",
        "|---|---:|---:|---:|---:|",
        f"| pua (`SipStack.request`) | {mine['successful']} | {mine['failed']} | "
        f"{mine['elapsed_s']:.2f} | {_fmt(mine['per_s'])} |",
        f"| SIPp UAC | {sipp['successful']} | {sipp['failed']} | "
        f"{sipp['elapsed_s']:.2f} | {_fmt(sipp['per_s'])} |",
        "",
        f"**Ratio pua / SIPp: {publish['ratio']:.2f}** (target: at least 0.30).",
        "",
        "pua and the SIPp UAS share the machine's two cores during the pua run; "
        "SIPp is a C++ program that builds each request from a template.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--output", type=Path, default=Path("docs/benchmarks.md"))
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--service-calls", type=int, default=5000)
    ap.add_argument("--store-sizes", default="100000,1000000",
                    help="row counts for the restart benchmark, comma-separated")
    ap.add_argument("--engine-sizes", default="10000,1000000",
                    help="record counts for the engine benchmark, comma-separated")
    args = ap.parse_args(argv)
    tune_gc()
    print("parsing and serializing ...", file=sys.stderr)
    parse_rows = parse.run()
    print("PUBLISH transactions against SIPp ...", file=sys.stderr)
    publish = publish_rate.run(args.calls, args.window)
    print("the engine alone ...", file=sys.stderr)
    sizes = tuple(int(x) for x in args.engine_sizes.split(",") if x)
    engine_results = engine.run(sizes)
    print("the management API against Kamailio's pua_rpc ...", file=sys.stderr)
    service_result = service_rpc.run(args.service_calls, 50)
    print("restart and write-back on SQLite ...", file=sys.stderr)
    store_sizes = tuple(int(x) for x in args.store_sizes.split(",") if x)
    store_results = persistence.run(store_sizes)
    report = (render(parse_rows, publish) + "\n".join(render_service(service_result))
              + "\n" + "\n".join(render_engine(engine_results))
              + "\n" + "\n".join(render_persistence(store_results)) + "\n")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(json.dumps({"parse": parse_rows, "publish": publish, "engine": engine_results,
                      "service": service_result, "store": store_results},
                     indent=1, default=str))
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
