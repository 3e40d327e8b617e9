"""The registrar's rules (RFC 3261 §10.3 steps 6-8) on bindings, without IO."""

from __future__ import annotations

import pytest

from pua.adapters.registrations import BindingTable, read_register
from pua.adapters.registrations.bindings import Binding
from pua.errors import RemoteProtocolError
from pua.sip import parse_message
from pua.sip.message import Request

AOR = "sip:alice@example.com"
NOW = 1_700_000_000.0


def register(contacts: list[str], *, expires: str | None = None, call_id: str = "c1",
             cseq: int = 1, to: str = "<sip:alice@EXAMPLE.com>;tag=x") -> Request:
    lines = ["REGISTER sip:example.com SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKa",
             f"From: {to}", f"To: {to}", f"Call-ID: {call_id}", f"CSeq: {cseq} REGISTER"]
    lines += [f"Contact: {c}" for c in contacts]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    message = parse_message(("\r\n".join([*lines, "Content-Length: 0"]) + "\r\n\r\n").encode())
    assert isinstance(message, Request)
    return message


def test_expires_from_parameter_then_header_then_default() -> None:
    table = BindingTable(default_expires=900)
    changes = table.apply(read_register(register(
        ["<sip:a@192.0.2.5>;expires=30", "<sip:b@192.0.2.5>;q=0.5"], expires="60")), NOW)
    assert [(c.binding.contact, c.binding.expires_at - NOW, c.event) for c in changes] == [
        ("sip:a@192.0.2.5", 30, "registered"), ("sip:b@192.0.2.5", 60, "registered")]
    assert table.bindings(AOR)[1].q == "0.5"
    changes = table.apply(read_register(register(["<sip:c@192.0.2.5>"], call_id="c2")), NOW)
    assert changes[0].binding.expires_at - NOW == 900
    assert [b.aor for b in table] == [AOR] * 3  # the host is lower-cased in the key


def test_order_per_binding_and_all_or_nothing() -> None:
    table = BindingTable()
    table.apply(read_register(register(["<sip:a@192.0.2.5>"], expires="60", cseq=5)), NOW)
    # an older CSeq of the same Call-ID: refused, nothing applied (b is not added)
    with pytest.raises(RemoteProtocolError) as refused:
        table.apply(read_register(register(["<sip:b@192.0.2.5>", "<sip:a@192.0.2.5>"],
                                           expires="60", cseq=5)), NOW)
    assert refused.value.status == 500
    assert [b.contact for b in table.bindings(AOR)] == ["sip:a@192.0.2.5"]
    # another Call-ID may take the binding over (a phone that restarted)
    [change] = table.apply(read_register(register(["<sip:a@192.0.2.5>"], expires="10",
                                                  call_id="c9", cseq=1)), NOW)
    assert (change.event, change.moved_from, change.binding.call_id) == ("shortened", "c1", "c9")


def test_wildcard_needs_expires_zero_and_respects_order() -> None:
    table = BindingTable()
    table.apply(read_register(register(["<sip:a@192.0.2.5>", "<sip:b@192.0.2.5>"],
                                       expires="60", cseq=3)), NOW)
    with pytest.raises(RemoteProtocolError):
        read_register(register(["*"], expires="60"))
    with pytest.raises(RemoteProtocolError):
        read_register(register(["*", "<sip:a@192.0.2.5>"], expires="0"))
    with pytest.raises(RemoteProtocolError):
        table.apply(read_register(register(["*"], expires="0", cseq=3)), NOW)
    assert len(table) == 2
    changes = table.apply(read_register(register(["*"], expires="0", cseq=4)), NOW)
    assert {c.event for c in changes} == {"unregistered"} and len(table) == 0


def test_limits_and_malformed_values() -> None:
    table = BindingTable(max_contacts=3)
    many = [f"<sip:p{n}@192.0.2.5>" for n in range(4)]
    with pytest.raises(RemoteProtocolError) as refused:
        table.apply(read_register(register(many, expires="60")), NOW)
    assert refused.value.status == 403 and len(table) == 0
    for contacts, expires in ((["<sip:a@h>;expires=-1"], None), (["<sip:a@h>"], "4294967296"),
                              (["<sip:a@h>;q=2"], None), (["<tel:+123>"], None)):
        with pytest.raises(RemoteProtocolError) as bad:
            read_register(register(contacts, expires=expires))
        assert bad.value.status == 400
    with pytest.raises(RemoteProtocolError):
        read_register(register(["<sip:a@h>"], to="<sip:example.com>"))  # no user: no AOR


