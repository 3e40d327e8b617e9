"""Fuzz target: the dialog-info parser (RFC 4235), its summary and the version hook.

``python -m fuzz.fuzz_dialog_info [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("dialog_info")
