"""The service's store sync through a database outage: the engine keeps
working from memory, nothing is lost, and once the database is back the
table matches memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from pua.core import EngineConfig, PublicationSucceeded, PublishInfo
from pua.runtime import Listen, PresenceRuntime
from pua.runtime.persistence import StoreSync
from pua.store import Store, StoreError
from tests.conftest import peer_or_skip
from tests.peers.sipp import SippUAS

from .conftest import Backend
from .tcpproxy import TcpProxy

pytestmark = pytest.mark.interop


def pidf(user: str) -> bytes:
    return (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:{user}@example.com">'
        "<tuple><status><basic>open</basic></status></tuple></presence>"
    ).encode()


async def test_outage_loses_nothing(server_backend: Backend, tmp_path: Path) -> None:
    """Publications made while the database is cut off are kept in memory,
    refused as 'not stored' to whoever waits for durability, and written
    once the database is back: then the table matches memory."""
    uas = peer_or_skip(lambda: SippUAS("publish_200"))
    proxy = TcpProxy(make_url(server_backend.url).port or 0)
    await proxy.start()
    store = await Store.open(server_backend.url_with_port(proxy.port), data_dir=tmp_path, timeout=3.0)
    with uas:
        runtime = PresenceRuntime(EngineConfig(outbound_proxy=uas.uri),
                                  listen=[Listen("udp", "127.0.0.1", 0)])
        async with runtime:
            sync = StoreSync(runtime, store, mode="write-through", update_period=30)
            await sync.restore()
            sync.start()
            first = await runtime.publish(PublishInfo(pres_uri="sip:a@example.com", body=pidf("a")))
            assert isinstance(first, PublicationSucceeded)
            await sync.flush()

            await proxy.stop()
            during = await runtime.publish(PublishInfo(pres_uri="sip:b@example.com", body=pidf("b")))
            assert isinstance(during, PublicationSucceeded)  # the engine kept working
            with pytest.raises(StoreError):
                async with asyncio.timeout(30):
                    await sync.flush()
            await runtime.publish(PublishInfo(pres_uri="sip:a@example.com", expires=0))

            await proxy.start()
            async with asyncio.timeout(60):
                await sync.flush()
            memory = {(r.key.pres_uri, r.etag) for r in list(runtime.records())}  # type: ignore[union-attr]
            await sync.close()
    rows = await server_backend.fetch("SELECT pres_uri, etag FROM pua")
    assert set(rows) == memory == {("sip:b@example.com", during.etag)}
    await proxy.stop()


def test_unreachable_db_url_stops_the_start(tmp_path: Path) -> None:
    """`pua serve` with a database it cannot reach stops, naming db_url's host."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "pua", "serve", "--data-dir", str(tmp_path),
         "--listen", "udp:127.0.0.1:0", "--api", "127.0.0.1:0",
         "--db-url", "postgresql://pua:secret@127.0.0.1:1/pua"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode != 0
    assert "127.0.0.1:1" in result.stderr and "secret" not in result.stderr
