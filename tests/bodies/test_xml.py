"""The hardened XML parser: hostile documents are refused with BodyError, by
parse_xml itself and by every document parser built on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pua.bodies import (
    MAX_XML_SIZE,
    parse_dialog_info,
    parse_message_summary,
    parse_pidf,
    parse_reginfo,
    parse_watcherinfo,
    parse_xml,
    to_bytes,
)
from pua.bodies.dialog_info import set_version as dialog_set_version
from pua.bodies.pidf import assign_ids
from pua.bodies.reginfo import set_version as reginfo_set_version
from pua.errors import BodyError

PIDF = "urn:ietf:params:xml:ns:pidf"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE presence [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com">
  <note>&lol9;</note>
</presence>
"""

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com">
  <note>&xxe;</note>
</presence>
"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE presence SYSTEM "http://127.0.0.1:9/pidf.dtd">
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"/>
"""

INTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE presence [<!ELEMENT presence ANY>]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"/>
"""

LOWERCASE_DOCTYPE = b'<!doctype presence><presence xmlns="urn:ietf:params:xml:ns:pidf"/>'

MALFORMED = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t"></presence>'

# Wrong roots for every parser: the PIDF root in no namespace, and a
# dialog-info root in the PIDF namespace (right name for one parser, right
# namespace for another, right for none).
NO_NAMESPACE = b'<presence entity="sip:a@example.com"><tuple id="t"/></presence>'
MIXED_UP = (
    b'<dialog-info xmlns="urn:ietf:params:xml:ns:pidf" version="0" state="full"'
    b' entity="sip:a@example.com"/>'
)


def oversize() -> bytes:
    """A well-formed PIDF document one byte over the limit."""
    head = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>'
    tail = b"</note></presence>"
    return head + b"x" * (MAX_XML_SIZE + 1 - len(head) - len(tail)) + tail


def utf16_doctype() -> bytes:
    """A DOCTYPE the byte scan cannot see: the document is UTF-16."""
    text = INTERNAL_DTD.decode().replace('version="1.0"', 'version="1.0" encoding="UTF-16"')
    return text.encode("utf-16")


HOSTILE = {
    "billion laughs": BILLION_LAUGHS,
    "external entity (XXE)": XXE,
    "external DTD": EXTERNAL_DTD,
    "internal DTD": INTERNAL_DTD,
    "lower-case doctype": LOWERCASE_DOCTYPE,
    "UTF-16 DTD": utf16_doctype(),
    "malformed": MALFORMED,
    "not XML": b"Messages-Waiting: yes\r\n",
    "empty": b"",
    "blank": b"  \r\n ",
    "oversize": oversize(),
    "too deep": b"<a>" * 300 + b"</a>" * 300,
    "unknown encoding": b'<?xml version="1.0" encoding="x-nonsense"?><a/>',
    "bad UTF-8": b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="\xff\xfe"/>',
}

XML_PARSERS: dict[str, Callable[[bytes], Any]] = {
    "parse_xml": lambda b: parse_xml(b, what="test document", root=f"{{{PIDF}}}presence"),
    "parse_pidf": parse_pidf,
    "parse_dialog_info": parse_dialog_info,
    "parse_reginfo": parse_reginfo,
    "parse_watcherinfo": parse_watcherinfo,
    "assign_ids": lambda b: assign_ids(b, "t1"),
    "dialog set_version": lambda b: dialog_set_version(b, 1),
    "reginfo set_version": lambda b: reginfo_set_version(b, 1),
}


