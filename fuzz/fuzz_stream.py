"""Fuzz target: the stream framer, fed in chunks as TCP hands them over.

``python -m fuzz.fuzz_stream [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("stream")
