"""Message summaries (RFC 3842): the RFC's examples, the grammar's tolerance
of case and white space, refusal of garbage, building and round trips."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pua.bodies import Counts, MessageSummary, parse_message_summary
from pua.bodies.message_summary import MAX_SUMMARY_SIZE, MESSAGE_CLASSES
from pua.errors import BodyError

# RFC 3842's example NOTIFY body (the subscriber's voicemail).
RFC_NOTIFY_BODY = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@vmail.example.com\r\n"
    b"Voice-Message: 2/8 (0/2)\r\n"
)

# RFC 3842 §5.2-style body with per-message headers after blank lines.
WITH_HEADERS = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@vmail.example.com\r\n"
    b"Voice-Message: 4/8 (1/2)\r\n"
    b"\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"From: <sip:bob@example.org>\r\n"
    b"Subject: carpool tomorrow?\r\n"
    b"Date: Sun, 09 May 2004 16:23:56 -0500\r\n"
    b"Priority: normal\r\n"
    b"Message-ID: 13775687@mail.example.com\r\n"
    b"\r\n"
    b"To: <sip:alice@example.com>\r\n"
    b"From: <sip:cathy@example.net>\r\n"
    b"Subject: lunch\r\n"
)


def test_rfc_notify_body() -> None:
    """RFC 3842's example body gives waiting, the account and voice 2/8 (0/2)."""
    summary = parse_message_summary(RFC_NOTIFY_BODY)
    assert summary == MessageSummary(
        waiting=True,
        account="sip:alice@vmail.example.com",
        counts={"voice-message": Counts(new=2, old=8, urgent_new=0, urgent_old=2)},
    )


def test_body_with_message_headers() -> None:
    """Header blocks after blank lines are kept per message, in order."""
    summary = parse_message_summary(WITH_HEADERS)
    assert summary.counts["voice-message"] == Counts(new=4, old=8, urgent_new=1, urgent_old=2)
    assert len(summary.headers) == 2
    assert summary.headers[0][2] == ("Subject", "carpool tomorrow?")
    assert summary.headers[0][3] == ("Date", "Sun, 09 May 2004 16:23:56 -0500")
    assert summary.headers[1] == (
        ("To", "<sip:alice@example.com>"),
        ("From", "<sip:cathy@example.net>"),
        ("Subject", "lunch"),
    )


def test_boolean_only_no() -> None:
    """'Messages-Waiting: no' alone is a complete body: not waiting, no counts."""
    summary = parse_message_summary(b"Messages-Waiting: no\r\n")
    assert summary == MessageSummary(waiting=False)
    assert summary.account is None and dict(summary.counts) == {}


def test_case_and_white_space_tolerance() -> None:
    """Names, yes/no and class names are case-insensitive; space is allowed around
    ':', '/' and the parentheses; LF line ends are accepted."""
    body = (
        b"messages-waiting :YES\n"
        b"MESSAGE-ACCOUNT:\tsip:alice@vmail.example.com  \n"
        b"voice-MESSAGE : 3 / 4 ( 1 / 0 )\n"
        b"Fax-Message:0/1\n"
    )
    summary = parse_message_summary(body)
    assert summary.waiting is True
    assert summary.account == "sip:alice@vmail.example.com"
    assert dict(summary.counts) == {
        "voice-message": Counts(new=3, old=4, urgent_new=1),
        "fax-message": Counts(new=0, old=1),
    }


def test_folded_header_value_is_joined() -> None:
    """A folded header line (leading white space) continues the previous value."""
    body = b"Messages-Waiting: yes\r\n\r\nSubject: a long\r\n  subject\r\n"
    assert parse_message_summary(body).headers == ((("Subject", "a long subject"),),)


def test_future_message_class_is_accepted() -> None:
    """A class name ending in -message that RFC 3458 does not list is read (a later registration)."""
    summary = parse_message_summary(b"Messages-Waiting: yes\r\nVideo-Message: 1/0\r\n")
    assert summary.counts["video-message"] == Counts(new=1, old=0)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "empty"),
        (b"\r\n\r\n", "empty"),
        (b"Voice-Message: 1/2\r\n", "first line"),
        (b"Messages-Waiting: maybe\r\n", "yes or no"),
        (b"Messages-Waiting yes\r\n", "Name: value"),
        (b"Messages-Waiting: yes\r\nVoice-Message: 1/x\r\n", "new/old"),
        (b"Messages-Waiting: yes\r\nVoice-Message: 1/2 (3)\r\n", "new/old"),
        (b"Messages-Waiting: yes\r\nVoice-Message: -1/2\r\n", "new/old"),
        (b"Messages-Waiting: yes\r\nVoice-Message: 12345678901/2\r\n", "new/old"),
        (b"Messages-Waiting: yes\r\nVoice-Message: \xd9\xa1/2\r\n", "new/old"),
        (b"Messages-Waiting: yes\r\nVoice-Message: 1/2\r\nvoice-message: 3/4\r\n", "twice"),
        (b"Messages-Waiting: yes\r\nMessages-Waiting: no\r\n", "twice"),
        (b"Messages-Waiting: yes\r\nMessage-Account: a\r\nMessage-Account: b\r\n", "twice"),
        (b"Messages-Waiting: yes\r\nMessage-Account: sip:a b\r\n", "not a URI"),
        (b"Messages-Waiting: yes\r\nSubject: hello\r\n", "blank line"),
        (b"Messages-Waiting: yes\r\n\r\nthis is not a header\r\n", "Name: value"),
        (b"Messages-Waiting: yes\r\n\r\n continuation\r\n", "continuation"),
        (b"Messages-Waiting: yes\x00\r\n", "control"),
        (b"Messages-Waiting: yes\rVoice-Message: 1/2\r\n", "control"),
        (b"Messages-Waiting: \xff\r\n", "UTF-8"),
        (b"<?xml version='1.0'?><presence/>", "Name: value"),
        (b"Messages-Waiting: yes\r\n" + b"X" * MAX_SUMMARY_SIZE, "limit"),
    ],
    ids=[
        "empty", "blank", "no status line", "bad status", "no colon", "letter count",
        "half urgent", "negative", "too many digits", "arabic digit", "class twice",
        "status twice", "account twice", "account with space", "header before blank line",
        "garbage header", "orphan continuation", "NUL", "bare CR", "not UTF-8", "XML", "oversize",
    ],
)  # fmt: skip
def test_garbage_raises_body_error(body: bytes, message: str) -> None:
    """Bodies outside RFC 3842's grammar are refused with a BodyError saying why."""
    with pytest.raises(BodyError, match=message):
        parse_message_summary(body)


