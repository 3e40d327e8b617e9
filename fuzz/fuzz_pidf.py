"""Fuzz target: the PIDF parser (RFC 3863), its summary and the assign_ids hook.

``python -m fuzz.fuzz_pidf [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("pidf")
