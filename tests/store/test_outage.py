"""A database that goes away and comes back: ping and write tell."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from pua.store import Store, StoreError

from .conftest import Backend
from .rows import publication
from .tcpproxy import SilentServer, TcpProxy


async def test_outage_and_its_end(server_backend: Backend) -> None:
    """With the server cut off ping and write raise StoreError; once it is back both work again."""
    proxy = TcpProxy(make_url(server_backend.url).port or 0)
    await proxy.start()
    url = server_backend.url_with_port(proxy.port)
    store = await Store.open(url, data_dir=server_backend.data_dir, timeout=3.0)
    try:
        await store.write([publication(1)], [])
        await store.ping()
        await proxy.stop()
        with pytest.raises(StoreError) as info:
            await store.ping()
        assert f":{proxy.port}/" in str(info.value)
        with pytest.raises(StoreError):
            await store.write([publication(2)], [])
        await proxy.start()
        await store.ping()
        await store.write([publication(2)], [])
        assert await store.count() == 2
    finally:
        await store.close()
        await proxy.stop()


async def test_ping_of_a_hanging_server_times_out(server_backend: Backend) -> None:
    """A server that accepts but never answers makes ping raise StoreError after the timeout."""
    proxy = TcpProxy(make_url(server_backend.url).port or 0)
    await proxy.start()
    store = await Store.open(
        server_backend.url_with_port(proxy.port), data_dir=server_backend.data_dir, timeout=1.0
    )
    silent = SilentServer(proxy.port)
    try:
        await proxy.stop()
        await silent.start()
        with pytest.raises(StoreError, match="no answer within 1 s"):
            await store.ping()
    finally:
        await store.close()
        await silent.stop()
