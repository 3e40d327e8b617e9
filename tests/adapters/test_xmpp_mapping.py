"""The XMPP gateway's pure parts: addresses both ways, presence both ways,
and the facts it stores."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pua.adapters.xmpp import AddressError, Addresses, XmppPresence, from_pidf, to_pidf
from pua.adapters.xmpp.addresses import check_separator, escape_localpart, unescape_localpart
from pua.adapters.xmpp.presence import priority_of, tuple_id
from pua.adapters.xmpp.state import GatewayState
from pua.bodies import parse_pidf
from pua.bodies.pidf import Person, Presence, Tuple

GW = Addresses("sip.example.com", "xmpp.example.com")


def test_a_sip_user_is_a_jid_of_the_component_and_back() -> None:
    assert GW.sip_user_jid("sip:alice@example.com") == "alice*example.com@sip.example.com"
    assert GW.sip_user_uri("alice*example.com@sip.example.com") == "sip:alice@example.com"
    # a resource is dropped; sips: maps like sip:
    assert GW.sip_user_uri("alice*example.com@sip.example.com/phone") == "sip:alice@example.com"
    assert GW.sip_user_jid("sips:alice@Example.COM;transport=tcp") == (
        "alice*example.com@sip.example.com"
    )


def test_an_xmpp_user_is_a_sip_address_of_the_gateway_domain_and_back() -> None:
    assert GW.xmpp_user_uri("bob@jabber.example.org/laptop") == (
        "sip:bob*jabber.example.org@xmpp.example.com"
    )
    assert GW.xmpp_user_jid("sip:bob*jabber.example.org@xmpp.example.com") == (
        "bob@jabber.example.org"
    )
    assert GW.is_xmpp_user_uri("sip:bob*jabber.example.org@xmpp.example.com")
    assert not GW.is_xmpp_user_uri("sip:alice@example.com")


def test_what_one_side_forbids_is_escaped_for_it() -> None:
    # '@' and '/' in a SIP user part (escaped there) are XEP-0106 escapes in a JID
    jid = GW.sip_user_jid("sip:john%40work/desk@example.com")
    assert jid == r"john\40work\2fdesk*example.com@sip.example.com"
    assert GW.sip_user_uri(jid) == "sip:john%40work/desk@example.com"
    # a JID localpart with characters SIP must escape (%, #, non-ASCII)
    uri = GW.xmpp_user_uri("zoë#1%@jabber.org")
    assert uri == "sip:zo%C3%AB%231%25*jabber.org@xmpp.example.com"
    assert GW.xmpp_user_jid(uri) == "zoë#1%@jabber.org"


def test_a_user_part_holding_the_separator_maps_back_whole() -> None:
    # Kamailio splits at the first separator; the domain never holds one
    jid = GW.sip_user_jid("sip:a*b@example.com")
    assert jid == "a*b*example.com@sip.example.com"
    assert GW.sip_user_uri(jid) == "sip:a*b@example.com"
    assert GW.xmpp_user_jid(GW.xmpp_user_uri("x*y@jabber.org")) == "x*y@jabber.org"


@pytest.mark.parametrize(
    ("call", "address", "condition", "status"),
    [
        ("sip_user_uri", "alice@sip.example.com", "jid-malformed", 404),  # no separator
        ("sip_user_uri", "sip.example.com", "jid-malformed", 400),  # the gateway itself
        ("sip_user_uri", "alice*example.com@elsewhere.org", "jid-malformed", 404),
        ("sip_user_uri", "alice*bad_domain!@sip.example.com", "jid-malformed", 400),
        ("xmpp_user_uri", "jabber.org", "jid-malformed", 400),  # a server
        ("xmpp_user_uri", "alice*example.com@sip.example.com", "jid-malformed", 404),
        ("xmpp_user_uri", "a@b@c", "jid-malformed", 400),
        ("sip_user_jid", "sip:example.com", "jid-malformed", 400),  # no user
        ("sip_user_jid", "tel:+123", "jid-malformed", 400),
        ("sip_user_jid", "sip:bob*jabber.org@xmpp.example.com", "jid-malformed", 400),
        ("xmpp_user_jid", "sip:bob@example.com", "jid-malformed", 404),
        ("xmpp_user_jid", "sip:bob@xmpp.example.com", "jid-malformed", 404),
    ],
)
def test_what_cannot_be_mapped_is_refused_clearly(
    call: str, address: str, condition: str, status: int
) -> None:
    with pytest.raises(AddressError) as caught:
        getattr(GW, call)(address)
    assert caught.value.condition == condition
    assert caught.value.status == status
    assert address.split("@", maxsplit=1)[0][:5] in str(caught.value)


def test_the_separator_is_one_character_that_nothing_else_uses() -> None:
    for good in "*!~+=$,;?#":
        assert check_separator(good) == good
    for bad in ("", "**", "a", "1", ".", "-", "_", "@", "/", ":", "%", " ", "é"):
        with pytest.raises(ValueError, match="cannot separate"):
            check_separator(bad)
    assert Addresses("c.org", "g.org", "!").sip_user_jid("sip:a@b.org") == "a!b.org@c.org"


_USER = st.text(
    alphabet=st.characters(codec="utf-8", categories=("L", "N", "P", "S"), exclude_characters="\\"),
    min_size=1,
    max_size=20,
)


@given(user=_USER)
def test_any_sip_user_goes_there_and_back(user: str) -> None:
    from urllib.parse import quote

    uri = f"sip:{quote(user, safe='')}@example.com"
    try:
        jid = GW.sip_user_jid(uri)
    except AddressError:
        return  # a localpart the JID rules refuse (stringprep): refused, not garbled
    back = GW.sip_user_uri(jid)
    assert GW.sip_user_jid(back) == jid


def test_escaping_is_undone_exactly() -> None:
    text = "a b\"c&d'e/f:g<h>i@j\\k"
    assert unescape_localpart(escape_localpart(text)) == text
    assert unescape_localpart(r"no\escape\zz") == r"no\escape\zz"


# -- presence ------------------------------------------------------------------
URI = "sip:bob*jabber.org@xmpp.example.com"


def test_each_resource_is_a_tuple_and_the_leading_one_gives_the_activities() -> None:
    doc = to_pidf(
        URI,
        {
            "laptop": XmppPresence("away", "at lunch", 5),
            "phone": XmppPresence("dnd", "in a meeting", 10),
        },
    )
    back = parse_pidf(doc.to_bytes())
    assert back.entity == URI
    assert {t.id for t in back.tuples} == {tuple_id("laptop"), tuple_id("phone")}
    assert all(t.basic == "open" for t in back.tuples)
    notes = {t.id: t.notes for t in back.tuples}
    assert notes[tuple_id("laptop")] == ("at lunch",)
    assert back.activities == ("busy",)  # phone has the higher priority
    assert back.persons[0].notes == ("in a meeting",)
    assert {t.priority for t in back.tuples} == {priority_of(5), priority_of(10)}


@pytest.mark.parametrize(
    ("show", "activities"),
    [(None, ()), ("away", ("away",)), ("xa", ("away", "extended away")),
     ("dnd", ("busy",)), ("chat", ("chat",))],
)  # fmt: skip
def test_show_becomes_rpid_and_comes_back(show: str | None, activities: tuple[str, ...]) -> None:
    doc = parse_pidf(to_pidf(URI, {"r": XmppPresence(show, "hi")}).to_bytes())
    assert doc.activities == activities
    assert from_pidf(doc) == XmppPresence(show, "hi")


def test_priorities_scale_into_pidf() -> None:
    assert priority_of(-5) == 0.0
    assert priority_of(0) == 0.0
    assert priority_of(127) == 1.0
    assert priority_of(64) == 0.504


def test_no_resource_has_no_document() -> None:
    with pytest.raises(ValueError, match="no document"):
        to_pidf(URI, {})


def sip_doc(basic: str | None, activities: tuple[str, ...] = (), notes: tuple[str, ...] = (),
            tuple_notes: tuple[str, ...] = ()) -> Presence:
    persons = (Person(id="p1", activities=activities, notes=notes),) if activities or notes else ()
    return Presence(entity="sip:alice@example.com",
                    tuples=(Tuple(id="t1", basic=basic, notes=tuple_notes),),  # type: ignore[arg-type]
                    persons=persons)  # fmt: skip


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (sip_doc("closed", ("away",), ("gone",)), None),
        (sip_doc(None), None),
        (sip_doc("open"), XmppPresence()),
        (sip_doc("open", tuple_notes=("Online",)), XmppPresence(None, "Online")),
        (sip_doc("open", ("on-the-phone",), ("call",)), XmppPresence("dnd", "call")),
        (sip_doc("open", ("meeting", "away")), XmppPresence("dnd")),
        (sip_doc("open", ("vacation",)), XmppPresence("xa")),
        (sip_doc("open", ("breakfast",)), XmppPresence("away")),
        (sip_doc("open", ("unknown",)), XmppPresence()),
        # publishers without RPID: Kamailio's pua_xmpp notes
        (sip_doc("open", tuple_notes=("Away",)), XmppPresence("away", "Away")),
        (sip_doc("open", tuple_notes=("Busy (DND)",)), XmppPresence("dnd", "Busy (DND)")),
        (sip_doc("open", tuple_notes=("On the phone",)), XmppPresence("dnd", "On the phone")),
    ],
)
def test_a_sip_users_document_becomes_one_xmpp_presence(
    doc: Presence, expected: XmppPresence | None
) -> None:
    assert from_pidf(doc) == expected


# -- stored facts --------------------------------------------------------------
def test_the_facts_go_to_the_store_and_come_back() -> None:
    state = GatewayState()
    assert state.add_user("bob@jabber.org")
    assert not state.add_user("bob@jabber.org")
    assert state.set_resource("bob@jabber.org", "laptop", XmppPresence("away", "x", 3))
    assert not state.set_resource("bob@jabber.org", "laptop", XmppPresence("away", "x", 3))
    assert state.set_resource("bob@jabber.org", "phone", XmppPresence())
    state.set_sip_presence("sip:alice@example.com", XmppPresence("dnd", "busy"))
    state.set_sip_presence("sip:carol@example.com", None)
    assert state.add_watcher("bob@jabber.org", "sip:alice@example.com")
    state.set_approved("bob@jabber.org", "alice*example.com@sip.example.com", True)
    rows = {k: v for k, v in state.take_changes().items() if v is not None}
    assert state.pending == 0

    back = GatewayState()
    assert back.load((kind, name, value) for (kind, name), value in rows.items()) == 0
    assert back.users == {"bob@jabber.org"}
    assert back.resources == state.resources
    assert back.sip_presence == state.sip_presence
    assert back.watchers == state.watchers
    assert list(back.approvals()) == [("bob@jabber.org", "alice*example.com@sip.example.com")]
    assert back.pending == 0


def test_what_goes_away_is_deleted_from_the_store() -> None:
    state = GatewayState()
    state.set_resource("bob@jabber.org", "laptop", XmppPresence())
    state.add_watcher("bob@jabber.org", "sip:alice@example.com")
    first = state.take_changes()
    assert state.set_resource("bob@jabber.org", "laptop", None)
    state.remove_watcher("bob@jabber.org", "sip:alice@example.com")
    gone = state.take_changes()
    assert set(gone) == set(first) and all(v is None for v in gone.values())
    assert state.resources == {} and state.watchers == {}
    assert not state.clear_resources("bob@jabber.org")


def test_unreadable_stored_facts_are_skipped_and_counted() -> None:
    state = GatewayState()
    rows = [("user", "n1", '{"jid": "bob@jabber.org"}'), ("resource", "n2", "{not json"),
            ("sip", "n3", '{"uri": "sip:a@b", "presence": {"show": "sleepy"}}'),
            ("nonsense", "n4", "{}")]  # fmt: skip
    assert state.load(rows) == 3
    assert state.users == {"bob@jabber.org"}


def test_changes_the_store_refused_are_written_with_the_next() -> None:
    state = GatewayState()
    state.add_user("a@b.org")
    taken = state.take_changes()
    state.add_user("c@d.org")
    state.give_back(taken)
    assert state.pending == 2


# -- stanzas -------------------------------------------------------------------
def stanza(text: str) -> Any:
    from xml.etree.ElementTree import fromstring

    return fromstring(text)


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ("<presence from='b@j.org/r' to='x@c.org' type='bogus'/>", "bad-request"),
        ("<presence from='b@j.org/r' to='x@c.org'><show>sleepy</show></presence>", "bad-request"),
        ("<presence from='b@j.org/r' to='x@c.org'><priority>1.5</priority></presence>",
         "bad-request"),
        ("<presence from='b@j.org/r' to='x@c.org'><priority>-129</priority></presence>",
         "bad-request"),
        ("<presence from='b@@j.org/r' to='x@c.org'/>", "jid-malformed"),
        ("<presence to='x@c.org'/>", "jid-malformed"),
        (f"<presence from='b@j.org/r' to='x@c.org'><status>{'x' * 5000}</status></presence>",
         "not-acceptable"),
    ],
)
def test_a_malformed_stanza_is_refused_with_its_condition(text: str, condition: str) -> None:
    from pua.adapters.xmpp.gateway import _read, _Refused

    with pytest.raises(_Refused) as caught:
        _read(stanza(text))
    assert caught.value.condition == condition


def test_a_stanza_is_read_whatever_its_namespace() -> None:
    from pua.adapters.xmpp.gateway import _read

    read = _read(stanza(
        "<presence xmlns='jabber:component:accept' from='b@j.org/r' to='x*y.org@c.org'>"
        "<show>dnd</show><status>busy</status><status xml:lang='de'>beschäftigt</status>"
        "<priority>-5</priority><c xmlns='http://jabber.org/protocol/caps'/></presence>"))
    assert (read.type, str(read.sender), str(read.to)) == ("available", "b@j.org/r", "x*y.org@c.org")
    assert (read.show, read.status, read.priority) == ("dnd", "busy", -5)


def test_a_sip_users_presence_is_forgotten_with_its_last_watcher() -> None:
    state = GatewayState()
    state.set_sip_presence("sip:alice@example.com", XmppPresence("away"))
    (key,) = state.take_changes()
    state.forget_sip_presence("sip:alice@example.com")
    state.forget_sip_presence("sip:alice@example.com")  # twice: nothing more
    assert state.sip_presence == {}
    assert state.take_changes() == {key: None}


def test_a_jid_is_given_in_the_form_that_stays() -> None:
    # stringprep folds case before NFKC: U+1F110 becomes "(A)", which a
    # second preparation folds to "(a)"; the mapping gives the final form
    jid = GW.sip_user_jid("sip:%F0%9F%84%90@example.com")
    assert jid == "(a)*example.com@sip.example.com"
    assert GW.sip_user_jid(GW.sip_user_uri(jid)) == jid
