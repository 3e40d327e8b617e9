"""summarize(): one line per NOTIFY body, for every type, and never an exception."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pua.bodies import (
    Counts,
    Dialog,
    DialogInfo,
    MessageSummary,
    Person,
    Presence,
    Tuple,
    summarize,
)
from tests.bodies.test_dialog_info import PBX_TERMINATED, RFC_CONFIRMED
from tests.bodies.test_pidf import RFC3863_EXAMPLE
from tests.bodies.test_reginfo import RFC_EXAMPLE as REGINFO_EXAMPLE
from tests.bodies.test_watcherinfo import RFC_EXAMPLE as WATCHERINFO_EXAMPLE
from tests.bodies.test_xml import BILLION_LAUGHS


def test_presence_on_the_phone() -> None:
    """A presence body shows who, the basic status, the note and the activities."""
    body = Presence(
        entity="sip:alice@example.com",
        tuples=(Tuple(id="t", basic="open"),),
        persons=(Person(id="p", activities=("on-the-phone",), notes=("On the phone",)),),
    ).to_bytes()
    assert summarize("application/pidf+xml", body) == 'alice: open "On the phone" (on-the-phone)'


def test_presence_rfc_example() -> None:
    """The RFC 3863 example (one open, one closed tuple) reads as open with the first note."""
    assert summarize("application/pidf+xml", RFC3863_EXAMPLE) == 'someone: open "Don\'t Disturb Please!"'


def test_presence_without_status() -> None:
    """A presence document with no basic status says so."""
    body = Presence(entity="sip:bob@example.com").to_bytes()
    assert summarize("application/pidf+xml", body) == "bob: no basic status"


def test_message_summary() -> None:
    """A message summary shows waiting and the counts per class."""
    body = MessageSummary(waiting=True, counts={"voice-message": Counts(new=2, old=8)}).to_bytes()
    assert summarize("application/simple-message-summary", body) == "messages waiting: yes, voice 2 new / 8 old"


def test_message_summary_urgent_and_no() -> None:
    """Urgent counts are shown when not zero; 'no' is shown as no."""
    body = MessageSummary(
        waiting=False, counts={"fax-message": Counts(new=0, old=1, urgent_old=1)}
    ).to_bytes()
    assert summarize("application/simple-message-summary", body) == (
        "messages waiting: no, fax 0 new / 1 old (0/1 urgent)"
    )


def test_dialog() -> None:
    """A dialog-info body shows the entity's user, each dialog's state and direction."""
    body = DialogInfo(
        entity="sip:3@pbx.example.com", version=1, state="full",
        dialogs=(Dialog(id="d1", state="confirmed", direction="initiator"),),
    ).to_bytes()  # fmt: skip
    assert summarize("application/dialog-info+xml", body) == "dialog 3: confirmed (initiator)"
    assert summarize("application/dialog-info+xml", PBX_TERMINATED) == "dialog 3: terminated (recipient)"
    assert summarize("application/dialog-info+xml", RFC_CONFIRMED) == "dialog alice: confirmed (initiator)"


def test_dialog_idle() -> None:
    """A full dialog-info without dialogs reads as no dialogs."""
    body = DialogInfo(entity="sip:3@pbx", version=0, state="full").to_bytes()
    assert summarize("application/dialog-info+xml", body) == "dialog 3: no dialogs"


def test_reginfo() -> None:
    """A reginfo body shows each AOR, its state and its active contacts."""
    assert summarize("application/reginfo+xml", REGINFO_EXAMPLE) == (
        "sip:user@example.com: active, 1 contact (+1 terminated)"
    )


def test_watcherinfo() -> None:
    """A watcherinfo body counts watchers and names each with its status."""
    assert summarize("application/watcherinfo+xml", WATCHERINFO_EXAMPLE) == (
        "2 watchers: userA active, Mr. Subscriber pending"
    )


def test_content_type_parameters_and_case_are_ignored() -> None:
    """'Application/PIDF+XML; charset=utf-8' is still read as PIDF."""
    body = Presence(entity="sip:bob@example.com", tuples=(Tuple(id="t", basic="closed"),)).to_bytes()
    assert summarize("Application/PIDF+XML; charset=utf-8", body) == "bob: closed"


@pytest.mark.parametrize("content_type", [None, "application/pidf+xml", "text/plain"])
def test_empty_body(content_type: str | None) -> None:
    """An empty body is '(no body)' whatever the type."""
    assert summarize(content_type, b"") == "(no body)"


def test_unknown_type() -> None:
    """A type without a reader shows the type and the size."""
    assert summarize("application/rlmi+xml", b"<list/>") == "application/rlmi+xml, 7 bytes"
    assert summarize(None, b"x") == "no content type, 1 byte"


def test_unparsable_body() -> None:
    """A body that fails to parse is summarized as unreadable with the reason."""
    line = summarize("application/pidf+xml", BILLION_LAUGHS)
    assert line.startswith("application/pidf+xml: unreadable (")
    assert "DOCTYPE" in line


def test_note_is_flattened_to_one_line() -> None:
    """A note with line breaks is shown on one line, shortened when long."""
    body = Presence(
        entity="sip:a@b", tuples=(Tuple(id="t", basic="open", notes=("line one\nline two" + "x" * 100,)),)
    ).to_bytes()
    line = summarize("application/pidf+xml", body)
    assert "\n" not in line
    assert '"line one line two' in line and line.endswith('…"')


TYPES = [
    "application/pidf+xml",
    "application/simple-message-summary",
    "application/dialog-info+xml",
    "application/reginfo+xml",
    "application/watcherinfo+xml",
    None,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(TYPES), st.binary(max_size=300))
def test_never_raises_and_is_one_line(content_type: str | None, body: bytes) -> None:
    """Any bytes under any type give one line of text, never an exception."""
    line = summarize(content_type, body)
    assert isinstance(line, str) and line
    assert "\n" not in line and "\r" not in line
