"""Several `pua serve` nodes on one PostgreSQL database (``cluster =
true``), against a Kamailio presence server on loopback:

* publications (and subscriptions) per second made through the JSON-RPC
  API with 1, 2 and 3 nodes, the calls spread round-robin over every
  node's API, so that most of them are carried to the record's owner;
* the takeover of a node killed with SIGKILL, repeated: how long until
  the survivors own its partitions, until its records are refreshed by
  them, and whether any record was refreshed twice, lapsed at the server
  or drew a 412.

The nodes, the databases and the presence server are those of the cluster
tests (tests/cluster/harness.py, tests/peers/kamailio.py).
"""

from __future__ import annotations

import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

from tests.cluster.harness import Nodes, PostgresDatabase, Request, RequestLog
from tests.peers.conftest import poll
from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import pidf
from tests.service.running import RunningService

from .service_memory import cpu_seconds

NAMES = ("A", "B", "C")
# The lease, and the presence server's lifetimes in the takeover runs:
# Kamailio grants at most MAX_EXPIRES, pua refreshes REFRESH_MARGIN before
# expiry (at most half the lifetime), so once a PERIOD, 8 to 10 s after
# the last 2xx.  A lease of 3 s is what docs/cluster.md advises for 20 s.
LEASE = 3.0
MAX_EXPIRES = 20
REFRESH_MARGIN = 10.0
PERIOD = MAX_EXPIRES / 2
EARLIEST = PERIOD * 0.8
# Two requests of one record closer than this are two in one period.
NOT_TWICE = EARLIEST - 0.5
# Client threads making the calls, whatever the number of nodes.
THREADS = 12
# Kamailio's SQLite database on tmpfs: it syncs every commit to disk, and
# the presence server should not be what limits the rate.
BASE_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _flags(presence: KamailioPresence, db_url: str) -> tuple[str, ...]:
    return (
        "--cluster",
        "--db-url",
        db_url,
        "--lease-time",
        str(LEASE),
        "--outbound-proxy",
        presence.uri,
        "--refresh-margin",
        str(REFRESH_MARGIN),
        "--log-level",
        "warning",
    )


def _view(svc: RunningService) -> dict[str, Any]:
    answer = svc.rpc("pua.cluster")
    assert "result" in answer, answer
    return dict(answer["result"])


def _spread(nodes: Iterable[RunningService]) -> list[set[int]] | None:
    """The partitions each node owns, once every node owns some, together
    all of them, none twice, and none is free as each node sees it."""
    views = [_view(svc) for svc in nodes]
    owned = [set(v["owned"]) for v in views]
    total = views[0]["partitions"]
    if not all(owned) or sum(map(len, owned)) != total:
        return None
    if set().union(*owned) != set(range(total)) or any(v["free"] for v in views):
        return None
    return owned


def _start(nodes: Nodes, names: Sequence[str]) -> None:
    for name in names:
        nodes.start(name, "--node-id", name)
    poll(
        f"{len(names)} nodes share the partitions",
        lambda: _spread(nodes[n] for n in names),
        timeout=30,
        interval=0.1,
    )


def _forwarded(nodes: Nodes, names: Iterable[str]) -> int:
    return sum(int(_view(nodes[n])["stats"]["forwarded"]) for n in names)


def _responses(nodes: Nodes, names: Iterable[str], status: str = "412") -> int:
    return sum(int(nodes[n].rpc("pua.stats")["result"]["responses"].get(status, 0)) for n in names)


def _cpu(nodes: Nodes, names: Iterable[str]) -> float:
    """CPU seconds the nodes' processes have used (user and system)."""
    return sum(cpu_seconds(nodes[name].process.pid) for name in names)


def _publish_call(uri: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "pua.publish",
        "params": {
            "pres_uri": uri,
            "expires": -1,
            "event": "presence",
            "content_type": "application/pidf+xml",
            "body": pidf(uri),
        },
    }


def _subscribe_call(pres_uri: str, watcher_uri: str) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "pua.subscribe",
        "params": {"pres_uri": pres_uri, "watcher_uri": watcher_uri, "expires": -1},
    }


