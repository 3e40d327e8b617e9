"""Fuzz target: the reginfo parser (RFC 3680), its summary and the version hook.

``python -m fuzz.fuzz_reginfo [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("reginfo")
