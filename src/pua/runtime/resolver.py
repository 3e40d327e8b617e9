"""Finding SIP servers in the DNS (RFC 3263) on asyncio.

:class:`Resolver` asks dnspython's asyncio resolver, never blocking the
loop, and keeps every answer for its TTL (a missing name or record for
:data:`NEGATIVE_SECONDS`).  :class:`Locator` runs the pure steps of
:mod:`pua.sip.locate` against it, and remembers which targets failed so
that later requests try the others first.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.resolver
from dns.rdtypes.IN.NAPTR import NAPTR
from dns.rdtypes.IN.SRV import SRV

from pua.errors import TransportError
from pua.sip.locate import Answer, Hop, Naptr, Query, Srv, Target, plan

__all__ = ["AVOID_SECONDS", "LocateError", "Locator", "Resolver", "parse_dns_server"]

log = logging.getLogger("pua.dns")

# How long a missing name or record set is remembered (RFC 2308 lets the
# zone say; dnspython does not hand us the SOA of a negative answer).
NEGATIVE_SECONDS = 30.0
# A failed lookup (timeout, SERVFAIL) is asked again this soon.
FAILURE_SECONDS = 5.0
# How long a target that failed is tried after the others (RFC 3263 §4.3
# leaves it to the client; a few retransmission cycles).
AVOID_SECONDS = 30.0
# dnspython: per server, and for one question in all.
QUERY_TIMEOUT = 2.0
QUERY_LIFETIME = 5.0


class LocateError(TransportError):
    """No server could be found for a next hop (the reason names the DNS
    answer: NXDOMAIN, no records, timeout...)."""


def parse_dns_server(text: str) -> tuple[str, int]:
    """``IP`` or ``IP:PORT`` (IPv6 as ``[IP]:PORT``) -> (ip, port); port 53
    by default.  Raises ValueError."""
    host, port = text, "53"
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest.removeprefix(":") or "53"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"DNS server {text!r}: expected IP or IP:PORT") from None
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"DNS server {text!r}: bad port")
    return host, int(port)


@dataclass(slots=True)
class _Cached:
    until: float
    records: Answer
    error: str | None  # why there are no records


class Resolver:
    """DNS questions on asyncio, answers cached for their TTL.

    ``servers``: ``IP[:PORT]`` texts; none: the system's configuration
    (/etc/resolv.conf).  Questions asked while the same one is on its way
    share its answer."""

    def __init__(
        self, servers: Sequence[str] = (), *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if servers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*parse_dns_server(text)) for text in servers
            ]
        else:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise TransportError(f"no DNS servers configured: {exc}") from None
        resolver.timeout = QUERY_TIMEOUT
        resolver.lifetime = QUERY_LIFETIME
        self._resolver = resolver
        self._clock = clock
        self._cache: dict[Query, _Cached] = {}
        self._pending: dict[Query, asyncio.Future[_Cached]] = {}

    @property
    def servers(self) -> list[str]:
        """The servers asked, as text."""
        return [str(server) for server in self._resolver.nameservers]

    async def ask(self, query: Query) -> tuple[Answer, str | None]:
        """The records of ``query`` and, when there are none, why
        (``NXDOMAIN``, ``no records``, ``timeout``, ``no answer from the
        DNS servers``)."""
        now = self._clock()
        cached = self._cache.get(query)
        if cached is not None and cached.until > now:
            return cached.records, cached.error
        pending = self._pending.get(query)
        if pending is None:
            pending = asyncio.ensure_future(self._lookup(query))
            self._pending[query] = pending
            pending.add_done_callback(lambda _: self._pending.pop(query, None))
        entry = await asyncio.shield(pending)
        return entry.records, entry.error

    async def _lookup(self, query: Query) -> _Cached:
        now = self._clock()
        records: Answer
        try:
            answer = await self._resolver.resolve(query.name, query.rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            entry = _Cached(now + NEGATIVE_SECONDS, (), "NXDOMAIN")
        except dns.resolver.NoAnswer:
            entry = _Cached(now + NEGATIVE_SECONDS, (), "no records")
        except dns.exception.Timeout:
            entry = _Cached(now + FAILURE_SECONDS, (), "timeout")
        except dns.resolver.NoNameservers:
            entry = _Cached(now + FAILURE_SECONDS, (), "no answer from the DNS servers")
        except (dns.exception.DNSException, OSError, ValueError) as exc:
            entry = _Cached(now + FAILURE_SECONDS, (), str(exc) or type(exc).__name__)
        else:
            records = _records(query, answer)
            ttl = answer.rrset.ttl if answer.rrset is not None else NEGATIVE_SECONDS
            entry = _Cached(now + ttl, records, None if records else "no records")
        if not entry.records and query.rdtype in ("A", "AAAA"):
            entry = await self._hosts(query, entry)
        self._cache[query] = entry
        if len(self._cache) > 4096:
            self._cache = {q: c for q, c in self._cache.items() if c.until > now}
        log.debug("%s %s: %s", query.name, query.rdtype, entry.error or entry.records)
        return entry

    async def _hosts(self, query: Query, failed: _Cached) -> _Cached:
        """A name DNS does not know may still be the system's (``localhost``,
        /etc/hosts): asked of getaddrinfo, without blocking the loop."""
        family = socket.AF_INET if query.rdtype == "A" else socket.AF_INET6
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                query.name.rstrip("."), None, family=family, type=socket.SOCK_DGRAM
            )
        except OSError:
            return failed
        addresses = sorted({str(info[4][0]) for info in infos})
        if not addresses:
            return failed
        return _Cached(self._clock() + NEGATIVE_SECONDS, addresses, None)


def _records(query: Query, answer: dns.resolver.Answer) -> Answer:
    if query.rdtype == "NAPTR":
        return [
            Naptr(
                r.order,
                r.preference,
                r.flags.decode(errors="replace"),
                r.service.decode(errors="replace"),
                r.regexp.decode(errors="replace"),
                r.replacement.to_text(),
            )
            for r in answer
            if isinstance(r, NAPTR)
        ]
    if query.rdtype == "SRV":
        return [
            Srv(r.priority, r.weight, r.port, r.target.to_text())
            for r in answer
            if isinstance(r, SRV)
        ]
    return [r.to_text() for r in answer]


class Locator:
    """RFC 3263 on a :class:`Resolver`: the targets of a next hop, those
    that failed lately put last."""

    def __init__(
        self,
        resolver: Resolver,
        uniform: Callable[[], float],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.resolver = resolver
        self._uniform = uniform
        self._clock = clock
        self._avoid: dict[Target, float] = {}

    async def locate(self, hop: Hop, transports: Iterable[str]) -> list[Target]:
        """The targets of ``hop`` over ``transports``, in the order to try
        them.  Raises LocateError naming the host and why none was found."""
        have = tuple(transports)
        answers: dict[Query, Answer] = {}
        why: dict[Query, str] = {}
        while (step := plan(hop, have, answers, self._uniform)).queries:
            results = await asyncio.gather(*(self.resolver.ask(q) for q in step.queries))
            for query, (records, error) in zip(step.queries, results, strict=True):
                answers[query] = records
                if error is not None:
                    why[query] = error
        if not step.targets:
            raise LocateError(_explain(hop, have, why))
        return self.order(step.targets)

    def order(self, targets: Iterable[Target]) -> list[Target]:
        """``targets`` with those avoided lately moved to the end."""
        now = self._clock()
        fresh: list[Target] = []
        stale: list[Target] = []
        for target in targets:
            (stale if self._avoid.get(target, 0.0) > now else fresh).append(target)
        return fresh + stale

    def avoid(self, target: Target) -> None:
        """Try ``target`` after the others for :data:`AVOID_SECONDS`."""
        now = self._clock()
        self._avoid[target] = now + AVOID_SECONDS
        if len(self._avoid) > 1024:
            self._avoid = {t: until for t, until in self._avoid.items() if until > now}

    def avoided(self, target: Target) -> bool:
        """True while ``target`` is avoided."""
        return self._avoid.get(target, 0.0) > self._clock()


def _explain(hop: Hop, transports: Sequence[str], why: dict[Query, str]) -> str:
    """Why ``hop`` has no target: the answers about the host itself first."""
    own = sorted({error for query, error in why.items() if query.name == hop.host})
    other = sorted({f"{q.name} {q.rdtype}: {e}" for q, e in why.items() if q.name != hop.host})
    if own:
        reason = "/".join(own)
    elif other:
        reason = "; ".join(other)
    else:
        reason = f"no target over {', '.join(transports) or 'any transport'}"
    return f"cannot locate {hop.host}: {reason}"