def test_build_writes_yes() -> None:
    """A waiting summary is written 'Messages-Waiting: yes' with RFC spelling of classes."""
    summary = MessageSummary(
        waiting=True,
        account="sip:alice@vmail.example.com",
        counts={"voice-message": Counts(new=2, old=8, urgent_old=2)},
    )
    assert summary.to_bytes() == RFC_NOTIFY_BODY


def test_build_writes_no() -> None:
    """A summary that is not waiting is written 'Messages-Waiting: no', even with old messages."""
    summary = MessageSummary(waiting=False, counts={"voice-message": Counts(new=0, old=3)})
    assert summary.to_bytes() == b"Messages-Waiting: no\r\nVoice-Message: 0/3\r\n"
    assert parse_message_summary(summary.to_bytes()).waiting is False


def test_build_omits_zero_urgent_counts() -> None:
    """Urgent counts of 0/0 are left out, as the grammar makes them optional."""
    body = MessageSummary(waiting=True, counts={"fax-message": Counts(new=1, old=0)}).to_bytes()
    assert body == b"Messages-Waiting: yes\r\nFax-Message: 1/0\r\n"


def test_build_writes_header_blocks() -> None:
    """Header blocks are written each after a blank line, and read back the same."""
    summary = parse_message_summary(WITH_HEADERS)
    assert summary.to_bytes() == WITH_HEADERS


def test_class_keys_are_lowered_and_read_only() -> None:
    """Class names given in any case compare equal to parsed ones; counts cannot be changed."""
    summary = MessageSummary(waiting=True, counts={"Voice-Message": Counts(new=1, old=2)})
    assert summary == parse_message_summary(b"Messages-Waiting: yes\r\nVoice-Message: 1/2\r\n")
    with pytest.raises(TypeError):
        summary.counts["fax-message"] = Counts(new=0, old=0)  # type: ignore[index]
    assert hash(summary) == hash(MessageSummary(waiting=True, counts={"voice-message": Counts(new=1, old=2)}))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: MessageSummary(waiting=True, counts={"Subject": Counts(new=1, old=0)}), "message-context-class"),
        (lambda: MessageSummary(waiting=True, counts={"a-message": Counts(new=1, old=0), "A-Message": Counts(new=1, old=0)}), "twice"),
        (lambda: Counts(new=-1, old=0), "non-negative"),
        (lambda: MessageSummary(waiting=True, account="sip:a\r\nX: y").to_bytes(), "account"),
        (lambda: MessageSummary(waiting=True, headers=((("Subject", "a\r\nb"),),)).to_bytes(), "one line"),
        (lambda: MessageSummary(waiting=True, headers=((("Bad Name", "x"),),)).to_bytes(), "token"),
        (lambda: MessageSummary(waiting=True, headers=((),)).to_bytes(), "at least one"),
    ],
    ids=["not a class", "class twice", "negative count", "account injection", "value injection", "bad name", "empty block"],
)  # fmt: skip
def test_builder_refuses_bad_values(make: object, message: str) -> None:
    """Values that would break the body (or inject lines) raise ValueError."""
    with pytest.raises(ValueError, match=message):
        make()  # type: ignore[operator]


# --------------------------------------------------------------- round trip

counts = st.builds(
    Counts,
    new=st.integers(0, 10**9),
    old=st.integers(0, 10**9),
    urgent_new=st.integers(0, 10**9),
    urgent_old=st.integers(0, 10**9),
)
classes = st.sampled_from(sorted(MESSAGE_CLASSES)) | st.from_regex(r"[a-z][a-z0-9]{0,8}-message", fullmatch=True)
header_names = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,12}", fullmatch=True)
header_values = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Co"), exclude_characters="\x00\r\n\x7f"),
    max_size=30,
).filter(lambda v: v == v.strip(" \t") and not any(ord(c) < 0x20 and c != "\t" for c in v))
blocks = st.lists(st.tuples(header_names, header_values), min_size=1, max_size=4).map(tuple)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    waiting=st.booleans(),
    account=st.none() | st.from_regex(r"sips?:[a-z0-9]{1,8}@[a-z0-9.]{1,12}", fullmatch=True),
    by_class=st.dictionaries(classes, counts, max_size=4),
    headers=st.lists(blocks, max_size=3).map(tuple),
)
def test_round_trip(waiting: bool, account: str | None, by_class: dict[str, Counts], headers: tuple) -> None:  # type: ignore[type-arg]
    """Any buildable MessageSummary, written and read back, is equal to itself."""
    summary = MessageSummary(waiting=waiting, account=account, counts=by_class, headers=headers)
    assert parse_message_summary(summary.to_bytes()) == summary
