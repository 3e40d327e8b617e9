"""Persistence of pua's records as rows of Kamailio's ``pua`` table.

:class:`Store` reads and writes rows (dicts of column values) in SQLite,
PostgreSQL or MySQL/MariaDB through SQLAlchemy's async engines; mapping
records to rows is :mod:`pua.core.persist`'s work.
"""

from __future__ import annotations

from .errors import StoreError
from .store import Store
from .urls import normalize_db_url

__all__ = ["Store", "StoreError", "normalize_db_url"]
