"""The protocol core performs no IO: it takes time and randomness as input."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "pua"
SANS_IO = ("sip", "core")
# Modules that would let the core reach the network, the clock, randomness,
# threads or a database.
FORBIDDEN = {
    "asyncio", "socket", "ssl", "time", "random", "secrets", "select", "selectors",
    "threading", "multiprocessing", "subprocess", "sqlite3", "sqlalchemy", "aiohttp",
    "datetime", "uvloop", "os", "urllib.request", "http",
}
# Layers above the core that it must not import either (arrows point down).
UPPER_LAYERS = ("pua.runtime", "pua.store", "pua.api", "pua.adapters", "pua.cli", "pua.config")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def _core_files() -> list[Path]:
    files = [p for layer in SANS_IO if (SRC / layer).is_dir() for p in (SRC / layer).rglob("*.py")]
    assert files, "no core modules found"
    return files


@pytest.mark.parametrize("path", _core_files(), ids=lambda p: str(p.relative_to(SRC)))
def test_core_module_imports_nothing_that_does_io(path: Path) -> None:
    """No module under pua.sip or pua.core imports an IO, clock or random module."""
    bad = [
        name for name in _imports(path)
        if name in FORBIDDEN or name.split(".")[0] in FORBIDDEN - {"urllib"}
        or name.startswith(UPPER_LAYERS)
    ]
    assert bad == [], f"{path.name} imports {bad}"


def test_scanner_catches_a_forbidden_import(tmp_path: Path) -> None:
    """The scanner itself sees `import time` and `from socket import x`."""
    sample = tmp_path / "sample.py"
    sample.write_text("import time\nfrom socket import socket\nfrom . import abnf\n")
    assert _imports(sample) == ["time", "socket"]


@pytest.mark.parametrize(
    "path", sorted((SRC / "runtime").rglob("*.py")) + sorted((SRC / "store").rglob("*.py")),
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_runtime_never_imports_an_adapter(path: Path) -> None:
    """Adapters use the runtime; the runtime (and the store) never import them."""
    assert [n for n in _imports(path) if n.startswith("pua.adapters")] == []
