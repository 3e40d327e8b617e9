"""Requests outside a dialog: new_request and the prepared RequestTemplate."""

from __future__ import annotations

import pytest

from pua.sip import SipUri, parse_message
from pua.sip.builder import RequestTemplate, new_request, new_via
from pua.sip.ids import CountingIds

ALICE = SipUri(host="example.com", user="alice")
BOB = SipUri(host="example.org", user="bob")
EXTRA = (("Event", "presence"), ("Expires", "3600"), ("Content-Type", "application/pidf+xml"))
BODY = b"<presence/>"


def by_hand(ids: CountingIds, host: str, port: int | None, **kwargs: object) -> bytes:
    request = new_request(
        "PUBLISH", BOB, from_uri=ALICE, to_uri=BOB, via=new_via(ids, "udp", host, port),
        ids=ids, **kwargs,  # type: ignore[arg-type]
    )
    for name, value in EXTRA:
        request.headers.add(name, value)
    request.body = BODY
    return bytes(request)


@pytest.mark.parametrize(("host", "port"), [("192.0.2.1", 5060), ("[2001:db8::1]", 5070), ("h.example", None)])
def test_template_builds_what_new_request_builds(host: str, port: int | None) -> None:
    """Built from the same random source, a template's request is byte for
    byte the one new_request, via and added headers make, every time."""
    template = RequestTemplate(
        "PUBLISH", BOB, from_uri=ALICE, to_uri=BOB, transport="udp", host=host, port=port,
        headers=EXTRA, body=BODY,
    )
    hand_ids, template_ids = CountingIds("t"), CountingIds("t")
    for cseq in (1, 2):
        expected = by_hand(hand_ids, host, port, cseq=cseq)
        assert bytes(template.build(template_ids, cseq=cseq)) == expected


def test_template_requests_differ_and_keep_given_ids() -> None:
    """Each build draws a new branch, tag and Call-ID, unless the caller
    gives the tag and Call-ID; the typed values it remembers are those of
    its own text."""
    template = RequestTemplate(
        "PUBLISH", BOB, from_uri=ALICE, to_uri=BOB, transport="udp", host="192.0.2.1",
        port=5060, headers=EXTRA, body=BODY,
    )
    ids = CountingIds()
    first, second = template.build(ids), template.build(ids)
    assert first.top_via.branch != second.top_via.branch
    assert first.call_id != second.call_id and first.from_.tag != second.from_.tag
    given = template.build(ids, cseq=7, call_id_value="cid-1", from_tag="tag-1")
    reparsed = parse_message(bytes(given))
    assert (given.call_id, given.from_.tag, given.cseq.seq) == ("cid-1", "tag-1", 7)
    assert reparsed.top_via == given.top_via and reparsed.cseq == given.cseq
    assert reparsed.uri == given.uri == BOB
    reparsed.check_essentials()


def test_template_request_can_still_be_changed() -> None:
    """A built request is an ordinary one: a header set on it replaces the
    template's and the serialization follows."""
    template = RequestTemplate(
        "PUBLISH", BOB, from_uri=ALICE, to_uri=BOB, transport="udp", host="192.0.2.1",
        port=5060, headers=EXTRA, body=BODY,
    )
    request = template.build(CountingIds())
    request.headers.set("Expires", "0")
    request.headers.add("SIP-If-Match", "etag-1")
    request.body = b""
    again = parse_message(bytes(request))
    assert again.expires == 0 and again.sip_if_match == "etag-1" and again.body == b""
    assert again.header("Content-Length") == "0"
    # The next one is untouched.
    assert template.build(CountingIds()).expires == 3600


def test_template_bytes_follow_every_change_to_the_request() -> None:
    """The serialization a template made is used only while the request is
    as built: a new method, Request-URI, body of the same length or a
    header replaced by one of the same length all show in the bytes."""
    template = RequestTemplate(
        "PUBLISH", BOB, from_uri=ALICE, to_uri=BOB, transport="udp", host="192.0.2.1",
        port=5060, headers=[*EXTRA, ("Content-Length", "999"), ("l", "5")], body=BODY,
    )
    request = template.build(CountingIds())
    built = bytes(request)
    assert built.count(b"Content-Length") == 1 and f"Content-Length: {len(BODY)}".encode() in built
    assert built.endswith(b"\r\n\r\n" + BODY)
    request.body = BODY.upper()
    assert bytes(request).endswith(BODY.upper())
    request.headers.set("Expires", "3601")
    assert b"Expires: 3601\r\n" in bytes(request)
    request.uri_text = "sip:carol@example.org"
    assert bytes(request).startswith(b"PUBLISH sip:carol@example.org SIP/2.0\r\n")
    request.method = "MESSAGE"
    assert bytes(request).startswith(b"MESSAGE sip:carol@example.org SIP/2.0\r\n")
    assert parse_message(bytes(request)).body == BODY.upper()
