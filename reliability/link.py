"""A bad network between two network namespaces, made and removed here.

A new namespace (``pua-net-PID-N``) is joined to the one this process runs
in by a veth pair with addresses of its own (10.213.X.1 here, 10.213.X.2
there).  Only UDP to and from a given set of ports on this side's address
(the SIP server's port, and the probe's) is impaired, in both directions,
so the management API and the checks cross the link untouched.

This kernel has no ``netem`` qdisc (nor prio, sfq, fq_codel), so the
impairments are made of what it has:

- loss: an nftables ``numgen random mod 100 < N drop`` on the receiving
  side (prerouting), so the sender's ``sendto`` never sees it (a drop in
  the output hook is reported to the sender as EPERM, unlike real loss);
- duplication: ``dup to ADDR device IF`` on the sending side (output);
- delay and reordering: an ``htb`` qdisc on each veth end, whose default
  class is fast and whose second class is a slow, rate-limited queue (a
  ``pfifo`` of bounded length); an nftables ``meta priority set`` steers a
  random share of the packets into the slow queue, where they wait behind
  each other and arrive after packets sent later through the fast class.
  The delay therefore grows with the slow queue's load, as on a congested
  link, and a full slow queue drops (counted apart, as overflow).

Every rule has a counter, read by :meth:`Link.counters`, so a campaign can
compare what happened with what was configured.  Where the kernel has
``netem``, the same conditions could be made with it; this module does
not use it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any

from tests.peers import PeerUnavailable

PREFIX = "pua-net-"
SUBNET = "10.213"


class NoNamespaces(PeerUnavailable):
    """This machine cannot make network namespaces (not root, no ``ip``,
    no ``nft`` or ``tc``); the message says which.  A missing peer, for the
    tests: skipped outside CI, a failure in it."""


@dataclass(frozen=True)
class Impairment:
    """One network condition, the same in both directions: the percentage
    of packets lost, duplicated, and sent through the slow queue
    (``delay_rate`` its rate in kbit/s, ``delay_queue`` its length)."""

    name: str
    loss: int = 0
    duplicate: int = 0
    delay: int = 0
    delay_rate: int = 64
    delay_queue: int = 20

    def describe(self) -> str:
        parts = [f"loss {self.loss}%"]
        if self.duplicate:
            parts.append(f"duplication {self.duplicate}%")
        if self.delay:
            parts.append(f"{self.delay}% through a {self.delay_rate} kbit/s queue "
                         f"of {self.delay_queue} packets")
        return ", ".join(parts)


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=30)


def available() -> str | None:
    """Why namespaces cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft", "tc"):
        if shutil.which(tool) is None:
            return f"no `{tool}` (Debian packages iproute2, nftables)"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep() -> list[str]:
    """Remove the namespaces and nftables tables that a run of this module
    left behind when its process died; those of live runs are kept."""
    removed = []
    names = _run("ip", "netns", "list", check=False).stdout.split()
    tables = re.findall(r"table ip (pua_net_\d+_\d+)", _run("nft", "list", "tables",
                                                         check=False).stdout)
    for name in names:
        found = re.fullmatch(rf"{PREFIX}(\d+)-(\d+)", name)
        if found and not _alive(int(found[1])):
            _run("ip", "netns", "del", name, check=False)
            removed.append(name)
    for table in tables:
        pid = int(table.split("_")[2])
        if not _alive(pid):
            _run("nft", "delete", "table", "ip", table, check=False)
            removed.append(table)
    return removed