@pytest.mark.parametrize("parser", XML_PARSERS.values(), ids=XML_PARSERS.keys())
@pytest.mark.parametrize("document", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_documents_raise_body_error(parser: Callable[[bytes], Any], document: bytes) -> None:
    """Each hostile or broken document is refused with BodyError by every XML entry point."""
    with pytest.raises(BodyError):
        parser(document)


@pytest.mark.parametrize("parser", XML_PARSERS.values(), ids=XML_PARSERS.keys())
@pytest.mark.parametrize("document", [NO_NAMESPACE, MIXED_UP], ids=["no namespace", "mixed up"])
def test_wrong_root_raises_body_error(parser: Callable[[bytes], Any], document: bytes) -> None:
    """A document whose root is not the expected element in its namespace is refused."""
    with pytest.raises(BodyError, match="root element"):
        parser(document)


def test_billion_laughs_message_names_the_doctype() -> None:
    """The entity bomb is refused as a DOCTYPE, before any entity could expand."""
    with pytest.raises(BodyError, match="DOCTYPE"):
        parse_xml(BILLION_LAUGHS, what="PIDF document")


def test_xxe_never_reads_the_file() -> None:
    """The external entity is refused; the error does not carry the file's content."""
    with pytest.raises(BodyError) as caught:
        parse_pidf(XXE)
    assert "root:" not in str(caught.value)
    assert "DOCTYPE" in str(caught.value)


def test_utf16_doctype_is_caught_after_parsing() -> None:
    """A DOCTYPE hidden from the byte scan by UTF-16 is still refused (docinfo check)."""
    document = utf16_doctype()
    assert b"<!DOCTYPE" not in document.upper()
    with pytest.raises(BodyError, match="DOCTYPE"):
        parse_xml(document, what="test")


def test_oversize_message_names_the_limit() -> None:
    """An oversize body is refused by size, with the limit in the message."""
    with pytest.raises(BodyError, match=str(MAX_XML_SIZE)):
        parse_xml(oversize(), what="test")


def test_document_at_the_limit_is_accepted() -> None:
    """A document of exactly MAX_XML_SIZE bytes still parses: the limit is inclusive."""
    head = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><note>'
    tail = b"</note></presence>"
    document = head + b"x" * (MAX_XML_SIZE - len(head) - len(tail)) + tail
    assert len(document) == MAX_XML_SIZE
    assert len(parse_pidf(document).notes[0]) == MAX_XML_SIZE - len(head) - len(tail)


def test_malformed_message_says_malformed() -> None:
    """Malformed XML is reported as such, with what was being parsed."""
    with pytest.raises(BodyError, match="PIDF document: malformed XML"):
        parse_pidf(MALFORMED)


def test_non_bytes_input_is_body_error() -> None:
    """A str instead of bytes is a BodyError, not a TypeError from lxml."""
    with pytest.raises(BodyError, match="expected bytes"):
        parse_xml("<a/>", what="test")  # type: ignore[arg-type]


def test_utf16_document_without_doctype_parses() -> None:
    """UTF-16 is a legal encoding for these documents and is read."""
    text = '<?xml version="1.0" encoding="UTF-16"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:é@example.com"/>'
    assert parse_pidf(text.encode("utf-16")).entity == "sip:é@example.com"


def test_to_bytes_writes_utf8_with_declaration() -> None:
    """to_bytes writes a UTF-8 XML declaration and non-ASCII text as UTF-8."""
    root = etree.Element("{urn:x}root", nsmap={None: "urn:x"})  # type: ignore[dict-item]
    root.text = "café"
    data = to_bytes(root)
    assert data.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")
    assert "café".encode() in data


def test_to_bytes_keeps_top_level_comments() -> None:
    """A parsed root written back keeps the comments around it."""
    root = parse_xml(b"<!-- before --><a/><!-- after -->", what="test")
    data = to_bytes(root)
    assert b"<!-- before -->" in data and b"<!-- after -->" in data


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_body_error(data: bytes) -> None:
    """Arbitrary bytes make every XML parser succeed or raise BodyError, nothing else."""
    for parser in XML_PARSERS.values():
        with contextlib.suppress(BodyError):
            parser(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_raise_only_body_error_in_message_summary(data: bytes) -> None:
    """Arbitrary bytes make parse_message_summary succeed or raise BodyError, nothing else."""
    with contextlib.suppress(BodyError):
        parse_message_summary(data)


def _valid_documents() -> list[bytes]:
    from tests.bodies.test_dialog_info import RFC_CONFIRMED
    from tests.bodies.test_pidf import RFC4480_EXAMPLE
    from tests.bodies.test_reginfo import FULL_CONTACT
    from tests.bodies.test_watcherinfo import RFC_EXAMPLE

    return [RFC4480_EXAMPLE, RFC_CONFIRMED, FULL_CONTACT, RFC_EXAMPLE]


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """A valid document with a few byte ranges replaced by random bytes."""
    data = bytearray(draw(st.sampled_from(_valid_documents())))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data)))
        end = draw(st.integers(start, min(len(data), start + 8)))
        data[start:end] = draw(st.binary(max_size=8))
    return bytes(data)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_raise_only_body_error(data: bytes) -> None:
    """Near-valid documents make every XML parser succeed or raise BodyError, nothing else."""
    for parser in XML_PARSERS.values():
        with contextlib.suppress(BodyError):
            parser(data)
