"""Identifiers from the operating system's randomness."""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable

__all__ = ["SystemIds"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
# Byte -> character of [0-9a-z] (byte mod 36), for bytes.translate: one C
# call per token instead of a Python step per character.
_TO_ALPHABET = bytes(ord(_ALPHABET[b % 36]) for b in range(256))


# Random bytes are read from the kernel in blocks: one system call per few
# hundred identifiers instead of one per identifier.
_BLOCK = 4096


class SystemIds:
    """The production :class:`~pua.sip.ids.Ids`: unpredictable tokens
    (branch, tags and Call-IDs must be, RFC 3261 §8.1.1.4, §19.3)."""

    def __init__(self) -> None:
        self._pool = b""
        self._used = 0
        # Jitter needs spread, not secrecy: a generator seeded once from the
        # kernel, so that spreading a million records asks the kernel
        # nothing (each read of it lets another thread take the GIL).
        self._spread = random.Random(secrets.randbits(128))
        # A random float in [0, 1) (for jitter: not for identifiers): the
        # generator's own method, no call of ours around it (a restart
        # draws two a record).
        self.uniform: Callable[[], float] = self._spread.random

    def _bytes(self, size: int) -> bytes:
        if self._used + size > len(self._pool):
            self._pool = secrets.token_bytes(max(_BLOCK, size))
            self._used = 0
        start = self._used
        self._used += size
        return self._pool[start : self._used]

    def token(self, size: int = 16) -> str:
        """``size`` random characters of [0-9a-z]."""
        # 36 does not divide 256; the bias (< 1 bit over a 16-character
        # token) does not matter for uniqueness.
        return self._bytes(size).translate(_TO_ALPHABET).decode("ascii")
