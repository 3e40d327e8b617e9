"""SIP over TLS (RFC 3261 §26.2.1): listener, client checks, the engine on it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from pua.core import EngineConfig, PublicationSucceeded, PublishInfo
from pua.errors import TransportError
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.tcp import TcpTransport
from pua.runtime.tls import client_context, server_context
from pua.sip import Message, Request, make_response
from pua.sip.transaction import Address

PIDF = (
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    b"<tuple id=\"t1\"><status><basic>open</basic></status></tuple></presence>"
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (made with openssl)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    return str(cert), str(key)


async def tls_sip_server(cert: str, key: str) -> tuple[TcpTransport, Address, list[Request]]:
    """A SIP server on TLS that answers every request 200 with an ETag."""
    seen: list[Request] = []

    def answer(message: Message, peer: Address) -> None:
        if isinstance(message, Request):
            seen.append(message)
            response = make_response(message, 200, to_tag="tls")
            response.headers.add("SIP-ETag", "tls-1")
            response.headers.add("Expires", "60")
            server.send(bytes(response), peer)

    server = TcpTransport(answer, server_ssl=server_context(cert, key))
    address = await server.listen("127.0.0.1", 0)
    return server, address, seen


async def test_engine_publishes_over_tls(certificate: tuple[str, str]) -> None:
    """The engine publishes to a sip:...;transport=tls next hop, checking the
    server's certificate against the given CA; the Via says TLS."""
    cert, key = certificate
    server, (host, port), seen = await tls_sip_server(cert, key)
    config = EngineConfig(outbound_proxy=f"sip:{host}:{port};transport=tls")
    runtime = PresenceRuntime(config, listen=[Listen("tls", "127.0.0.1", 0)],
                              tls_server=server_context(cert, key),
                              tls_client=client_context(cert))
    async with runtime:
        async with asyncio.timeout(10):
            result = await runtime.publish(PublishInfo(pres_uri="sip:alice@example.com", body=PIDF))
    await server.close()
    assert isinstance(result, PublicationSucceeded) and result.etag == "tls-1"
    assert seen[0].top_via.transport == "TLS"


async def test_untrusted_certificate_is_refused(certificate: tuple[str, str]) -> None:
    """With the system's CAs the self-signed server is not trusted: the send fails."""
    cert, key = certificate
    server, address, seen = await tls_sip_server(cert, key)
    errors: asyncio.Queue[Exception] = asyncio.Queue()
    client = TcpTransport(lambda m, a: None, lambda a, e: errors.put_nowait(e),
                          client_ssl=client_context())
    client.send(b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 0\r\n\r\n", address)
    error = await asyncio.wait_for(errors.get(), 10)
    await client.close()
    await server.close()
    assert isinstance(error, TransportError)
    assert seen == []


def test_bad_tls_files_are_clear_errors(tmp_path: Path) -> None:
    """Unreadable certificate or CA files raise ValueError naming them."""
    with pytest.raises(ValueError, match=r"nope\.pem"):
        server_context(str(tmp_path / "nope.pem"), str(tmp_path / "nope.key"))
    with pytest.raises(ValueError, match=r"ca\.pem"):
        client_context(str(tmp_path / "ca.pem"))
    with pytest.raises(ValueError, match=r"client\.pem"):
        client_context(certificate=str(tmp_path / "client.pem"),
                       private_key=str(tmp_path / "client.key"))


def test_serve_with_tls_listener(tmp_path: Path, certificate: tuple[str, str]) -> None:
    """`pua serve --listen tls:...` needs a certificate: without one, or with
    a bad one, the start stops naming tls_certificate."""
    base = [sys.executable, "-m", "pua", "serve", "--data-dir", str(tmp_path),
            "--listen", "tls:127.0.0.1:0", "--api", "127.0.0.1:0"]
    missing = subprocess.run(base, capture_output=True, text=True, timeout=30, check=False)
    assert missing.returncode == 2 and "tls_certificate" in missing.stderr
    bad = subprocess.run([*base, "--tls-certificate", str(tmp_path / "x.pem"),
                          "--tls-private-key", str(tmp_path / "x.key")],
                         capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "x.pem" in bad.stderr
    # Without a tls listen address the certificate is still the client's.
    client_only = [sys.executable, "-m", "pua", "serve", "--data-dir", str(tmp_path),
                   "--listen", "udp:127.0.0.1:0", "--api", "127.0.0.1:0",
                   "--tls-certificate", str(tmp_path / "y.pem")]
    bad = subprocess.run(client_only, capture_output=True, text=True, timeout=30, check=False)
    assert bad.returncode == 2 and "tls_certificate" in bad.stderr and "y.pem" in bad.stderr
