"""The ``pua`` command line: one module per group of commands."""

from __future__ import annotations

from . import publish, registrations, remote, subscribe  # noqa: F401 - they join the group
from .app import main
from .serve import serve

__all__ = ["main", "serve"]
