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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pua.runtime.loop import GC_THRESHOLDS, tune_gc, uvloop_available

from . import (
    churn,
    cluster,
    dialogs,
    digest,
    engine,
    parse,
    persistence,
    publish_rate,
    registrations,
    service_memory,
    service_rpc,
    xmpp,
)

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
        "is not included (see above for it); the virtual clock moves as it "
        "would at 5,000 set-ups a second, so finished transactions end as on "
        "the wire. Memory is the growth of the process's resident set per "
        "live record once the finished transactions are gone; the body each "
        "publication keeps (to publish again after a 412) is counted apart. "
        "Target: at most 730 bytes a record at 1,000,000 (Kamailio's pua "
        "holds a publication in 670-730 bytes of shared memory).",
        "",
        "| records | publications set up /s | refreshed /s | bytes per publication "
        "(body apart) | body bytes | subscriptions set up /s | bytes per subscription |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in results.items():
        pub, sub = row["publications"], row["subscriptions"]
        lines.append(
            f"| {size:,} | {_fmt(pub['setup_per_s'])} | {_fmt(pub['refresh_per_s'])} | "
            f"{_fmt(pub['bytes_per_record'])} | {_fmt(pub.get('body_bytes', 0))} | "
            f"{_fmt(sub['setup_per_s'])} | {_fmt(sub['bytes_per_record'])} |"
        )
    sizes = list(results)
    if all("metrics_s" in row["publications"] for row in results.values()):
        lines += [
            "",
            "### /metrics at scale",
            "",
            "Time to build the Prometheus exposition (`pua.api.metrics.metrics_text`, "
            "what `GET /metrics` serves) over the engine holding the records above: "
            "counts by kind and state are kept as records move, so no record is "
            "visited. Median of 200 calls.",
            "",
            "| records | /metrics ms |",
            "|---:|---:|",
        ]
        for size, row in results.items():
            lines.append(f"| {size:,} | {row['publications']['metrics_s'] * 1000:.3f} |")
        if len(sizes) >= 2:
            small = results[sizes[0]]["publications"]["metrics_s"]
            large = results[sizes[-1]]["publications"]["metrics_s"]
            lines += [
                "",
                f"Ratio {sizes[-1]:,} / {sizes[0]:,} records: {large / small:.2f} "
                "(target: at most 1.5).",
            ]
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
    ]
    if "postgres" in result:  # results from before the PostgreSQL row have none
        rows.append(("pua serve with PostgreSQL as the store, one call per request",
                     result["postgres"]))
    rows += [
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
        *(
            [
                "",
                f"One call per request, pua and Kamailio were each measured in "
                f"{result['rounds']} rounds, in swapped order every other round; the table "
                "shows the median round of each (all rounds, publications/s: pua "
                f"{[round(r) for r in result['single_rounds']]}, Kamailio "
                f"{[round(r) for r in result['kamailio_rounds']]}).",
            ]
            if "single_rounds" in result
            else []
        ),
        "",
        "The last column is the CPU time the service used per call (user + system, "
        "every process and thread of it, from `/proc`), the steadier figure when the machine "
        "is shared.",
        "",
        "| service | ok | failed | seconds | publications/s | service CPU µs a call |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in rows:
        cpu = f"{row['cpu_us_per_call']:.0f}" if "cpu_us_per_call" in row else ""
        lines.append(f"| {name} | {row['ok']} | {row['failed']} | {row['seconds']:.2f} | "
                     f"{_fmt(row['per_s'])} | {cpu} |")
    postgres = (f", {result['ratio_postgres']:.2f} one call per request with PostgreSQL "
                "(a database of the run's own on the machine's server)"
                if "ratio_postgres" in result else "")
    lines += [
        "",
        f"**Ratio pua / Kamailio: {result['ratio_single']:.2f} one call per request, "
        f"{result['ratio_batch']:.2f} with batches{postgres}.** The client, pua or Kamailio, "
        "SIPp (and PostgreSQL) share the machine's two cores. Targets: at least 1.0 one call "
        "per request, at least 2.0 with batches.",
    ]
    if "kamailio_db" in result:
        durable = result["kamailio_db"]
        lines += [
            "",
            "pua stores every publication before it answers; the reference above keeps its "
            "table in memory (`db_mode` 0) and answers before anything is stored. With "
            f"`db_mode` 2 (every publication in its SQLite database) the same Kamailio did "
            f"{_fmt(durable['per_s'])} publications/s at {durable['cpu_us_per_call']:.0f} µs of "
            f"CPU a call (pua / Kamailio: "
            f"{result['single']['per_s'] / durable['per_s']:.2f} one call per request), and its "
            f"table held {durable['rows']:,} of the {durable['ok']:,} publications it had "
            "answered with success (its SQLite driver gives up on a busy database at once, logs "
            "`database is locked`, and the row is lost).",
        ]
    if "presence_server" in result:
        ours, ref = result["presence_server"], result["presence_server_reference"]
        lines += [
            "",
            f"Against a real presence server (Kamailio 5.6 `presence` on SQLite, which stores "
            f"every publication) instead of the SIPp UAS, {result['presence_threads']} client "
            "threads, one call per request, each side on presentities of its own:",
            "",
            "| service | ok | failed | seconds | publications/s |",
            "|---|---:|---:|---:|---:|",
            f"| pua serve | {ours['ok']} | {ours['failed']} | {ours['seconds']:.2f} | "
            f"{_fmt(ours['per_s'])} |",
            f"| Kamailio 5.6 pua + pua_rpc | {ref['ok']} | {ref['failed']} | "
            f"{ref['seconds']:.2f} | {_fmt(ref['per_s'])} |",
            "",
            f"**Ratio pua / Kamailio at the presence server: "
            f"{result['ratio_presence_server']:.2f}.**",
        ]
    return lines


def render_persistence_mariadb(results: dict[int, dict[str, Any]]) -> list[str]:
    """The store section on MariaDB."""
    return [
        "",
        "## Restart and write-back on MariaDB",
        "",
        "The same as on SQLite (above), with the machine's MariaDB as the store: a database "
        "of the run's own, made afresh for each size (asyncmy; write-back by multi-row "
        "statements of at most 200 rows, an `UPDATE ... JOIN` over a derived table each; "
        "restore by chunks of ids). MariaDB shares the machine's two cores with pua. The "
        "targets above are SQLite's; the loop's 20 ms holds for every store.",
        "",
        *_persistence_table(results),
    ]


def render_persistence_postgres(results: dict[int, dict[str, Any]]) -> list[str]:
    """The store section on PostgreSQL."""
    lines = [
        "",
        "## Restart and write-back on PostgreSQL",
        "",
        "The same as on SQLite (above), with the machine's PostgreSQL as the store: a "
        "database of the run's own, made afresh for each size (asyncpg; write-back by "
        "`executemany`, pipelined; restore by chunks of ids). PostgreSQL shares the machine's "
        "two cores with pua. The targets above are SQLite's; the loop's 20 ms holds for "
        "every store.",
        "",
        *_persistence_table(results),
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
        "(scheduled; what comes due is sent to a next hop that never answers), in a process of "
        "its own whose peak resident memory is reported. Then every record is marked refreshed "
        "(what a refresh period leaves to write: ETag, expiry, CSeq) and written back, then "
        "every record is marked changed whole and written back; meanwhile a task that asks to "
        "wake every millisecond records the longest time the event loop did not run. Targets: "
        "restore of 1,000,000 rows in at most 15 s and 1 GiB; write-back of 100,000 in at most "
        "2 s and of 1,000,000 in at most 20 s, the loop never held for more than 20 ms.",
        "",
        *_persistence_table(results),
    ]
    return lines


def _persistence_table(results: dict[int, dict[str, Any]]) -> list[str]:
    lines = [
        "| rows | restore (load + resume) s | peak memory MiB | write-back, all refreshed s "
        "| longest stall ms | write-back, all changed whole s | longest stall ms |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for size, row in results.items():
        lines.append(
            f"| {size:,} | {row['restore_seconds']:.1f} | {row['peak_rss_mib']:,.0f} | "
            f"{row['refresh_write_seconds']:.1f} | {row['refresh_stall_ms']:.1f} | "
            f"{row['write_back_seconds']:.1f} | {row['longest_stall_ms']:.1f} |"
        )
    return lines


def render_header() -> list[str]:
    """The title, how the report was made, and the machine."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        "# Benchmarks",
        "",
        f"Produced by `{COMMAND}` on {now}.",
        f"Machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"event loop: {'uvloop' if uvloop_available() else 'asyncio'}, "
        f"collector thresholds {GC_THRESHOLDS} as pua's programs set them. "
        "Absolute rates on these machines are noisy; the ratios against the "
        "reference measured in the same run are the figures to compare.",
    ]


def render_parse(parse_rows: list[dict[str, object]]) -> list[str]:
    """The parser section."""
    lines = [
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
    return lines


def render_publish(publish: dict[str, object]) -> list[str]:
    """The PUBLISH-over-UDP section."""
    mine = publish["pua"]
    sipp = publish["sipp"]
    assert isinstance(mine, dict) and isinstance(sipp, dict)
    return [
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
        f"**Ratio pua / SIPp: {publish['ratio']:.2f}** (target: at least 0.5).",
        "",
        "pua and the SIPp UAS share the machine's two cores during the pua run; "
        "SIPp is a C++ program that builds each request from a template.",
    ]


def _mib(n: float) -> str:
    return f"{n / 2**20:,.1f}"


def render_service_memory(result: dict[str, Any]) -> list[str]:
    """The section on the service's memory per publication."""
    per = result["bytes_per_publication"]
    verdict = "within" if per <= result["target_bytes"] else "over"
    return [
        "",
        "## Memory of `pua serve` per publication",
        "",
        f"`benchmarks/service_memory.py`: `pua serve` (embedded SQLite store) publishes "
        f"{result['publications']:,} distinct presentities through JSON-RPC `pua.publish` "
        f"(expires 3600, a {result['body_bytes_per_publication']:.0f}-byte PIDF body each, "
        f"batches of {result['batch_size']} calls from {result['concurrency']} client "
        "connections, each call waiting for its 200) against a SIPp UAS answering 200 with "
        "SIP-ETag. The service's resident set (`/proc/PID/statm`) is read after start-up and "
        f"{result['warmup']} warm-up publications, and again once every publication is "
        "acknowledged, timer K has ended the finished transactions and the process has gone "
        "quiet (no CPU used, resident set unchanged for a second).",
        "",
        "| publications | live records | RSS before MiB | RSS after MiB | bytes per publication "
        "| of which body | seconds | publications/s |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {result['publications']:,} | {result['records']:,} | {_mib(result['rss_before'])} | "
        f"{_mib(result['rss_after'])} | {_fmt(per)} | "
        f"{result['body_bytes_per_publication']:.0f} | {result['seconds']:.1f} | "
        f"{_fmt(result['per_s'])} |",
        "",
        f"**{_fmt(per)} bytes per publication** (target: at most "
        f"{result['target_bytes']:,}; {verdict} it).",
    ]


def render_churn(result: dict[str, Any]) -> list[str]:
    """The section on memory while publications come and go."""
    change = result["change_percent"]
    verdict = "within" if abs(change) <= result["target_percent"] else "outside"
    lines = [
        "",
        "## Memory while publications come and go",
        "",
        f"`benchmarks/churn.py`: an in-process `PresenceRuntime` (no store) runs "
        f"{result['cycles']:,} cycles of \"publish a new presentity (expires 3600), then "
        f"remove it (expires 0)\", {result['concurrency']} cycles in flight, against a SIPp "
        "UAS answering every PUBLISH 200 with SIP-ETag. Nothing stays alive after a cycle, so "
        "the process's resident set (`/proc/self/statm`, after `gc.collect()`) must stay flat. "
        f"It is read after a warm-up of {result['warmup_cycles']:,} cycles "
        f"({result['warmup_seconds']:.0f} s, at least two timer K periods, so the allocator's "
        "pools and the finished transactions kept until timer K are at their working size) "
        "and after every tenth of the cycles.",
        "",
        "| cycles | RSS after warm-up MiB | RSS at the end MiB | change | seconds | cycles/s |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {result['cycles']:,} | {_mib(result['rss_after_warmup'])} | "
        f"{_mib(result['rss_end'])} | {change:+.1f}% | {result['seconds']:.1f} | "
        f"{_fmt(result['cycles_per_s'])} |",
        "",
        f"**Change {change:+.1f}%** (target: flat within {result['target_percent']:.0f}%; "
        f"{verdict} it).",
        "",
        "| sample | cycles | RSS MiB | seconds |",
        "|---|---:|---:|---:|",
    ]
    for sample in result["samples"]:
        lines.append(f"| {sample['label']} | {sample['cycles']:,} | {_mib(sample['rss'])} | "
                     f"{sample['seconds']:.1f} |")
    return lines


def render_digest(result: dict[str, Any]) -> list[str]:
    """The section on PUBLISH rates with digest authentication."""
    ratio = result["ratio"]["challenge without credentials"]
    verdict = "meets" if ratio >= 0.9 else "misses"
    lines = [
        "",
        "## Digest authentication: the nonce used again",
        "",
        f"`benchmarks/digest.py`: {result['publications']:,} publications, each published and "
        f"then refreshed {result['refreshes']} times ({result['refreshes'] + 1} PUBLISHes of one "
        f"identity), {result['window']} publications at a time, through the runtime's waiting "
        "API, against three SIPp UASes in the same run: one that never challenges, one that "
        "challenges a PUBLISH without credentials (its nonce stays good: pua answers the first "
        "challenges, then sends the nonce again with `nc` + 1 on every request to that next "
        "hop, whatever the record), and one that challenges every "
        f"PUBLISH (two round trips each, as for a client that keeps no nonce). {result['rounds']} "
        "rounds in rotated order; medians.",
        "",
        "| server | PUBLISH transactions/s | ratio to no challenge | challenges answered | "
        "nonces used again |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, rows in result["runs"].items():
        middle = publish_rate.median_run(rows)
        lines.append(
            f"| {name} | {_fmt(result['median_per_s'][name])} | {result['ratio'][name]:.2f} | "
            f"{middle['challenges']:,} | {middle['reused']:,} |"
        )
    lines += [
        "",
        f"**Ratio {ratio:.2f} when the nonce is used again** (target at least 0.9; {verdict} "
        f"it); {result['ratio']['challenge every request']:.2f} when every request is "
        "challenged.",
    ]
    return lines


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _backlog(row: dict[str, Any]) -> str:
    if row["keeps_up"]:
        return "none"
    parts = [f"median lag, first tenth → last tenth: {_ms(row['lag_first_tenth_p50_ms'])} → "
             f"{_ms(row['lag_last_tenth_p50_ms'])} ms"]
    if row["after_last_register"]:
        parts.append(f"{row['after_last_register']:,} PUBLISHes up to {row['tail_s']:.1f} s "
                     "after the phones stopped")
    if row["answered_not_published"]:
        parts.append(f"{row['answered_not_published']:,} registered (the phone had its 200) "
                     "but never published")
    unanswered = row["registers"] - row["answered"]
    if unanswered:
        parts.append(f"{unanswered:,} phones never had a 200 from the registrar")
    return "behind: " + "; ".join(parts)


def render_registrations(result: dict[str, Any]) -> list[str]:
    """The section on REGISTERs turned into PUBLISHes."""
    sink, steps = result["sink"], result["steps"]
    lines = [
        "",
        "## REGISTERs turned into PUBLISHes: pua behind a registrar, and Kamailio's pua_usrloc",
        "",
        f"`benchmarks/registrations.py`: SIPp phones (`register_many.xml`, one REGISTER per "
        f"distinct address of record, {result['seconds']:.0f} s at each offered rate) register "
        "with (a) Kamailio 5.6 registrar + `pua` + `pua_usrloc`, which PUBLISHes from inside "
        "`save()` (the reference), and (b) a Kamailio 5.6 registrar that copies each accepted "
        "REGISTER to `pua serve --usrloc` (`t_replicate`; pua stores the bindings in its "
        "SQLite store on tmpfs, answers the copy once they are stored, and PUBLISHes "
        f"`UL_PUBLISH.<Call-ID>`). Both registrars run {result['workers']} SIP workers and "
        "keep usrloc in memory. Each step starts fresh processes; the side that goes first "
        "alternates from one rate to the next. Both sides publish to a SIPp UAS "
        "(`publish_200.xml`, 200 with SIP-ETag) that traces every message with its time, "
        "as the phones do: each PUBLISH is matched to its REGISTER by the user part of To, "
        "and the lag is its arrival at the UAS minus the REGISTER's departure from the phone.",
        "",
        f"The UAS is not the limit: SIPp's PUBLISH UAC sending straight to it at "
        f"{sink['rate']:,}/s got {sink['publishes']:,} of {sink['registers']:,} through, "
        f"{_fmt(sink['processed_per_s'])}/s, lag p50 {_ms(sink['lag_p50_ms'])} ms, "
        f"p99 {_ms(sink['lag_p99_ms'])} ms.",
        "",
        "*processed/s*: PUBLISHes that reached the UAS (first copy of each) divided by the "
        "time from the first REGISTER to the last PUBLISH, so a tail after the phones stop "
        "lowers it. The wait for the last PUBLISHes ends once none came for "
        f"{result.get('quiet_s', 6):.0f} s and the registrar and pua are idle (longer than "
        "the registrar's 5 s `fr_timer`, so a copy retransmitted late still counts); "
        "*never published* means lost. *Keeps up*: every REGISTER published, the median lag of the last tenth "
        "of the REGISTERs within 100 ms of the first tenth's, and the last PUBLISH within "
        "0.5 s of the last REGISTER.",
        "",
        "| rate | offered/s (Kamailio run, pua run) | Kamailio processed/s | pua processed/s "
        "| pua / Kamailio | Kamailio keeps up | pua keeps up |",
        "|---:|---:|---:|---:|---:|---|---|",
    ]
    for step in steps:
        ref, ours = step["kamailio"], step["pua"]
        lines.append(
            f"| {step['rate']:,} | {_fmt(ref['offered_per_s'])}, {_fmt(ours['offered_per_s'])} | "
            f"{_fmt(ref['processed_per_s'])} | {_fmt(ours['processed_per_s'])} | "
            f"**{step['ratio_processed']:.2f}** | {'yes' if ref['keeps_up'] else 'no'} | "
            f"{'yes' if ours['keeps_up'] else 'no'} |"
        )
    lines += [
        "",
        "| rate | Kamailio lag p50 ms | p99 ms | pua lag p50 ms | p99 ms "
        "| pua / Kamailio p50 | p99 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in steps:
        ref, ours = step["kamailio"], step["pua"]
        lines.append(
            f"| {step['rate']:,} | {_ms(ref['lag_p50_ms'])} | {_ms(ref['lag_p99_ms'])} | "
            f"{_ms(ours['lag_p50_ms'])} | {_ms(ours['lag_p99_ms'])} | "
            f"{step['ratio_lag_p50']:,.1f} | {step['ratio_lag_p99']:,.1f} |"
        )
    lines += [
        "",
        "Backlog, losses and CPU. *PUBLISH repeats*: PUBLISHes the UAS got again for an "
        "address of record already published (retransmissions: the sender had not seen "
        "the 200 within T1). *Dropped at pua*: datagrams the kernel dropped at pua's UDP "
        "socket because its receive buffer was full (`/proc/net/udp`; none were dropped at "
        "the registrar's or the UAS's socket unless said). *CPU*: time on a CPU of the "
        "registrar's processes, and of pua, from the first REGISTER to the end of the wait, "
        "per REGISTER sent. *pua on / waiting*: pua's time on a CPU, and runnable but "
        "waiting for one (`schedstat`), as shares of that time: pua is one process, so "
        "their sum near 1 means it wanted a whole core, and the waiting share is what the "
        "machine's other work took from it. *Load*: the 1-minute load average as the step "
        "started.",
        "",
        "| rate | side | backlog | PUBLISH repeats | dropped at pua | CPU µs/REGISTER: "
        "registrar | pua | pua on / waiting | load |",
        "|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for step in steps:
        for side in ("kamailio", "pua"):
            row = step[side]
            drops = row["udp_drops"]
            other = {k: v for k, v in drops.items() if k != "pua" and v}
            at_pua = f"{drops['pua']:,}" if "pua" in drops else ""
            share = (f"{row['pua_on_cpu_share']:.2f} / {row['pua_waiting_share']:.2f}"
                     if side == "pua" else "")
            lines.append(
                f"| {step['rate']:,} | {'Kamailio pua_usrloc' if side == 'kamailio' else 'pua'} "
                f"| {_backlog(row)}"
                f"{''.join(f'; {v:,} dropped at the {k}' for k, v in other.items())} | "
                f"{row['publish_repeats']:,} | "
                f"{at_pua} | "
                f"{_fmt(row['registrar_cpu_us'])} | "
                f"{_fmt(row['pua_cpu_us']) if side == 'pua' else ''} | "
                f"{share} | {row['load_1min']:.1f} |"
            )
    def rates(side: str, kept: bool) -> str:
        chosen = [f"{s['rate']:,}" for s in steps if s[side]["keeps_up"] is kept]
        return ", ".join(chosen) or "none"

    verdict = (f"pua keeps up at {rates('pua', True)} REGISTER/s and falls behind at "
               f"{rates('pua', False)}; Kamailio's pua_usrloc keeps up at "
               f"{rates('kamailio', True)} and falls behind at {rates('kamailio', False)}.")
    lines += [
        "",
        f"**{verdict}** The phones, both SIPps, the registrar and pua share the machine's "
        f"{result['cpus']} cores with whatever else runs (the load column).",
    ]
    return lines


def render_dialogs(result: dict[str, Any]) -> list[str]:
    """The section on calls turned into dialog PUBLISHes."""
    lines = [
        "",
        "## Calls turned into dialog PUBLISHes: pua behind a proxy, and Kamailio's "
        "pua_dialoginfo",
        "",
        f"`benchmarks/dialogs.py`: SIPp callers (`call_uac.xml`, {result['calls']:,} calls, "
        "a distinct caller and callee each) call at a fixed offered rate through a Kamailio "
        "5.6 proxy (`dialog`, 2 SIP workers) to a SIPp callee (`call_uas.xml`, 50 ms of "
        "ringing, no hold). The proxy either (a) loads `pua` + `pua_dialoginfo` and "
        "PUBLISHes from inside (the reference; `callee_trying` on: 8 documents a call), "
        "or (b) POSTs each state (`trying`, `early`, `confirmed`, `terminated`) to `pua "
        "serve --dialoginfo` with `http_client` (`\"wait\": false`; pua publishes trying "
        "for the caller only: 7 documents a call). Both publish to one SIPp UAS "
        "(`publish_200.xml`) tracing what it receives. A run ends when every completed "
        "call's `terminated` reached the UAS for both parties, or when nothing new came "
        "for 10 s; *seconds* is from the first INVITE to the last PUBLISH.",
        "",
        "| offered calls/s | chain | calls completed | calls failed | PUBLISHes | parties "
        "shown ended | seconds | calls/s | PUBLISHes/s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        chain = "Kamailio pua_dialoginfo" if row["chain"] == "pua_dialoginfo" else "pua"
        lines.append(
            f"| {row['offered_rate']:g} | {chain} | {row['completed']:,} | {row['failed']:,} "
            f"| {row['publishes']:,} | {row['parties_ended']:,} of {2 * row['completed']:,} "
            f"| {row['seconds']:.2f} | {row['calls_per_s']:.1f} | {row['publishes_per_s']:.1f} |"
        )
    return lines


def render_xmpp(result: dict[str, Any]) -> list[str]:
    """The section on the XMPP gateway's directions, pua beside Kamailio's
    pua_xmpp."""
    to_sip, to_xmpp, fan = result["to_sip"], result["to_xmpp"], result["fanout"]

    def rate(row: dict[str, Any]) -> str:
        return f"{row['per_s']:,.0f}" if row.get("per_s") else "did not finish"

    def ratio(row: dict[str, Any], ref: dict[str, Any]) -> str:
        if not row.get("per_s") or not ref.get("per_s"):
            return "-"
        return f"{row['per_s'] / ref['per_s']:.2f}"

    gateways = [g for g in ("kamailio", "pua") if g in to_sip]
    names = {"kamailio": "Kamailio pua_xmpp + xmpp", "pua": "pua"}
    lines = [
        "",
        "## The XMPP gateway: presence stanzas to PUBLISHes, NOTIFYs to stanzas",
        "",
        "`benchmarks/xmpp.py`, through Prosody 0.12 on loopback, each gateway on the same "
        "chains in the same run: `pua serve --xmpp` and, as the reference, Kamailio 5.6 with "
        "`xmpp` (component) + `pua` + `pua_xmpp` (`tests/peers/kamailio_xmpp.py`; its xmpp "
        "module crashes on the first XML element it reads unless the peer's preloaded fix "
        "is in place). A load component (XEP-0114) plays the XMPP users.",
        "",
        f"- **Stanzas to PUBLISHes**: {to_sip['stanzas']:,} directed presences, each from "
        "another XMPP user, sent to the gateway's domain as fast as the load stream takes "
        "them; each becomes an initial PUBLISH answered by a SIPp UAS (`publish_200.xml`). "
        "Time: first stanza to last PUBLISH answered. Also: the same presences routed by "
        "Prosody back to the load component, no gateway.",
        f"- **NOTIFYs to stanzas, fed by PUBLISHes**: {to_xmpp['notifies']:,} XMPP users "
        "subscribe through the gateway to as many SIP users at the Kamailio presence "
        f"server; SIPp (`uac_publish.xml`, offered at {to_xmpp['offered_rate']:,.0f}/s) "
        "publishes one document for each; time: first PUBLISH to last presence received. "
        "The feed (Kamailio taking SIPp's PUBLISHes) is given beside it.",
        f"- **NOTIFYs to stanzas, fan-out**: {fan['watchers']:,} XMPP users watch one SIP "
        f"user; each of {fan['rounds']} PUBLISHes makes Kamailio send "
        f"{fan['watchers']:,} NOTIFYs at once; time: each PUBLISH to its last presence "
        "received, summed.",
        "",
        "| direction | gateway | count | seconds | per second | ratio to Kamailio |",
        "|---|---|---:|---:|---:|---:|",
        f"| stanzas -> PUBLISHes | Prosody routing alone | {to_sip['stanzas']:,} "
        f"| {to_sip['reference']['seconds']:.2f} | {rate(to_sip['reference'])} | |",
    ]
    rows = (
        ("stanzas -> PUBLISHes", to_sip, to_sip["stanzas"]),
        ("NOTIFYs -> stanzas (fed)", to_xmpp, to_xmpp["notifies"]),
        ("NOTIFYs -> stanzas (fan-out)", fan, fan["watchers"] * fan["rounds"]),
    )
    for what, block, count in rows:
        for gateway in gateways:
            row = block[gateway]
            seconds = f"{row['seconds']:.2f}" if row.get("seconds") else "-"
            lines.append(
                f"| {what} | {names[gateway]} | {count:,} | {seconds} | {rate(row)} "
                f"| {ratio(row, block.get('kamailio', {})) if gateway == 'pua' else ''} |"
            )
        if block is to_xmpp:
            for gateway in gateways:
                feed = block[gateway]["feed"]
                lines.append(
                    f"| (feed of the {names[gateway]} run) | Kamailio presence server "
                    f"| {feed['publishes']:,} | {feed['seconds']:.2f} | {rate(feed)} | |"
                )
    return lines


def _secs(summary: dict[str, Any]) -> str:
    if summary["median"] is None:
        return "-"
    return f"{summary['min']:.2f} / {summary['median']:.2f} / {summary['max']:.2f}"


def render_cluster(result: dict[str, Any]) -> list[str]:
    """The section on several nodes on one PostgreSQL database."""
    lease, expires = result["lease_time"], result["max_expires"]
    lines = [
        "",
        "## Cluster",
        "",
        "`benchmarks/cluster.py` (`make bench`, or alone: `.venv/bin/python -m benchmarks.run "
        "--only cluster --output docs/benchmarks.md`): `pua serve` nodes with `cluster = true` "
        "on one PostgreSQL database (a fresh database on the machine's server for each run) "
        "against a Kamailio 5.6 presence server on loopback (`tests/peers/kamailio.py`, its "
        "SQLite database on tmpfs), started and read as the cluster tests do "
        "(`tests/cluster/harness.py`).",
        "",
        "### Calls through the API with 1, 2 and 3 nodes",
        "",
        f"{result['publications']:,} `pua.publish` JSON-RPC calls (a new presentity each, a "
        f"PIDF body, expires -1; each call waits for the 200 and the row written), then "
        f"{result['subscriptions']:,} `pua.subscribe` calls (a new watcher each, of those "
        f"presentities; each waits for the first NOTIFY), from {result['threads']} client "
        "threads on keep-alive connections, call *i* to node *i* mod *n*: so about "
        "(*n* - 1)/*n* of the calls reach a node that does not own the record and are carried "
        "to its owner (*forwarded*: the nodes' `forwarded` counts in `pua.cluster`). Fresh "
        "nodes, database and presence server (lifetimes of 3600 s, so no refresh during the "
        "run) for each *n*, in two passes (1, 2, 3 nodes, then 3, 2, 1); the table gives "
        "the better pass of each. **The reference is 1 node in the same run**; *node CPU* is "
        "the CPU time of all the nodes' processes per call.",
        "",
        "| nodes | publications/s | ratio to 1 node | forwarded | node CPU ms per publication "
        "| subscriptions/s | ratio to 1 node | forwarded | node CPU ms per subscription "
        "| failed | 412 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rates"]:
        pub, sub = row["publish"], row["subscribe"]
        lines.append(
            f"| {row['nodes']} | {_fmt(pub['per_s'])} | {row['publish_ratio']:.2f} "
            f"| {pub['forwarded']:,} of {pub['calls']:,} "
            f"| {pub['node_cpu_s'] * 1000 / max(1, pub['ok']):.2f} "
            f"| {_fmt(sub['per_s'])} | {row['subscribe_ratio']:.2f} "
            f"| {sub['forwarded']:,} of {sub['calls']:,} "
            f"| {sub['node_cpu_s'] * 1000 / max(1, sub['ok']):.2f} "
            f"| {pub['failed'] + sub['failed']} | {row['responses_412']} |"
        )
    every = "; ".join(
        f"{row['nodes']} node{'s' if row['nodes'] > 1 else ''}: "
        + ", ".join(f"{_fmt(p['publish']['per_s'])} and {_fmt(p['subscribe']['per_s'])} "
                    f"(load {p['load_1min']:.1f})" for p in row["passes"])
        for row in result["rates"] if "passes" in row
    )
    rounds = result["takeovers"]
    lines += [
        "",
        "The client, every node, PostgreSQL and Kamailio share the machine's "
        f"{os.cpu_count()} cores, with whatever else runs there: more nodes on the same "
        "cores add work (a forwarded call is taken by two nodes) and no CPU. Every pass, "
        f"publications/s and subscriptions/s (1-minute load average as it started): {every}.",
        "",
        "### Takeover of a killed node",
        "",
        f"{len(rounds)} rounds, each with fresh nodes A, B, C, database and presence server: "
        f"{rounds[0]['publications']} publications and {rounds[0]['subscriptions']} "
        "subscriptions made through the three APIs, then A killed with SIGKILL at a moment "
        "when no refresh of its publications is in flight or due within a second (so that "
        "its rows hold the ETags it last had, as in `tests/cluster/test_cluster.py`; a later "
        "round waits longer before the kill, so that it falls elsewhere in the refresh "
        f"period). Settings: `lease_time` {lease:g} s (a turn "
        f"every {lease / 3:g} s), Kamailio `max_expires` {expires} s, `refresh_margin` "
        f"{result['refresh_margin']:g} s, so each record is refreshed 8 to 10 s after its "
        f"last 2xx; {result['partitions']} partitions (`hash_size` 9, the default). Times "
        "from the kill: "
        "*owned*, until B and C (`pua.cluster`, polled every 50 ms) own every partition and "
        "both see none free (the first refresh may come sooner: a survivor refreshes as soon "
        "as it has claimed its share); *first refresh* and *all refreshed*, until Kamailio logged the first "
        "and the last of A's records' first request from B or C (its request log, "
        "`tests/cluster/harness.py` RequestLog). After that every record is watched one more "
        "period. *412*, *481*: responses of those statuses the nodes counted (`pua.stats`). "
        "Duplicates, each pair of consecutive requests of a record less than a period "
        "(7.5 s) apart counted once: *early*, a publication's first refresh by its new owner "
        "sooner than that after A's last request (A's and the new owner's refreshes in one "
        "period); *anew*, a PUBLISH without SIP-If-Match for a record that had an ETag, or a "
        "SUBSCRIBE in a new dialog for one that had a dialog; *other*, any other two requests "
        "in one period, or requests of one record from both B and C. A subscription taken "
        "over is refreshed at once in its dialog (a target refresh, so that its NOTIFYs come "
        "to the new owner): by design, so counted apart (*target refreshes*). *Lapses*: a "
        f"record whose consecutive requests at the server were more than {expires} s (the "
        "lifetime granted) apart. *Load*: the 1-minute load average at the kill.",
        "",
        "| round | A's records | kill s after records made | owned s | first refresh s "
        "| all refreshed s | 412 | 481 | duplicates: early | anew | other "
        "| target refreshes | lapses | load |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rounds:
        first = "-" if r["first_refresh_s"] is None else f"{r['first_refresh_s']:.2f}"
        every = "-" if r["all_refreshed_s"] is None else f"{r['all_refreshed_s']:.2f}"
        lines.append(
            f"| {r['round'] + 1} | {r['records_of_killed']} | {r['killed_after_s']:.1f} "
            f"| {r['owned_s']:.2f} | {first} | {every} | {r['responses_412']} "
            f"| {r['responses_481']} | {r['early_by_new_owner']} "
            f"| {r['new_dialog_or_initial_publish']} "
            f"| {r['twice_in_a_period'] + r['by_two_nodes']} "
            f"| {r['subscription_target_refreshes']} | {r['lapses']} "
            f"| {r['load_1min']:.1f} |"
        )
    missing = [r for r in rounds if r["all_refreshed_s"] is None]
    early, anew = result["early_by_new_owner"], result["new_dialog_or_initial_publish"]
    lines += [
        "",
        f"**Kill to partitions owned (min / median / max): {_secs(result['owned_s'])} s; to the "
        f"first refresh by a new owner: {_secs(result['first_refresh_s'])} s; to all of the "
        f"killed node's records refreshed: {_secs(result['all_refreshed_s'])} s. 412: "
        f"{result['responses_412']}; duplicates (two requests of one record in a period, or "
        f"from two nodes): {result['duplicates'] - anew} ({early} early, "
        f"{result['duplicates'] - early - anew} other); subscriptions started anew after the "
        f"server dropped them: {anew}; lapses: "
        f"{result['lapses']}.** Expected: owned within the lease plus a turn "
        f"({lease + lease / 3:g} s), no 412, no duplicate, no lapse.",
    ]
    if missing:
        lines += ["", f"In {len(missing)} round(s) some of A's records were never refreshed by "
                  "B or C within the wait ('-')."]
    if early:
        lines += [
            "",
            "*Early*: a publication taken over was refreshed by its new owner within a "
            "period of A's last refresh of it. A taken-over publication is refreshed by the "
            "usual rule over the life it has left (`resume_at` in "
            "`src/pua/core/lifetimes.py`), so this is a refresh of A's that the new owner "
            "did not see in the row (A killed between its refresh's 200 and the write).",
        ]
    if anew:
        lines += [
            "",
            "*Anew* after a *481*: until a subscription's target refresh, Kamailio sends its "
            "NOTIFYs (set off, for instance, by a survivor's refresh of the presentity's "
            "publication) to A's Contact, where nobody answers; when the NOTIFY times out, "
            "Kamailio drops the subscription, the new owner's next refresh of it is answered "
            "481, and the new owner starts a new dialog at once. Kamailio's log of such a "
            "round shows the NOTIFY to A's port just before the target refresh, then "
            "`get_stored_info(): record not found in hash_table` at the next refresh. Until "
            "then the watcher had no NOTIFY of it: here up to a period (the usual refresh "
            "comes first with 20 s lifetimes); with longer lifetimes, the new owner's check "
            "refresh, 34 s (timer F and 2 s) after its target refresh, finds it.",
        ]
    return lines


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x)


@dataclass(frozen=True, slots=True, kw_only=True)
class Benchmark:
    """One benchmark: what to say while it runs, how to run it with the
    command line's arguments, how to render its section, and its key in the
    JSON results."""

    name: str
    progress: str
    run: Callable[[argparse.Namespace], Any]
    render: Callable[[Any], list[str]]
    key: str


# In the order of the report's sections.
BENCHMARKS = (
    Benchmark(name="parse", progress="parsing and serializing", key="parse",
              run=lambda a: parse.run(), render=render_parse),
    Benchmark(name="publish_rate", progress="PUBLISH transactions against SIPp", key="publish",
              run=lambda a: publish_rate.run(a.calls, a.window), render=render_publish),
    Benchmark(name="service_rpc", progress="the management API against Kamailio's pua_rpc",
              key="service", run=lambda a: service_rpc.run(a.service_calls, 50),
              render=render_service),
    Benchmark(name="service_memory", progress="memory of pua serve per publication",
              key="service_memory", run=lambda a: service_memory.run(a.memory_publications),
              render=render_service_memory),
    Benchmark(name="engine", progress="the engine alone", key="engine",
              run=lambda a: engine.run(_sizes(a.engine_sizes)), render=render_engine),
    Benchmark(name="persistence", progress="restart and write-back on SQLite", key="store",
              run=lambda a: persistence.run(_sizes(a.store_sizes)), render=render_persistence),
    Benchmark(name="persistence_postgres", progress="restart and write-back on PostgreSQL",
              key="store_postgres",
              run=lambda a: persistence.run_postgres(_sizes(a.store_sizes)),
              render=render_persistence_postgres),
    Benchmark(name="persistence_mariadb", progress="restart and write-back on MariaDB",
              key="store_mariadb",
              run=lambda a: persistence.run_mariadb(_sizes(a.store_sizes)),
              render=render_persistence_mariadb),
    Benchmark(name="digest", progress="PUBLISH with digest authentication against SIPp",
              key="digest", run=lambda a: digest.run(), render=render_digest),
    Benchmark(name="churn", progress="memory while publications come and go", key="churn",
              run=lambda a: churn.run(a.churn_cycles, warmup=a.churn_warmup,
                                      concurrency=a.churn_concurrency),
              render=render_churn),
    Benchmark(name="registrations",
              progress="REGISTERs turned into PUBLISHes against Kamailio's pua_usrloc",
              key="registrations",
              run=lambda a: registrations.run(_sizes(a.registration_rates),
                                              a.registration_seconds),
              render=render_registrations),
    Benchmark(name="dialogs",
              progress="calls turned into dialog PUBLISHes against Kamailio's pua_dialoginfo",
              key="dialogs", run=lambda a: dialogs.run(), render=render_dialogs),
    Benchmark(name="xmpp", progress="the XMPP gateway through Prosody", key="xmpp",
              run=lambda a: xmpp.run(), render=render_xmpp),
    Benchmark(name="cluster",
              progress="three nodes on one PostgreSQL database: API calls and takeover",
              key="cluster",
              run=lambda a: cluster.run(a.cluster_publications, a.cluster_subscriptions,
                                        a.cluster_rounds),
              render=render_cluster),
)
BY_NAME = {b.name: b for b in BENCHMARKS}


def _split_sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """A report's lines before its first "## " heading, and its sections:
    (heading, lines from the heading up to the next "## " heading)."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line, [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, sections


def merge_sections(text: str, new: list[list[str]]) -> str:
    """``text`` (a report) with each section of ``new`` (rendered lines,
    the "## " heading among them) put in place of the section with the
    same heading, or added at the end when there is none."""
    preamble, sections = _split_sections(text)
    for lines in new:
        heading = next(line for line in lines if line.startswith("## "))
        body = lines[lines.index(heading):]
        while body and not body[-1].strip():
            body.pop()
        body.append("")
        for n, (old_heading, _) in enumerate(sections):
            if old_heading == heading:
                sections[n] = (heading, body)
                break
        else:
            if sections and sections[-1][1] and sections[-1][1][-1].strip():
                sections[-1][1].append("")
            sections.append((heading, body))
    out = preamble + [line for _, lines in sections for line in lines]
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


def _measured_alone(lines: list[str], name: str, output: Path) -> list[str]:
    """A section run on its own: say when and how under its heading."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    heading = next(n for n, line in enumerate(lines) if line.startswith("## "))
    return [*lines[:heading + 1], "",
            f"*Measured on its own on {now}: `.venv/bin/python -m benchmarks.run "
            f"--only {name} --output {output}`.*", *lines[heading + 1:]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--output", type=Path, default=None,
                    help="the report to write (default docs/benchmarks.md); with --only, "
                         "the report whose sections are replaced, and without it the "
                         "sections are printed")
    ap.add_argument("--only", default=None, metavar="NAME[,NAME]",
                    help=f"run only these benchmarks: {', '.join(BY_NAME)}")
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--window", type=int, default=200)
    ap.add_argument("--service-calls", type=int, default=5000)
    ap.add_argument("--store-sizes", default="100000,1000000",
                    help="row counts for the restart benchmark, comma-separated")
    ap.add_argument("--engine-sizes", default="10000,1000000",
                    help="record counts for the engine benchmark, comma-separated")
    ap.add_argument("--memory-publications", type=int, default=100_000,
                    help="live publications for the service memory benchmark")
    ap.add_argument("--churn-cycles", type=int, default=1_000_000,
                    help="publish+remove cycles for the churn benchmark (after the warm-up)")
    ap.add_argument("--churn-warmup", type=int, default=10_000,
                    help="churn cycles before the first memory reading")
    ap.add_argument("--churn-concurrency", type=int, default=200,
                    help="churn cycles in flight at a time")
    ap.add_argument("--registration-rates", default="200,300,500,1000,2000",
                    help="offered REGISTER rates for the registrations benchmark, "
                         "comma-separated")
    ap.add_argument("--registration-seconds", type=float, default=10.0,
                    help="seconds of REGISTERs at each rate")
    ap.add_argument("--cluster-publications", type=int, default=3000,
                    help="pua.publish calls with 1, 2 and 3 cluster nodes")
    ap.add_argument("--cluster-subscriptions", type=int, default=1000,
                    help="pua.subscribe calls with 1, 2 and 3 cluster nodes")
    ap.add_argument("--cluster-rounds", type=int, default=3,
                    help="takeovers of a killed cluster node")
    args = ap.parse_args(argv)
    if args.only is None:
        chosen = list(BENCHMARKS)
    else:
        names = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = [n for n in names if n not in BY_NAME]
        if unknown or not names:
            ap.error(f"--only takes names among {', '.join(BY_NAME)}; got {args.only!r}")
        chosen = [b for b in BENCHMARKS if b.name in names]
    tune_gc()
    results: dict[str, Any] = {}
    sections: list[list[str]] = []
    for bench in chosen:
        print(f"{bench.progress} ...", file=sys.stderr)
        results[bench.key] = bench.run(args)
        sections.append(bench.render(results[bench.key]))
    if args.only is None:
        output = args.output or Path("docs/benchmarks.md")
        report = "\n".join(render_header() + [line for s in sections for line in s]) + "\n"
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(report)
        print(json.dumps(results, indent=1, default=str))
        print(f"wrote {output}", file=sys.stderr)
    elif args.output is None:
        print(json.dumps(results, indent=1, default=str), file=sys.stderr)
        print("\n".join(line for s in sections for line in s).lstrip("\n"))
    else:
        alone = [_measured_alone(s, b.name, args.output) for s, b in zip(sections, chosen, strict=True)]
        old = args.output.read_text() if args.output.exists() else "\n".join(render_header())
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(merge_sections(old, alone))
        print(json.dumps(results, indent=1, default=str))
        print(f"merged {', '.join(b.name for b in chosen)} into {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
