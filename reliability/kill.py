"""kill -9 under load: nothing acknowledged is lost.

A client makes, changes and removes publications and subscriptions through
`pua serve`'s JSON-RPC API without pause, several calls at a time, and
records every change the API acknowledged.  Meanwhile pua is killed with
SIGKILL at random moments and started again on the same ports and data.
After each restart, once pua has settled, and at the end, the real presence
server (Kamailio) is compared with what was acknowledged:

- every acknowledged publication is live there with its last acknowledged
  body, every acknowledged removal is gone, no presentity has two rows;
- every acknowledged subscription is active there with one dialog, every
  acknowledged end is gone;
- every acknowledged registration binding is listed by pua and published
  there (a presentity of its address of record naming its contact), every
  acknowledged unbinding is gone from both.

A call that got no answer (pua was killed under it) leaves its record
uncertain until the next acknowledged call on it.

    python -m reliability.kill [KILLS] [OUTPUT.json]
"""

from __future__ import annotations

import json
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.peers.kamailio import KamailioPresence
from tests.peers.rawsip import pidf
from tests.service.running import RunningService

from pua.runtime.persistence import SPREAD_MIN

DOMAIN = "example.com"
PRESENTITIES = [f"sip:p{n}@{DOMAIN}" for n in range(40)]
WATCHERS = [f"sip:w{n}@{DOMAIN}" for n in range(4)]
TARGETS = [f"sip:p{n}@{DOMAIN}" for n in range(10)]  # what the watchers watch
# Registration bindings (pua --usrloc): addresses of record and contacts.
AORS = [f"sip:r{n}@{DOMAIN}" for n in range(10)]
CONTACTS = [f"192.0.2.{m}:5060" for m in range(1, 4)]



@dataclass
class Expected:
    """What the API acknowledged, per record; None: uncertain."""

    publications: dict[str, str | bool | None] = field(default_factory=dict)
    subscriptions: dict[tuple[str, str], bool | None] = field(default_factory=dict)
    bindings: dict[tuple[str, str], bool | None] = field(default_factory=dict)
    acknowledged: int = 0
    unanswered: int = 0
    cut: set[Any] = field(default_factory=set)  # records a kill cut a call of
    refused: int = 0
    refusals: dict[str, int] = field(default_factory=dict)  # by method, code and message
    lock: threading.Lock = field(default_factory=threading.Lock)


class NotReached(Exception):
    """The API was not listening: the call never reached pua."""


def _call(url: str, method: str, params: Any, timeout: float) -> dict[str, Any] | None:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url + "/rpc", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return json.loads(reply.read())  # type: ignore[no-any-return]
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            raise NotReached from None
        return None  # killed under the call: no answer
    except ConnectionRefusedError:
        raise NotReached from None
    except (OSError, ValueError):
        return None  # killed under the call: no answer


