"""RFC 3263 target selection and RFC 2782 SRV ordering, without DNS."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pua.errors import RemoteProtocolError
from pua.sip.locate import (
    Answer,
    Hop,
    Naptr,
    Query,
    Srv,
    Target,
    hop_of,
    naptr_services,
    order_srv,
    plan,
)

ALL = ("udp", "tcp", "tls")


def fixed(*values: float) -> Callable[[], float]:
    """A uniform() that returns ``values`` in turn, then 0."""
    left = list(values)
    return lambda: left.pop(0) if left else 0.0


def run(hop: Hop, zone: Mapping[Query, Answer], transports: tuple[str, ...] = ALL,
        uniform: Callable[[], float] | None = None) -> tuple[list[Query], tuple[Target, ...]]:
    """Drive plan() against a zone (unknown questions answer nothing);
    return the questions asked in order and the targets."""
    uniform = uniform or fixed()
    answers: dict[Query, Answer] = {}
    asked: list[Query] = []
    while (step := plan(hop, transports, answers, uniform)).queries:
        for query in step.queries:
            assert query not in answers, f"asked twice: {query}"
            asked.append(query)
            answers[query] = zone.get(query, ())
    return asked, step.targets


@pytest.mark.parametrize(
    ("uri", "hop"),
    [
        ("sip:alice@example.test", Hop("example.test", None, None, False)),
        ("sips:alice@Example.TEST.", Hop("example.test", None, None, True)),
        ("sip:proxy.test:5070", Hop("proxy.test", 5070, None, False)),
        ("sip:proxy.test;transport=TCP", Hop("proxy.test", None, "tcp", False)),
        ("sips:proxy.test;transport=tcp", Hop("proxy.test", None, "tls", True)),
        ("sip:a@x.test;maddr=10.0.0.1", Hop("10.0.0.1", None, None, False)),
        ("sip:[::1]:5062", Hop("::1", 5062, None, False)),
    ],
)
def test_hop_of_reads_host_port_transport(uri: str, hop: Hop) -> None:
    """hop_of keeps what the URI says and leaves absent parts as None."""
    assert hop_of(uri) == hop


@pytest.mark.parametrize("uri", ["tel:+15551234", "sip:x.test;transport=sctp", "sips:x.test;transport=udp"])
def test_hop_of_refuses_what_cannot_be_located(uri: str) -> None:
    """A non-SIP URI or an unsupported transport is a protocol error."""
    with pytest.raises(RemoteProtocolError):
        hop_of(uri)


NAPTR = Query("example.test", "NAPTR")
SRV_UDP = Query("_sip._udp.example.test", "SRV")
SRV_TCP = Query("_sip._tcp.example.test", "SRV")
SRV_TLS = Query("_sips._tcp.example.test", "SRV")


def a(name: str, *ips: str) -> dict[Query, Answer]:
    return {Query(name, "A"): list(ips)}


# (uri, zone, transports, expected questions, expected targets)
CASES = [
    # A numeric host: no DNS; default port and transport.
    ("sip:127.0.0.1", {}, ALL, [], [Target("127.0.0.1", 5060, "udp")]),
    ("sips:127.0.0.1", {}, ALL, [], [Target("127.0.0.1", 5061, "tls")]),
    ("sip:127.0.0.1:5080;transport=tcp", {}, ALL, [], [Target("127.0.0.1", 5080, "tcp")]),
    # A name with a port: A/AAAA only.
    ("sip:pbx.test:5080", a("pbx.test", "10.0.0.1"), ALL,
     [Query("pbx.test", "A"), Query("pbx.test", "AAAA")], [Target("10.0.0.1", 5080, "udp")]),
    # transport= without port: SRV of that transport, no NAPTR.
    ("sip:example.test;transport=tcp",
     {SRV_TCP: [Srv(10, 0, 5090, "b.test.")], **a("b.test", "10.0.0.2")}, ALL,
     [SRV_TCP, Query("b.test", "A"), Query("b.test", "AAAA")], [Target("10.0.0.2", 5090, "tcp")]),
    # NAPTR prefers TCP (lower order) over UDP.
    ("sip:example.test",
     {NAPTR: [Naptr(20, 10, "s", "SIP+D2U", "", "_sip._udp.example.test."),
              Naptr(10, 10, "S", "SIP+D2T", "", "_sip._tcp.example.test.")],
      SRV_TCP: [Srv(0, 0, 5070, "t.test.")], SRV_UDP: [Srv(0, 0, 5080, "u.test.")],
      **a("t.test", "10.0.0.3"), **a("u.test", "10.0.0.4")}, ALL,
     [NAPTR, SRV_TCP, SRV_UDP, Query("t.test", "A"), Query("t.test", "AAAA"),
      Query("u.test", "A"), Query("u.test", "AAAA")],
     [Target("10.0.0.3", 5070, "tcp"), Target("10.0.0.4", 5080, "udp")]),
    # NAPTR for a transport pua lacks is skipped.
    ("sip:example.test",
     {NAPTR: [Naptr(10, 10, "s", "SIP+D2T", "", "_sip._tcp.example.test."),
              Naptr(20, 10, "s", "SIP+D2U", "", "_sip._udp.example.test.")],
      SRV_UDP: [Srv(0, 0, 5080, "u.test.")], **a("u.test", "10.0.0.4")}, ("udp",),
     [NAPTR, SRV_UDP, Query("u.test", "A"), Query("u.test", "AAAA")],
     [Target("10.0.0.4", 5080, "udp")]),
    # sips: keeps only SIPS+D2T.
    ("sips:example.test",
     {NAPTR: [Naptr(10, 10, "s", "SIP+D2U", "", "_sip._udp.example.test."),
              Naptr(20, 10, "s", "SIPS+D2T", "", "_sips._tcp.example.test.")],
      SRV_TLS: [Srv(0, 0, 5061, "s.test.")], **a("s.test", "10.0.0.5")}, ALL,
     [NAPTR, SRV_TLS, Query("s.test", "A"), Query("s.test", "AAAA")],
     [Target("10.0.0.5", 5061, "tls")]),
    # No NAPTR: SRV of each transport, UDP first; SRV priority orders targets.
    ("sip:example.test",
     {SRV_UDP: [Srv(20, 0, 5002, "u2.test."), Srv(10, 0, 5001, "u1.test.")],
      **a("u1.test", "10.0.0.6"), **a("u2.test", "10.0.0.7")}, ALL,
     [NAPTR, SRV_UDP, SRV_TCP, Query("u1.test", "A"), Query("u1.test", "AAAA"),
      Query("u2.test", "A"), Query("u2.test", "AAAA")],
     [Target("10.0.0.6", 5001, "udp"), Target("10.0.0.7", 5002, "udp")]),
    # No NAPTR, no SRV: the host's addresses on 5060 (5061 for sips).
    ("sip:example.test", {**a("example.test", "10.0.0.8"),
                          Query("example.test", "AAAA"): ["2001:db8::8"]}, ALL,
     [NAPTR, SRV_UDP, SRV_TCP, Query("example.test", "A"), Query("example.test", "AAAA")],
     [Target("10.0.0.8", 5060, "udp"), Target("2001:db8::8", 5060, "udp")]),
    ("sips:example.test", a("example.test", "10.0.0.8"), ALL,
     [NAPTR, SRV_TLS, Query("example.test", "A"), Query("example.test", "AAAA")],
     [Target("10.0.0.8", 5061, "tls")]),
    # A name that does not exist: no targets.
    ("sip:nowhere.test", {}, ALL,
     [Query("nowhere.test", "NAPTR"), Query("_sip._udp.nowhere.test", "SRV"),
      Query("_sip._tcp.nowhere.test", "SRV"), Query("nowhere.test", "A"),
      Query("nowhere.test", "AAAA")], []),
    # SRV target "." means no service.
    ("sip:example.test;transport=udp", {SRV_UDP: [Srv(0, 0, 0, ".")]}, ALL, [SRV_UDP], []),
]


@pytest.mark.parametrize(("uri", "zone", "transports", "asked", "targets"), CASES)
def test_plan_follows_rfc3263(
    uri: str, zone: dict[Query, Answer], transports: tuple[str, ...],
    asked: list[Query], targets: list[Target],
) -> None:
    """plan() asks the RFC 3263 questions in order and gives the targets in order."""
    got_asked, got_targets = run(hop_of(uri), zone, transports)
    assert got_asked == asked
    assert list(got_targets) == targets


def test_naptr_skips_non_terminal_and_regexp_records() -> None:
    """Only flag-s records without regexp count; order then preference sort them."""
    records = [
        Naptr(10, 20, "s", "SIP+D2U", "", "_sip._udp.x."),
        Naptr(10, 10, "s", "SIP+D2T", "", "_sip._tcp.x."),
        Naptr(5, 10, "a", "SIP+D2T", "", "y."),
        Naptr(5, 10, "s", "SIP+D2T", "!^.*$!sip:x!", ""),
        Naptr(1, 1, "s", "E2U+sip", "", "z."),
    ]
    assert naptr_services(records, False, ALL) == [("_sip._tcp.x", "tcp"), ("_sip._udp.x", "udp")]


def test_srv_weights_follow_the_draw() -> None:
    """Within a priority the draw picks by running weight sum (RFC 2782)."""
    records = [Srv(1, 10, 1, "a."), Srv(1, 30, 2, "b."), Srv(1, 0, 3, "z.")]
    # sum 40, running sums z:0 a:10 b:40.  r=int(0.5*41)=20 -> b; then
    # sum 10, z:0 a:10, r=int(0.0)=0 -> z; then a.
    assert [r.port for r in order_srv(records, fixed(0.5, 0.0))] == [2, 3, 1]
    # r=int(0.2*41)=8 -> a; then sum 30: r=int(0.99*31)=30 -> b; then z.
    assert [r.port for r in order_srv(records, fixed(0.2, 0.99))] == [1, 2, 3]


srv_records = st.lists(
    st.builds(Srv, st.integers(0, 3), st.integers(0, 100), st.integers(1, 65535),
              st.sampled_from(["a.", "b.", "c.", "d.", "."])),
    max_size=8,
)


@given(srv_records, st.lists(st.floats(0, 0.999999), max_size=10))
def test_srv_order_is_a_permutation_by_priority(records: list[Srv], draws: list[float]) -> None:
    """Every record with a target appears once, lowest priority first."""
    ordered = order_srv(records, fixed(*draws))
    assert sorted(ordered, key=repr) == sorted((r for r in records if r.target != "."), key=repr)
    assert [r.priority for r in ordered] == sorted(r.priority for r in ordered)


@given(st.integers(1, 1000), st.integers(1, 1000), st.floats(0, 0.999999))
def test_a_heavier_record_wins_more_draws(w1: int, w2: int, u: float) -> None:
    """The first pick is the first record exactly when the draw falls in its share."""
    first = order_srv([Srv(0, w1, 1, "a."), Srv(0, w2, 2, "b.")], fixed(u))[0]
    assert (first.port == 1) == (int(u * (w1 + w2 + 1)) <= w1)
