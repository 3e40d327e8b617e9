"""Run every fuzz target in turn and write the figures to docs/reliability.md.

``python -m fuzz.run [--runs N] [--report FILE] [TARGET ...]``

Each target runs in its own process (``python -m fuzz.fuzz_NAME
-runs=N``), on its seed corpus; what libFuzzer reports at the end
(executions, seconds, coverage edges and features, corpus size) goes into
a table, with every finding: the exception and the file libFuzzer saved
the input in (under ``build/fuzz/findings``).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Result", "parse_output", "run_target", "write_report"]

ROOT = Path(__file__).resolve().parent.parent
FINDINGS = ROOT / "build" / "fuzz" / "findings"
BEGIN = "<!-- fuzz figures: begin -->"
END = "<!-- fuzz figures: end -->"
TARGET_NAMES = (
    "datagram",
    "stream",
    "headers",
    "pidf",
    "watcherinfo",
    "dialog_info",
    "message_summary",
    "reginfo",
    "notify",
)

# "#1000000	DONE   cov: 1277 ft: 2520 corp: 141/80Kb ..."
_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/", re.MULTILINE)
_DONE = re.compile(r"^Done (\d+) runs in (\d+) second", re.MULTILINE)
_CRASH_FILE = re.compile(r"Test unit written to (\S+)")
_EXCEPTION = re.compile(r"=== Uncaught Python exception: ===\s*\n(.+)")


@dataclass
class Result:
    """What one run of a target came to."""

    target: str
    executions: int = 0
    seconds: float = 0.0
    edges: int | None = None  # libFuzzer's "cov:" (edges of Python code seen)
    features: int | None = None  # its "ft:"
    corpus: int | None = None
    exit_code: int = 0
    findings: list[str] = field(default_factory=list)  # "exception (input file)"

    @property
    def rate(self) -> float:
        """Executions per second."""
        return self.executions / self.seconds if self.seconds else 0.0


def parse_output(target: str, output: str, exit_code: int, seconds: float) -> Result:
    """Read libFuzzer's report of one run."""
    result = Result(target=target, seconds=seconds, exit_code=exit_code)
    statuses = _STATUS.findall(output)
    if statuses:
        last = statuses[-1]
        result.executions = int(last[0])
        result.edges, result.features, result.corpus = int(last[1]), int(last[2]), int(last[3])
    done = _DONE.search(output)
    if done:
        result.executions = max(result.executions, int(done.group(1)))
    crash_files = _CRASH_FILE.findall(output)
    exceptions = [m.strip() for m in _EXCEPTION.findall(output)]
    for n, crash_file in enumerate(crash_files):
        what = exceptions[n] if n < len(exceptions) else "crash"
        result.findings.append(f"{what} ({Path(crash_file).name})")
    if exit_code != 0 and not result.findings:
        result.findings.append(f"exit code {exit_code}")
    return result


def command_for(target: str, runs: int) -> list[str]:
    """The command that fuzzes ``target`` for ``runs`` executions."""
    prefix = FINDINGS / f"{target}-"
    return [
        sys.executable,
        "-m",
        f"fuzz.fuzz_{target}",
        f"-runs={runs}",
        f"-artifact_prefix={prefix}",
        "-print_final_stats=1",
    ]


def run_target(target: str, runs: int, command: list[str] | None = None) -> Result:
    """Fuzz ``target`` for ``runs`` executions (or run ``command``) and
    return what libFuzzer reported."""
    FINDINGS.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, str(ROOT), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    started = time.monotonic()
    done = subprocess.run(
        command or command_for(target, runs),
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    seconds = time.monotonic() - started
    return parse_output(target, done.stdout, done.returncode, seconds)


def _table(results: list[Result]) -> list[str]:
    lines = [
        "| target | executions | seconds | exec/s | coverage edges | features | corpus"
        " | findings |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.target} | {r.executions:,} | {r.seconds:,.0f} | {r.rate:,.0f} "
            f"| {r.edges if r.edges is not None else '-'} "
            f"| {r.features if r.features is not None else '-'} "
            f"| {r.corpus if r.corpus is not None else '-'} "
            f"| {'; '.join(r.findings) if r.findings else 'none'} |"
        )
    return lines


def write_report(path: Path, results: list[Result], command: str, note: str = "") -> None:
    """Put the figures of ``results`` between the markers of ``path``
    (the section is added at the end the first time); ``note`` follows
    the command."""
    found = sum(len(r.findings) for r in results)
    total = sum(r.executions for r in results)
    atheris_version = _atheris_version()
    section = [
        BEGIN,
        "",
        f"Produced by `{command}` on {datetime.date.today().isoformat()}"
        f" (Python {platform.python_version()}, atheris {atheris_version},"
        f" {os.cpu_count()} cores){note}.",
        "",
        *_table(results),
        "",
        f"{total:,} executions in all; "
        + (
            f"{found} finding(s): the inputs are in build/fuzz/findings."
            if found
            else "no input raised anything but the protocol error its reader documents."
        ),
        "",
        END,
    ]
    text = path.read_text() if path.exists() else ""
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + "\n".join(section) + tail
    else:
        text = text.rstrip("\n") + ("\n\n" if text else "") + "\n".join(section) + "\n"
    path.write_text(text)


def parse_row(line: str) -> Result | None:
    """A result from a row as a run prints it (see ``_table``), or None."""
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    if len(cells) != 8 or cells[0] not in TARGET_NAMES:
        return None

    def number(text: str) -> int | None:
        return None if text == "-" else int(text.replace(",", ""))

    findings = [] if cells[7] == "none" else cells[7].split("; ")
    return Result(
        target=cells[0],
        executions=number(cells[1]) or 0,
        seconds=float(cells[2].replace(",", "")),
        edges=number(cells[4]),
        features=number(cells[5]),
        corpus=number(cells[6]),
        findings=findings,
    )


def _atheris_version() -> str:
    try:
        from importlib.metadata import version  # noqa: PLC0415

        return version("atheris")
    except Exception:
        return "?"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000, help="executions per target")
    parser.add_argument("--report", type=Path, help="Markdown file to write the figures to")
    parser.add_argument(
        "--jobs", type=int, default=1, help="targets run at once (default 1: one after another)"
    )
    parser.add_argument(
        "--from-log",
        type=Path,
        metavar="LOG",
        help="write the report from the rows a run printed to LOG (a run that was stopped)",
    )
    parser.add_argument("--command", help="with --from-log: the command that printed LOG")
    parser.add_argument("targets", nargs="*", choices=[*TARGET_NAMES, []], default=[])
    args = parser.parse_args(argv)
    names = args.targets or list(TARGET_NAMES)
    if args.from_log is not None and args.report is not None:
        rows = [parse_row(line) for line in args.from_log.read_text().splitlines()]
        results = [r for r in rows if r is not None]
        done = {r.target for r in results}
        missing = [name for name in names if name not in done]
        note = f"; it was stopped before it finished {', '.join(missing)}" if missing else ""
        write_report(args.report, results, str(args.command), note)
        return 1 if any(r.findings for r in results) else 0

    def one(target: str) -> Result:
        result = run_target(target, args.runs)
        print("\n".join(_table([result])[2:]), flush=True)
        return result

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        results = list(pool.map(one, names))
    if args.report is not None:
        shown = " ".join(["python -m fuzz.run", *map(shlex.quote, (argv or sys.argv[1:]))])
        write_report(args.report, results, shown)
    return 1 if any(r.findings for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