class Link:
    """The namespace, the veth pair and the impairments; a context manager.

    ``near`` is this side's address, ``far`` the namespace's; ``exec_prefix``
    runs a command in the namespace.  ``ports`` are the UDP ports on
    ``near`` whose traffic is impaired.
    """

    def __init__(self, ports: list[int], index: int | None = None) -> None:
        reason = available()
        if reason:
            raise NoNamespaces(reason)
        sweep()
        pid = os.getpid()
        used = set(_run("ip", "netns", "list", check=False).stdout.split())
        index = index if index is not None else next(
            n for n in range(1, 250) if f"{PREFIX}{pid}-{n}" not in used)
        self.index = index
        self.namespace = f"{PREFIX}{pid}-{index}"
        self.table = f"pua_net_{pid}_{index}"
        # Interface names are at most 15 characters.
        self.near_if = f"pn{pid % 100000}n{index}"
        self.far_if = f"pn{pid % 100000}f{index}"
        octet = 100 + (pid + index) % 150
        self.near = f"{SUBNET}.{octet}.1"
        self.far = f"{SUBNET}.{octet}.2"
        self.ports = sorted(ports)
        self.exec_prefix = ("ip", "netns", "exec", self.namespace)
        self.impairment = Impairment("none")
        self._made = False

    def __enter__(self) -> Link:
        try:
            self._make()
        except BaseException:
            self.remove()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _make(self) -> None:
        ns = self.namespace
        _run("ip", "netns", "add", ns)
        self._made = True
        _run("ip", "link", "add", self.near_if, "type", "veth", "peer", "name", self.far_if)
        _run("ip", "link", "set", self.far_if, "netns", ns)
        _run("ip", "addr", "add", f"{self.near}/24", "dev", self.near_if)
        _run("ip", "link", "set", self.near_if, "up")
        _run("ip", "-n", ns, "addr", "add", f"{self.far}/24", "dev", self.far_if)
        _run("ip", "-n", ns, "link", "set", self.far_if, "up")
        _run("ip", "-n", ns, "link", "set", "lo", "up")

    def remove(self) -> None:
        """Remove the namespace (its end of the pair and its rules go with
        it), this side's end of the pair and the table; never raises."""
        if not self._made:
            return
        _run("nft", "delete", "table", "ip", self.table, check=False)
        _run("ip", "link", "del", self.near_if, check=False)
        _run("ip", "netns", "del", self.namespace, check=False)
        self._made = False

    # ------------------------------------------------------------ impairments
    def _ruleset(self, side: str, cond: Impairment) -> str:
        """The nftables table of one side: ``near`` (this namespace) or
        ``far``.  Counters: ``*_seen`` every packet matched, then what was
        dropped, duplicated, steered into the slow queue."""
        ports = "{ " + ", ".join(str(p) for p in self.ports) + " }"
        if side == "near":
            iface, peer = self.near_if, self.far
            inbound, outbound = f"udp dport {ports}", f"udp sport {ports}"
        else:
            iface, peer = self.far_if, self.near
            inbound, outbound = f"udp sport {ports}", f"udp dport {ports}"
        match_in = f'iifname "{iface}" {inbound}'
        match_out = f'oifname "{iface}" {outbound}'
        rules_in = [f"{match_in} counter name in_seen"]
        if cond.loss:
            rules_in.append(
                f"{match_in} numgen random mod 100 < {cond.loss} counter name lost drop")
        rules_out = [f"{match_out} counter name out_seen"]
        if cond.duplicate:
            rules_out.append(f"{match_out} numgen random mod 100 < {cond.duplicate} "
                             f'counter name duplicated dup to {peer} device "{iface}"')
        if cond.delay:
            rules_out.append(f"{match_out} numgen random mod 100 < {cond.delay} "
                             "counter name delayed meta priority set 1:20")
        counters = "\n".join(f"  counter {n} {{ }}"
                             for n in ("in_seen", "lost", "out_seen", "duplicated", "delayed"))
        return (
            f"table ip {self.table} {{\n{counters}\n"
            "  chain pre {\n    type filter hook prerouting priority -150; policy accept;\n"
            + "".join(f"    {r}\n" for r in rules_in) + "  }\n"
            "  chain out {\n    type filter hook output priority -150; policy accept;\n"
            + "".join(f"    {r}\n" for r in rules_out) + "  }\n}\n"
        )

    def _nft(self, side: str, text: str) -> None:
        prefix = () if side == "near" else self.exec_prefix
        _run(*prefix, "nft", "delete", "table", "ip", self.table, check=False)
        subprocess.run([*prefix, "nft", "-f", "-"], input=text, text=True, check=True,
                       capture_output=True, timeout=30)

    def _qdisc(self, side: str, cond: Impairment) -> None:
        tc = ("tc",) if side == "near" else ("tc", "-n", self.namespace)
        dev = self.near_if if side == "near" else self.far_if
        _run(*tc, "qdisc", "del", "dev", dev, "root", check=False)
        if not cond.delay:
            return
        _run(*tc, "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10",
             "r2q", "1000")
        _run(*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb",
             "rate", "1gbit")
        _run(*tc, "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb",
             "rate", f"{cond.delay_rate}kbit", "ceil", f"{cond.delay_rate}kbit")
        _run(*tc, "qdisc", "add", "dev", dev, "parent", "1:20", "handle", "20:", "pfifo",
             "limit", str(cond.delay_queue))

    def impair(self, cond: Impairment) -> None:
        """Put ``cond`` in place on both sides, on traffic of ``ports``
        (counters start from zero)."""
        if not self.ports:
            raise ValueError("no ports to impair")
        for side in ("near", "far"):
            self._nft(side, self._ruleset(side, cond))
            self._qdisc(side, cond)
        self.impairment = cond

    def counters(self) -> dict[str, dict[str, int]]:
        """Packets per counter, per direction: ``to_far`` (this side's
        output, the namespace's input) and ``to_near``; with the slow
        queue's overflow drops."""
        sides = {}
        for side in ("near", "far"):
            prefix = () if side == "near" else self.exec_prefix
            out = _run(*prefix, "nft", "-j", "list", "counters", "table", "ip", self.table).stdout
            values = {}
            for item in json.loads(out)["nftables"]:
                counter = item.get("counter")
                if counter:
                    values[counter["name"]] = int(counter["packets"])
            values["overflow"] = self._overflow(side)
            sides[side] = values
        near, far = sides["near"], sides["far"]
        return {
            "to_far": {"sent": near["out_seen"], "duplicated": near["duplicated"],
                       "delayed": near["delayed"], "overflow": near["overflow"],
                       "arrived": far["in_seen"], "lost": far["lost"]},
            "to_near": {"sent": far["out_seen"], "duplicated": far["duplicated"],
                        "delayed": far["delayed"], "overflow": far["overflow"],
                        "arrived": near["in_seen"], "lost": near["lost"]},
        }

    def _overflow(self, side: str) -> int:
        tc = ("tc",) if side == "near" else ("tc", "-n", self.namespace)
        dev = self.near_if if side == "near" else self.far_if
        text = _run(*tc, "-s", "qdisc", "show", "dev", dev, check=False).stdout
        found = re.search(r"qdisc pfifo 20:.*?dropped (\d+)", text, re.S)
        return int(found[1]) if found else 0


