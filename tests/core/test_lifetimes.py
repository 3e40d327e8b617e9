"""The refresh rule: max(E/2, E - margin), less up to min(E/10, 10 s) of
jitter, never below zero."""

from __future__ import annotations

import pytest

from pua.core import EngineConfig
from pua.core.lifetimes import Lifetimes


class FixedIds:
    """Jitter of a fixed value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def token(self, size: int = 16) -> str:
        return "x" * size

    def uniform(self) -> float:
        return self.value


@pytest.mark.parametrize("jitter", [0.0, 0.25, 0.999])
@pytest.mark.parametrize("margin", [0.0, 32.0, 600.0])
def test_refresh_delay_follows_the_rule(jitter: float, margin: float) -> None:
    lifetimes = Lifetimes(EngineConfig(refresh_margin=margin), FixedIds(jitter))
    for expires in (0.0, 0.5, 1.0, 20.0, 64.0, 99.0, 100.0, 101.0, 600.0, 3600.0, 86400.0):
        expected = max(0.0, max(expires / 2.0, expires - margin) - min(expires / 10.0, 10.0) * jitter)
        assert lifetimes.refresh_delay(expires) == expected, expires
