"""Dialog state documents (RFC 4235): real documents, building, round trips,
and the set_version hook."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pua.bodies import Dialog, DialogInfo, parse_dialog_info
from pua.bodies.dialog_info import (
    DIALOG_DIRECTIONS,
    DIALOG_INFO_NS,
    DIALOG_STATE_EVENTS,
    DIALOG_STATES,
    set_version,
)
from pua.errors import BodyError

# RFC 4235's first example: one early dialog.
RFC_EARLY = b"""<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
             version="1" state="full" entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710"
          local-tag="1928301774" remote-tag="456887766" direction="initiator">
    <state>early</state>
  </dialog>
</dialog-info>
"""

# After RFC 4235's fuller example: a confirmed dialog with duration,
# both participants' identities and targets; the param is spelled "pvalue"
# as in the RFC's example text (its schema says "pval").
RFC_CONFIRMED = b"""<?xml version="1.0"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info"
             version="2" state="partial" entity="sip:alice@example.com">
  <dialog id="as7d900as8" call-id="a84b4c76e66710"
          local-tag="1928301774" remote-tag="456887766" direction="initiator">
    <state event="replaced">confirmed</state>
    <duration>274</duration>
    <local>
      <identity display="Alice">sip:alice@example.com</identity>
      <target uri="sip:alice@pc33.example.com">
        <param pname="+sip.rendering" pvalue="yes"/>
      </target>
      <session-description type="application/sdp">v=0</session-description>
    </local>
    <remote>
      <identity display="Bob">sip:bob@example.org</identity>
      <target uri="sip:bobster@phone21.example.org"/>
    </remote>
  </dialog>
</dialog-info>
"""

# A PBX's busy-lamp NOTIFY for extension 3, a call that ended with a 486.
PBX_TERMINATED = b"""<?xml version="1.0" encoding="UTF-8"?>
<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="3" state="full" entity="sip:3@pbx.example.com">
<dialog id="3" direction="recipient">
<state event="rejected" code="486">terminated</state>
</dialog>
</dialog-info>
"""


def test_rfc_early_example() -> None:
    """RFC 4235's early-dialog example parses to its attributes and state."""
    assert parse_dialog_info(RFC_EARLY) == DialogInfo(
        entity="sip:alice@example.com",
        version=1,
        state="full",
        dialogs=(
            Dialog(
                id="as7d900as8",
                state="early",
                direction="initiator",
                call_id="a84b4c76e66710",
                local_tag="1928301774",
                remote_tag="456887766",
            ),
        ),
    )


def test_rfc_confirmed_example() -> None:
    """The fuller example gives duration, event, identities, targets and the rendering param."""
    info = parse_dialog_info(RFC_CONFIRMED)
    assert info.state == "partial" and info.version == 2
    (dialog,) = info.dialogs
    assert dialog.state == "confirmed"
    assert dialog.event == "replaced"
    assert dialog.duration == 274
    assert (dialog.local_identity, dialog.local_display) == ("sip:alice@example.com", "Alice")
    assert dialog.local_target == "sip:alice@pc33.example.com"
    assert dialog.local_params == (("+sip.rendering", "yes"),)
    assert (dialog.remote_identity, dialog.remote_display) == ("sip:bob@example.org", "Bob")
    assert dialog.remote_target == "sip:bobster@phone21.example.org"
    assert dialog.remote_params == ()


def test_pbx_terminated_with_code() -> None:
    """A terminated dialog carries the state's event and response code."""
    (dialog,) = parse_dialog_info(PBX_TERMINATED).dialogs
    assert (dialog.state, dialog.event, dialog.code, dialog.direction) == (
        "terminated", "rejected", 486, "recipient",
    )  # fmt: skip


def test_empty_full_document_has_no_dialogs() -> None:
    """A full document without dialogs (an idle line) parses to no dialogs."""
    body = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="full" entity="sip:3@pbx"/>'
    assert parse_dialog_info(body).dialogs == ()


def test_builder_writes_pval_and_schema_order() -> None:
    """to_bytes writes state, duration, local, remote in schema order and params as pval."""
    info = parse_dialog_info(RFC_CONFIRMED)
    root = etree.fromstring(info.to_bytes())
    dialog = root[0]
    assert [etree.QName(c).localname for c in dialog] == ["state", "duration", "local", "remote"]
    param = dialog.find(f"{{{DIALOG_INFO_NS}}}local/{{{DIALOG_INFO_NS}}}target/{{{DIALOG_INFO_NS}}}param")
    assert param is not None and param.get("pval") == "yes" and param.get("pvalue") is None
    assert parse_dialog_info(info.to_bytes()) == info


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" state="full" entity="e"/>', "'version'"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="-1" state="full" entity="e"/>', "non-negative"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="some" entity="e"/>', "state"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full"/>', "'entity'"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="e">'
         b"<dialog><state>early</state></dialog></dialog-info>", "'id'"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="e">'
         b'<dialog id="d"/></dialog-info>', "no <state>"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="e">'
         b'<dialog id="d"><state>ringing</state></dialog></dialog-info>', "state"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="e">'
         b'<dialog id="d" direction="sideways"><state>early</state></dialog></dialog-info>', "direction"),
        (b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full" entity="e">'
         b'<dialog id="d"><state code="abc">early</state></dialog></dialog-info>', "code"),
    ],
    ids=["no version", "negative version", "bad state", "no entity", "dialog without id",
         "dialog without state", "unknown dialog state", "bad direction", "bad code"],
)  # fmt: skip
def test_invalid_documents_raise_body_error(body: bytes, message: str) -> None:
    """Documents breaking RFC 4235's schema are refused with a BodyError naming the problem."""
    with pytest.raises(BodyError, match=message):
        parse_dialog_info(body)


