"""Event documents: PIDF presence and, later, the other event bodies."""

from __future__ import annotations

from .pidf import PIDF_CONTENT_TYPE, basic_pidf

__all__ = ["PIDF_CONTENT_TYPE", "basic_pidf"]
