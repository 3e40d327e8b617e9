"""The fuzz harnesses work: each target keeps the rule over its seeds and
random mutations of them, each runs under atheris with coverage, and a
finding is reported with the input that caused it.  (`make reliability`
runs the long version.)"""

from __future__ import annotations

import os
import random
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fuzz.run import Result, parse_output, run_target
from fuzz.seeds import seeds_for
from fuzz.targets import NOTIFIER, START, TARGETS, subscribed_engine

# Tokens a mutation may splice in: the places where readers branch.
SPLICES = [b"\r\n", b"\r\n\r\n", b";", b",", b":", b"<", b">", b'"', b"\\", b" ", b"\t",
           b"\x00", b"\xff", b"=", b"@", b"[", b"]", b"&lol;", b"<!DOCTYPE x>", b"0", b"-1",
           b"99999999999", b"SIP/2.0", b"%", b"\r\n ", b"\n"]


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to eight random edits: flip, insert, delete, splice, duplicate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randint(0, len(out))
        kind = rng.randrange(5)
        if kind == 0 and out:
            out[min(at, len(out) - 1)] ^= 1 << rng.randrange(8)
        elif kind == 1:
            out[at:at] = bytes([rng.randrange(256)])
        elif kind == 2:
            del out[at : at + rng.randint(1, 16)]
        elif kind == 3:
            out[at:at] = rng.choice(SPLICES)
        else:
            end = min(len(out), at + rng.randint(1, 32))
            out[at:at] = out[at:end]
    return bytes(out)


@pytest.mark.parametrize("name", list(TARGETS))
def test_target_keeps_the_rule_on_seeds_and_mutations(name: str) -> None:
    """The seeds and 1,500 random mutations of them raise nothing but the
    reader's protocol error (which the target swallows)."""
    target = TARGETS[name]
    seeds = seeds_for(target)
    assert seeds
    rng = random.Random(name)
    for seed in seeds:
        target.one_input(seed)
    for _ in range(1500):
        target.one_input(mutate(rng, rng.choice(seeds)))


def test_notify_seeds_reach_every_dialog() -> None:
    """The NOTIFY seeds are accepted (200) in each of the fuzzed engine's
    five dialogs: mutations start deep in the NOTIFY path, not at the 481."""
    answered: dict[bytes, int] = {}
    for seed in seeds_for(TARGETS["notify"]):
        if not seed.startswith(b"NOTIFY"):
            continue
        engine, _ = subscribed_engine()
        engine.receive_datagram(seed, NOTIFIER, "udp", START + 1)
        (status_line,) = [d.data.split(b"\r\n")[0] for d in engine.datagrams_to_send()
                          if d.data.startswith(b"SIP/2.0")]
        call_id = next(line for line in seed.split(b"\r\n") if line.startswith(b"Call-ID"))
        answered[call_id] = answered.get(call_id, 0) + (status_line == b"SIP/2.0 200 OK")
    assert len(answered) == 5
    assert all(count >= 4 for count in answered.values()), answered


RUNS = 2000


@pytest.fixture(scope="module")
def fuzzed() -> dict[str, Result]:
    """Every target fuzzed, as many at once as there are cores: each is a
    process of its own whose start (instrumenting pua's modules) costs
    about ten seconds, more than its executions."""
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return dict(zip(TARGETS, pool.map(lambda name: run_target(name, RUNS), TARGETS),
                        strict=True))


@pytest.mark.parametrize("name", list(TARGETS))
def test_atheris_runs_the_target(name: str, fuzzed: dict[str, Result]) -> None:
    """Under atheris each target runs 2,000 executions, sees coverage
    edges of pua's code, and finds nothing (the long campaign, a million
    executions a target, is `make reliability`'s)."""
    result = fuzzed[name]
    assert result.findings == [], result.findings
    assert result.executions >= RUNS
    assert result.edges is not None and result.edges > 50


def test_a_finding_is_reported_with_its_input(tmp_path: Path) -> None:
    """A target that raises another exception stops the run; the runner
    names the exception and the file holding the input."""
    script = tmp_path / "fuzz_broken.py"
    script.write_text(textwrap.dedent("""
        import sys
        import atheris

        def one_input(data: bytes) -> None:
            if data.startswith(b"!"):
                raise KeyError("the reader broke its promise")

        atheris.Setup(sys.argv, one_input)
        atheris.Fuzz()
    """))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "seed").write_bytes(b"!boom")
    result = run_target("broken", 100, [
        sys.executable, str(script), "-runs=100", f"-artifact_prefix={tmp_path}/", str(corpus),
    ])
    assert len(result.findings) == 1
    assert "KeyError" in result.findings[0]
    (saved,) = tmp_path.glob("crash-*")
    assert saved.read_bytes() == b"!boom"
    assert saved.name in result.findings[0]


def test_output_without_a_finding_gives_the_figures() -> None:
    """libFuzzer's closing lines give executions, edges, features and corpus."""
    output = ("#2\tINITED cov: 10 ft: 11 corp: 1/1b exec/s: 0 rss: 1Mb\n"
              "#1000000\tDONE   cov: 1277 ft: 2520 corp: 141/80Kb lim: 985 exec/s: 1500 rss: 79Mb\n"
              "Done 1000000 runs in 666 second(s)\n")
    result = parse_output("notify", output, 0, 666.0)
    assert (result.executions, result.edges, result.features, result.corpus) == (
        1_000_000, 1277, 2520, 141)
    assert result.findings == []
    assert round(result.rate) == 1502


def test_a_printed_row_reads_back() -> None:
    """The row a run prints for a target reads back to the same figures
    (how the report of a stopped run is written)."""
    from fuzz.run import Result, _table, parse_row

    result = Result(target="stream", executions=1_000_000, seconds=1234.0, edges=135,
                    features=496, corpus=69, findings=["KeyError: 'x' (crash-1)"])
    (row,) = _table([result])[2:]
    assert parse_row(row) == result
    assert parse_row("| not a target | 1 | 1 | 1 | 1 | 1 | 1 | none |") is None