def test_expiry_and_restore() -> None:
    table = BindingTable()
    table.apply(read_register(register(["<sip:a@192.0.2.5>;expires=10",
                                        "<sip:b@192.0.2.5>;expires=100"])), NOW)
    assert table.next_expiry() == NOW + 10
    assert table.expire(NOW + 9) == []
    [gone] = table.expire(NOW + 10)
    assert (gone.binding.contact, gone.event, gone.ended) == ("sip:a@192.0.2.5", "expired", True)
    rows = [b.as_row() for b in table]
    again = BindingTable()
    ended = again.restore([Binding.from_row(r) for r in rows], NOW + 200)
    assert [c.event for c in ended] == ["expired"] and len(again) == 0
    again = BindingTable()
    assert again.restore([Binding.from_row(r) for r in rows], NOW + 50) == []
    assert again.next_expiry() == NOW + 100


def test_reg_state_from_a_registrar() -> None:
    from pua.adapters.registrations.bindings import RegState
    from pua.sip.uri import parse_uri

    def state(uri: str, active: bool = True, expires: int = 60, event: str = "registered",
              call_id: str = "k1") -> RegState:
        parsed = parse_uri(uri)
        assert not isinstance(parsed, str)
        return RegState(parsed, active, event, expires, call_id, 1)  # type: ignore[arg-type]

    table = BindingTable(max_contacts=2)
    changes = table.apply_state([state("sip:a@h"), state("sip:b@h")], AOR, True, NOW)
    assert [c.event for c in changes] == ["registered", "registered"]
    # the same state again changes nothing; a new expiry refreshes
    assert table.apply_state([state("sip:a@h"), state("sip:b@h")], AOR, True, NOW) == []
    [change] = table.apply_state([state("sip:a@h", expires=600)], AOR, False, NOW)
    assert change.event == "refreshed" and len(table) == 2
    # terminated with its reason; a full state without b ends b as deactivated
    changes = table.apply_state([state("sip:a@h", active=False, event="expired")], AOR, True, NOW)
    assert sorted((c.binding.contact, c.event) for c in changes) == [
        ("sip:a@h", "expired"), ("sip:b@h", "deactivated")]
    assert len(table) == 0
    # no more than max_contacts are kept
    many = [state(f"sip:p{n}@h") for n in range(5)]
    assert len(table.apply_state(many, AOR, True, NOW)) == 2 and len(table) == 2


def test_reginfo_versions_partial_after_a_gap_asks_for_full_state() -> None:
    """A partial reginfo with a version gap is not applied: the reg
    subscription is refreshed for the full state; full documents always
    apply, partial ones only in order."""
    import asyncio

    from pua.adapters.registrations import Registrations, RegistrationSettings
    from pua.bodies import Contact, RegInfo, Registration
    from pua.core import RecordKey
    from pua.runtime import PresenceRuntime

    def document(version: int, state: str, contacts: list[str]) -> RegInfo:
        return RegInfo(version=version, state=state, registrations=(Registration(
            aor=AOR, id="r1", state="active", contacts=tuple(
                Contact(id=c, state="active", event="registered", uri=c, expires=60)
                for c in contacts)),))  # type: ignore[arg-type]

    async def run() -> tuple[list[RecordKey], list[str]]:
        runtime = PresenceRuntime()
        adapter = Registrations(runtime, RegistrationSettings(usrloc=False))
        refreshed: list[RecordKey] = []
        runtime.refresh = lambda key: refreshed.append(key) or True  # type: ignore[method-assign]
        key = RecordKey(AOR, 64, "", 1, "sip:pua@example.com")
        adapter._watching[key] = -1
        adapter._on_reginfo(key, document(0, "full", ["sip:a@h"]))
        adapter._on_reginfo(key, document(1, "partial", ["sip:b@h"]))
        adapter._on_reginfo(key, document(1, "partial", ["sip:c@h"]))  # a repeat: ignored
        adapter._on_reginfo(key, document(5, "partial", ["sip:d@h"]))  # a gap
        assert adapter._watching[key] == -1
        adapter._on_reginfo(key, document(6, "full", ["sip:a@h", "sip:b@h"]))
        return refreshed, sorted(b.contact for b in adapter.table)

    refreshed, contacts = asyncio.run(run())
    assert len(refreshed) == 1
    assert contacts == ["sip:a@h", "sip:b@h"]
