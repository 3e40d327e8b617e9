"""Fuzz target: the watcherinfo parser (RFC 3858) and its summary.

``python -m fuzz.fuzz_watcherinfo [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("watcherinfo")
