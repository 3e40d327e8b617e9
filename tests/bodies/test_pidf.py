"""PIDF (RFC 3863) with data-model persons (RFC 4479) and RPID activities
(RFC 4480): parsing real documents, building, round trips, and assign_ids."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from pua.bodies import PIDF_CONTENT_TYPE, Person, Presence, Tuple, basic_pidf, parse_pidf
from pua.bodies.pidf import DM_NS, PIDF_NS, RPID_ACTIVITIES, RPID_NS, assign_ids
from pua.errors import BodyError

# In the style of RFC 3863's examples: a prefixed PIDF namespace, an extension element in
# <status>, two tuples with priorities, notes in two languages, a timestamp.
RFC3863_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<impp:presence xmlns:impp="urn:ietf:params:xml:ns:pidf"
    xmlns:myex="http://id.example.com/presence/"
    entity="pres:someone@example.com">
  <impp:tuple id="ck38g9">
    <impp:status>
      <impp:basic>open</impp:basic>
      <myex:location>Home</myex:location>
    </impp:status>
    <impp:contact priority="0.65">tel:+09012345678</impp:contact>
  </impp:tuple>
  <impp:tuple id="md6tyh">
    <impp:status>
      <impp:basic>closed</impp:basic>
      <myex:location>Home</myex:location>
    </impp:status>
    <impp:contact priority="1.0">im:someone@mobilecarrier.net</impp:contact>
    <impp:note xml:lang="en">Don't Disturb Please!</impp:note>
    <impp:note xml:lang="fr">Ne derangez pas, s'il vous plait</impp:note>
    <impp:timestamp>2001-10-27T16:49:29Z</impp:timestamp>
  </impp:tuple>
  <impp:note>I'll be in Tokyo next week</impp:note>
</impp:presence>
"""

# In the style of RFC 4480's example: tuples with RPID extensions, a device, and a
# person whose activities carry from/until and an <rpid:note>, with mood and
# place elements around them that the model does not keep.
RFC4480_EXAMPLE = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    entity="pres:someone@example.com">
  <tuple id="bs35r9">
    <status><basic>open</basic></status>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <rpid:relationship><rpid:self/></rpid:relationship>
    <rpid:service-class><rpid:electronic/></rpid:service-class>
    <contact priority="0.8">im:someone@mobilecarrier.net</contact>
    <note xml:lang="en">Don't Disturb Please!</note>
    <timestamp>2005-10-27T16:49:29Z</timestamp>
  </tuple>
  <tuple id="ty4658">
    <status><basic>open</basic></status>
    <rpid:relationship><rpid:assistant/></rpid:relationship>
    <contact priority="1.0">mailto:secretary@example.com</contact>
  </tuple>
  <note>I'll be in Tokyo next week</note>
  <dm:device id="pc147">
    <rpid:user-input idle-threshold="600">idle</rpid:user-input>
    <dm:deviceID>urn:device:0003ba4811e3</dm:deviceID>
    <dm:note>PC</dm:note>
  </dm:device>
  <dm:person id="p1">
    <rpid:activities from="2005-05-30T12:00:00+05:00" until="2005-05-30T17:00:00+05:00">
      <rpid:note>Far away</rpid:note>
      <rpid:away/>
      <rpid:other>bowling</rpid:other>
    </rpid:activities>
    <rpid:mood><rpid:angry/><rpid:other>brooding</rpid:other></rpid:mood>
    <rpid:place-type><rpid:residence/></rpid:place-type>
    <dm:note>Scoring 120</dm:note>
    <dm:timestamp>2005-05-30T16:09:44+05:00</dm:timestamp>
  </dm:person>
</presence>
"""

# What a softphone publishes while on a call (single-quoted attributes, the
# ISO-8859-1 declaration some clients write).
SOFTPHONE_ON_CALL = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<presence xmlns='urn:ietf:params:xml:ns:pidf'
 xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model'
 xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid'
 xmlns:c='urn:ietf:params:xml:ns:pidf:cipid' entity='sip:1000@pbx.example.com'>
 <tuple id='t6a5ed77e'>
  <status>
   <basic>open</basic>
  </status>
 </tuple>
 <dm:person id='p06360c4a'>
  <rpid:activities>
   <rpid:on-the-phone/>
  </rpid:activities>
  <dm:note>On the phone</dm:note>
 </dm:person>
</presence>
"""


