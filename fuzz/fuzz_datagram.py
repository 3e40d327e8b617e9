"""Fuzz target: the datagram parser, pua.sip.parse_message on bytes.

``python -m fuzz.fuzz_datagram [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("datagram")