def drive(
    ports: Sequence[int], calls: Sequence[dict[str, Any]], threads: int = THREADS
) -> dict[str, Any]:
    """``calls`` made from ``threads`` client threads, call i to the API on
    ``ports[i % len(ports)]`` (a keep-alive connection per thread and
    node), each waiting for its answer."""
    counter = iter(range(len(calls)))
    lock = threading.Lock()
    ok = failed = 0
    errors: list[Any] = []

    def worker() -> None:
        nonlocal ok, failed
        conns: dict[int, http.client.HTTPConnection] = {}
        good = bad = 0
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    break
                port = ports[i % len(ports)]
                conn = conns.get(port)
                if conn is None:
                    conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                conn.request(
                    "POST", "/rpc", json.dumps(calls[i]), {"Content-Type": "application/json"}
                )
                answer = json.loads(conn.getresponse().read())
                if "result" in answer:
                    good += 1
                else:
                    bad += 1
                    if len(errors) < 3:
                        errors.append(answer.get("error"))
        finally:
            for conn in conns.values():
                conn.close()
            with lock:
                ok += good
                failed += bad

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    started = time.perf_counter()
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    seconds = time.perf_counter() - started
    return {
        "calls": len(calls),
        "ok": ok,
        "failed": failed,
        "errors": errors,
        "seconds": seconds,
        "per_s": ok / seconds,
    }


# ---------------------------------------------------------------- the rate
def rate(count: int, publications: int, subscriptions: int, tmp: Path) -> dict[str, Any]:
    """``publications`` pua.publish, then ``subscriptions`` pua.subscribe,
    spread round-robin over ``count`` fresh nodes on a fresh database and
    presence server."""
    names = NAMES[:count]
    pubs = [f"sip:r{n:05d}@example.com" for n in range(publications)]
    subs = [(pubs[n % len(pubs)], f"sip:rw{n:05d}@example.com") for n in range(subscriptions)]
    with (
        KamailioPresence(base_dir=BASE_DIR) as presence,
        PostgresDatabase() as db,
        Nodes(tmp / f"rate{count}", *_flags(presence, db.url)) as nodes,
    ):
        _start(nodes, names)
        ports = [nodes[n].api_port for n in names]
        load = os.getloadavg()[0]
        cpu = _cpu(nodes, names)
        published = drive(ports, [_publish_call(uri) for uri in pubs])
        published["node_cpu_s"] = _cpu(nodes, names) - cpu
        published["forwarded"] = _forwarded(nodes, names)
        cpu = _cpu(nodes, names)
        subscribed = drive(ports, [_subscribe_call(p, w) for p, w in subs])
        subscribed["node_cpu_s"] = _cpu(nodes, names) - cpu
        subscribed["forwarded"] = _forwarded(nodes, names) - published["forwarded"]
        rows = db.query("SELECT count(*) AS n FROM pua")[0]["n"]
        responses_412 = _responses(nodes, names)
    return {
        "nodes": count,
        "publish": published,
        "subscribe": subscribed,
        "rows": rows,
        "responses_412": responses_412,
        "load_1min": load,
    }


# ------------------------------------------------------------ the takeover
def _records(svc: RunningService) -> dict[Any, dict[str, Any]]:
    """The node's records: publications by pres_uri, subscriptions by
    (pres_uri, watcher_uri), as the presence server's log names them."""
    out: dict[Any, dict[str, Any]] = {}
    for r in json.loads(svc.get("/records"))["records"]:
        key = r["pres_uri"] if r["kind"] == "publication" else (r["pres_uri"], r["watcher_uri"])
        out[key] = r
    return out


def _all_requests(log: RequestLog) -> dict[Any, list[Request]]:
    return {**log.by_record("PUBLISH"), **log.by_record("SUBSCRIBE")}


