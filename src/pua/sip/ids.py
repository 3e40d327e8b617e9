"""Where identifiers and jitter come from.

The SIP layer and the presence engine never call a random number generator
themselves: they ask an :class:`Ids` object.  The runtime passes one backed
by the operating system's randomness; tests pass :class:`CountingIds`, which
gives the same sequence every run.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from .headers import MAGIC_COOKIE

__all__ = ["CountingIds", "Ids"]


class Ids(Protocol):
    """A source of unique identifiers and of jitter."""

    def token(self, size: int = 16) -> str:
        """``size`` characters of [0-9a-z], unpredictable in production."""
        ...

    def uniform(self) -> float:
        """A float in [0, 1) for jitter."""
        ...


def branch(ids: Ids) -> str:
    """A new Via branch carrying the RFC 3261 magic cookie (§8.1.1.7)."""
    return MAGIC_COOKIE + ids.token(16)


def tag(ids: Ids) -> str:
    """A new From/To tag (§19.3: at least 32 bits of randomness)."""
    return ids.token(12)


def call_id(ids: Ids) -> str:
    """A new Call-ID (§8.1.1.4)."""
    return ids.token(24)


_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class CountingIds:
    """Deterministic ids: a hash chain over a seed and a counter."""

    def __init__(self, seed: str = "pua") -> None:
        self._seed = seed.encode()
        self._count = 0

    def _next(self) -> bytes:
        self._count += 1
        return hashlib.sha256(self._seed + self._count.to_bytes(8, "big")).digest()

    def token(self, size: int = 16) -> str:
        """Deterministic token of ``size`` characters."""
        out: list[str] = []
        while len(out) < size:
            out.extend(_ALPHABET[b % 36] for b in self._next())
        return "".join(out[:size])

    def uniform(self) -> float:
        """Deterministic float in [0, 1)."""
        return int.from_bytes(self._next()[:7], "big") / float(1 << 56)
