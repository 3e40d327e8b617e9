"""Fuzz target: the message-summary parser (RFC 3842) and its summary.

``python -m fuzz.fuzz_message_summary [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("message_summary")
