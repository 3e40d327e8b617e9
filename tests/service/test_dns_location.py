"""Finding the presence server by DNS (RFC 3263) with a real dnsmasq and a
real Kamailio: failover at once past a dead target, the NAPTR transport
preference, and a name that does not exist."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

from tests.peers import find_free_port
from tests.peers.dnsmasq import Dnsmasq
from tests.peers.kamailio import KamailioPresence

from .running import RunningService

ALICE = "sip:alice@example.test"
PIDF = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.test">'
    "<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>"
)
# T1 of 2 s: timer F is 128 s, beyond the API client's 60 s: a success
# cannot have come after the dead target's transaction timed out.
SLOW = {"PUA_T1": "2", "PUA_T2": "4"}

Start = Callable[..., RunningService]
Dns = Callable[[list[str]], Dnsmasq]


def publish(svc: RunningService, uri: str = ALICE) -> dict[str, object]:
    return svc.rpc("pua.publish", [uri, 600, "presence", ".", ".", ".", ".", ".", PIDF])


def test_a_dead_srv_target_is_passed_over_at_once(
    service: Start, kamailio: KamailioPresence, dnsmasq: Dns
) -> None:
    """The preferred SRV target is a UDP port nothing listens on: the ICMP
    error moves the same PUBLISH to the next target (Kamailio) at once, and
    Kamailio holds the publication."""
    dead = find_free_port(tcp=False)
    dns = dnsmasq([
        f"srv-host=_sip._udp.example.test,dead.example.test,{dead},10,0",
        f"srv-host=_sip._udp.example.test,presence.example.test,{kamailio.port},20,0",
        "host-record=dead.example.test,127.0.0.1",
        "host-record=presence.example.test,127.0.0.1",
    ])
    svc = service("--dns-server", dns.server, env=SLOW)
    answer = publish(svc)
    assert "result" in answer, answer
    rows = kamailio.presentity_rows(username="alice", domain="example.test")
    assert [r["etag"] for r in rows] == [answer["result"]["SIP-ETag"]]  # type: ignore[index]
    assert "query[SRV] _sip._udp.example.test" in dns.log_text()
    log = kamailio.log_text()
    assert f"REQ PUBLISH {ALICE} from 127.0.0.1:" in log and "/udp" in log
    assert svc.stop() == 0
    assert f"udp:127.0.0.1:{dead} failed" in svc.stderr()


def test_naptr_picks_tcp_over_udp(
    service: Start, kamailio: KamailioPresence, dnsmasq: Dns
) -> None:
    """NAPTR orders SIP+D2T before SIP+D2U: the PUBLISH reaches Kamailio
    over TCP, though the URI says nothing of a transport."""
    dns = dnsmasq([
        "naptr-record=example.test,10,10,S,SIP+D2T,,_sip._tcp.example.test",
        "naptr-record=example.test,20,10,S,SIP+D2U,,_sip._udp.example.test",
        f"srv-host=_sip._tcp.example.test,presence.example.test,{kamailio.port},10,0",
        f"srv-host=_sip._udp.example.test,presence.example.test,{kamailio.port},10,0",
        "host-record=presence.example.test,127.0.0.1",
    ])
    svc = service("--dns-server", dns.server, env=SLOW)
    answer = publish(svc)
    assert "result" in answer, answer
    requests = [line for line in kamailio.log_text().splitlines() if "REQ PUBLISH" in line]
    assert requests and all("/tcp " in line for line in requests), requests
    assert kamailio.presentity_rows(username="alice", domain="example.test")


def test_a_name_that_does_not_exist_fails_clearly(service: Start, dnsmasq: Dns) -> None:
    """A presentity whose domain has no records: the JSON-RPC error is a
    503 that names the domain and NXDOMAIN, and pua keeps retrying."""
    dns = dnsmasq(["host-record=other.test,127.0.0.1"])
    svc = service("--dns-server", dns.server, env=SLOW)
    fault = publish(svc, "sip:alice@nowhere.test")["error"]
    assert fault["code"] == 503, fault  # type: ignore[index]
    detail = fault["data"]["detail"]  # type: ignore[index]
    assert "nowhere.test" in detail and "NXDOMAIN" in detail, fault
    assert fault["data"]["retrying"] is True, fault  # type: ignore[index]


def test_the_cli_routes_by_the_presentity_domain(kamailio: KamailioPresence, dnsmasq: Dns) -> None:
    """`pua publish` without --server locates the presentity's domain, passes
    over a dead first target, and Kamailio takes the PUBLISH."""
    dead = find_free_port(tcp=False)
    dns = dnsmasq([
        f"srv-host=_sip._udp.example.test,dead.example.test,{dead},10,0",
        f"srv-host=_sip._udp.example.test,presence.example.test,{kamailio.port},20,0",
        "host-record=dead.example.test,127.0.0.1",
        "host-record=presence.example.test,127.0.0.1",
    ])
    done = subprocess.run(
        [sys.executable, "-m", "pua", "publish", "--dns-server", dns.server,
         "--pres-uri", ALICE, "--basic", "open", "--t1", "2"],
        capture_output=True, text=True, timeout=100, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("SIP/2.0 200"), done.stdout
    assert kamailio.presentity_rows(username="alice", domain="example.test")
