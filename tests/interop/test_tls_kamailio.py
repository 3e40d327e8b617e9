"""SIP over TLS against a real Kamailio presence server (its tls module).

The test makes its own CA, a second CA that nobody trusts, and the
certificates; Kamailio listens for TLS on loopback with them.  A certificate
name is checked either as an IP address (``IP:127.0.0.1``) or as a DNS name:
``localhost`` is the one name that resolves to 127.0.0.1 without a hosts
entry or a DNS server, so it stands for a server's domain name here.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pua.core import EngineConfig, PublicationSucceeded, PublishInfo
from pua.errors import PublishError
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.tls import client_context, server_context
from tests.conftest import peer_or_skip
from tests.peers.certificates import CertificateAuthority, Issued
from tests.peers.kamailio import KamailioPresence, KamailioTls
from tests.service.running import RunningService

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"
PIDF = (
    '<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    "<tuple><status><basic>open</basic></status><note>over TLS</note></tuple></presence>"
)


@dataclass(frozen=True)
class Pki:
    ca: CertificateAuthority
    by_address: Issued  # by ca, for 127.0.0.1 only
    by_name: Issued  # by ca, for localhost (and presence.example.test) only
    untrusted: Issued  # for 127.0.0.1, by a CA nobody here trusts
    elsewhere: Issued  # by ca, for another host only
    pua: Issued  # by ca: pua's listener and client certificate


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    return peer_or_skip(lambda: make_pki(folder))


def make_pki(folder: Path) -> Pki:
    ca = CertificateAuthority.create(folder / "trusted", "Presence CA")
    other = CertificateAuthority.create(folder / "other", "Other CA")
    return Pki(
        ca=ca,
        by_address=ca.issue("by-address", ["IP:127.0.0.1"]),
        by_name=ca.issue("by-name", ["DNS:localhost", "DNS:presence.example.test"]),
        untrusted=other.issue("untrusted", ["IP:127.0.0.1"]),
        elsewhere=ca.issue("elsewhere", ["DNS:elsewhere.example.test"]),
        pua=ca.issue("pua", ["DNS:pua.example.test"]),
    )


def start_kamailio(server: Issued, ca: CertificateAuthority, *,
                   require_certificate: bool = False) -> KamailioPresence:
    tls = KamailioTls(server.certificate, server.private_key, ca.certificate,
                      require_certificate=require_certificate)
    return peer_or_skip(lambda: KamailioPresence(tls=tls)).start()


@pytest.fixture
def stop_after() -> Iterator[list[KamailioPresence | RunningService]]:
    """Peers and services a test started, stopped at its end."""
    started: list[KamailioPresence | RunningService] = []
    yield started
    for item in reversed(started):
        item.stop()


def tls_flags(pki: Pki, proxy: str, *more: str) -> list[str]:
    return ["--listen", "tls:127.0.0.1:0", "--tls-certificate", pki.pua.certificate,
            "--tls-private-key", pki.pua.private_key, "--tls-ca-file", pki.ca.certificate,
            "--outbound-proxy", proxy, *more]


def wait_for_notify(svc: RunningService, text: str, subscribe: object) -> dict[str, object]:
    """Run ``subscribe`` with the service's event stream open; the first
    NOTIFY event whose body holds ``text``."""
    found: list[dict[str, object]] = []
    opened, seen = threading.Event(), threading.Event()

    def read() -> None:
        with urllib.request.urlopen(svc.api_url + "/events", timeout=30) as stream:
            opened.set()
            for raw in stream:
                line = raw.decode()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "notify" and text in str(event.get("body")):
                        found.append(event)
                        seen.set()
                        return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(10), "the event stream did not open"
    subscribe()  # type: ignore[operator]
    assert seen.wait(20), "no NOTIFY with the published body arrived"
    return found[0]


@pytest.mark.parametrize(("proxy", "names"), [
    ("sip:127.0.0.1:{port};transport=tls", "by_address"),
    ("sips:localhost:{port}", "by_name"),
])
def test_publish_and_subscribe_over_tls(
    pki: Pki, tmp_path: Path, stop_after: list[KamailioPresence | RunningService],
    proxy: str, names: str,
) -> None:
    """`pua serve` with tls_ca_file and verification on publishes and
    subscribes over TLS, by IP address to a certificate with only that IP,
    and by a sips: URI's host name to a certificate with only that name:
    the publication is in Kamailio's presentity table, the subscription in
    active_watchers on Kamailio's TLS socket, and its NOTIFY reaches pua."""
    kamailio = start_kamailio(getattr(pki, names), pki.ca)
    stop_after.append(kamailio)
    svc = RunningService(*tls_flags(pki, proxy.format(port=kamailio.tls_port)),
                         data_dir=tmp_path)
    stop_after.append(svc)

    answer = svc.rpc("pua.publish", [ALICE, 600, "presence", "application/pidf+xml",
                                     ".", ".", ".", ".", PIDF])
    assert "result" in answer, answer
    rows = kamailio.presentity_rows(username="alice", domain="example.com")
    assert [r["etag"] for r in rows] == [answer["result"]["SIP-ETag"]]
    assert b"over TLS" in rows[0]["body"]

    def subscribe() -> None:
        result = svc.rpc("pua.subscribe", [ALICE, BOB, "presence", 600])
        assert "result" in result, result

    notify = wait_for_notify(svc, "over TLS", subscribe)
    assert notify["state"] == "active"
    watchers = kamailio.active_watchers_rows(presentity_uri=ALICE)
    assert len(watchers) == 1
    # Kamailio keeps the socket the SUBSCRIBE came in on and sends the
    # NOTIFYs from it, to pua's Contact on TLS.
    assert watchers[0]["socket_info"] == f"tls:127.0.0.1:{kamailio.tls_port}"
    assert "transport=tls" in watchers[0]["contact"].lower()
    assert re.search(r"REQ PUBLISH .*/tls\b", kamailio.log_text(), re.IGNORECASE)