def rates(counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Measured shares, per direction, in percent: lost of what arrived at
    the receiving side, duplicated and delayed of what was sent."""
    out: dict[str, Any] = {}
    for direction, c in counts.items():
        out[direction] = {
            "packets": c["sent"],
            "lost_pct": round(100 * c["lost"] / c["arrived"], 2) if c["arrived"] else None,
            "duplicated_pct": round(100 * c["duplicated"] / c["sent"], 2) if c["sent"] else None,
            "delayed_pct": round(100 * c["delayed"] / c["sent"], 2) if c["sent"] else None,
            "overflow": c["overflow"],
        }
    return out


# The probe's client, run in the namespace: numbered datagrams at a steady
# pace to the echo on this side, until its stdin closes; then what came
# back, as JSON: lost, duplicated, out of order, round-trip times.
_PROBE_CLIENT = r"""
import json, socket, struct, sys, threading, time
host, port, pace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(0.2)
sent, got, stop = {}, [], threading.Event()
def receive():
    while not stop.is_set() or time.monotonic() < stop.deadline:
        try:
            data = sock.recv(2048)
        except OSError:
            continue
        got.append((struct.unpack("!I", data[:4])[0], time.monotonic()))
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
stop.deadline = float("inf")
reader = threading.Thread(target=receive)
reader.start()
n = 0
while not stop.is_set():
    sent[n] = time.monotonic()
    sock.sendto(struct.pack("!I", n) + b"p" * 500, (host, port))
    n += 1
    stop.wait(pace)
stop.deadline = time.monotonic() + 5.0
reader.join()
seqs = [s for s, _ in got]
rtts = sorted(t - sent[s] for s, t in got)
late = 0
highest = -1
for s in seqs:
    if s < highest:
        late += 1
    highest = max(highest, s)
print(json.dumps({"sent": n, "received": len(got), "unique": len(set(seqs)),
                  "out_of_order": late, "rtts": rtts}))
"""


class Probe:
    """Measures the link as SIP sees it: an echo on ``near``:``port`` (a
    port the link impairs), and a client in the namespace sending a
    numbered datagram every ``pace`` seconds."""

    def __init__(self, link: Link, port: int, pace: float = 0.05) -> None:
        self.link = link
        self.port = port
        self.pace = pace
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((link.near, port))
        self.sock.settimeout(0.2)
        self.stop = threading.Event()
        self.echo = threading.Thread(target=self._echo, daemon=True)
        self.client: subprocess.Popen[str] | None = None

    def _echo(self) -> None:
        while not self.stop.is_set():
            try:
                data, addr = self.sock.recvfrom(2048)
                self.sock.sendto(data, addr)
            except TimeoutError:
                continue

    def start(self) -> None:
        if not self.echo.is_alive():
            self.echo.start()
        self.client = subprocess.Popen(
            [*self.link.exec_prefix, sys.executable, "-c", _PROBE_CLIENT,
             self.link.near, str(self.port), str(self.pace)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def finish(self) -> dict[str, Any]:
        """Stop the client; what it measured (round trips: p50/p90/p99/max)."""
        assert self.client is not None
        out, _ = self.client.communicate("", timeout=30)
        self.client = None
        raw = json.loads(out)
        rtts = raw.pop("rtts")
        sent, unique = raw["sent"], raw["unique"]
        raw["round_trip_lost_pct"] = round(100 * (sent - unique) / sent, 2) if sent else None
        raw["duplicates"] = raw["received"] - unique
        raw["rtt_ms"] = {q: round(1000 * quantile(rtts, f), 1) for q, f in
                         (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}
        return raw

    def close(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.kill()
                self.client.wait(timeout=5)
        self.stop.set()
        if self.echo.is_alive():
            self.echo.join(timeout=5)
        self.sock.close()


def quantile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of sorted ``values`` (nearest rank); 0 if none."""
    if not values:
        return 0.0
    return values[min(len(values) - 1, max(0, math.ceil(fraction * len(values)) - 1))]
