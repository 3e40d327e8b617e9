"""Calls turned into dialog PUBLISHes: pua's dialog state behind a Kamailio
proxy, against Kamailio's own pua_dialoginfo, fed by the same calls.

The same SIPp callers (``call_uac.xml``, a distinct caller and callee per
call) call through a Kamailio proxy (``dialog``) to a SIPp callee
(``call_uas.xml``, 50 ms of ringing); the proxy either

* the reference: loads ``pua`` + ``pua_dialoginfo``, which PUBLISH from
  inside the proxy (``callee_trying`` on: four documents per party), or
* pua: POSTs each state to ``pua serve --dialoginfo`` with ``http_client``
  (``"wait": false``), which PUBLISHes (trying for the caller only: seven
  documents per call when nothing is merged).

Both publish to one SIPp UAS answering 200 (``publish_200.xml``), which
traces what it receives.  A run is done when every call's ``terminated``
document reached the UAS for both parties; the time is from the first
INVITE to that moment.  Figures: calls and PUBLISHes per second, and
whether every call was completed.
"""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.peers.kamailio_proxy import KamailioCallProxy
from tests.peers.sipp import SippUAS, call_uas, run_calls
from tests.service.running import RunningService

CALLS = 1000
RATES = (100, 200, 400)
LONGEST_WAIT = 120.0
QUIET = 10.0  # seconds without a new PUBLISH: the chain has done what it will
_TO_USER = re.compile(r"^To:\s*<?sips?:([^@>;]+)@", re.M | re.I)


def _done(uas: SippUAS, calls: int) -> tuple[int, int]:
    """(PUBLISHes received, parties whose terminated document came)."""
    publishes = uas.received("PUBLISH")
    ended = set()
    for message in publishes:
        if "terminated" in message:
            found = _TO_USER.search(message)
            if found:
                ended.add(found.group(1))
    return len(publishes), len(ended)


@contextmanager
def _chain(kind: str, tmp: Path) -> Iterator[tuple[KamailioCallProxy, SippUAS]]:
    with ExitStack() as stack:
        uas = stack.enter_context(SippUAS("publish_200", trace_msg=True))
        callee = stack.enter_context(call_uas("bob", ring_ms=50))
        if kind == "pua_dialoginfo":
            proxy = KamailioCallProxy(callee=callee.address, publisher="pua_dialoginfo",
                                      publish_to=uas.uri, debug=1, children=2)
        else:
            svc = RunningService("--dialoginfo", "--outbound-proxy", uas.uri,
                                 "--log-level", "warning", data_dir=tmp / kind)
            stack.callback(svc.stop)
            proxy = KamailioCallProxy(callee=callee.address, feed_url=f"{svc.api_url}/dialogs",
                                      debug=1, children=2)
        stack.enter_context(proxy)
        yield proxy, uas


def measure(kind: str, calls: int, rate: float, tmp: Path) -> dict[str, Any]:
    """One chain at one offered call rate."""
    with _chain(kind, tmp) as (proxy, uas):
        start = time.monotonic()
        stats = run_calls(proxy.host, proxy.sip_port, calls=calls, rate=rate,
                          caller="alice", callee="bob", numbered=True)
        deadline = start + LONGEST_WAIT
        count, ended = _done(uas, calls)
        progress = time.monotonic()
        # until every completed call's parties are published as ended, or
        # nothing new came for QUIET seconds
        while ended < 2 * stats.successful and time.monotonic() < deadline:
            if time.monotonic() - progress > QUIET:
                break
            time.sleep(0.5)
            seen = _done(uas, calls)
            if seen != (count, ended):
                count, ended = seen
                progress = time.monotonic()
        elapsed = progress - start
    return {
        "chain": kind, "calls": calls, "offered_rate": rate,
        "completed": stats.successful, "failed": stats.failed,
        "publishes": count, "parties_ended": ended, "seconds": round(elapsed, 2),
        "calls_per_s": round(stats.successful / elapsed, 1),
        "publishes_per_s": round(count / elapsed, 1),
    }


def run(calls: int = CALLS, rates: tuple[float, ...] = RATES) -> dict[str, Any]:
    """Both chains at each rate, reference first."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="pua-bench-dialogs-") as tmp:
        for rate in rates:
            for kind in ("pua_dialoginfo", "pua"):
                rows.append(measure(kind, calls, rate, Path(tmp)))
    return {"calls": calls, "rows": rows}


if __name__ == "__main__":
    import json
    import sys

    rates = tuple(float(r) for r in sys.argv[1:]) or RATES
    print(json.dumps(run(rates=rates), indent=2))