async def publish_once(proxy: str, tls_client: object, pki: Pki) -> PublicationSucceeded:
    """One PUBLISH through the library; pua listens on TLS with its own certificate."""
    config = EngineConfig(outbound_proxy=proxy)
    runtime = PresenceRuntime(config, listen=[Listen("tls", "127.0.0.1", 0)],
                              tls_server=server_context(pki.pua.certificate, pki.pua.private_key),
                              tls_client=tls_client)  # type: ignore[arg-type]
    async with runtime, asyncio.timeout(runtime.answer_within + 5):
        result = await runtime.publish(PublishInfo(pres_uri=ALICE, body=PIDF.encode()))
    assert isinstance(result, PublicationSucceeded)
    return result


async def test_server_certificate_from_an_unknown_ca_is_refused(
    pki: Pki, stop_after: list[KamailioPresence | RunningService]
) -> None:
    """A server certificate signed by a CA we do not trust fails the PUBLISH
    at once with 503, naming the certificate check that failed; with
    tls_verify off the same server is accepted."""
    kamailio = start_kamailio(pki.untrusted, pki.ca)
    stop_after.append(kamailio)
    with pytest.raises(PublishError) as refused:
        await publish_once(kamailio.tls_uri, client_context(pki.ca.certificate), pki)
    assert refused.value.status == 503
    assert "certificate verify failed: unable to get local issuer certificate" in str(refused.value)
    assert "_ssl.c" not in str(refused.value)
    assert kamailio.presentity_rows(username="alice") == []

    unchecked = client_context(pki.ca.certificate, verify=False)
    published = await publish_once(kamailio.tls_uri, unchecked, pki)
    rows = kamailio.presentity_rows(username="alice")
    assert [r["etag"] for r in rows] == [published.etag]


@pytest.mark.parametrize(("host", "mismatch"), [
    ("127.0.0.1", "IP address mismatch, certificate is not valid for '127.0.0.1'"),
    ("localhost", "Hostname mismatch, certificate is not valid for 'localhost'"),
])
async def test_server_certificate_for_another_host_is_refused(
    pki: Pki, stop_after: list[KamailioPresence | RunningService], host: str, mismatch: str
) -> None:
    """A certificate of our CA made for another host fails naming the
    mismatch, whether the next hop is an IP address or a name."""
    kamailio = start_kamailio(pki.elsewhere, pki.ca)
    stop_after.append(kamailio)
    proxy = f"sip:{host}:{kamailio.tls_port};transport=tls"
    with pytest.raises(PublishError) as refused:
        await publish_once(proxy, client_context(pki.ca.certificate), pki)
    assert refused.value.status == 503
    assert mismatch in str(refused.value)
    assert kamailio.presentity_rows(username="alice") == []


def test_client_certificate_required_by_kamailio(
    pki: Pki, tmp_path: Path, stop_after: list[KamailioPresence | RunningService]
) -> None:
    """Kamailio requiring client certificates of its CA takes `pua serve`,
    which shows tls_certificate, and logs that certificate as verified."""
    kamailio = start_kamailio(pki.by_address, pki.ca, require_certificate=True)
    stop_after.append(kamailio)
    svc = RunningService(*tls_flags(pki, kamailio.tls_uri), data_dir=tmp_path)
    stop_after.append(svc)
    answer = svc.rpc("pua.publish", [ALICE, 600, "presence", "application/pidf+xml",
                                     ".", ".", ".", ".", PIDF])
    assert "result" in answer, answer
    assert len(kamailio.presentity_rows(username="alice")) == 1
    assert "TLS peer cn=pua verified=1" in kamailio.log_text()


async def test_missing_client_certificate_is_refused_clearly(
    pki: Pki, stop_after: list[KamailioPresence | RunningService]
) -> None:
    """Without a client certificate the same Kamailio refuses the
    connection: the PUBLISH fails at once with 503 naming the refusal."""
    kamailio = start_kamailio(pki.by_address, pki.ca, require_certificate=True)
    stop_after.append(kamailio)
    with pytest.raises(PublishError) as refused:
        await publish_once(kamailio.tls_uri, client_context(pki.ca.certificate), pki)
    assert refused.value.status == 503
    assert "certificate required" in str(refused.value)
    assert kamailio.presentity_rows(username="alice") == []