def test_rfc3863_example_parses_to_expected_values() -> None:
    """RFC 3863's two-tuple example gives both tuples with status, contact, priority and notes."""
    doc = parse_pidf(RFC3863_EXAMPLE)
    assert doc == Presence(
        entity="pres:someone@example.com",
        tuples=(
            Tuple(id="ck38g9", basic="open", contact="tel:+09012345678", priority=0.65),
            Tuple(
                id="md6tyh",
                basic="closed",
                contact="im:someone@mobilecarrier.net",
                priority=1.0,
                notes=("Don't Disturb Please!", "Ne derangez pas, s'il vous plait"),
                timestamp="2001-10-27T16:49:29Z",
            ),
        ),
        notes=("I'll be in Tokyo next week",),
    )
    assert doc.basic == "open"


def test_rfc4480_example_parses_person_activities() -> None:
    """RFC 4480's example gives the person's activities (other as its text) and dm:note,
    skipping the rpid:note, the mood and the device."""
    doc = parse_pidf(RFC4480_EXAMPLE)
    assert [t.id for t in doc.tuples] == ["bs35r9", "ty4658"]
    assert doc.tuples[0].timestamp == "2005-10-27T16:49:29Z"
    assert doc.persons == (Person(id="p1", activities=("away", "bowling"), notes=("Scoring 120",)),)
    assert doc.activities == ("away", "bowling")


def test_softphone_document_parses() -> None:
    """A softphone's on-the-phone document (ISO-8859-1, single quotes) parses fully."""
    doc = parse_pidf(SOFTPHONE_ON_CALL)
    assert doc.entity == "sip:1000@pbx.example.com"
    assert doc.tuples == (Tuple(id="t6a5ed77e", basic="open"),)
    assert doc.persons == (
        Person(id="p06360c4a", activities=("on-the-phone",), notes=("On the phone",)),
    )


def test_basic_pidf_is_still_valid_pidf() -> None:
    """basic_pidf (used by the CLI) still builds a document that parses to its arguments."""
    body = basic_pidf("sip:alice@example.com", "closed", tuple_id="pua", note="Gone home")
    assert parse_pidf(body) == Presence(
        entity="sip:alice@example.com",
        tuples=(Tuple(id="pua", basic="closed"),),
        notes=("Gone home",),
    )
    assert PIDF_CONTENT_TYPE == "application/pidf+xml"


def test_basic_pidf_refuses_other_statuses() -> None:
    """basic_pidf keeps refusing a basic status other than open/closed."""
    with pytest.raises(ValueError, match="open"):
        basic_pidf("sip:alice@example.com", "busy", tuple_id="pua")


def test_builder_writes_schema_order_and_namespaces() -> None:
    """to_bytes writes tuple children in RFC 3863 order and persons in the dm namespace."""
    doc = Presence(
        entity="sip:alice@example.com",
        tuples=(
            Tuple(id="t1", basic="open", contact="sip:a@pc", priority=0.5,
                  notes=("n",), timestamp="2024-01-01T00:00:00Z"),
        ),
        persons=(Person(id="p1", activities=("meeting", "Lunch with Bob"), notes=("busy",)),),
        notes=("top",),
    )  # fmt: skip
    root = etree.fromstring(doc.to_bytes())
    tuple_ = root[0]
    assert [etree.QName(c).localname for c in tuple_] == ["status", "contact", "note", "timestamp"]
    assert tuple_[1].get("priority") == "0.5"
    assert [c.tag for c in root] == [f"{{{PIDF_NS}}}tuple", f"{{{PIDF_NS}}}note", f"{{{DM_NS}}}person"]
    activities = root[2][0]
    assert [c.tag for c in activities] == [f"{{{RPID_NS}}}meeting", f"{{{RPID_NS}}}other"]
    assert activities[1].text == "Lunch with Bob"
    assert parse_pidf(doc.to_bytes()) == doc


def test_priority_is_written_as_a_qvalue() -> None:
    """Priorities are written with at most three decimals: 1 -> "1", 0.125 -> "0.125"."""
    for value, text in ((1.0, "1"), (0.0, "0"), (0.125, "0.125"), (0.1, "0.1")):
        body = Presence(entity="sip:a@b", tuples=(Tuple(id="t", contact="sip:c", priority=value),)).to_bytes()
        assert f'priority="{text}"'.encode() in body