def _check(
    everything: dict[Any, list[Request]],
    keys: Iterable[Any],
    *,
    killed_port: int,
    kill_line: int,
    end: float,
) -> dict[str, Any]:
    """Duplicates and lapses among the requests of ``keys``, each pair of
    consecutive requests of a record less than a period apart counted
    once, as the first of these that fits:

    * ``initial_again``: the later one starts anew, a PUBLISH without
      SIP-If-Match or a SUBSCRIBE in a new dialog (Call-ID), once the
      record had an ETag or a dialog;
    * ``target_refreshes``: a subscription's first SUBSCRIBE from its new
      owner, which is sent at once by design (so that its NOTIFYs come to
      the new owner), counted apart and not as a duplicate;
    * ``early``: a publication's first refresh by its new owner, sooner
      than a period after the killed node's last request;
    * ``twice``: any other two.

    Besides: ``by_two_nodes``, records with requests from both survivors
    after the kill.  A lapse: consecutive requests of a record further
    apart than the lifetime the server grants, or none in that long at
    the end."""
    counts = dict.fromkeys(("initial_again", "target_refreshes", "early", "twice"), 0)
    examples: dict[str, list[Any]] = {name: [] for name in counts}
    two_nodes: list[Any] = []
    lapses: list[Any] = []
    for key in keys:
        requests = everything.get(key, [])
        publication = isinstance(key, str)
        for earlier, later in pairwise(requests):
            gap = later.time - earlier.time
            if gap > MAX_EXPIRES:
                lapses.append((key, round(gap, 3)))
            if gap >= NOT_TWICE:
                continue
            moved = earlier.port == killed_port and later.port != killed_port
            if (publication and later.if_match is None) or (
                not publication and later.call_id != earlier.call_id
            ):
                kind = "initial_again"
            elif moved:
                kind = "early" if publication else "target_refreshes"
            else:
                kind = "twice"
            counts[kind] += 1
            if len(examples[kind]) < 3:
                examples[kind].append((key, round(gap, 3)))
        if not requests or end - requests[-1].time > MAX_EXPIRES:
            lapses.append((key, "none since"))
        after = {r.port for r in requests if r.line >= kill_line}
        if len(after - {killed_port}) > 1:
            two_nodes.append(key)
    return {
        "early_by_new_owner": counts["early"],
        "new_dialog_or_initial_publish": counts["initial_again"],
        "twice_in_a_period": counts["twice"],
        "by_two_nodes": len(two_nodes),
        "duplicates": counts["early"] + counts["initial_again"] + counts["twice"] + len(two_nodes),
        "subscription_target_refreshes": counts["target_refreshes"],
        "lapses": len(lapses),
        "examples": {**examples, "by_two_nodes": two_nodes[:3], "lapses": lapses[:3]},
    }


def takeover(
    round_no: int, publications: int, subscriptions: int, tmp: Path, settle: float
) -> dict[str, Any]:
    """Three fresh nodes on a fresh database and presence server; records
    made through all three; node A killed with SIGKILL at a moment when no
    refresh of its publications is in flight or due within a second (so
    its rows hold its latest ETags, as in tests/cluster/test_cluster.py);
    then watched until every record of A's has been refreshed by a
    survivor and one more period has passed."""
    pubs = [f"sip:t{n:04d}@example.com" for n in range(publications)]
    subs = [(pubs[n], f"sip:tw{n:04d}@example.com") for n in range(subscriptions)]
    with (
        KamailioPresence(max_expires=MAX_EXPIRES, base_dir=BASE_DIR) as presence,
        PostgresDatabase() as db,
        Nodes(tmp / f"takeover{round_no}", *_flags(presence, db.url)) as nodes,
    ):
        log = RequestLog(presence)
        _start(nodes, NAMES)
        ports = [nodes[n].api_port for n in NAMES]
        made = drive(
            ports,
            [_publish_call(u) for u in pubs] + [_subscribe_call(p, w) for p, w in subs],
            threads=8,
        )
        made_at = time.time()
        assert made["failed"] == 0, made
        owners: dict[Any, int] = {}
        for name in NAMES:
            owners.update(dict.fromkeys(_records(nodes[name]), nodes[name].sip_port))
        a_port = nodes["A"].sip_port
        a_records = {k for k, port in owners.items() if port == a_port}
        a_pubs = {k for k in a_records if isinstance(k, str)}
        time.sleep(settle)

        def lull() -> bool:
            # Killing A now loses no ETag: its rows hold what it holds, and
            # no refresh of its publications falls due within a second.
            held = _records(nodes["A"])
            stored = {
                r["pres_uri"]: r["etag"]
                for r in db.query("SELECT pres_uri, etag FROM pua WHERE watcher_uri = ''")
            }
            due = min(held[u]["expires_at"] for u in a_pubs) - (MAX_EXPIRES - EARLIEST)
            same = all(stored.get(u) == held[u]["etag"] for u in a_pubs)
            return same and due > time.time() + 1

        poll("a lull in A's refreshes", lull, timeout=3 * PERIOD, interval=0.05)
        before_412 = _responses(nodes, NAMES)
        before_481 = _responses(nodes, NAMES, "481")
        load = os.getloadavg()[0]
        kill_line = log.mark()
        killed = time.time()
        nodes.kill("A")
        survivors = [nodes["B"], nodes["C"]]
        poll(
            "B and C own every partition",
            lambda: _spread(survivors),
            timeout=LEASE * 3 + 10,
            interval=0.05,
        )
        owned_s = time.time() - killed

        def first_by_new_owner() -> dict[Any, Request]:
            firsts: dict[Any, Request] = {}
            for r in log.since(kill_line):
                if r.port != a_port and r.identity in a_records:
                    firsts.setdefault(r.identity, r)
            return firsts

        try:
            firsts = poll(
                "every record of A's refreshed by B or C",
                lambda: (f := first_by_new_owner()) and len(f) == len(a_records) and f,
                timeout=LEASE + PERIOD + 10,
                interval=0.1,
            )
        except AssertionError:
            firsts = first_by_new_owner()
        # One more period: every record refreshed again, none twice.
        time.sleep(PERIOD + 1)
        end = time.time()
        checked = _check(
            _all_requests(log), owners, killed_port=a_port, kill_line=kill_line, end=end
        )
        after_412 = _responses(nodes, ("B", "C"))
        after_481 = _responses(nodes, ("B", "C"), "481")
        partitions = int(_view(nodes["B"])["partitions"])
        times = sorted(r.time - killed for r in firsts.values())
        return {
            "round": round_no,
            "publications": publications,
            "subscriptions": subscriptions,
            "partitions": partitions,
            "records_of_killed": len(a_records),
            "killed_after_s": killed - made_at,
            "owned_s": owned_s,
            "first_refresh_s": times[0] if times else None,
            "all_refreshed_s": times[-1] if len(times) == len(a_records) else None,
            "refreshed_by_new_owner": len(times),
            "responses_412": before_412 + after_412,
            "responses_481": before_481 + after_481,
            "load_1min": load,
            **checked,
        }


