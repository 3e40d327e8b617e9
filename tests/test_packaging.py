"""`make run` installs what running needs; the dev tools come with test,
lint, bench and reliability only."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_TOOLS = {"pytest", "pytest-asyncio", "pytest-timeout", "hypothesis", "ruff", "mypy",
             "lxml-stubs", "selenium", "atheris"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\s<>=!~;\[]", item, maxsplit=1)[0].lower() for item in requirements}


def test_dev_tools_are_only_in_the_dev_extra() -> None:
    """The runtime dependencies and the speed extra hold no test or lint tool;
    the dev extra holds them all."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not _names(project["dependencies"]) & DEV_TOOLS
    assert not _names(project["optional-dependencies"]["speed"]) & DEV_TOOLS
    assert _names(project["optional-dependencies"]["dev"]) >= DEV_TOOLS


def _make_plan(target: str, venv: Path) -> str:
    result = subprocess.run(
        ["make", "-n", "-C", str(ROOT), target, f"VENV={venv}"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    return result.stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_run_installs_without_dev_and_test_with_it(tmp_path: Path) -> None:
    """On a fresh clone `make run` installs the package with its runtime
    extras only; `make test` and `make lint` install the dev extra; after a
    dev install `make run` installs nothing more."""
    venv = tmp_path / "venv"
    run = _make_plan("run", venv)
    assert "-e '.[speed]'" in run and "dev" not in run
    for target in ("test", "lint", "bench", "reliability"):
        assert "-e '.[dev,speed]'" in _make_plan(target, venv), target
    venv.mkdir()
    (venv / ".installed-dev").touch()
    (venv / ".installed-run").touch()
    assert "pip install" not in _make_plan("run", venv)
    assert "pip install" not in _make_plan("test", venv)
    (venv / ".installed-dev").unlink()
    assert "-e '.[dev,speed]'" in _make_plan("test", venv)
