"""Calls as dialog state (pua.adapters.dialogs.calls): what each event does
to a presentity's document, with no IO."""

from __future__ import annotations

from typing import Any

import pytest

from pua.adapters.dialogs.calls import (
    CallEvent,
    DialogOptions,
    PresentityCalls,
    apply,
    expire,
    restore,
    sides,
)
from pua.bodies import parse_dialog_info
from pua.errors import RemoteProtocolError

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


def event(state: str, call_id: str = "c1", **more: Any) -> CallEvent:
    values = {"call_id": call_id, "from_tag": "ft1", "caller": ALICE, "callee": BOB,
              "state": state, **more}
    return CallEvent.from_values(values)


def feed(calls: PresentityCalls, side: str, *events: CallEvent, now: float = 1000.0,
         options: DialogOptions | None = None) -> list[bool]:
    opts = options or DialogOptions()
    peer = BOB if side == "caller" else ALICE
    return [apply(calls, side, peer, e, now + i, opts) for i, e in enumerate(events)]  # type: ignore[arg-type]


def test_an_event_is_checked_field_by_field() -> None:
    good = event("early", to_tag="tt", local_target="sip:alice@10.0.0.1:5060",
                 remote_target="<sip:bob@10.0.0.2>", lifetime=60)
    assert good.caller == ALICE and good.remote_target == "sip:bob@10.0.0.2"
    for bad, word in [
        ({"state": "ringing"}, "state"),
        ({"caller": "alice"}, "caller"),
        ({"callee": "tel:+123"}, "callee"),
        ({"call_id": ""}, "call_id"),
        ({"call_id": "a b"}, "call_id"),
        ({"lifetime": 0}, "lifetime"),
        ({"lifetime": True}, "lifetime"),
        ({"direction": "outbound"}, "direction"),
        ({"reason": "hangup"}, "reason"),
        ({"code": 99}, "code"),
        ({"local_target": "not a uri"}, "local_target"),
        ({"colour": "red"}, "colour"),
    ]:
        values = {"call_id": "c1", "from_tag": "f", "caller": ALICE, "callee": BOB,
                  "state": "trying", **bad}
        with pytest.raises(RemoteProtocolError) as caught:
            CallEvent.from_values(values)
        assert word in str(caught.value) and caught.value.status == 400


def test_states_move_forward_only_and_terminated_is_final() -> None:
    calls = PresentityCalls(uri=ALICE, id="DIALOG_PUBLISH.c1")
    changed = feed(calls, "caller", event("trying"), event("early", to_tag="t"),
                   event("confirmed", to_tag="t"), event("early", to_tag="t"),
                   event("terminated"), event("confirmed"))
    assert changed == [True, True, True, False, True, False]
    (leg,) = calls.legs.values()
    assert leg.state == "terminated" and leg.to_tag == "t"


def test_two_calls_are_two_dialogs_of_one_document_with_growing_versions() -> None:
    options = DialogOptions()
    calls = PresentityCalls(uri=BOB, id="DIALOG_PUBLISH.c1")
    feed(calls, "callee", event("early", to_tag="t1", remote_target="sip:bob@10.0.0.2"))
    first = calls.document(1000.0, options)
    feed(calls, "callee", event("confirmed", call_id="c2", to_tag="t2"))
    second = calls.document(1001.0, options)
    assert second.version == first.version + 1
    parsed = parse_dialog_info(second.to_bytes())
    assert parsed.entity == BOB and parsed.state == "full"
    states = {d.call_id: (d.state, d.direction, d.local_tag, d.remote_tag) for d in parsed.dialogs}
    assert states == {"c1": ("early", "recipient", "t1", "ft1"),
                      "c2": ("confirmed", "recipient", "t2", "ft1")}
    (early,) = [d for d in parsed.dialogs if d.call_id == "c1"]
    # the callee's own Contact is its local target; the caller its remote identity
    assert early.local_target == "sip:bob@10.0.0.2" and early.remote_identity == ALICE


def test_options_shape_the_document() -> None:
    calls = PresentityCalls(uri=ALICE, id="x")
    feed(calls, "caller", event("early", to_tag="t1"))
    bare = DialogOptions(include_tags=False, include_localremote=False, include_callid=False,
                         caller_confirmed=True)
    (dialog,) = calls.document(1000.0, bare).dialogs
    assert dialog.state == "confirmed"  # caller_confirmed
    assert (dialog.local_tag, dialog.call_id, dialog.local_identity) == (None, None, None)


def test_sides_follow_publish_to_direction_domains_and_callee_trying() -> None:
    def who(e: CallEvent, **options: Any) -> list[str]:
        return [side for side, _, _ in sides(e, DialogOptions(**options))]

    assert who(event("early")) == ["caller", "callee"]
    assert who(event("early"), publish_to="callee") == ["callee"]
    assert who(event("early", direction="initiator")) == ["caller"]
    other = event("early", callee="sip:carol@elsewhere.net")
    assert who(other, local_domains=("example.com",)) == ["caller"]
    # the callee gets trying only with callee_trying
    calls = PresentityCalls(uri=BOB, id="x")
    assert feed(calls, "callee", event("trying")) == [False] and not calls.legs
    assert feed(calls, "callee", event("trying"),
                options=DialogOptions(callee_trying=True)) == [True]


def test_lifetimes_expires_and_the_end_of_a_call() -> None:
    options = DialogOptions(terminated_expires=10)
    calls = PresentityCalls(uri=ALICE, id="x")
    feed(calls, "caller", event("confirmed", lifetime=120), now=1000.0, options=options)
    assert calls.expires(1000.0, options) == 120
    assert not expire(calls, 1100.0)
    assert expire(calls, 1120.0)
    (leg,) = calls.legs.values()
    assert (leg.state, leg.reason) == ("terminated", "timeout")
    assert calls.expires(1120.0, options) == 10 and not calls.live()
    calls.forget_ended(1129.0, options)
    assert calls.legs
    calls.forget_ended(1130.0, options)
    assert not calls.legs
    # override_lifetime wins over the event's
    other = PresentityCalls(uri=ALICE, id="y")
    feed(other, "caller", event("confirmed", lifetime=120), now=0.0,
         options=DialogOptions(override_lifetime=30))
    assert other.expires(0.0, options) == 30


def test_calls_come_back_from_a_stored_document() -> None:
    options = DialogOptions()
    calls = PresentityCalls(uri=ALICE, id="DIALOG_PUBLISH.c1")
    feed(calls, "caller", event("confirmed", to_tag="t1", local_target="sip:alice@10.0.0.1"))
    feed(calls, "caller", event("early", call_id="c2", to_tag="t2"))
    stored = calls.document(1000.0, options).to_bytes()
    back = restore(ALICE, "DIALOG_PUBLISH.c1", parse_dialog_info(stored), 5000.0, 1000.0)
    assert back.version == calls.version
    assert {(k, leg.state, leg.to_tag) for k, leg in back.legs.items()} == {
        (("c1", "ft1", "caller"), "confirmed", "t1"), (("c2", "ft1", "caller"), "early", "t2")}
    # an event after the restart moves the restored call on, in the same document
    assert feed(back, "caller", event("terminated", call_id="c2")) == [True]
    assert back.document(1001.0, options).version == calls.version + 1
