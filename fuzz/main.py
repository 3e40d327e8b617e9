"""Running one target under atheris: instrument pua, seed, fuzz.

pua is imported only inside ``atheris.instrument_imports`` so that its
code reports coverage; nothing here may import pua at module level.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["CORPORA", "main", "write_seeds"]

# Where the corpora grow (under build/, which git ignores).
CORPORA = Path(__file__).resolve().parent.parent / "build" / "fuzz" / "corpus"
# Inputs up to this size: a NOTIFY with a document, or a few messages on a stream.
MAX_LEN = 8192


def write_seeds(name: str, directory: Path) -> Path:
    """Write the seed corpus of target ``name`` into ``directory``."""
    from .seeds import seeds_for  # noqa: PLC0415 - imports pua
    from .targets import TARGETS  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    for n, seed in enumerate(seeds_for(TARGETS[name])):
        (directory / f"seed-{n:03d}").write_bytes(seed)
    return directory


def main(name: str) -> None:
    """Fuzz target ``name`` with the libFuzzer flags of ``sys.argv``; with
    no corpus directory given, its seeds in ``build/fuzz/corpus/NAME``."""
    import atheris  # noqa: PLC0415 - a dev tool, needed only here

    with atheris.instrument_imports(include=["pua", "fuzz"]):
        from . import targets  # noqa: PLC0415

    argv = list(sys.argv)
    if not any(not arg.startswith("-") for arg in argv[1:]):
        argv.append(str(write_seeds(name, CORPORA / name)))
    if not any(arg.startswith("-max_len=") for arg in argv[1:]):
        argv.insert(1, f"-max_len={MAX_LEN}")
    atheris.Setup(argv, targets.TARGETS[name].one_input)
    atheris.Fuzz()
