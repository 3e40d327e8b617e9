"""Databases for the store tests: a fresh one per test on each backend.

SQLite is a file in the test's tmp_path.  PostgreSQL and MariaDB/MySQL are
the servers on loopback (override with ``PUA_TEST_POSTGRES_URL`` and
``PUA_TEST_MYSQL_URL``, admin URLs in the seed's form); each test creates
``pua_test_<random>`` there and drops it afterwards.  A server that is not
there fails the test in CI and skips it elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from pua.store import normalize_db_url
from tests.conftest import IN_CI

BACKENDS = ("sqlite", "postgresql", "mysql")
ADMIN_URLS = {
    "postgresql": os.environ.get(
        "PUA_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    ),
    "mysql": os.environ.get("PUA_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test"),
}
KAMAILIO_SCHEMA_DIRS = {
    "sqlite": Path("/usr/share/kamailio/db_sqlite"),
    "postgresql": Path("/usr/share/kamailio/postgres"),
    "mysql": Path("/usr/share/kamailio/mysql"),
}
KAMAILIO_SCHEMA_PACKAGES = {
    "sqlite": "kamailio-sqlite-modules",
    "postgresql": "kamailio-postgres-modules",
    "mysql": "kamailio-mysql-modules",
}


def missing(what: str) -> NoReturn:
    """A missing server or file: fail in CI, skip elsewhere."""
    if IN_CI:
        pytest.fail(f"missing in CI: {what}", pytrace=False)
    pytest.skip(f"missing: {what} (see scripts/install-debian-deps.sh)")


def _engine(url: str, data_dir: Path, **kw: Any) -> AsyncEngine:
    return create_async_engine(normalize_db_url(url, data_dir), **kw)


@dataclass
class Backend:
    """A fresh, empty database: ``url`` in the seed's form (what pua's
    settings hold), with raw SQL access for set-up and checks."""

    name: str
    url: str
    data_dir: Path
    database: str = ""

    def url_with_port(self, port: int) -> str:
        """The same database through another port (a proxy)."""
        return make_url(self.url).set(port=port).render_as_string(hide_password=False)

    async def execute(self, *statements: str) -> None:
        """Run ``statements`` in one transaction."""
        engine = _engine(self.url, self.data_dir)
        try:
            async with engine.begin() as conn:
                for sql in statements:
                    await conn.exec_driver_sql(sql)
        finally:
            await engine.dispose()

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        """The rows of one query."""
        engine = _engine(self.url, self.data_dir)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in await conn.exec_driver_sql(sql)]
        finally:
            await engine.dispose()

    async def run_kamailio_scripts(self, *names: str) -> None:
        """Run Kamailio's own schema scripts (e.g. ``standard-create.sql``)
        for this backend, as ``kamdbctl`` would."""
        folder = KAMAILIO_SCHEMA_DIRS[self.name]
        paths = [folder / name for name in names]
        absent = [str(p) for p in paths if not p.is_file()]
        if absent:
            missing(f"Kamailio schema files {absent} ({KAMAILIO_SCHEMA_PACKAGES[self.name]})")
        if self.name == "sqlite":
            path = make_url(normalize_db_url(self.url, self.data_dir)).database
            assert path is not None
            con = sqlite3.connect(path)
            try:
                for p in paths:
                    con.executescript(p.read_text())
                con.commit()
            finally:
                con.close()
            return
        statements: list[str] = []
        for p in paths:
            for part in p.read_text().split(";\n"):
                sql = part.strip().rstrip(";").strip()
                if sql:
                    statements.append(sql)
        await self.execute(*statements)


async def _server_engine(name: str, data_dir: Path) -> AsyncEngine:
    """An autocommit engine on the admin database, or a failure/skip."""
    admin = ADMIN_URLS[name]
    engine = _engine(admin, data_dir, isolation_level="AUTOCOMMIT")
    try:
        async with asyncio.timeout(5), engine.connect() as conn:
            await conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # whatever the driver raises: the server is not usable
        await engine.dispose()
        missing(f"{name} server at {make_url(admin).render_as_string()}: {exc}")
    return engine


@contextlib.asynccontextmanager
async def make_backend(name: str, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh database on backend ``name``; dropped afterwards."""
    data_dir = tmp_path / "var"
    if name == "sqlite":
        yield Backend(name, "sqlite:///" + str(tmp_path / "pua.db"), data_dir)
        return
    engine = await _server_engine(name, data_dir)
    database = f"pua_test_{secrets.token_hex(4)}"
    try:
        async with engine.connect() as conn:
            await conn.exec_driver_sql(f"CREATE DATABASE {database}")
        url = make_url(ADMIN_URLS[name]).set(database=database)
        yield Backend(name, url.render_as_string(hide_password=False), data_dir, database)
    finally:
        drop = f"DROP DATABASE IF EXISTS {database}"
        if name == "postgresql":
            drop += " WITH (FORCE)"
        async with engine.connect() as conn:
            await conn.exec_driver_sql(drop)
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh database on each of SQLite, PostgreSQL and MariaDB/MySQL."""
    async with make_backend(request.param, tmp_path) as db:
        yield db


@pytest.fixture(params=("postgresql", "mysql"))
async def server_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh database on PostgreSQL and on MariaDB/MySQL (over TCP)."""
    async with make_backend(request.param, tmp_path) as db:
        yield db


@pytest.fixture
async def mysql_backend(tmp_path: Path) -> AsyncIterator[Backend]:
    """A fresh database on MariaDB/MySQL."""
    async with make_backend("mysql", tmp_path) as db:
        yield db
