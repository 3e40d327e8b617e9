"""Fuzz target: every typed header of a parsed message, and the header and URI parsers.

``python -m fuzz.fuzz_headers [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("headers")
