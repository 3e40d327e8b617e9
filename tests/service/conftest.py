"""Fixtures for the service tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .running import RunningService


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Callable[..., RunningService]]:
    """Start `pua serve` processes (stopped at the end of the test)."""
    started: list[RunningService] = []

    def start(*flags: str, **kw: object) -> RunningService:
        svc = RunningService(*flags, data_dir=tmp_path / f"var{len(started)}", **kw)  # type: ignore[arg-type]
        started.append(svc)
        return svc

    yield start
    for svc in started:
        if svc.process.poll() is None:
            svc.stop()