class Client:
    """Calls the API in a loop from ``threads`` threads, until stopped."""

    def __init__(self, api_url: str, expected: Expected, seed: int, threads: int = 4) -> None:
        self.url = api_url
        self.expected = expected
        self.random = random.Random(seed)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(threads)]
        self.counter = 0
        self.busy: set[str | tuple[str, str]] = set()  # one call per record at a time
        self.paused = threading.Event()

    def pause(self, seconds: float = 60.0) -> None:
        """Stop making calls and wait for those under way to end."""
        self.paused.set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            with self.expected.lock:
                if not self.busy:
                    return
            time.sleep(0.02)

    def resume(self) -> None:
        self.paused.clear()

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def _pick(self) -> tuple[str, Any, str | tuple[str, str]] | None:
        with self.expected.lock:
            self.counter += 1
            n = self.counter
            if self.random.random() < 0.15:
                aor = self.random.choice(AORS)
                host = self.random.choice(CONTACTS)
                binding = (aor, f"sip:{aor[4:].partition('@')[0]}@{host}")
                if binding in self.busy:
                    return None
                self.busy.add(binding)
                expires = 600 if self.random.random() < 0.7 else 0
                call_id = f"kill-{binding[0]}-{host}"
                return ("register", {"aor": aor, "contact": binding[1], "expires": expires,
                                     "call_id": call_id}, binding)
            if self.random.random() < 0.7 / 0.85:
                uri = self.random.choice(PRESENTITIES)
                if uri in self.busy:
                    return None
                self.busy.add(uri)
                if self.random.random() < 0.75:
                    note = f"n{n}"
                    return ("publish", [uri, 600, "presence", ".", ".", ".", ".", ".",
                                        pidf(uri, note=note)], uri)
                return ("unpublish", [uri, "presence"], uri)
            pair = (self.random.choice(TARGETS), self.random.choice(WATCHERS))
            if pair in self.busy:
                return None
            self.busy.add(pair)
            if self.random.random() < 0.7:
                return ("subscribe", [pair[0], pair[1], "presence", 600], pair)
            return ("unsubscribe", [pair[0], pair[1], "presence"], pair)

    def _loop(self) -> None:
        while not self.stop.is_set():
            if self.paused.is_set():
                self.stop.wait(0.02)
                continue
            picked = self._pick()
            if picked is None:
                continue
            method, params, record = picked
            try:
                answer = _call(self.url, f"pua.{method}", params, timeout=30)
                self._note(method, params, record, answer)
            except NotReached:
                self.stop.wait(0.05)  # pua is being started again
            finally:
                with self.expected.lock:
                    self.busy.discard(record)

    def _note(self, method: str, params: Any, record: Any,
              answer: dict[str, Any] | None) -> None:
        exp = self.expected
        with exp.lock:
            if answer is None:
                exp.unanswered += 1
                exp.cut.add(record)
                if method == "register":
                    exp.bindings[record] = None
                elif method in ("publish", "unpublish"):
                    exp.publications[record] = None
                else:
                    exp.subscriptions[record] = None
                return
            if "error" in answer:
                exp.refused += 1
                code = answer["error"].get("code")
                what = f"{method} {code} {str(answer['error'].get('message'))[:60]}"
                exp.refusals[what] = exp.refusals.get(what, 0) + 1
                if method == "register":
                    exp.bindings[record] = None
                elif method == "unpublish" and code == 404:
                    exp.publications[record] = False  # nothing to remove: none there
                elif method == "unsubscribe" and code == 404:
                    exp.subscriptions[record] = False
                elif method in ("publish", "unpublish"):
                    exp.publications[record] = None  # failed: whatever the server has
                else:
                    exp.subscriptions[record] = None
                return
            exp.acknowledged += 1
            if method == "register":
                exp.bindings[record] = params["expires"] > 0
            elif method == "publish":
                exp.publications[record] = params[-1].split("<note>")[1].split("</note>")[0]
            elif method == "unpublish":
                exp.publications[record] = False
            elif method == "subscribe":
                exp.subscriptions[record] = True
            else:
                exp.subscriptions[record] = False


def check(kam: KamailioPresence, expected: Expected,
          listed: list[dict[str, Any]] | None = None) -> dict[str, list[str]]:
    """What the server disagrees with: lost, wrong, back from the dead,
    duplicated; ``listed`` is what pua.registrations answered."""
    now = time.time()
    problems: dict[str, list[str]] = {
        "lost": [], "stale": [], "revived": [], "duplicated": [], "orphans_of_cut_calls": [],
    }
    rows = [r for r in kam.presentity_rows(event="presence") if r["expires"] > now]
    by_uri: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_uri.setdefault(f"sip:{row['username']}@{row['domain']}", []).append(row)
    with expected.lock:
        publications = dict(expected.publications)
        subscriptions = dict(expected.subscriptions)
    for uri, want in publications.items():
        have = by_uri.get(uri, [])
        # A call cut by the kill may have left a publication at the server
        # that pua never heard the ETag of: it lives out its lifetime there.
        # Counted apart; everything else must agree.
        cut = uri in expected.cut
        if len(have) > 1:
            kind = "orphans_of_cut_calls" if cut else "duplicated"
            problems[kind].append(f"{uri}: {len(have)} rows")
        if want is None:
            continue
        if want is False:
            if have:
                kind = "orphans_of_cut_calls" if cut else "revived"
                problems[kind].append(f"{uri}: removal acknowledged, still there")
        elif not have:
            problems["lost"].append(f"{uri}: acknowledged {want}, not at the server")
        elif not any(f"<note>{want}</note>".encode() in bytes(r["body"]) for r in have):
            problems["stale"].append(f"{uri}: acknowledged {want}, server has another body")
    watchers = [r for r in kam.active_watchers_rows(event="presence") if r["expires"] > now]
    dialogs: dict[tuple[str, str], int] = {}
    for row in watchers:
        pair = (row["presentity_uri"], f"sip:{row['watcher_username']}@{row['watcher_domain']}")
        dialogs[pair] = dialogs.get(pair, 0) + 1
    for pair, count in dialogs.items():
        if count > 1:
            kind = "orphans_of_cut_calls" if pair in expected.cut else "duplicated"
            problems[kind].append(f"{pair}: {count} dialogs")
    for pair, want in subscriptions.items():
        if want is None:
            continue
        have = dialogs.get(pair, 0)
        if want and have == 0:
            problems["lost"].append(f"{pair}: subscription acknowledged, not at the server")
        if not want and have:
            kind = "orphans_of_cut_calls" if pair in expected.cut else "revived"
            problems[kind].append(f"{pair}: end acknowledged, still active")
    held = {(b["aor"], b["contact"]) for b in listed or []}
    with expected.lock:
        bindings = dict(expected.bindings)
    for binding, want in bindings.items():
        if want is None:
            continue
        aor, contact = binding
        published = [r for r in by_uri.get(aor, []) if contact.encode() in bytes(r["body"])]
        cut = binding in expected.cut
        if len(published) > 1:
            kind = "orphans_of_cut_calls" if cut else "duplicated"
            problems[kind].append(f"{binding}: {len(published)} publications")
        if want and (binding not in held or not published):
            where = "pua" if binding not in held else "the server"
            problems["lost"].append(f"{binding}: binding acknowledged, not at {where}")
        if not want and (binding in held or published):
            kind = "orphans_of_cut_calls" if cut and binding not in held else "revived"
            problems[kind].append(f"{binding}: unbinding acknowledged, still there")
    return problems


