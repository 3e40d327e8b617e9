"""`pua publish` against a real Kamailio presence server: initial, refresh,
modify and remove, checked in Kamailio's presentity table after each step."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.peers.kamailio import KamailioPresence

pytestmark = pytest.mark.interop

ALICE = "sip:alice@example.com"


def pua(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "pua", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
    )


def answer(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The status line and headers `pua publish` printed."""
    lines = result.stdout.splitlines()
    out = {"status": lines[0]} if lines else {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        out[name] = value
    return out


def test_publish_lifecycle_against_kamailio(kamailio: KamailioPresence, tmp_path: Path) -> None:
    """Initial PUBLISH stores a row with our ETag; a refresh keeps the body
    and changes the ETag; a modify replaces the body; Expires: 0 removes it."""
    server = kamailio.uri
    first = pua("publish", "--server", server, "--pres-uri", ALICE, "--basic", "open", "--expires", "120")
    assert first.returncode == 0, first.stderr
    got = answer(first)
    assert got["status"] == "SIP/2.0 200 OK"
    etag1 = got["SIP-ETag"]
    assert int(got["Expires"]) == 120
    rows = kamailio.presentity_rows(username="alice", domain="example.com")
    assert len(rows) == 1
    assert rows[0]["etag"] == etag1 and rows[0]["event"] == "presence"
    assert b"<basic>open</basic>" in rows[0]["body"]

    refresh = pua("publish", "--server", server, "--pres-uri", ALICE, "--etag", etag1, "--expires", "300")
    assert refresh.returncode == 0, refresh.stderr
    etag2 = answer(refresh)["SIP-ETag"]
    assert etag2 != etag1
    rows = kamailio.presentity_rows(username="alice", domain="example.com")
    assert [r["etag"] for r in rows] == [etag2]
    assert b"<basic>open</basic>" in rows[0]["body"]  # a refresh keeps the body
    assert rows[0]["expires"] > rows[0]["received_time"] + 200

    body = tmp_path / "closed.xml"
    body.write_bytes(
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
        b'<tuple id="pua"><status><basic>closed</basic></status><note>Gone home</note></tuple></presence>'
    )
    modify = pua("publish", "--server", server, "--pres-uri", ALICE, "--etag", etag2,
                 "--body-file", str(body))
    assert modify.returncode == 0, modify.stderr
    etag3 = answer(modify)["SIP-ETag"]
    rows = kamailio.presentity_rows(username="alice", domain="example.com")
    assert [r["etag"] for r in rows] == [etag3]
    assert b"Gone home" in rows[0]["body"] and b"closed" in rows[0]["body"]

    remove = pua("publish", "--server", server, "--pres-uri", ALICE, "--etag", etag3, "--remove")
    assert remove.returncode == 0, remove.stderr
    assert answer(remove)["Expires"] == "0"
    assert kamailio.presentity_rows(username="alice", domain="example.com") == []


def test_unknown_etag_gets_412_and_exit_1(kamailio: KamailioPresence) -> None:
    """A refresh with an ETag the server does not know prints the 412 and exits 1."""
    result = pua("publish", "--server", kamailio.uri, "--pres-uri", ALICE,
                 "--etag", "a.1764140000.1.1.0")
    assert result.returncode == 1
    assert answer(result)["status"].startswith("SIP/2.0 412")
    assert "412" in result.stderr
    assert kamailio.presentity_rows(username="alice", domain="example.com") == []


def test_other_event_packages_reach_kamailio(kamailio: KamailioPresence, tmp_path: Path) -> None:
    """A message-summary body gets its default Content-Type and is stored."""
    body = tmp_path / "mwi.txt"
    body.write_bytes(b"Messages-Waiting: yes\r\nVoice-Message: 2/8 (0/2)\r\n")
    result = pua("publish", "--server", kamailio.uri, "--pres-uri", "sip:vm@example.com",
                 "--event", "message-summary", "--body-file", str(body))
    assert result.returncode == 0, result.stderr
    rows = kamailio.presentity_rows(username="vm", domain="example.com", event="message-summary")
    assert len(rows) == 1 and b"Voice-Message: 2/8" in rows[0]["body"]
