"""Database URLs as the seed writes them, made into SQLAlchemy async URLs.

=================================  =========================================
given                              used
=================================  =========================================
``None``                           ``sqlite+aiosqlite:///<data_dir>/pua.db``
``sqlite:///relative/path``        ``sqlite+aiosqlite:///relative/path``
                                   (relative to the working directory)
``sqlite:////abs/path``            ``sqlite+aiosqlite:////abs/path``
                                   (Kamailio's absolute form)
``postgres://...``,                ``postgresql+asyncpg://...``
``postgresql://...``
``mysql://...``                    ``mysql+asyncmy://...?charset=utf8mb4``
=================================  =========================================

A driver already named must be the one pua uses (``+asyncpg``, ``+asyncmy``,
``+aiosqlite``).  Anything else raises :class:`StoreError` naming the URL.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .errors import StoreError, mask_url

__all__ = ["normalize_db_url"]

_DRIVERS = {
    "sqlite": ("sqlite", "aiosqlite"),
    "postgres": ("postgresql", "asyncpg"),
    "postgresql": ("postgresql", "asyncpg"),
    "mysql": ("mysql", "asyncmy"),
}


def normalize_db_url(db_url: str | None, data_dir: Path) -> str:
    """The SQLAlchemy async URL for ``db_url`` (see the module's table);
    ``None`` is the SQLite file ``data_dir/pua.db``.  Raises StoreError for a
    URL pua cannot use."""
    if db_url is None:
        return "sqlite+aiosqlite:///" + str(Path(data_dir).absolute() / "pua.db")
    scheme, sep, rest = db_url.partition("://")
    base, _plus, driver = scheme.lower().partition("+")
    if not sep or base not in _DRIVERS:
        raise StoreError(
            f"unsupported database URL {mask_url(db_url)!r}: "
            "expected sqlite:///path, postgresql://... or mysql://..."
        )
    backend, wanted = _DRIVERS[base]
    if driver and driver != wanted:
        raise StoreError(
            f"unsupported driver {driver!r} in database URL {mask_url(db_url)!r}: "
            f"pua talks to {backend} through {wanted}"
        )
    if backend == "sqlite":
        path = rest[1:] if rest.startswith("/") else ""
        if not path or path == ":memory:" or path.startswith("file:") or "?" in path:
            raise StoreError(
                f"unsupported database URL {mask_url(db_url)!r}: "
                "SQLite needs a file path, sqlite:///relative/path or sqlite:////absolute/path"
            )
    url = f"{backend}+{wanted}://{rest}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise StoreError(f"malformed database URL {mask_url(db_url)!r}: {exc}") from None
    if backend != "sqlite" and not parsed.database:
        raise StoreError(f"database URL {mask_url(db_url)!r} names no database")
    if backend == "mysql" and "charset" not in parsed.query:
        url += ("&" if "?" in rest else "?") + "charset=utf8mb4"
    return url