def _summary(values: Sequence[float | None]) -> dict[str, float | None]:
    known = [v for v in values if v is not None]
    if not known:
        return {"min": None, "median": None, "max": None}
    return {"min": min(known), "median": statistics.median(known), "max": max(known)}


def _best(count: int, passes: list[dict[str, Any]]) -> dict[str, Any]:
    """The rate with ``count`` nodes over the passes: the best of each
    kind (the machine is shared: a slower pass is one disturbed more),
    every pass kept."""
    publish = max((p["publish"] for p in passes), key=lambda r: r["per_s"])
    subscribe = max((p["subscribe"] for p in passes), key=lambda r: r["per_s"])
    return {
        "nodes": count,
        "publish": publish,
        "subscribe": subscribe,
        "responses_412": sum(p["responses_412"] for p in passes),
        "passes": passes,
    }


def run(publications: int = 3000, subscriptions: int = 1000, rounds: int = 3) -> dict[str, Any]:
    """The rate with 1, 2 and 3 nodes (two passes, the second in the
    reverse order), then ``rounds`` takeovers."""
    counts = (1, 2, 3)
    with tempfile.TemporaryDirectory() as tmp:
        by_count: dict[int, list[dict[str, Any]]] = {n: [] for n in counts}
        for n in (*counts, *reversed(counts)):
            by_count[n].append(
                rate(n, publications, subscriptions, Path(tmp) / f"pass{len(by_count[n])}")
            )
        # The kill falls at another point of the refresh period each round.
        takeovers = [
            takeover(r, 300, 100, Path(tmp), settle=(r * 3.0) % PERIOD) for r in range(rounds)
        ]
    rates = [_best(n, by_count[n]) for n in counts]
    one = rates[0]
    for row in rates:
        row["publish_ratio"] = row["publish"]["per_s"] / one["publish"]["per_s"]
        row["subscribe_ratio"] = row["subscribe"]["per_s"] / one["subscribe"]["per_s"]
    return {
        "publications": publications,
        "subscriptions": subscriptions,
        "threads": THREADS,
        "lease_time": LEASE,
        "max_expires": MAX_EXPIRES,
        "refresh_margin": REFRESH_MARGIN,
        "partitions": takeovers[0]["partitions"] if takeovers else None,
        "rates": rates,
        "takeovers": takeovers,
        "owned_s": _summary([t["owned_s"] for t in takeovers]),
        "first_refresh_s": _summary([t["first_refresh_s"] for t in takeovers]),
        "all_refreshed_s": _summary([t["all_refreshed_s"] for t in takeovers]),
        "responses_412": sum(t["responses_412"] for t in takeovers),
        "duplicates": sum(t["duplicates"] for t in takeovers),
        "lapses": sum(t["lapses"] for t in takeovers),
        "responses_481": sum(t["responses_481"] for t in takeovers),
        "early_by_new_owner": sum(t["early_by_new_owner"] for t in takeovers),
        "new_dialog_or_initial_publish": sum(t["new_dialog_or_initial_publish"] for t in takeovers),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=1, default=str))
