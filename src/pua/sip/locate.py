"""Locating a SIP server (RFC 3263 §4, RFC 2782), without doing the lookups.

The caller (the runtime) owns the DNS: it asks :func:`plan` what to look up,
looks it up, and asks again with the answers until the plan gives targets::

    answers: dict[Query, Answer] = {}
    while (step := plan(hop, transports, answers, uniform)).queries:
        answers.update(lookup(step.queries))
    targets = step.targets

RFC 3263 §4 in the order this module applies it:

- a numeric host: that address; the port given, else 5060 (5061 for TLS);
  the ``transport`` parameter, else UDP (TLS for sips:);
- a host name with an explicit port: its A/AAAA records on that port;
- a ``transport`` parameter without a port: the SRV records of that
  transport (``_sip._udp``, ``_sip._tcp``, ``_sips._tcp``), no NAPTR;
- otherwise NAPTR: records with flag ``s`` and a service we support
  (SIP+D2U, SIP+D2T, SIPS+D2T; only SIPS+ for a sips: URI), by order then
  preference, each naming an SRV record set;
- no usable NAPTR: the SRV records of every transport we support;
- no SRV records at all: the host's A/AAAA records on 5060 (5061 for TLS).

SRV records are tried by priority, and within a priority by a weighted
random draw (RFC 2782, "Usage rules"); the draw comes from ``uniform`` so
that tests can fix it.  A target of ``.`` means "no service here".
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from .errors import RemoteProtocolError
from .uri import SipUri, parse_uri

__all__ = [
    "Answer",
    "Hop",
    "Naptr",
    "Query",
    "Srv",
    "Step",
    "Target",
    "hop_of",
    "is_ip",
    "naptr_services",
    "order_srv",
    "plan",
]

# RFC 3263 §4.1: the NAPTR services of the transports pua has.
NAPTR_SERVICES = {"SIP+D2U": "udp", "SIP+D2T": "tcp", "SIPS+D2T": "tls"}
# RFC 3263 §4.1: the SRV prefix of each transport.
SRV_PREFIX = {"udp": "_sip._udp", "tcp": "_sip._tcp", "tls": "_sips._tcp"}
# Without NAPTR a client looks up the SRV records of the transports it
# supports, in its own order of preference (§4.1): UDP, pua's default, first.
SRV_ORDER = ("udp", "tcp", "tls")


@dataclass(frozen=True, slots=True)
class Naptr:
    """A NAPTR record (RFC 3403), string fields decoded."""

    order: int
    preference: int
    flags: str
    service: str
    regexp: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    """An SRV record (RFC 2782)."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True, slots=True)
class Query:
    """A DNS question: a name and a type (NAPTR, SRV, A or AAAA)."""

    name: str
    rdtype: str


# The records of one question: NAPTR, SRV, or addresses (as text).  An empty
# answer is "no such records" (NXDOMAIN, no data, or a failed lookup).
Answer = Sequence[Naptr] | Sequence[Srv] | Sequence[str]


@dataclass(frozen=True, slots=True)
class Hop:
    """What RFC 3263 reads from a URI: the host, the port and the
    transport as written (None when absent), and whether it is sips:."""

    host: str
    port: int | None
    transport: str | None
    secure: bool

    @property
    def numeric(self) -> bool:
        """True when the host is an IP address (no DNS at all)."""
        return is_ip(self.host)


@dataclass(frozen=True, slots=True)
class Target:
    """One place to send to: an IP address, a port, a transport."""

    host: str
    port: int
    transport: str


@dataclass(frozen=True, slots=True)
class Step:
    """What :func:`plan` says: questions still to ask, or (when there are
    none) the targets in the order to try them, perhaps none."""

    queries: tuple[Query, ...] = ()
    targets: tuple[Target, ...] = ()


def hop_of(text: str) -> Hop:
    """The :class:`Hop` of a sip:/sips: URI (``maddr`` wins over the host,
    §4).  Raises RemoteProtocolError for a URI that cannot be located (not
    SIP, or a transport other than udp, tcp, tls)."""
    uri = parse_uri(text)
    if not isinstance(uri, SipUri):
        raise RemoteProtocolError(f"cannot locate a non-SIP URI: {text}")
    transport = uri.param("transport")
    if transport is not None:
        transport = transport.lower()
        if transport not in SRV_PREFIX:
            raise RemoteProtocolError(f"cannot locate {text}: transport {transport!r}")
    if uri.secure and transport not in (None, "tls", "tcp"):
        raise RemoteProtocolError(f"cannot locate {text}: sips: over {transport}")
    host = uri.param("maddr") or uri.host
    host = host[1:-1] if host.startswith("[") else host
    # sips: over "tcp" is TLS on TCP (RFC 3261 §26.2.2).
    if uri.secure and transport == "tcp":
        transport = "tls"
    return Hop(host.lower().rstrip("."), uri.port, transport, uri.secure)


def default_port(transport: str) -> int:
    """5061 for TLS, 5060 otherwise (RFC 3261 §19.1.2)."""
    return 5061 if transport == "tls" else 5060


