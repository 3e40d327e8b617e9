"""Identifiers from the operating system's randomness."""

from __future__ import annotations

import secrets

__all__ = ["SystemIds"]

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


class SystemIds:
    """The production :class:`~pua.sip.ids.Ids`: unpredictable tokens
    (branch, tags and Call-IDs must be, RFC 3261 §8.1.1.4, §19.3)."""

    def token(self, size: int = 16) -> str:
        """``size`` random characters of [0-9a-z]."""
        # 36 does not divide 256; the bias (< 1 bit over a 16-character
        # token) does not matter for uniqueness.
        return "".join([_ALPHABET[b % 36] for b in secrets.token_bytes(size)])

    def uniform(self) -> float:
        """A random float in [0, 1)."""
        return secrets.randbits(53) / float(1 << 53)
