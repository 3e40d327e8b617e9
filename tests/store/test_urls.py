"""Database URLs: the seed's forms, and the errors for the others."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pua.errors import PuaError
from pua.store import Store, StoreError, normalize_db_url
from pua.store.errors import mask_url

from .conftest import Backend
from .tcpproxy import SilentServer


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            "mysql://user:pw@db.example.com/pua",
            "mysql+asyncmy://user:pw@db.example.com/pua?charset=utf8mb4",
        ),
        ("mysql://u@h:3307/k?charset=latin1", "mysql+asyncmy://u@h:3307/k?charset=latin1"),
        ("mysql+asyncmy://u@h/k?ssl=true", "mysql+asyncmy://u@h/k?ssl=true&charset=utf8mb4"),
        ("postgres://u:pw@h/k", "postgresql+asyncpg://u:pw@h/k"),
        ("postgresql://u@h:5433/k", "postgresql+asyncpg://u@h:5433/k"),
        ("POSTGRESQL+asyncpg://u@h/k", "postgresql+asyncpg://u@h/k"),
        ("sqlite:///relative/pua.db", "sqlite+aiosqlite:///relative/pua.db"),
        ("sqlite:////var/lib/pua/pua.db", "sqlite+aiosqlite:////var/lib/pua/pua.db"),
        ("sqlite+aiosqlite:////tmp/x.db", "sqlite+aiosqlite:////tmp/x.db"),
    ],
)
def test_seed_url_forms(given: str, expected: str) -> None:
    """The seed's URL forms map to the async drivers pua uses."""
    assert normalize_db_url(given, Path("/data")) == expected


def test_no_url_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    """No db_url is the SQLite file pua.db in the data directory."""
    assert normalize_db_url(None, tmp_path) == f"sqlite+aiosqlite:///{tmp_path}/pua.db"


@pytest.mark.parametrize(
    "url",
    [
        "oracle://x",
        "mssql+pyodbc://u:pw@h/db",
        "no-scheme-at-all",
        "sqlite://",
        "sqlite:///",
        "sqlite:///:memory:",
        "sqlite://host/file.db",
        "mysql+pymysql://u@h/db",
        "postgresql+psycopg2://u@h/db",
        "postgresql://u@h",
        "mysql://u@h:notaport/db",
    ],
)
def test_unusable_url_names_itself(url: str) -> None:
    """A URL pua cannot use is a StoreError (a PuaError) that names it."""
    with pytest.raises(StoreError) as info:
        normalize_db_url(url, Path("/data"))
    assert isinstance(info.value, PuaError)
    assert mask_url(url) in str(info.value)


def test_password_masked_in_url_errors() -> None:
    """An unusable URL's password is not in the message; the rest is."""
    with pytest.raises(StoreError) as info:
        normalize_db_url("oracle://scott:tiger99@db.example.com/orcl", Path("/data"))
    assert "tiger99" not in str(info.value)
    assert "oracle://scott:***@db.example.com/orcl" in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("mysql://root:pw@h/db", "mysql://root:***@h/db"),
        ("postgresql://u:p@ss@h:5/db?x=1", "postgresql://u:***@h:5/db?x=1"),
        ("mysql://root@h/db", "mysql://root@h/db"),
        ("sqlite:////srv/a@b/pua.db", "sqlite:////srv/a@b/pua.db"),
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    """mask_url hides the password and nothing else."""
    assert mask_url(url) == shown


async def test_unknown_scheme_fails_open(tmp_path: Path) -> None:
    """Store.open with an unknown scheme raises StoreError naming the URL."""
    with pytest.raises(StoreError, match="oracle://x"):
        await Store.open("oracle://x", data_dir=tmp_path)


@pytest.mark.parametrize(
    "url", ["postgresql://u:s3cretpw@127.0.0.1:1/x", "mysql://root:s3cretpw@127.0.0.1:1/x"]
)
async def test_unreachable_server_fails_fast_with_masked_url(url: str, tmp_path: Path) -> None:
    """An unreachable server is a StoreError within the timeout naming the masked URL."""
    started = time.monotonic()
    with pytest.raises(StoreError) as info:
        await Store.open(url, data_dir=tmp_path, timeout=2.0)
    assert time.monotonic() - started < 5.0
    message = str(info.value)
    assert url.replace("s3cretpw", "***") in message
    assert "s3cretpw" not in message


async def test_unknown_mysql_database(mysql_backend: Backend, tmp_path: Path) -> None:
    """A MySQL database that does not exist is a StoreError naming the URL."""
    url = mysql_backend.url.rsplit("/", 1)[0] + "/no_such_db"
    with pytest.raises(StoreError) as info:
        await Store.open(url, data_dir=tmp_path, timeout=5.0)
    assert url in str(info.value)
    assert "no_such_db" in str(info.value)


async def test_wrong_mysql_password_is_masked(mysql_backend: Backend, tmp_path: Path) -> None:
    """A refused password is a StoreError that does not show the password."""
    url = mysql_backend.url.replace("://root@", "://pua_nobody:Wr0ngPassw0rd@")
    with pytest.raises(StoreError) as info:
        await Store.open(url, data_dir=tmp_path, timeout=5.0)
    assert "Wr0ngPassw0rd" not in str(info.value)
    assert "pua_nobody:***@" in str(info.value)


async def test_sqlite_in_missing_directory(tmp_path: Path) -> None:
    """A SQLite file in a directory that does not exist is a StoreError."""
    url = f"sqlite:///{tmp_path}/no/such/dir/pua.db"
    with pytest.raises(StoreError, match="no/such/dir"):
        await Store.open(url, data_dir=tmp_path)


async def test_driver_refuses_url_arguments(tmp_path: Path) -> None:
    """A query argument the driver does not know is a StoreError naming the URL."""
    url = "mysql://root@127.0.0.1:1/x?no_such_argument=1"
    with pytest.raises(StoreError, match="no_such_argument"):
        await Store.open(url, data_dir=tmp_path, timeout=2.0)


@pytest.mark.parametrize("scheme", ["postgresql", "mysql"])
async def test_hanging_server_times_out(scheme: str, tmp_path: Path) -> None:
    """A server that never answers is a StoreError after about the timeout, naming the URL."""
    server = SilentServer()
    await server.start()
    url = f"{scheme}://pua:pw@127.0.0.1:{server.port}/pua"
    try:
        started = time.monotonic()
        with pytest.raises(StoreError) as info:
            await Store.open(url, data_dir=tmp_path, timeout=1.0)
        assert time.monotonic() - started < 4.0
        assert f"{scheme}://pua:***@127.0.0.1:{server.port}/pua" in str(info.value)
    finally:
        await server.stop()
