"""The statements the store's bulk paths run on a driver's own connection."""

from __future__ import annotations

from sqlalchemy.engine import Dialect

from pua.core.persist import (
    PUBLICATION_COLUMNS,
    REFRESH_COLUMNS,
    ROW_COLUMNS,
    SUBSCRIPTION_COLUMNS,
)

__all__ = ["Statements"]


class Statements:
    """The statements the bulk paths run on the driver, in its parameter
    style: ``?`` (sqlite3), ``$n`` (asyncpg) or ``%s`` (asyncmy)."""

    def __init__(self, dialect: Dialect, table: str) -> None:
        quote = dialect.identifier_preparer.quote
        style = dialect.name

        def marks(count: int) -> list[str]:
            if style == "postgresql":
                return [f"${n}" for n in range(1, count + 1)]
            return ["?" if style == "sqlite" else "%s"] * count

        t, ident = quote(table), quote("id")
        last, limit = marks(2)

        def load(columns: tuple[str, ...], where: str = "") -> str:
            loaded = ", ".join(quote(c) for c in ("id", *columns))
            return (
                f"SELECT {loaded} FROM {t} WHERE {ident} > {last}{where} "
                f"ORDER BY {ident} LIMIT {limit}"
            )

        # A publication's row has an empty watcher_uri (NULL or ''; by
        # length, which MySQL does not pad as it pads a comparison).
        watcher = quote("watcher_uri")
        self.load = load(ROW_COLUMNS)
        self.load_kind = {
            "publication": load(PUBLICATION_COLUMNS, f" AND coalesce(length({watcher}), 0) = 0"),
            "subscription": load(SUBSCRIPTION_COLUMNS, f" AND length({watcher}) > 0"),
        }

        def update(columns: tuple[str, ...]) -> str:
            *values, key = marks(len(columns) + 1)
            sets = ", ".join(f"{quote(c)} = {m}" for c, m in zip(columns, values, strict=True))
            return f"UPDATE {t} SET {sets} WHERE {ident} = {key}"

        self.update = update(ROW_COLUMNS)
        self.refresh = update(REFRESH_COLUMNS)
        names = ", ".join(quote(c) for c in ROW_COLUMNS)
        self.insert = f"INSERT INTO {t} ({names}) VALUES ({', '.join(marks(len(ROW_COLUMNS)))})"
        self.insert_with_id = (
            f"INSERT INTO {t} ({names}, {ident}) VALUES ({', '.join(marks(len(ROW_COLUMNS) + 1))})"
        )
        self.delete_one = f"DELETE FROM {t} WHERE {ident} = {marks(1)[0]}"
        self.delete_many = f"DELETE FROM {t} WHERE {ident} = ANY($1::bigint[])"
        # SQLite: the last new id, and how many rows lie in the range of
        # the ? rows just inserted.
        self.last_ids = (
            f"SELECT last_insert_rowid(), (SELECT count(*) FROM {t} "
            f"WHERE {ident} BETWEEN last_insert_rowid() - ? + 1 AND last_insert_rowid())"
        )
        # PostgreSQL: new ids from the id column's sequence, named once
        # connected (pg_get_serial_sequence).
        self.next_ids = ""
