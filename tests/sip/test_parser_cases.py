"""The case table drives parser, serializer and stream framer alike."""

from __future__ import annotations

import pytest

from pua.errors import MessageTooLarge, RemoteProtocolError
from pua.sip import KeepAlive, Request, Response, StreamFramer, parse_message
from pua.sip.parser import MAX_HEADERS, MAX_LINE_LENGTH

from .cases import CASES, Case

ids = [c.name for c in CASES]


def _build(case: Case) -> Request | Response:
    if isinstance(case.start[0], int):
        return Response(int(case.start[0]), str(case.start[1]), case.headers, case.body)
    return Request(str(case.start[0]), str(case.start[1]), case.headers, case.body)


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_parse(case: Case) -> None:
    """The wire bytes parse to the start line, headers and body of the table."""
    message = parse_message(case.wire)
    assert message == _build(case)
    assert message.headers.items() == case.headers
    assert message.body == case.body
    message.validate()


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_serialize(case: Case) -> None:
    """Building the message from the table writes the expected bytes."""
    assert bytes(_build(case)) == case.written


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_typed_values(case: Case) -> None:
    """Typed headers read from the parsed message give the table's values."""
    m = parse_message(case.wire)
    for key, want in case.typed.items():
        if key == "cseq":
            assert (m.cseq.seq, m.cseq.method) == want
        elif key == "expires":
            assert m.expires == want
        elif key == "min_expires":
            assert m.min_expires == want
        elif key == "event":
            assert m.event is not None and m.event.name == want
        elif key == "etag":
            assert m.sip_etag == want
        elif key == "branch":
            assert m.top_via.branch == want
        elif key == "vias":
            assert len(m.vias) == want
        elif key == "substate":
            state = m.subscription_state
            assert state is not None and (state.state, state.expires) == want
        elif key == "allow_events":
            assert m.headers.get_all("u") == want
        else:  # pragma: no cover - a typo in the table
            raise AssertionError(f"unknown typed key {key}")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_framer_whole_and_byte_by_byte(case: Case) -> None:
    """The framer yields the same message fed at once or one byte at a time."""
    expected = parse_message(case.written)
    assert StreamFramer().feed(case.written) == [expected]
    framer = StreamFramer()
    out = []
    for i in range(len(case.written)):
        out.extend(framer.feed(case.written[i : i + 1]))
    assert out == [expected]
    assert framer.buffered == 0


def test_framer_several_messages_in_one_read_with_keepalives() -> None:
    """Several messages and CRLF keep-alives in one read come out in order."""
    stream = b"\r\n\r\n" + CASES[0].written + b"\r\n" + CASES[1].written + b"\r\n\r\n" + CASES[2].written[:50]
    framer = StreamFramer()
    out = framer.feed(stream)
    assert [type(x) for x in out] == [KeepAlive, Request, Response, KeepAlive]
    assert framer.buffered == 50
    rest = framer.feed(CASES[2].written[50:])
    assert rest == [parse_message(CASES[2].written)]


def test_framer_requires_content_length() -> None:
    """On a stream a message without Content-Length cannot be framed (§18.3)."""
    data = CASES[0].written.replace(f"Content-Length: {len(CASES[0].body)}\r\n".encode(), b"")
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(data)


def test_framer_rejects_endless_header_section() -> None:
    """A stream that never ends its header section is cut off at the limit."""
    framer = StreamFramer()
    with pytest.raises(MessageTooLarge):
        for _ in range(100):
            framer.feed(b"X-Junk: " + b"a" * 1000 + b"\r\n")


def test_datagram_body_cut_to_content_length() -> None:
    """Bytes after Content-Length in a datagram are not part of the body (§18.3)."""
    m = parse_message(CASES[0].wire + b"trailing junk")
    assert m.body == CASES[0].body


def test_datagram_content_length_beyond_body_is_400() -> None:
    """A Content-Length larger than the datagram's body is a 400."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(CASES[0].wire[:-5])
    assert info.value.status == 400


def test_limits_are_enforced_with_513() -> None:
    """Too many headers or an over-long line give 513 Message Too Large."""
    many = CASES[1].wire.replace(b"Content-Length: 0", b"X: y\r\n" * (MAX_HEADERS + 1) + b"Content-Length: 0")
    with pytest.raises(MessageTooLarge) as info:
        parse_message(many)
    assert info.value.status == 513
    long_line = CASES[1].wire.replace(b"Expires: 3600", b"Subject: " + b"a" * MAX_LINE_LENGTH)
    with pytest.raises(MessageTooLarge):
        parse_message(long_line)
    with pytest.raises(MessageTooLarge):
        parse_message(b"x" * 70_000)


def test_header_access_is_case_insensitive_and_compact() -> None:
    """Compact and long names, any case, find the same header."""
    m = parse_message(CASES[2].wire)
    assert m.headers.get("CALL-ID") == m.headers.get("i") == "sub-1@example.com"
    assert m.call_id == "sub-1@example.com"
    assert m.contacts[0].uri.param("transport") == "udp"
    assert m.from_.display_name == "Presence Server"
