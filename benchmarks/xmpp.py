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

Kamailio's own gateway (``pua_xmpp`` + ``xmpp``, with the fix its
``xmpp`` module needs to run at all; tests/peers/kamailio_xmpp.py) is
measured on the same chains, with the same counts, in the same run.
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
from tests.peers.kamailio_xmpp import KamailioXmppGateway
from tests.peers.prosody import Prosody
from tests.peers.rawsip import RawSipClient, pidf
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


@contextmanager
def _gateway(kind: str, prosody: Prosody, proxy: str, tmp: Path) -> Iterator[Any]:
    """pua, or Kamailio's pua_xmpp, as the gateway of ``prosody`` sending
    its requests to ``proxy``."""
    if kind == "pua":
        svc = _pua(prosody, proxy, tmp)
        try:
            yield svc
        finally:
            svc.stop()
    else:
        with KamailioXmppGateway(xmpp_port=prosody.component_port, xmpp_domain=COMPONENT,
                                 xmpp_secret=SECRET, presence_server=proxy,
                                 debug=1) as kam:
            yield kam


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


def stanzas_to_publishes(count: int, tmp: Path, kinds: tuple[str, ...]) -> dict[str, Any]:
    """XMPP presences to PUBLISHes against a SIPp UAS, by each gateway, and
    the routing reference on the same Prosody."""
    out: dict[str, Any] = {"stanzas": count}
    with _xmpp() as (prosody, load):
        out["reference"] = routing_reference(load, count)
        for kind in kinds:
            with SippUAS("publish_200", trace_msg=kind != "pua") as uas, \
                    _gateway(kind, prosody, uas.uri, tmp / f"to-sip-{kind}") as gateway:
                if kind == "pua":
                    def done() -> bool:
                        return _published(gateway) >= count
                else:
                    def done() -> bool:
                        return len(uas.received("PUBLISH")) >= count
                stanzas = [{"pfrom": f"{kind}{i}@{LOAD}/r", "to": COMPONENT,
                            "status": f"s{i}"} for i in range(count)]
                start = time.monotonic()
                load.send_many(stanzas)
                try:
                    end = _until("every PUBLISH answered", done, interval=0.2)
                    seconds = end - start
                    out[kind] = {"seconds": round(seconds, 3),
                                 "per_s": round(count / seconds, 1)}
                except TimeoutError:
                    got = _published(gateway) if kind == "pua" else len(uas.received("PUBLISH"))
                    out[kind] = {"seconds": None, "per_s": None, "published": got}
    return out


def _is_notified(p: PresenceSeen) -> bool:
    return p.type == "available" and p.status == "Available"


def notifies_to_stanzas(count: int, rate: float, tmp: Path,
                        kinds: tuple[str, ...]) -> dict[str, Any]:
    """NOTIFYs of the Kamailio presence server to presence stanzas, by each
    gateway."""
    out: dict[str, Any] = {"notifies": count, "offered_rate": rate}
    for kind in kinds:
        with _xmpp() as (prosody, load), KamailioPresence(debug=1) as kam, \
                _gateway(kind, prosody, kam.uri, tmp / f"to-xmpp-{kind}"):
            # SIPp's users are bench1..bench<count> (its call numbers)
            subs = [{"pfrom": f"w{i}@{LOAD}", "to": f"bench{i}*example.com@{COMPONENT}",
                     "ptype": "subscribe"} for i in range(1, count + 1)]
            load.send_many(subs)
            _until("every subscription accepted",
                   lambda: load.count(lambda p: p.type == "subscribed") >= count)
            uac = SippUAC(Path(__file__).parent / "sipp" / "uac_publish.xml", kam.host, kam.port,
                          calls=count, rate=rate, limit=200, timeout=LONGEST_WAIT)
            start = time.monotonic()
            stats = uac.run()
            try:
                end = _until("every NOTIFY as presence",
                             lambda: load.count(_is_notified) >= count)
                seconds = end - start
                out[kind] = {"seconds": round(seconds, 3), "per_s": round(count / seconds, 1)}
            except TimeoutError:
                out[kind] = {"seconds": None, "per_s": None, "got": load.count(_is_notified)}
            out[kind]["feed"] = {
                "publishes": stats.successful, "seconds": round(stats.wall_seconds or 0, 3),
                "per_s": round(stats.successful / (stats.wall_seconds or 1), 1)}
    return out


FANOUT = 2000
ROUNDS = 3


def fanout(count: int, rounds: int, tmp: Path, kinds: tuple[str, ...]) -> dict[str, Any]:
    """One SIP user watched by ``count`` XMPP users: each of ``rounds``
    PUBLISHes makes Kamailio send ``count`` NOTIFYs at once, which the
    gateway turns into presence stanzas (the feed does not limit it)."""
    out: dict[str, Any] = {"watchers": count, "rounds": rounds}
    alice = "sip:alice@example.com"
    for kind in kinds:
        with _xmpp() as (prosody, load), KamailioPresence(debug=1) as kam, \
                _gateway(kind, prosody, kam.uri, tmp / f"fanout-{kind}"), \
                RawSipClient(kam.host, kam.port) as phone:
            subs = [{"pfrom": f"f{i}@{LOAD}", "to": f"alice*example.com@{COMPONENT}",
                     "ptype": "subscribe"} for i in range(count)]
            load.send_many(subs)
            _until("every subscription accepted",
                   lambda: load.count(lambda p: p.type == "subscribed") >= count)
            times = []
            etag = None
            for n in range(rounds):
                note = f"round {n}"
                start = time.monotonic()
                answer = phone.publish(alice, expires=600, body=pidf(alice, "open", note=note),
                                       etag=etag)
                assert answer is not None and answer.status == 200, answer
                etag = answer.header("SIP-ETag")
                try:
                    end = _until(f"{note} at every watcher", lambda note=note: load.count(
                        lambda p: p.type == "available" and p.status == note) >= count)
                except TimeoutError:
                    break
                times.append(end - start)
            done = len(times) == rounds
            seconds = sum(times)
            out[kind] = {"seconds": round(seconds, 3) if done else None,
                         "per_s": round(count * rounds / seconds, 1) if done else None,
                         "rounds_done": len(times)}
    return out


def run(stanzas: int = STANZAS, notifies: int = NOTIFIES, notify_rate: float = NOTIFY_RATE,
        kinds: tuple[str, ...] = ("kamailio", "pua")) -> dict[str, Any]:
    """Both directions, by each gateway (the reference first)."""
    with tempfile.TemporaryDirectory(prefix="pua-bench-xmpp-") as tmp:
        return {
            "to_sip": stanzas_to_publishes(stanzas, Path(tmp), kinds),
            "to_xmpp": notifies_to_stanzas(notifies, notify_rate, Path(tmp), kinds),
            "fanout": fanout(FANOUT, ROUNDS, Path(tmp), kinds),
        }


if __name__ == "__main__":
    import json
    import sys

    sizes = [int(x) for x in sys.argv[1:3]]
    print(json.dumps(run(*sizes), indent=2))
