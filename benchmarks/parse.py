"""Parse and serialize rates, beside a plain split-and-partition parser.

The reference parser does the least any parser must: find the blank line,
split lines, partition each header on its colon.  It validates nothing and
builds no objects, so the ratio shows what pua's checks and model cost.
"""

from __future__ import annotations

import timeit
from collections.abc import Callable

from pua.sip import Message, parse_message

from .messages import NOTIFY, OK, PUBLISH


def plain_parse(data: bytes) -> tuple[str, list[tuple[str, str]], bytes]:
    """The reference: split-and-partition, nothing else."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.append((name.strip(), value.strip()))
    return lines[0], headers, body


def read_common_fields(data: bytes) -> object:
    """Parse, then read what the engine reads from every response."""
    m = parse_message(data)
    return (m.call_id, m.cseq, m.top_via.branch, m.sip_etag, m.expires)


def rate(fn: Callable[[], object], seconds: float = 0.5) -> float:
    """Calls per second: best of 5 runs of about ``seconds`` each."""
    timer = timeit.Timer(fn)
    number, _ = timer.autorange()
    number = max(1, int(number * seconds / 0.2))
    best = min(timer.repeat(repeat=5, number=number))
    return number / best


def run() -> list[dict[str, object]]:
    """Measure every message; return rows for the report."""
    rows: list[dict[str, object]] = []
    for name, data in (("PUBLISH (pidf)", PUBLISH), ("200 OK to PUBLISH", OK), ("NOTIFY (pidf)", NOTIFY)):
        message: Message = parse_message(data)
        reference = rate(lambda d=data: plain_parse(d))
        parse = rate(lambda d=data: parse_message(d))
        typed = rate(lambda d=data: read_common_fields(d))
        serialize = rate(lambda m=message: bytes(m))
        rows.append({
            "message": name, "bytes": len(data), "reference_parse_per_s": reference,
            "parse_per_s": parse, "parse_and_read_per_s": typed, "serialize_per_s": serialize,
        })
    return rows