def test_builder_refuses_bad_values() -> None:
    """Unknown states, duplicate ids and negative versions raise ValueError."""
    with pytest.raises(ValueError, match="dialog state"):
        DialogInfo(entity="e", version=0, state="full", dialogs=(Dialog(id="d", state="ringing"),)).to_bytes()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unique"):
        DialogInfo(entity="e", version=0, state="full",
                   dialogs=(Dialog(id="d", state="early"), Dialog(id="d", state="early"))).to_bytes()  # fmt: skip
    with pytest.raises(ValueError, match="version"):
        DialogInfo(entity="e", version=-1, state="full").to_bytes()


# ------------------------------------------------------------- set_version


def test_set_version_rewrites_the_root_version() -> None:
    """set_version replaces the root version and keeps everything else."""
    out = set_version(RFC_CONFIRMED, 42)
    assert parse_dialog_info(out) == DialogInfo(
        entity="sip:alice@example.com",
        version=42,
        state="partial",
        dialogs=parse_dialog_info(RFC_CONFIRMED).dialogs,
    )
    # The element the model does not keep is still there.
    assert b"session-description" in out


def test_set_version_adds_a_missing_version() -> None:
    """A root without a version attribute gets one."""
    body = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" state="full" entity="e"/>'
    assert parse_dialog_info(set_version(body, 7)).version == 7


def test_set_version_overwrites_a_garbage_version() -> None:
    """A version that is not a number is replaced, not an error."""
    body = b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="x" state="full" entity="e"/>'
    assert parse_dialog_info(set_version(body, 0)).version == 0


def test_set_version_is_deterministic() -> None:
    """The same body and version give the same bytes."""
    assert set_version(RFC_EARLY, 5) == set_version(RFC_EARLY, 5)
    assert set_version(RFC_EARLY, 5) != set_version(RFC_EARLY, 6)


def test_set_version_refuses_negative_version() -> None:
    """A negative version is the caller's bug: ValueError."""
    with pytest.raises(ValueError, match="version"):
        set_version(RFC_EARLY, -1)


# --------------------------------------------------------------- round trip

_attr_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=12
).map(str.strip).filter(bool)
_maybe = st.none() | _attr_text
_params = st.lists(st.tuples(_attr_text, _attr_text), max_size=2).map(tuple)


@st.composite
def dialogs(draw: st.DrawFn, id_: str) -> Dialog:
    local_identity, remote_identity = draw(_maybe), draw(_maybe)
    local_target, remote_target = draw(_maybe), draw(_maybe)
    return Dialog(
        id=id_,
        state=draw(st.sampled_from(DIALOG_STATES)),
        direction=draw(st.none() | st.sampled_from(DIALOG_DIRECTIONS)),
        call_id=draw(_maybe),
        local_tag=draw(_maybe),
        remote_tag=draw(_maybe),
        event=draw(st.none() | st.sampled_from(DIALOG_STATE_EVENTS)),
        code=draw(st.none() | st.integers(100, 699)),
        duration=draw(st.none() | st.integers(0, 2**40)),
        local_identity=local_identity,
        local_display=None if local_identity is None else draw(_maybe),
        local_target=local_target,
        local_params=() if local_target is None else draw(_params),
        remote_identity=remote_identity,
        remote_display=None if remote_identity is None else draw(_maybe),
        remote_target=remote_target,
        remote_params=() if remote_target is None else draw(_params),
    )


@st.composite
def dialog_infos(draw: st.DrawFn) -> DialogInfo:
    ids = draw(st.lists(_attr_text, unique=True, max_size=3))
    return DialogInfo(
        entity=draw(_attr_text),
        version=draw(st.integers(0, 2**64 - 1)),
        state=draw(st.sampled_from(["full", "partial"])),
        dialogs=tuple(draw(dialogs(i)) for i in ids),
    )


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dialog_infos())
def test_round_trip(info: DialogInfo) -> None:
    """Any buildable DialogInfo, written and read back, is equal to itself."""
    assert parse_dialog_info(info.to_bytes()) == info
