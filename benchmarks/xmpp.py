"""The XMPP gateway's throughput through a real XMPP server (Prosody).

Both directions, each beside a reference measured in the same run:

* **presence stanzas -> PUBLISHes**: a load component (XEP-0114,
  ``load.example.com``) sends N directed presences, each from another
  XMPP user, to the gateway's domain through Prosody, as fast as its
  stream takes them; pua turns each into an initial PUBLISH for the user's
  SIP address, answered by a SIPp UAS (``publish_200.xml``).  The figure
  is N over the time from the first stanza to the N-th publication
  answered.  Reference: the same N presences sent by the load component to
  its own domain (Prosody routing them back, no gateway): what the XMPP
  server and the load component alone reach.
* **NOTIFYs -> presence stanzas**: K XMPP users (of the load component)
  subscribe through the gateway to K SIP users at the Kamailio presence
  server; then SIPp publishes one document for each SIP user (at
  ``rate``/s), Kamailio NOTIFYs pua, and pua sends each as presence through
  Prosody to the load component.  The figure is K over the time from the
  first PUBLISH to the K-th presence received.  Reference: SIPp's own
  PUBLISH rate against Kamailio in that run (what feeds the chain).

``run(gateways=("pua", "kamailio"))`` also measures Kamailio's own gateway
(``pua_xmpp`` + ``xmpp``) on the same chains when that peer is available.
"""

from __future__ import annotations

import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from tests.peers.kamailio import KamailioPresence
from tests.peers.prosody import Prosody
from tests.peers.sipp import SippUAC, SippUAS
from tests.peers.xmpp_user import PresenceSeen, XmppComponent
from tests.service.running import RunningService

COMPONENT = "sip.example.com"
LOAD = "load.example.com"
SECRET = "bench-secret"
STANZAS = 5000
NOTIFIES = 2000
NOTIFY_RATE = 4000.0
LONGEST_WAIT = 120.0


def _until(what: str, check: Callable[[], Any], timeout: float = LONGEST_WAIT,
           interval: float = 0.02) -> float:
    """Poll ``check`` until true; the monotonic time it first was."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        if check():
            return time.monotonic()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not within {timeout:g} s: {what}")
        pause.wait(interval)


@contextmanager
def _xmpp() -> Iterator[tuple[Prosody, XmppComponent]]:
    with ExitStack() as stack:
        prosody = stack.enter_context(
            Prosody(components={COMPONENT: SECRET, LOAD: SECRET}, users={}))
        load = XmppComponent(LOAD, SECRET, prosody.host, prosody.component_port).connect()
        stack.callback(load.stop)
        yield prosody, load


def _pua(prosody: Prosody, proxy: str, data_dir: Path) -> RunningService:
    svc = RunningService(
        "--xmpp", "--xmpp-component", COMPONENT, "--xmpp-port", str(prosody.component_port),
        "--no-xmpp-winfo", "--outbound-proxy", proxy, "--log-level", "warning",
        data_dir=data_dir, env={"PUA_XMPP_SECRET": SECRET})
    try:
        _until("the gateway connected",
               lambda: svc.rpc("pua.xmpp")["result"]["connected"], timeout=30)
    except BaseException:
        svc.stop()
        raise
    return svc


def _published(svc: RunningService) -> int:
    return int(svc.rpc("pua.stats")["result"]["by_state"].get("publication.published", 0))


def routing_reference(load: XmppComponent, count: int) -> dict[str, Any]:
    """Prosody routing ``count`` presences from the load component back to it."""
    mark = load.count(lambda p: True)
    stanzas = [{"pfrom": f"r{i}@{LOAD}/x", "to": f"sink@{LOAD}", "status": f"r{i}"}
               for i in range(count)]
    start = time.monotonic()
    load.send_many(stanzas)
    end = _until("the routed presences", lambda: load.count(lambda p: True) - mark >= count)
    return {"stanzas": count, "seconds": round(end - start, 3),
            "per_s": round(count / (end - start), 1)}


def stanzas_to_publishes(count: int, tmp: Path) -> dict[str, Any]:
    """XMPP presences to PUBLISHes (pua against a SIPp UAS), and the routing
    reference on the same Prosody."""
    with _xmpp() as (prosody, load), SippUAS("publish_200") as uas:
        reference = routing_reference(load, count)
        svc = _pua(prosody, uas.uri, tmp / "to-sip")
        try:
            stanzas = [{"pfrom": f"u{i}@{LOAD}/r", "to": COMPONENT, "status": f"s{i}"}
                       for i in range(count)]
            start = time.monotonic()
            load.send_many(stanzas)
            end = _until("every PUBLISH answered", lambda: _published(svc) >= count)
            counters = svc.rpc("pua.xmpp")["result"]["counters"]
        finally:
            svc.stop()
    seconds = end - start
    return {
        "stanzas": count, "seconds": round(seconds, 3), "per_s": round(count / seconds, 1),
        "published": counters["published"], "stanzas_in": counters["stanzas_in"],
        "reference": reference,
    }


def _is_notified(p: PresenceSeen) -> bool:
    return p.type == "available" and p.status == "Available"


def notifies_to_stanzas(count: int, rate: float, tmp: Path) -> dict[str, Any]:
    """NOTIFYs of the Kamailio presence server to presence stanzas."""
    with _xmpp() as (prosody, load), KamailioPresence(debug=1) as kam:
        svc = _pua(prosody, kam.uri, tmp / "to-xmpp")
        try:
            # SIPp's users are bench1..bench<count> (its call numbers)
            subs = [{"pfrom": f"w{i}@{LOAD}", "to": f"bench{i}*example.com@{COMPONENT}",
                     "ptype": "subscribe"} for i in range(1, count + 1)]
            load.send_many(subs)
            _until("every subscription accepted",
                   lambda: load.count(lambda p: p.type == "subscribed") >= count)
            before = svc.rpc("pua.xmpp")["result"]["counters"]["notifies"]
            uac = SippUAC(Path(__file__).parent / "sipp" / "uac_publish.xml", kam.host, kam.port,
                          calls=count, rate=rate, limit=200, timeout=LONGEST_WAIT)
            start = time.monotonic()
            stats = uac.run()
            end = _until("every NOTIFY as presence", lambda: load.count(_is_notified) >= count)
            counters = svc.rpc("pua.xmpp")["result"]["counters"]
        finally:
            svc.stop()
    seconds = end - start
    return {
        "notifies": count, "offered_rate": rate, "seconds": round(seconds, 3),
        "per_s": round(count / seconds, 1), "converted": counters["notifies"] - before,
        "reference": {"publishes": stats.successful, "seconds": round(stats.wall_seconds, 3),
                      "per_s": round(stats.successful / stats.wall_seconds, 1)},
    }


def run(stanzas: int = STANZAS, notifies: int = NOTIFIES,
        notify_rate: float = NOTIFY_RATE) -> dict[str, Any]:
    """Both directions."""
    with tempfile.TemporaryDirectory(prefix="pua-bench-xmpp-") as tmp:
        return {
            "to_sip": stanzas_to_publishes(stanzas, Path(tmp)),
            "to_xmpp": notifies_to_stanzas(notifies, notify_rate, Path(tmp)),
        }


if __name__ == "__main__":
    import json
    import sys

    sizes = [int(x) for x in sys.argv[1:3]]
    print(json.dumps(run(*sizes), indent=2))
