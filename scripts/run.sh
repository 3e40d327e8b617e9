#!/usr/bin/env bash
# `make run`: start the pua service with its defaults (SIP on udp and tcp
# 127.0.0.1:5060, the API and status page on http://127.0.0.1:8765/).
# Settings come from pua.toml when present, PUA_* variables, or arguments:
#   make run ARGS="--listen udp:127.0.0.1:5070 --outbound-proxy sip:127.0.0.1:5060"
set -u
cd "$(dirname "$0")/.."
config=()
[ -f pua.toml ] && config=(--config pua.toml)
exec .venv/bin/pua serve "${config[@]}" "$@"