@pytest.mark.parametrize(
    ("tuple_", "message"),
    [
        (Tuple(id="t", basic="busy"), "basic"),  # type: ignore[arg-type]
        (Tuple(id="9t"), "XML ID"),
        (Tuple(id="t", contact="sip:c", priority=1.5), "priority"),
        (Tuple(id="t", contact="sip:c", priority=0.1234), "priority"),
        (Tuple(id="t", priority=0.5), "contact"),
        (Tuple(id="t", notes=("a\x00b",)), "character"),
        (Tuple(id="t", notes=(" padded",)), "white space"),
    ],
)
def test_builder_refuses_bad_values(tuple_: Tuple, message: str) -> None:
    """to_bytes raises ValueError naming the problem for values PIDF cannot carry."""
    with pytest.raises(ValueError, match=message):
        Presence(entity="sip:a@b", tuples=(tuple_,)).to_bytes()


def test_builder_refuses_duplicate_ids() -> None:
    """Tuple and person ids share one ID space: a repeat is refused."""
    doc = Presence(entity="sip:a@b", tuples=(Tuple(id="x"),), persons=(Person(id="x"),))
    with pytest.raises(ValueError, match="unique"):
        doc.to_bytes()


def test_lists_are_stored_as_tuples() -> None:
    """Values given as lists become tuples, so equal documents compare and hash equal."""
    a = Presence(entity="e", tuples=[Tuple(id="t", notes=["n"])])  # type: ignore[arg-type]
    b = Presence(entity="e", tuples=(Tuple(id="t", notes=("n",)),))
    assert a == b and hash(a) == hash(b)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf"/>', "entity"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple/></presence>', "'id'"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id="t"><status>'
         b"<basic>busy</basic></status></tuple></presence>", "basic"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id="t">'
         b'<contact priority="2">x</contact></tuple></presence>', "outside"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id="t">'
         b'<contact priority="nan">x</contact></tuple></presence>', "not a number"),
        (b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
         b' entity="e"><dm:person/></presence>', "'id'"),
    ],
    ids=["no entity", "tuple without id", "bad basic", "priority range", "priority nan", "person without id"],
)  # fmt: skip
def test_invalid_documents_raise_body_error(body: bytes, message: str) -> None:
    """Documents breaking RFC 3863/4479 rules are refused with a BodyError naming the rule."""
    with pytest.raises(BodyError, match=message):
        parse_pidf(body)


def test_tuple_without_status_has_no_basic() -> None:
    """A tuple without <status> is read leniently with basic None."""
    doc = parse_pidf(b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id="t"/></presence>')
    assert doc.tuples == (Tuple(id="t", basic=None),)
    assert doc.basic is None


# --------------------------------------------------------------- round trip

_CHARS = st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Cn"))
texts = st.text(_CHARS, max_size=20).map(str.strip)
nonempty_texts = texts.filter(bool)
xml_ids = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.\-]{0,8}", fullmatch=True)
activities = st.sampled_from(sorted(RPID_ACTIVITIES)) | nonempty_texts
priorities = st.none() | st.integers(0, 1000).map(lambda n: n / 1000)


@st.composite
def tuples(draw: st.DrawFn, id_: str) -> Tuple:
    contact = draw(st.none() | nonempty_texts)
    return Tuple(
        id=id_,
        basic=draw(st.sampled_from([None, "open", "closed"])),
        contact=contact,
        priority=None if contact is None else draw(priorities),
        notes=tuple(draw(st.lists(texts, max_size=3))),
        timestamp=draw(st.none() | nonempty_texts),
    )