def registrations(svc: RunningService) -> list[dict[str, Any]]:
    answer = _call(svc.api_url, "pua.registrations", [], timeout=10)
    return [] if answer is None else answer["result"]["bindings"]


def settle(svc: RunningService, seconds: float = 20.0) -> bool:
    """Wait until pua has nothing in flight or waiting to be sent again."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = _call(svc.api_url, "pua.stats", [], timeout=5)
        if answer is not None and "result" in answer:
            states = answer["result"]["by_state"]
            if not any(k.endswith((".sending", ".backoff", ".subscribing", ".removing",
                                   ".unsubscribing")) and v for k, v in states.items()):
                return True
        time.sleep(0.2)
    return False


def _record(figures: dict[str, Any], settled: bool, problems: dict[str, list[str]]) -> None:
    """One comparison's counts; the problems of the last one kept whole,
    every disagreement of any comparison summed in ``total``."""
    figures["checks"].append({"settled": settled, **{k: len(v) for k, v in problems.items()}})
    total = figures.setdefault("total", {})
    for kind, found in problems.items():
        total[kind] = total.get(kind, 0) + len(found)
        if found and kind != "orphans_of_cut_calls":
            figures.setdefault("found", []).append(
                {"check": len(figures["checks"]), "kind": kind, "what": found}
            )
    figures["problems"] = problems


def run(kills: int = 10, seed: int = 1, workdir: Path | None = None,
        check_each: bool = True) -> dict[str, Any]:
    """The campaign; returns its figures (and every disagreement found),
    comparing with the server after each restart (``check_each``) and at
    the end."""
    rng = random.Random(seed)
    workdir = workdir or Path(tempfile.mkdtemp(prefix="pua-kill-"))
    expected = Expected()
    figures: dict[str, Any] = {"kills": 0, "restarts": 0, "checks": [], "seed": seed}
    started = time.monotonic()
    with KamailioPresence(max_expires=3600) as kam:
        flags = ("--outbound-proxy", kam.uri, "--t1", "0.1", "--usrloc")
        svc = RunningService(*flags, data_dir=workdir / "var")
        port = svc.sip_port
        client = Client(svc.api_url, expected, seed)
        client.start()
        try:
            for _ in range(kills):
                # Let the load run a random while, then kill pua under it.
                deadline = time.monotonic() + rng.uniform(0.3, 2.0)
                while time.monotonic() < deadline:
                    time.sleep(0.05)
                svc.process.send_signal(signal.SIGKILL)
                svc.process.wait(timeout=10)
                figures["kills"] += 1
                svc = RunningService(*flags, data_dir=workdir / "var", sip_port=port)
                figures["restarts"] += 1
                client.url = svc.api_url
                if check_each:
                    # After each restart: the load paused, the restored
                    # records' first requests sent (they are spread over
                    # SPREAD_MIN), pua settled, the server compared with what
                    # was acknowledged so far.
                    client.pause()
                    time.sleep(SPREAD_MIN + 0.5)
                    settled = settle(svc)
                    _record(figures, settled, check(kam, expected, registrations(svc)))
                    client.resume()
        finally:
            client.join()
        settled = settle(svc)
        _record(figures, settled, check(kam, expected, registrations(svc)))
        svc.stop()
    figures.update(
        acknowledged=expected.acknowledged,
        unanswered=expected.unanswered,
        refused=expected.refused,
        refusals=expected.refusals,
        publications_checked=sum(1 for v in expected.publications.values() if v is not None),
        subscriptions_checked=sum(1 for v in expected.subscriptions.values() if v is not None),
        bindings_checked=sum(1 for v in expected.bindings.values() if v is not None),
        seconds=round(time.monotonic() - started, 1),
    )
    return figures


if __name__ == "__main__":
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    result = run(count)
    text = json.dumps(result, indent=2, default=str)
    if len(sys.argv) > 2:
        Path(sys.argv[2]).write_text(text)
    print(text)