def naptr_services(
    records: Iterable[Naptr], secure: bool, transports: Iterable[str]
) -> list[tuple[str, str]]:
    """The (SRV name, transport) pairs that NAPTR ``records`` offer, best
    first (order, then preference; §4.1), keeping terminal ``s`` records
    with no regexp whose service pua supports (only SIPS+ when ``secure``)."""
    have = set(transports)
    kept: list[tuple[int, int, str, str]] = []
    for record in records:
        transport = NAPTR_SERVICES.get(record.service.upper())
        if transport is None or transport not in have:
            continue
        if record.flags.lower() != "s" or record.regexp or record.replacement in ("", "."):
            continue
        if secure and transport != "tls":
            continue
        kept.append((record.order, record.preference, _name(record.replacement), transport))
    kept.sort(key=lambda item: (item[0], item[1]))
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str]] = []
    for _, _, name, transport in kept:
        if (name, transport) not in seen:
            seen.add((name, transport))
            out.append((name, transport))
    return out


def order_srv(records: Iterable[Srv], uniform: Callable[[], float]) -> list[Srv]:
    """SRV records in the order to try them (RFC 2782): lowest priority
    first; within a priority, repeatedly draw r in [0, sum of weights] and
    take the first record whose running sum reaches r (weight-0 records
    first, so they are chosen only when nothing else is left or r is 0).
    ``uniform()`` gives a float in [0, 1).  Records whose target is ``.``
    are dropped (no service)."""
    by_priority: dict[int, list[Srv]] = {}
    for record in records:
        if _name(record.target) == "":
            continue
        by_priority.setdefault(record.priority, []).append(record)
    out: list[Srv] = []
    for priority in sorted(by_priority):
        left = sorted(by_priority[priority], key=lambda r: r.weight != 0)
        while left:
            total = sum(r.weight for r in left)
            draw = uniform() * (total + 1) if total else 0.0
            running = 0
            chosen = len(left) - 1
            for index, record in enumerate(left):
                running += record.weight
                if running >= int(draw):
                    chosen = index
                    break
            out.append(left.pop(chosen))
    return out


def plan(
    hop: Hop,
    transports: Iterable[str],
    answers: Mapping[Query, Answer],
    uniform: Callable[[], float],
) -> Step:
    """The next step in locating ``hop`` given the ``answers`` so far:
    questions still to ask, or the targets.  ``transports``: those pua can
    send over.  Pure: the same inputs give the same step."""
    have = [t for t in SRV_ORDER if t in set(transports)]
    implied = hop.transport or ("tls" if hop.secure else None)
    if hop.numeric:
        transport = implied or "udp"
        port = hop.port or default_port(transport)
        return Step(targets=(Target(hop.host, port, transport),) if transport in have else ())
    if hop.port is not None:
        transport = implied or "udp"
        if transport not in have:
            return Step()
        return _addresses([(hop.host, hop.port, transport)], answers)
    # Which SRV record sets to read, best first.
    if hop.transport is not None:
        services = [(_srv_name(hop.transport, hop.host), hop.transport)]
        services = [s for s in services if s[1] in have]
    else:
        naptr = Query(hop.host, "NAPTR")
        if naptr not in answers:
            return Step(queries=(naptr,))
        records = [r for r in answers[naptr] if isinstance(r, Naptr)]
        services = naptr_services(records, hop.secure, have)
        if not services:
            wanted = ["tls"] if hop.secure else [t for t in have if t != "tls"]
            services = [(_srv_name(t, hop.host), t) for t in have if t in wanted]
    missing = tuple(Query(name, "SRV") for name, _ in services if Query(name, "SRV") not in answers)
    if missing:
        return Step(queries=missing)
    places: list[tuple[str, int, str]] = []
    for name, transport in services:
        srv = [r for r in answers[Query(name, "SRV")] if isinstance(r, Srv)]
        places.extend((_name(r.target), r.port, transport) for r in order_srv(srv, uniform))
    if not any(answers[Query(name, "SRV")] for name, _ in services):
        # §4.2: no SRV records: the host itself, on the transport's port.
        transport = implied or ("udp" if "udp" in have else (have[0] if have else "udp"))
        if transport not in have:
            return Step()
        places = [(hop.host, default_port(transport), transport)]
    return _addresses(places, answers)


def _addresses(places: list[tuple[str, int, str]], answers: Mapping[Query, Answer]) -> Step:
    """The targets of (host, port, transport) places, once the A and AAAA
    records of every host name among them are known (RFC 7984: both)."""
    missing: list[Query] = []
    for host, _, _ in places:
        if is_ip(host):
            continue
        for rdtype in ("A", "AAAA"):
            query = Query(host, rdtype)
            if query not in answers and query not in missing:
                missing.append(query)
    if missing:
        return Step(queries=tuple(missing))
    targets: list[Target] = []
    for host, port, transport in places:
        if is_ip(host):
            addresses: list[str] = [host]
        else:
            addresses = [
                a for t in ("A", "AAAA") for a in answers[Query(host, t)] if isinstance(a, str)
            ]
        for address in addresses:
            target = Target(address, port, transport)
            if target not in targets:
                targets.append(target)
    return Step(targets=tuple(targets))


def _srv_name(transport: str, host: str) -> str:
    return f"{SRV_PREFIX[transport]}.{host}"


def _name(text: str) -> str:
    """A domain name without its final dot, lower case ("." gives "")."""
    return text.lower().rstrip(".")


def is_ip(host: str) -> bool:
    """Whether ``host`` is an IP address (v4 or v6, no brackets), not a name."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