@st.composite
def presences(draw: st.DrawFn) -> Presence:
    ids = draw(st.lists(xml_ids, unique=True, max_size=6))
    split = draw(st.integers(0, len(ids)))
    return Presence(
        entity=draw(nonempty_texts),
        tuples=tuple(draw(tuples(i)) for i in ids[:split]),
        persons=tuple(
            Person(
                id=i,
                activities=tuple(draw(st.lists(activities, max_size=4))),
                notes=tuple(draw(st.lists(texts, max_size=2))),
            )
            for i in ids[split:]
        ),
        notes=tuple(draw(st.lists(texts, max_size=3))),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(presences())
def test_round_trip(doc: Presence) -> None:
    """Any buildable Presence, written and read back, is equal to itself."""
    assert parse_pidf(doc.to_bytes()) == doc


# ---------------------------------------------------------------- assign_ids

NO_IDS = b"""<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf"
    xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"
    xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"
    xmlns:ex="urn:example:ext"
    entity="sip:alice@example.com">
  <tuple><status><basic>open</basic><ex:mood>fine</ex:mood></status></tuple>
  <tuple><status><basic>closed</basic></status></tuple>
  <dm:person><rpid:activities><rpid:busy/></rpid:activities></dm:person>
  <ex:extension attr="1">kept</ex:extension>
</presence>
"""


def _ids(body: bytes, tag: str) -> list[str | None]:
    root = etree.fromstring(body)
    return [e.get("id") for e in root if e.tag == tag]


def test_assign_ids_names_tuples_and_persons_from_tuple_id() -> None:
    """Tuples get tuple_id, tuple_id-2; persons get p<tuple_id>."""
    out = assign_ids(NO_IDS, "a1b2")
    assert _ids(out, f"{{{PIDF_NS}}}tuple") == ["a1b2", "a1b2-2"]
    assert _ids(out, f"{{{DM_NS}}}person") == ["pa1b2"]
    assert [p.activities for p in parse_pidf(out).persons] == [("busy",)]


def test_assign_ids_keeps_the_rest_of_the_document() -> None:
    """Extension elements, their namespaces and attributes survive assign_ids."""
    out = assign_ids(NO_IDS, "t")
    root = etree.fromstring(out)
    ext = root.find("{urn:example:ext}extension")
    assert ext is not None and ext.text == "kept" and ext.get("attr") == "1"
    assert root.find(f"{{{PIDF_NS}}}tuple/{{{PIDF_NS}}}status/{{urn:example:ext}}mood") is not None
    assert root.nsmap["ex"] == "urn:example:ext"
    assert out.startswith(b"<?xml version='1.0' encoding='UTF-8'?>")


def test_assign_ids_is_stable() -> None:
    """The same body and tuple_id give the same bytes every time (refreshes)."""
    assert assign_ids(NO_IDS, "t9") == assign_ids(NO_IDS, "t9")
    assert assign_ids(assign_ids(NO_IDS, "t9"), "t9") == assign_ids(NO_IDS, "t9")


def test_assign_ids_leaves_existing_ids_and_avoids_them() -> None:
    """Existing ids are kept, and a new id never repeats one already in the document."""
    body = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
        b' entity="e"><tuple id="x"/><tuple/><tuple id="x-2"/><tuple/>'
        b'<dm:person id="x"/><dm:person/><dm:device id="px"/></presence>'
    )
    out = assign_ids(body, "x")
    assert _ids(out, f"{{{PIDF_NS}}}tuple") == ["x", "x-3", "x-2", "x-4"]
    # "px" is taken by the device, so the first person name is "px-2".
    assert _ids(out, f"{{{DM_NS}}}person") == ["x", "px-2"]


@pytest.mark.parametrize(
    "attribute",
    [b' id="t"', b'\n id = "t"', b"\tid='t'", b' id\r\n=\t"t"'],
)
def test_assign_ids_avoids_an_id_written_with_any_spacing(attribute: bytes) -> None:
    """An id on a nested element, however spaced around "=", is avoided."""
    body = (
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple/>'
        b"<tuple id='u'><status><basic" + attribute + b">open</basic></status></tuple></presence>"
    )
    assert _ids(assign_ids(body, "t"), f"{{{PIDF_NS}}}tuple") == ["t-2", "u"]


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32"])
def test_assign_ids_avoids_ids_in_a_document_not_in_ascii_bytes(codec: str) -> None:
    """In UTF-16 or UTF-32 the ids of the document are avoided too."""
    declaration = "" if codec == "utf-16" else f'<?xml version="1.0" encoding="{codec}"?>'
    text = (
        f'{declaration}<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple/>'
        '<note id="t">x</note></presence>'
    )
    assert _ids(assign_ids(text.encode(codec), "t"), f"{{{PIDF_NS}}}tuple") == ["t-2"]


def test_assign_ids_treats_blank_id_as_missing() -> None:
    """A tuple with id="" gets an id like one without the attribute."""
    body = b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple id=" "/></presence>'
    assert _ids(assign_ids(body, "t"), f"{{{PIDF_NS}}}tuple") == ["t"]


def test_assign_ids_returns_complete_documents_unchanged() -> None:
    """A body that already has every id comes back byte for byte."""
    assert assign_ids(SOFTPHONE_ON_CALL, "zz") == SOFTPHONE_ON_CALL


def test_assign_ids_refuses_a_tuple_id_that_is_no_xml_id() -> None:
    """A tuple_id starting with a digit cannot be an xs:ID: ValueError, a caller's bug."""
    with pytest.raises(ValueError, match="XML ID"):
        assign_ids(NO_IDS, "1abc")


def test_assign_ids_refuses_non_pidf() -> None:
    """assign_ids validates the body: a non-PIDF document is a BodyError."""
    with pytest.raises(BodyError):
        assign_ids(b"<foo/>", "t")
