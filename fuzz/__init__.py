"""Coverage-guided fuzzing of every reader of outside bytes (atheris).

``python -m fuzz.fuzz_<target> [libFuzzer flags] [corpus dirs]`` runs one
target; ``python -m fuzz.run`` runs them all and writes the figures to
``docs/reliability.md``.  The targets themselves are in :mod:`fuzz.targets`.
"""
