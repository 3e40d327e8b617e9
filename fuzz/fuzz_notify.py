"""Fuzz target: the NOTIFY path of the engine: datagrams to subscriptions in dialogs.

``python -m fuzz.fuzz_notify [libFuzzer flags] [corpus dirs]``"""

from fuzz.main import main

if __name__ == "__main__":
    main("notify")
