"""Registration state documents (RFC 3680): the RFC's example, building,
round trips and the set_version hook."""

from __future__ import annotations

import pytest

from pua.bodies import Contact, RegInfo, Registration, parse_reginfo
from pua.bodies.reginfo import set_version
from pua.errors import BodyError

# RFC 3680's example (§5): one registration, one active and one expired contact.
RFC_EXAMPLE = b"""<?xml version="1.0"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
    version="0" state="full">
  <registration aor="sip:user@example.com" id="as9" state="active">
    <contact id="76" state="active" event="registered"
        duration-registered="7322" q="0.8">
      <uri>sip:user@pc887.example.com</uri>
    </contact>
    <contact id="77" state="terminated" event="expired"
        duration-registered="3600" q="0.5">
      <uri>sip:user@university.edu</uri>
    </contact>
  </registration>
</reginfo>
"""

# An IMS-style registrar's partial notification with every optional part.
FULL_CONTACT = b"""<?xml version="1.0" encoding="UTF-8"?>
<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="12" state="partial">
  <registration aor="sip:alice@example.com" id="a7" state="active">
    <contact id="c1" state="active" event="refreshed" expires="3600"
        duration-registered="120" callid="x8d7f@pc" cseq="42" q="1.0">
      <uri>sip:alice@192.0.2.4:5060;transport=tcp</uri>
      <display-name xml:lang="en">Alice's desk</display-name>
      <unknown-param name="+sip.instance">"&lt;urn:uuid:00000000-0000-1000-8000-000A95A0E128&gt;"</unknown-param>
      <unknown-param name="reg-id">1</unknown-param>
    </contact>
  </registration>
  <registration aor="sip:bob@example.com" id="b1" state="init"/>
</reginfo>
"""


def test_rfc_example() -> None:
    """RFC 3680's example parses to one registration with its two contacts."""
    assert parse_reginfo(RFC_EXAMPLE) == RegInfo(
        version=0,
        state="full",
        registrations=(
            Registration(
                aor="sip:user@example.com",
                id="as9",
                state="active",
                contacts=(
                    Contact(id="76", state="active", event="registered",
                            uri="sip:user@pc887.example.com", duration_registered=7322, q="0.8"),
                    Contact(id="77", state="terminated", event="expired",
                            uri="sip:user@university.edu", duration_registered=3600, q="0.5"),
                ),
            ),
        ),
    )  # fmt: skip


def test_every_contact_field() -> None:
    """expires, callid, cseq, display-name and unknown-params are all read."""
    info = parse_reginfo(FULL_CONTACT)
    assert (info.version, info.state) == (12, "partial")
    contact = info.registrations[0].contacts[0]
    assert contact == Contact(
        id="c1",
        state="active",
        event="refreshed",
        uri="sip:alice@192.0.2.4:5060;transport=tcp",
        expires=3600,
        duration_registered=120,
        q="1.0",
        callid="x8d7f@pc",
        cseq=42,
        display_name="Alice's desk",
        params=(
            ("+sip.instance", '"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'),
            ("reg-id", "1"),
        ),
    )
    assert info.registrations[1] == Registration(aor="sip:bob@example.com", id="b1", state="init")


@pytest.mark.parametrize("body", [RFC_EXAMPLE, FULL_CONTACT], ids=["rfc", "full"])
def test_round_trip(body: bytes) -> None:
    """A parsed document, built and parsed again, is equal to the first reading."""
    info = parse_reginfo(body)
    assert parse_reginfo(info.to_bytes()) == info


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>', "'version'"),
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="half"/>', "state"),
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
         b'<registration id="r" state="active"/></reginfo>', "'aor'"),
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
         b'<registration aor="a" id="r" state="gone"/></reginfo>', "state"),
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
         b'<registration aor="a" id="r" state="active"><contact id="c" state="active" event="registered"/>'
         b"</registration></reginfo>", "no <uri>"),
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
         b'<registration aor="a" id="r" state="active"><contact id="c" state="active" event="born">'
         b"<uri>u</uri></contact></registration></reginfo>", "event"),
        (b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="1" state="full">'
         b'<registration aor="a" id="r" state="active"><contact id="c" state="active" event="registered"'
         b' expires="soon"><uri>u</uri></contact></registration></reginfo>', "expires"),
    ],
    ids=["no version", "bad state", "no aor", "bad registration state", "contact without uri",
         "bad contact event", "bad expires"],
)  # fmt: skip
def test_invalid_documents_raise_body_error(body: bytes, message: str) -> None:
    """Documents breaking RFC 3680's schema are refused with a BodyError naming the problem."""
    with pytest.raises(BodyError, match=message):
        parse_reginfo(body)


def test_builder_refuses_bad_values() -> None:
    """An unknown contact event or an empty aor raises ValueError."""
    bad_event = Contact(id="c", state="active", event="born", uri="sip:u")
    with pytest.raises(ValueError, match="contact event"):
        RegInfo(version=0, state="full", registrations=(
            Registration(aor="sip:a", id="r", state="active", contacts=(bad_event,)),
        )).to_bytes()  # fmt: skip
    with pytest.raises(ValueError, match="aor"):
        RegInfo(version=0, state="full",
                registrations=(Registration(aor="", id="r", state="init"),)).to_bytes()  # fmt: skip


def test_set_version_rewrites_and_keeps_the_rest() -> None:
    """set_version changes the version only; the xsi namespace and contacts stay."""
    out = set_version(RFC_EXAMPLE, 9)
    before, after = parse_reginfo(RFC_EXAMPLE), parse_reginfo(out)
    assert after.version == 9
    assert after.registrations == before.registrations
    assert b"http://www.w3.org/2001/XMLSchema-instance" in out


def test_set_version_adds_a_missing_version() -> None:
    """A root without version gets one."""
    body = b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" state="full"/>'
    assert parse_reginfo(set_version(body, 3)).version == 3


def test_set_version_refuses_bool_version() -> None:
    """A bool is not a version: ValueError rather than writing "True"."""
    with pytest.raises(ValueError, match="version"):
        set_version(RFC_EXAMPLE, True)
