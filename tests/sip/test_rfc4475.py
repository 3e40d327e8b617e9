"""RFC 4475 torture messages: valid ones parse, invalid ones give the protocol error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pua.sip import RemoteProtocolError, Request, StreamFramer, parse_message

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "rfc4475"
MANIFEST: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text())

VALID = [e for e in MANIFEST if e["syntax"] == "valid"]
INVALID = [e for e in MANIFEST if e["syntax"] == "invalid"]

# Valid bytes that a UAS must still refuse once it reads them (RFC 4475's
# "semantic" expectations that the SIP layer itself checks).
REFUSED_BY_VALIDATION = {"insuf": 400, "multi01": 400}

# The answer a UAS gives to invalid requests, where it is not 400.
EXPECTED_STATUS = {"badvers": 505}


def _data(entry: dict[str, Any]) -> bytes:
    return (FIXTURES / entry["file"]).read_bytes()


def test_manifest_covers_every_fixture() -> None:
    """Every .dat file is in the manifest and both lists are non-trivial."""
    files = {p.name for p in FIXTURES.glob("*.dat")}
    assert files == {e["file"] for e in MANIFEST}
    assert len(VALID) >= 25 and len(INVALID) >= 15


@pytest.mark.parametrize("entry", VALID, ids=lambda e: e["name"])
def test_valid_message_parses(entry: dict[str, Any]) -> None:
    """A syntactically valid torture message parses, and its serialization
    parses back to an equal message."""
    message = parse_message(_data(entry))
    assert (entry["kind"] == "request") == isinstance(message, Request)
    if entry["name"] in REFUSED_BY_VALIDATION:
        with pytest.raises(RemoteProtocolError) as info:
            message.validate()
        assert info.value.status == REFUSED_BY_VALIDATION[entry["name"]]
    else:
        message.validate()
    # Serialization may add Content-Length (inv2543 has none) and unfolds
    # lines; writing the reparsed message again gives the same bytes.
    again = parse_message(bytes(message))
    assert bytes(again) == bytes(message)
    assert again.body == message.body and again.start_line() == message.start_line()


@pytest.mark.parametrize("entry", INVALID, ids=lambda e: e["name"])
def test_invalid_message_is_a_protocol_error(entry: dict[str, Any]) -> None:
    """An invalid torture message raises RemoteProtocolError with the status
    a UAS answers with, and nothing else."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(_data(entry)).validate()
    assert info.value.status == EXPECTED_STATUS.get(entry["name"], 400)


@pytest.mark.parametrize(
    "entry", [e for e in MANIFEST if e["content_length"] == "matches"], ids=lambda e: e["name"]
)
def test_framer_byte_by_byte_matches_datagram_parse(entry: dict[str, Any]) -> None:
    """Fed one byte at a time, the stream framer yields the message the
    datagram parser sees (or the same protocol error)."""
    data = _data(entry)
    try:
        expected = parse_message(data)
    except RemoteProtocolError:
        framer = StreamFramer()
        with pytest.raises(RemoteProtocolError):
            for i in range(len(data)):
                framer.feed(data[i : i + 1])
        return
    framer = StreamFramer()
    out = []
    for i in range(len(data)):
        out.extend(framer.feed(data[i : i + 1]))
    assert out == [expected]
    assert framer.buffered == 0
