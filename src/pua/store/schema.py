"""Kamailio's ``pua`` table (schema version 7) and ``version`` table, as
Kamailio's own scripts make them on each backend, plus pua's columns.

Column types:

=================  ==================  ============  ===========
column             MySQL / MariaDB     PostgreSQL    SQLite
=================  ==================  ============  ===========
id                 INT UNSIGNED        SERIAL        INTEGER
                   AUTO_INCREMENT                    PRIMARY KEY
pres_uri, pres_id, VARCHAR(255)        VARCHAR(255)  VARCHAR(255)
watcher_uri,
call_id, contact,
remote_contact
etag, to_tag,      VARCHAR(128)        VARCHAR(128)  VARCHAR(128)
from_tag
tuple_id           VARCHAR(64) NULL    VARCHAR(64)   VARCHAR(64)
event, expires,    INTEGER             INTEGER       INTEGER
desired_expires,
flag, cseq,
version
record_route       TEXT NULL           TEXT          TEXT
extra_headers      TEXT                TEXT          TEXT
body               MEDIUMBLOB NULL     BYTEA         BLOB
content_type,      VARCHAR(255) NULL   VARCHAR(255)  VARCHAR(255)
outbound_proxy,
remote_target
=================  ==================  ============  ===========

Index names are Kamailio's: bare on MySQL (``pua_idx``, ``expires_idx``,
...), prefixed with the table name on PostgreSQL and SQLite, where index
names share one namespace (``pua_pua_idx``, ``pua_expires_idx``, ...).
``body`` is MEDIUMBLOB on MySQL (up to 16 MiB) because a BLOB stops at
64 KiB.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.types import TypeEngine

from pua.core.persist import ROW_COLUMNS

__all__ = [
    "BINDING_COLUMNS",
    "EXTRA_COLUMNS",
    "bindings_table",
    "lines_table",
    "xmpp_table",
    "INDEXES",
    "KAMAILIO_COLUMNS",
    "SCHEMA_VERSION",
    "index_name",
    "pua_table",
    "version_table",
]

SCHEMA_VERSION = 7

# Kamailio's columns, then pua's (the row layout of pua.core.persist, which
# puts pua's after Kamailio's).
_FIRST_EXTRA = ROW_COLUMNS.index("body")
KAMAILIO_COLUMNS = ("id", *ROW_COLUMNS[:_FIRST_EXTRA])
EXTRA_COLUMNS = ROW_COLUMNS[_FIRST_EXTRA:]

# (name without the table prefix, unique, columns)
INDEXES: tuple[tuple[str, bool, tuple[str, ...]], ...] = (
    ("pua_idx", True, ("etag", "tuple_id", "call_id", "from_tag")),
    ("expires_idx", False, ("expires",)),
    ("dialog1_idx", False, ("pres_id", "pres_uri")),
    ("dialog2_idx", False, ("call_id", "from_tag")),
    ("record_idx", False, ("pres_id",)),
)

_MYSQL = ("mysql", "mariadb")


def _unsigned_int() -> TypeEngine[int]:
    return Integer().with_variant(mysql.INTEGER(unsigned=True), *_MYSQL)


def _blob() -> TypeEngine[bytes]:
    return LargeBinary().with_variant(mysql.MEDIUMBLOB(), *_MYSQL)


def index_name(table: str, name: str, dialect: str) -> str:
    """Kamailio's name for index ``name`` of ``table`` on ``dialect``."""
    return name if dialect in _MYSQL else f"{table}_{name}"


def pua_table(metadata: MetaData, name: str, dialect: str) -> Table:
    """The ``pua`` table (named ``name``) with pua's extra columns."""
    indexes: list[Index | UniqueConstraint] = []
    for short, unique, columns in INDEXES:
        full = index_name(name, short, dialect)
        if unique:
            indexes.append(UniqueConstraint(*columns, name=full))
        else:
            indexes.append(Index(full, *columns))
    return Table(
        name,
        metadata,
        Column("id", _unsigned_int(), primary_key=True, autoincrement=True),
        Column("pres_uri", String(255), nullable=False),
        Column("pres_id", String(255), nullable=False),
        Column("event", Integer, nullable=False),
        Column("expires", Integer, nullable=False),
        Column("desired_expires", Integer, nullable=False),
        Column("flag", Integer, nullable=False),
        Column("etag", String(128), nullable=False),
        Column("tuple_id", String(64), nullable=True),
        Column("watcher_uri", String(255), nullable=False),
        Column("call_id", String(255), nullable=False),
        Column("to_tag", String(128), nullable=False),
        Column("from_tag", String(128), nullable=False),
        Column("cseq", Integer, nullable=False),
        Column("record_route", Text, nullable=True),
        Column("contact", String(255), nullable=False),
        Column("remote_contact", String(255), nullable=False),
        Column("version", Integer, nullable=False),
        Column("extra_headers", Text, nullable=False),
        Column("body", _blob(), nullable=True),
        Column("content_type", String(255), nullable=True),
        Column("outbound_proxy", String(255), nullable=True),
        Column("remote_target", String(255), nullable=True),
        *indexes,
    )


def version_table(metadata: MetaData, dialect: str) -> Table:
    """Kamailio's ``version`` table (table_name, table_version)."""
    return Table(
        "version",
        metadata,
        Column("id", _unsigned_int(), primary_key=True, autoincrement=True),
        Column("table_name", String(32), nullable=False),
        Column("table_version", _unsigned_int(), nullable=False, server_default="0"),
        UniqueConstraint(
            "table_name",
            name="table_name_idx" if dialect in _MYSQL else "version_table_name_idx",
        ),
    )


BINDING_COLUMNS = ("aor", "contact", "call_id", "cseq", "expires", "q", "registered")


def bindings_table(metadata: MetaData, pua_name: str) -> Table:
    """pua's own table of registration bindings (``<pua table>_bindings``):
    one row per contact bound to an address of record, written whole per
    address of record."""
    name = f"{pua_name}_bindings"
    return Table(
        name,
        metadata,
        Column("id", _unsigned_int(), primary_key=True, autoincrement=True),
        Column("aor", String(255), nullable=False),
        Column("contact", String(255), nullable=False),
        Column("call_id", String(255), nullable=False),
        Column("cseq", Integer, nullable=False),
        Column("expires", Integer, nullable=False),
        Column("q", String(8), nullable=True),
        Column("registered", Integer, nullable=False),
        Index(f"{name}_aor_idx", "aor"),
    )


def lines_table(metadata: MetaData, pua_name: str) -> Table:
    """pua's own table of shared lines added at run time (``<pua
    table>_bla_lines``): one row per address of record."""
    name = f"{pua_name}_bla_lines"
    return Table(
        name,
        metadata,
        Column("id", _unsigned_int(), primary_key=True, autoincrement=True),
        Column("aor", String(255), nullable=False, unique=True),
    )


def xmpp_table(metadata: MetaData, pua_name: str) -> Table:
    """pua's own table of what the XMPP gateway knows (``<pua
    table>_xmpp``): one row per fact, ``kind`` and ``name`` (a digest of
    the addresses it is about) its key, ``value`` the fact as JSON."""
    name = f"{pua_name}_xmpp"
    return Table(
        name,
        metadata,
        Column("id", _unsigned_int(), primary_key=True, autoincrement=True),
        Column("kind", String(16), nullable=False),
        Column("name", String(64), nullable=False),
        Column("value", Text, nullable=False),
        UniqueConstraint("kind", "name", name=f"{name}_key_idx"),
    )
