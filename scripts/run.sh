#!/usr/bin/env bash
# `make run`: until the service exists, show the command line working:
# its help, and a PUBLISH sent to whatever answers on PUA_SERVER (default
# sip:127.0.0.1:5060), which fails cleanly when nothing is listening.
set -u
cd "$(dirname "$0")/.."
PUA=.venv/bin/pua
server=${PUA_SERVER:-sip:127.0.0.1:5060}
"$PUA" --version
"$PUA" --help
echo
echo "\$ pua publish --server $server --pres-uri sip:alice@example.com --basic open --t1 0.05"
"$PUA" publish --server "$server" --pres-uri sip:alice@example.com --basic open --t1 0.05
echo "(exit status $?)"
