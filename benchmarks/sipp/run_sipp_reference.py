#!/usr/bin/env python3
"""Reference PUBLISH throughput of SIPp against SIPp (no pua involved).

Starts the ``tests/peers/scenarios/publish_200.xml`` UAS on 127.0.0.1, then
runs SIPp's own UAC (``benchmarks/sipp/uac_publish.xml``: a ~700-byte
PUBLISH with a PIDF body, each call its own Call-ID) for a fixed number of
calls at an unlimited rate with a concurrency limit, and prints JSON:

    {"calls": N, "successful": ..., "failed": ..., "elapsed_s": ...,
     "calls_per_s": ..., "sipp": {...SIPp's own stats...}, ...}

``elapsed_s`` is time.perf_counter() around the SIPp UAC process (so it
includes SIPp's start-up, a few ms).  Stdlib only.

    python3 benchmarks/sipp/run_sipp_reference.py --calls 20000 --limit 200
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peers.sipp import SippUAC, SippUAS  # noqa: E402

UAC_SCENARIO = HERE / "uac_publish.xml"


def run_reference(calls: int = 20000, limit: int = 200, rate: float = 1_000_000,
                  timeout: float = 300.0, transport: str = "u1") -> dict:
    """Run the SIPp-vs-SIPp PUBLISH benchmark and return the result dict."""
    with SippUAS("publish_200", transport=transport) as uas:
        uac = SippUAC(UAC_SCENARIO, uas.host, uas.port, calls=calls, limit=limit,
                      rate=rate, timeout=timeout, transport=transport)
        st = uac.run()
    uas_st = uas.stats
    assert uas_st is not None
    wall = st.wall_seconds or 0.0
    return {
        "benchmark": "sipp_reference_publish",
        "transport": "udp" if transport.startswith("u") else transport,
        "calls": calls,
        "limit": limit,
        "rate": rate,
        "successful": st.successful,
        "failed": st.failed,
        "retransmissions": st.retransmissions,
        "elapsed_s": round(wall, 6),
        "calls_per_s": round(st.successful / wall, 1) if wall > 0 else None,
        "sipp": {
            "returncode": st.returncode,
            "call_rate_cps": st.sipp_call_rate,
            "elapsed_s": st.sipp_elapsed,
            "total_created": st.total_created,
        },
        "uas": {
            "returncode": uas_st.returncode,
            "successful": uas_st.successful,
            "failed": uas_st.failed,
            "incoming": uas_st.incoming,
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=20000, help="number of PUBLISH calls (-m)")
    ap.add_argument("--limit", type=int, default=200, help="max concurrent calls (-l)")
    ap.add_argument("--rate", type=float, default=1_000_000,
                    help="call rate per second (-r); default: effectively unlimited")
    ap.add_argument("--timeout", type=float, default=300.0, help="bound on the UAC run, seconds")
    ap.add_argument("--transport", default="u1", help="SIPp -t value (default u1 = UDP)")
    ap.add_argument("--output", type=Path, help="also write the JSON to this file")
    args = ap.parse_args(argv)
    res = run_reference(calls=args.calls, limit=args.limit, rate=args.rate,
                        timeout=args.timeout, transport=args.transport)
    text = json.dumps(res, indent=2, sort_keys=True)
    print(text)
    if args.output:
        args.output.write_text(text + "\n")
    return 0 if res["successful"] == args.calls and res["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
