"""Typed SIP headers: the classes directly, the Headers store, and Message properties."""

from __future__ import annotations

import contextlib

import pytest

from pua.errors import RemoteProtocolError
from pua.sip.headers import (
    Challenge,
    CSeq,
    Event,
    Headers,
    NameAddress,
    RetryAfter,
    SubscriptionState,
    Via,
    canonical_name,
    header_key,
)
from pua.sip.message import Request, Response
from pua.sip.parser import parse_message
from pua.sip.uri import AbsoluteUri, SipUri

# ---------------------------------------------------------------------------
# NameAddress (From, To, Contact, Route)
# ---------------------------------------------------------------------------


def test_name_addr_with_quoted_display_name() -> None:
    """A quoted display name is unquoted; ;tag after <> is a header parameter."""
    addr = NameAddress.parse('"Alice Liddell" <sip:alice@atlanta.com>;tag=1928301774')
    assert addr.display_name == "Alice Liddell"
    assert isinstance(addr.uri, SipUri)
    assert addr.uri.user == "alice"
    assert addr.uri.host == "atlanta.com"
    assert addr.tag == "1928301774"
    assert addr.uri.params == ()


def test_name_addr_quoted_display_name_with_escapes_and_specials() -> None:
    """Quoted-pairs are undone and '<', ',' and ';' inside the quotes do not confuse parsing."""
    addr = NameAddress.parse(r'"A \"q\" <x>, b; c" <sip:x@y.example>;tag=7')
    assert addr.display_name == 'A "q" <x>, b; c'
    assert str(addr.uri) == "sip:x@y.example"
    assert addr.tag == "7"


def test_name_addr_with_token_display_name() -> None:
    """An unquoted display name of several tokens is kept with single spaces."""
    addr = NameAddress.parse("Bob   Smith <sip:bob@biloxi.com>;tag=a6c85cf")
    assert addr.display_name == "Bob Smith"
    assert addr.tag == "a6c85cf"


def test_name_addr_without_display_name() -> None:
    """<uri> alone has no display name and no parameters."""
    addr = NameAddress.parse("<sip:bob@biloxi.com>")
    assert addr.display_name is None
    assert addr.params == ()
    assert addr.tag is None


def test_addr_spec_params_are_header_params() -> None:
    """Without <>, ;tag= and other parameters belong to the header, not the URI (§20.10)."""
    addr = NameAddress.parse("sip:bob@biloxi.com;tag=a6c85cf;x=1")
    assert isinstance(addr.uri, SipUri)
    assert addr.uri.params == ()
    assert str(addr.uri) == "sip:bob@biloxi.com"
    assert addr.tag == "a6c85cf"
    assert addr.param("x") == "1"
    assert addr.display_name is None


def test_name_addr_params_inside_brackets_belong_to_uri() -> None:
    """Parameters inside <> are URI parameters; those after > are header parameters."""
    addr = NameAddress.parse("<sip:bob@biloxi.com;transport=tcp;tag=inner>;tag=outer;expires=60")
    assert isinstance(addr.uri, SipUri)
    assert addr.uri.params == (("transport", "tcp"), ("tag", "inner"))
    assert addr.tag == "outer"
    assert addr.param("expires") == "60"


def test_name_addr_with_tel_uri() -> None:
    """A tel: URI in a name-addr parses as an AbsoluteUri."""
    addr = NameAddress.parse("<tel:+15551234>;tag=5")
    assert addr.uri == AbsoluteUri("tel", "+15551234")
    assert addr.tag == "5"


def test_name_addr_quoted_header_param_keeps_quotes_in_params() -> None:
    """A quoted-string parameter is stored as written, param() unquotes it."""
    addr = NameAddress.parse('<sip:a@192.0.2.1>;+sip.instance="<urn:uuid:1234>";q=0.7')
    assert addr.params == (("+sip.instance", '"<urn:uuid:1234>"'), ("q", "0.7"))
    assert addr.param("+sip.instance") == "<urn:uuid:1234>"
    assert addr.param("Q") == "0.7"
    assert addr.param("absent") is None


def test_addr_spec_with_quoted_param_holding_angle_bracket() -> None:
    """addr-spec with ;+sip.instance="<urn:...>" (valid gen-value) parses as addr-spec."""
    addr = NameAddress.parse(
        'sip:alice@192.0.2.1;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"'
    )
    assert str(addr.uri) == "sip:alice@192.0.2.1"
    assert addr.param("+sip.instance") == "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '"Alice Liddell" <sip:alice@atlanta.com>;tag=19',
            "Alice Liddell <sip:alice@atlanta.com>;tag=19",
        ),
        ('"A, B" <sip:a@b.example>', '"A, B" <sip:a@b.example>'),
        ('"say \\"hi\\"" <sip:a@b.example>', '"say \\"hi\\"" <sip:a@b.example>'),
        ("sip:bob@biloxi.com;tag=x", "<sip:bob@biloxi.com>;tag=x"),
        ("<sip:p1.example.com;lr>", "<sip:p1.example.com;lr>"),
    ],
)
def test_name_addr_str(text: str, expected: str) -> None:
    """Serialization always uses <> and quotes the display name only when needed."""
    addr = NameAddress.parse(text)
    assert str(addr) == expected
    assert NameAddress.parse(str(addr)) == addr


def test_name_addr_with_tag_replaces_tag() -> None:
    """with_tag sets the tag, replacing an existing one and keeping other params."""
    addr = NameAddress.parse("<sip:a@b.example>;tag=old;x=1")
    tagged = addr.with_tag("new")
    assert tagged.tag == "new"
    assert tagged.param("x") == "1"
    assert [k for k, _ in tagged.params].count("tag") == 1
    assert addr.tag == "old"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "Alice",
        "<>",
        "<sip:a@b.example",  # missing >
        '"Alice <sip:a@b.example>',  # unterminated quote
        '"Alice" sip:a@b.example',  # quoted name without <>
        'Al"ice <sip:a@b.example>',  # quote inside a token display name
        "Alice, Bob <sip:a@b.example>",  # ',' is not a token character
        "<sip:a@b.example> junk",
        "<sip:a@b.example>;",
        "<sip:a@b.example>;tag=",
        "<sip:a@b.example>;=x",
        "<sip:a@b.example>;t@g=1",
        "<sip:a@b.example>;tag=a b",
        '<sip:a@b.example>;x="unterminated',
        "sip:a b@c.example",
        "sip:a@b.example?x=y",  # '?' requires the name-addr form
        "sip:a@b.example,c",
        "<sip:a@>",
        "<sip:a@b.example:99999>",
    ],
)
def test_bad_name_addr(text: str) -> None:
    """Malformed From/To/Contact values raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        NameAddress.parse(text)


# ---------------------------------------------------------------------------
# Via
# ---------------------------------------------------------------------------


def test_via_basic() -> None:
    """Protocol, transport, host, branch of a plain Via."""
    via = Via.parse("SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds")
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.host == "pc33.atlanta.com"
    assert via.port is None
    assert via.branch == "z9hG4bK776asdhds"
    assert via.received is None
    assert via.rport is None
    assert via.sent_by == "pc33.atlanta.com"


def test_via_received_and_rport_with_value() -> None:
    """received and rport=value are read from the parameters."""
    via = Via.parse(
        "SIP/2.0/TCP client.atlanta.example.com:5060;branch=z9hG4bK74b43;"
        "received=192.0.2.101;rport=5061"
    )
    assert via.port == 5060
    assert via.received == "192.0.2.101"
    assert via.rport == 5061
    assert via.sent_by == "client.atlanta.example.com:5060"


def test_via_rport_without_value() -> None:
    """A bare ;rport is present as a valueless parameter and has no number."""
    via = Via.parse("SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bKx")
    assert ("rport", None) in via.params
    assert via.rport is None
    assert via.branch == "z9hG4bKx"


def test_via_ipv6_sent_by() -> None:
    """An IPv6 reference with a port is the sent-by host."""
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1]:5070;branch=z9hG4bKas3")
    assert via.host == "[2001:db8::9:1]"
    assert via.port == 5070
    assert via.sent_by == "[2001:db8::9:1]:5070"


def test_via_lws_around_slashes_and_colon() -> None:
    """LWS is allowed around the slashes, before the parameters and around ':' (§25.1)."""
    via = Via.parse("SIP / 2.0 / UDP   h.example.com : 5060 ;branch=z9hG4bKx")
    assert via.protocol == "SIP/2.0"
    assert via.transport == "UDP"
    assert via.host == "h.example.com"
    assert via.port == 5060
    assert via.branch == "z9hG4bKx"


@pytest.mark.parametrize("transport", ["udp", "Tcp", "tls", "sctp", "ws", "WSS"])
def test_via_transport_upper_cased(transport: str) -> None:
    """The transport is upper-cased whatever its case on the wire."""
    via = Via.parse(f"SIP/2.0/{transport} h.example.com;branch=z9hG4bKx")
    assert via.transport == transport.upper()
    assert str(via) == f"SIP/2.0/{transport.upper()} h.example.com;branch=z9hG4bKx"


def test_via_str() -> None:
    """str(Via) normalises the LWS and keeps the parameters in order."""
    via = Via.parse("SIP / 2.0 / udp h:5060;branch=z9hG4bKx;rport")
    assert str(via) == "SIP/2.0/UDP h:5060;branch=z9hG4bKx;rport"
    assert Via.parse(str(via)) == via


def test_via_received_ipv6() -> None:
    """received=2001:db8::9:255 (IPv6 address, no brackets) is a valid Via parameter."""
    via = Via.parse("SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;received=2001:db8::9:255")
    assert via.received == "2001:db8::9:255"


def test_via_rport_unicode_digit_is_protocol_error() -> None:
    """A non-ASCII 'digit' rport value gives None or RemoteProtocolError, never ValueError."""
    with contextlib.suppress(RemoteProtocolError):
        assert Via.parse('SIP/2.0/UDP h;branch=z9hG4bKx;rport="\u00b2"').rport is None


def test_via_huge_rport_is_protocol_error() -> None:
    """A 5000-digit rport gives a value or RemoteProtocolError, never ValueError."""
    with contextlib.suppress(RemoteProtocolError):
        _ = Via.parse("SIP/2.0/UDP h;branch=z9hG4bKx;rport=" + "1" * 5000).rport


@pytest.mark.parametrize(
    "text",
    [
        "",
        "SIP/2.0/UDP",  # no sent-by
        "SIP/2.0 h.example.com",  # no transport
        "SIP/2.0/UDPh.example.com",  # no LWS before sent-by
        "SIP/2.0/UDP h.example.com:99999",  # port > 65535
        "SIP/2.0/UDP h.example.com:abc",
        "SIP/2.0/UDP [::1",  # unbalanced bracket
        "SIP/2.0/UDP h.example.com junk",
        "SIP/2.0/UDP h.example.com;",  # empty parameter
        "SIP/2.0/UDP h.example.com;branch",  # branch without a value
        'SIP/2.0/UDP h.example.com;branch="a b"',  # branch is a token
        'SIP/2.0/UDP h.example.com;x="unterminated',
        "SIP/2.0/UDP h.example.com;=x",
    ],
)
def test_bad_via(text: str) -> None:
    """Malformed Via values raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        Via.parse(text)


# ---------------------------------------------------------------------------
# CSeq
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seq", "method"),
    [
        ("1 INVITE", 1, "INVITE"),
        ("0 PUBLISH", 0, "PUBLISH"),
        ("314159 SUBSCRIBE", 314159, "SUBSCRIBE"),
        ("2147483647 NOTIFY", 2**31 - 1, "NOTIFY"),
        ("  7   REGISTER  ", 7, "REGISTER"),
    ],
)
def test_cseq(text: str, seq: int, method: str) -> None:
    """Number and method are split on LWS; the largest allowed number is 2**31-1."""
    cseq = CSeq.parse(text)
    assert (cseq.seq, cseq.method) == (seq, method)
    assert str(cseq) == f"{seq} {method}"


@pytest.mark.parametrize(
    "text",
    [
        "2147483648 INVITE",  # 2**31
        "4294967296 INVITE",
        "99999999999 INVITE",
        "1" * 5000 + " INVITE",
        "",
        "1",
        "INVITE",
        "-1 INVITE",
        "a INVITE",
        "1 IN VITE",
        "1 INV@TE",
        "\u0661 INVITE",  # a non-ASCII digit
        "\u00b2 INVITE",
    ],
)
def test_bad_cseq(text: str) -> None:
    """Out-of-range (>= 2**31) and malformed CSeq values raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        CSeq.parse(text)


def test_cseq_tab_separator() -> None:
    """'1<TAB>INVITE' is a valid CSeq."""
    assert CSeq.parse("1\tINVITE") == CSeq(1, "INVITE")


# ---------------------------------------------------------------------------
# Event (RFC 6665)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "package", "event_id", "params"),
    [
        ("presence", "presence", "presence", None, ()),
        ("presence.winfo", "presence.winfo", "presence", None, ()),
        ("dialog;sla", "dialog", "dialog", None, (("sla", None),)),
        ("presence;id=abc123", "presence", "presence", "abc123", (("id", "abc123"),)),
        ("message-summary", "message-summary", "message-summary", None, ()),
        ("presence ; id = 7", "presence", "presence", "7", (("id", "7"),)),
    ],
)
def test_event(
    text: str, name: str, package: str, event_id: str | None, params: tuple[object, ...]
) -> None:
    """Event type, package (without templates), id and other parameters."""
    event = Event.parse(text)
    assert event.name == name
    assert event.package == package
    assert event.id == event_id
    assert event.params == params


def test_event_matches() -> None:
    """Events match on case-insensitive type and equal id (RFC 6665 §8.2.1)."""
    assert Event.parse("Presence;id=1").matches(Event.parse("presence;id=1"))
    assert not Event.parse("presence;id=1").matches(Event.parse("presence;id=2"))
    assert not Event.parse("presence;id=1").matches(Event.parse("presence"))
    assert not Event.parse("presence").matches(Event.parse("presence.winfo"))


@pytest.mark.parametrize("text", ["", "pres ence", "presence.", ".presence", "pres/ence", "a..b"])
def test_bad_event_type_is_489(text: str) -> None:
    """A malformed event type raises RemoteProtocolError with 489 Bad Event."""
    with pytest.raises(RemoteProtocolError) as info:
        Event.parse(text)
    assert info.value.status == 489


@pytest.mark.parametrize("text", ["presence;", "presence;id=", "presence;id=a b", "presence;=1"])
def test_bad_event_params(text: str) -> None:
    """Malformed Event parameters raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        Event.parse(text)


# ---------------------------------------------------------------------------
# Subscription-State (RFC 6665)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "state", "reason", "expires", "retry_after"),
    [
        ("active;expires=600", "active", None, 600, None),
        ("terminated;reason=deactivated", "terminated", "deactivated", None, None),
        ("terminated;reason=probation;retry-after=30", "terminated", "probation", None, 30),
        ("pending", "pending", None, None, None),
        ("Active;Expires=60", "active", None, 60, None),
        ("terminated;reason=Timeout", "terminated", "timeout", None, None),
        ("active;expires=99999999999999", "active", None, 2**32 - 1, None),
    ],
)
def test_subscription_state(
    text: str, state: str, reason: str | None, expires: int | None, retry_after: int | None
) -> None:
    """State and reason are lower-cased; expires and retry-after are delta-seconds."""
    sub = SubscriptionState.parse(text)
    assert (sub.state, sub.reason, sub.expires, sub.retry_after) == (
        state,
        reason,
        expires,
        retry_after,
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "act ive",
        "active;",
        "active;expires",
        "active;expires=abc",
        "active;expires=-1",
        "terminated;retry-after=soon",
        "active;expires=\u00b2",
    ],
)
def test_bad_subscription_state(text: str) -> None:
    """Malformed Subscription-State values raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        SubscriptionState.parse(text)


# ---------------------------------------------------------------------------
# Retry-After
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds", "comment", "duration"),
    [
        ("120", 120, None, None),
        ("120 (I'm in a meeting)", 120, "I'm in a meeting", None),
        ("120;duration=60", 120, None, 60),
        ("18000 (out to lunch) ;duration=3600", 18000, "out to lunch", 3600),
        ("0", 0, None, None),
        ("18446744073709551616", 2**32 - 1, None, None),
    ],
)
def test_retry_after(text: str, seconds: int, comment: str | None, duration: int | None) -> None:
    """Seconds, the optional comment without its parentheses, and the duration parameter."""
    retry = RetryAfter.parse(text)
    assert (retry.seconds, retry.comment, retry.duration) == (seconds, comment, duration)


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "120 (unclosed", "120 junk", "120;", "120;=5", "1 2"]
)
def test_bad_retry_after(text: str) -> None:
    """Malformed Retry-After values raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        RetryAfter.parse(text)


def test_retry_after_unicode_digit_duration_is_protocol_error() -> None:
    """duration="²" gives None or RemoteProtocolError, never ValueError."""
    with contextlib.suppress(RemoteProtocolError):
        assert RetryAfter.parse('120;duration="\u00b2"').duration is None


def test_retry_after_nested_comment() -> None:
    """'120 (out (to lunch))' is a valid Retry-After."""
    assert RetryAfter.parse("120 (out (to lunch))").seconds == 120


# ---------------------------------------------------------------------------
# Challenge (WWW-Authenticate / Proxy-Authenticate)
# ---------------------------------------------------------------------------


def test_digest_challenge() -> None:
    """A Digest challenge: quoted and token values, names lower-cased, quotes removed."""
    challenge = Challenge.parse(
        'Digest Realm="atlanta.com", domain="sip:ss1.carrier.com", '
        'qop="auth,auth-int", nonce="f84f1cec41e6cbe5aea9c8e88d359", '
        'opaque="", stale=FALSE, algorithm=MD5'
    )
    assert challenge.scheme == "Digest"
    assert challenge.realm == "atlanta.com"
    assert challenge.params == {
        "realm": "atlanta.com",
        "domain": "sip:ss1.carrier.com",
        "qop": "auth,auth-int",
        "nonce": "f84f1cec41e6cbe5aea9c8e88d359",
        "opaque": "",
        "stale": "FALSE",
        "algorithm": "MD5",
    }


def test_digest_challenge_tight_commas_and_escapes() -> None:
    """Commas and escaped quotes inside a quoted value, no space after commas."""
    challenge = Challenge.parse(r'Digest realm="a, b \"c\"",nonce=abc123,algorithm=SHA-256')
    assert challenge.params == {"realm": 'a, b "c"', "nonce": "abc123", "algorithm": "SHA-256"}


def test_challenge_without_params() -> None:
    """A bare scheme has no parameters and no realm."""
    challenge = Challenge.parse("Digest")
    assert challenge.params == {}
    assert challenge.realm is None


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Digest" realm="a"',
        "Digest realm",
        "Digest realm=",
        'Digest realm="unterminated',
        "Digest realm=a b",
        "Digest =a",
        "Digest realm=a,,nonce=b",
        "Digest realm=a;nonce=b",
    ],
)
def test_bad_challenge(text: str) -> None:
    """Malformed challenges raise RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        Challenge.parse(text)


# ---------------------------------------------------------------------------
# Headers
# ---------------------------------------------------------------------------


def test_headers_get_is_case_insensitive() -> None:
    """get() finds a field whatever the case of the name, first one wins."""
    headers = Headers([("cAlL-iD", "abc"), ("Subject", "one"), ("SUBJECT", "two")])
    assert headers.get("Call-ID") == "abc"
    assert headers.get("CALL-ID") == "abc"
    assert headers.get("subject") == "one"
    assert headers.get("missing") is None
    assert headers.get("missing", "dflt") == "dflt"
    assert "call-id" in headers
    assert "missing" not in headers
    assert 42 not in headers


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
    ],
)
def test_compact_forms(compact: str, full: str) -> None:
    """Each compact form maps to its full name both ways, in either case."""
    assert header_key(compact) == full.lower()
    assert header_key(compact.upper()) == full.lower()
    assert canonical_name(compact) == full
    written_compact = Headers([(compact, "value")])
    assert written_compact.get(full) == "value"
    assert written_compact.get(full.upper()) == "value"
    written_full = Headers([(full, "value")])
    assert written_full.get(compact) == "value"
    assert written_full.get(compact.upper()) == "value"


def test_unknown_single_letter_is_not_expanded() -> None:
    """A one-letter name without a compact form is its own key."""
    assert header_key("Z") == "z"
    assert Headers([("z", "1")]).get("Z") == "1"


def test_get_all_splits_list_headers() -> None:
    """Via/Contact/Route values are split on commas across all their lines, in order."""
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b;branch=z9hG4bK2"),
            ("Contact", "<sip:a@x>,<sip:b@x>"),
            ("v", "SIP/2.0/UDP c;branch=z9hG4bK3"),
            ("Route", "<sip:p1@a;lr>, <sip:p2@b;lr>"),
            ("route", "<sip:p3@c;lr>"),
        ]
    )
    assert headers.get_all("via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/TCP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c;branch=z9hG4bK3",
    ]
    assert headers.get_all("m") == ["<sip:a@x>", "<sip:b@x>"]
    assert headers.get_all("Route") == ["<sip:p1@a;lr>", "<sip:p2@b;lr>", "<sip:p3@c;lr>"]
    assert headers.get_lines("via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b;branch=z9hG4bK2",
        "SIP/2.0/UDP c;branch=z9hG4bK3",
    ]


def test_get_all_does_not_split_inside_quotes_or_brackets() -> None:
    """Commas inside a quoted display name or inside <> do not split a value."""
    headers = Headers(
        [("Contact", '"Doe, John" <sip:j@d.example;x=a,b>, "x\\",y" <sip:k@d.example>')]
    )
    assert headers.get_all("contact") == [
        '"Doe, John" <sip:j@d.example;x=a,b>',
        '"x\\",y" <sip:k@d.example>',
    ]


def test_get_all_does_not_split_non_list_headers() -> None:
    """Subject, Call-ID, WWW-Authenticate are never split on commas."""
    headers = Headers([("Subject", "a, b"), ("WWW-Authenticate", 'Digest realm="x", nonce="y"')])
    assert headers.get_all("subject") == ["a, b"]
    assert headers.get_all("www-authenticate") == ['Digest realm="x", nonce="y"']


@pytest.mark.parametrize("value", ['"Doe <sip:j@d.example>', "<sip:j@d.example"])
def test_get_all_unterminated_is_protocol_error(value: str) -> None:
    """An unterminated quote or < in a list header raises RemoteProtocolError."""
    with pytest.raises(RemoteProtocolError):
        Headers([("Contact", value)]).get_all("contact")


def test_headers_set_replaces_all_in_place_of_first() -> None:
    """set() keeps one field where the first was (keeping its spelling), drops the others."""
    headers = Headers([("v", "A"), ("To", "t"), ("Via", "B"), ("From", "f")])
    headers.set("VIA", "C")
    assert headers.items() == [("v", "C"), ("To", "t"), ("From", "f")]
    headers.set("Subject", "new")
    assert headers.items()[-1] == ("Subject", "new")


def test_headers_remove_counts_and_uses_compact_forms() -> None:
    """remove() drops every field of that name, compact or full, and says how many."""
    headers = Headers([("Via", "A"), ("To", "t"), ("v", "B")])
    assert headers.remove("via") == 2
    assert headers.items() == [("To", "t")]
    assert headers.remove("via") == 0
    assert "via" not in headers


def test_headers_add_first_and_add() -> None:
    """add_first inserts before every field, add appends."""
    headers = Headers([("Via", "B"), ("To", "t")])
    headers.add_first("Via", "A")
    headers.add("Via", "C")
    assert headers.get_all("via") == ["A", "B", "C"]
    assert headers.get("via") == "A"
    assert len(headers) == 4
    assert next(iter(headers)) == ("Via", "A")


def test_headers_copy_is_independent_and_equality() -> None:
    """copy() is equal but independent; equality is over ordered (name, value) pairs."""
    headers = Headers([("To", "t"), ("From", "f")])
    copy = headers.copy()
    assert copy == headers
    copy.add("Subject", "x")
    assert copy != headers
    assert headers.get("subject") is None
    assert Headers([("From", "f"), ("To", "t")]) != headers


# ---------------------------------------------------------------------------
# Message typed properties
# ---------------------------------------------------------------------------

NOTIFY = (
    b"NOTIFY sip:watcher@192.0.2.5:5060 SIP/2.0\r\n"
    b"v: SIP/2.0/UDP pres.example.com;branch=z9hG4bKa1, SIP/2.0/TCP [2001:db8::1]:5070"
    b";branch=z9hG4bKa2;received=192.0.2.9\r\n"
    b"Via: SIP/2.0/UDP edge.example.com;branch=z9hG4bKa3;rport=5062\r\n"
    b"Max-Forwards: 69\r\n"
    b'f: "Presentity" <sip:alice@example.com>;tag=ffff\r\n'
    b"t: <sip:watcher@example.com>;tag=wwww\r\n"
    b"i: 7d1b@pres.example.com\r\n"
    b"CSeq: 12 NOTIFY\r\n"
    b"m: <sip:pres.example.com;transport=tcp>\r\n"
    b"o: presence;id=42\r\n"
    b"Subscription-State: active;expires=599\r\n"
    b"c: application/pidf+xml; charset=UTF-8\r\n"
    b"l: 11\r\n"
    b"\r\n"
    b"<presence/>"
)


def _notify() -> Request:
    msg = parse_message(NOTIFY)
    assert isinstance(msg, Request)
    return msg


def test_request_typed_properties_from_the_wire() -> None:
    """A parsed NOTIFY (compact forms) exposes every typed header."""
    msg = _notify()
    msg.validate()
    assert msg.method == "NOTIFY"
    assert msg.call_id == "7d1b@pres.example.com"
    assert msg.cseq == CSeq(12, "NOTIFY")
    assert msg.from_.display_name == "Presentity"
    assert msg.from_.tag == "ffff"
    assert msg.to.tag == "wwww"
    assert [v.branch for v in msg.vias] == ["z9hG4bKa1", "z9hG4bKa2", "z9hG4bKa3"]
    assert msg.vias[1].host == "[2001:db8::1]"
    assert msg.vias[1].received == "192.0.2.9"
    assert msg.vias[2].rport == 5062
    assert msg.top_via.host == "pres.example.com"
    assert [str(c.uri) for c in msg.contacts] == ["sip:pres.example.com;transport=tcp"]
    assert msg.max_forwards == 69
    event = msg.event
    assert event is not None
    assert (event.package, event.id) == ("presence", "42")
    state = msg.subscription_state
    assert state is not None
    assert (state.state, state.expires) == ("active", 599)
    assert msg.content_type == "application/pidf+xml"
    assert msg.body == b"<presence/>"
    assert msg.expires is None
    assert msg.retry_after is None
    assert msg.sip_etag is None


def test_response_typed_properties() -> None:
    """A 423/401-like Response exposes min-expires, etag, retry-after and challenges."""
    msg = Response(
        401,
        headers=[
            ("Min-Expires", "60"),
            ("SIP-ETag", "dx200xyz"),
            ("Retry-After", "30 (busy);duration=10"),
            ("WWW-Authenticate", 'Digest realm="a.example", nonce="n1", qop="auth"'),
            ("www-authenticate", "Digest realm=b.example, nonce=n2, algorithm=SHA-256"),
            ("Expires", "3600"),
            ("Contact", "*"),
        ],
    )
    assert msg.reason == "Unauthorized"
    assert msg.min_expires == 60
    assert msg.sip_etag == "dx200xyz"
    retry = msg.retry_after
    assert retry is not None
    assert (retry.seconds, retry.comment, retry.duration) == (30, "busy", 10)
    assert [c.realm for c in msg.www_authenticate] == ["a.example", "b.example"]
    assert msg.www_authenticate[0].params["qop"] == "auth"
    assert msg.www_authenticate[1].params["algorithm"] == "SHA-256"
    assert msg.expires == 3600
    assert msg.contacts == []


def test_publish_sip_if_match_and_expires() -> None:
    """SIP-If-Match and Expires of a PUBLISH built directly."""
    msg = Request(
        "PUBLISH",
        "sip:alice@example.com",
        [("SIP-If-Match", "abc.123"), ("Expires", "0"), ("Event", "presence")],
    )
    assert msg.sip_if_match == "abc.123"
    assert msg.expires == 0
    event = msg.event
    assert event is not None
    assert event.name == "presence"


def test_missing_headers() -> None:
    """Optional typed headers are None or empty; required ones raise RemoteProtocolError."""
    msg = Response(200)
    assert msg.expires is None
    assert msg.min_expires is None
    assert msg.max_forwards is None
    assert msg.event is None
    assert msg.subscription_state is None
    assert msg.sip_etag is None
    assert msg.sip_if_match is None
    assert msg.retry_after is None
    assert msg.content_type is None
    assert msg.vias == []
    assert msg.contacts == []
    assert msg.www_authenticate == []
    for name in ("call_id", "cseq", "from_", "to", "top_via"):
        with pytest.raises(RemoteProtocolError):
            getattr(msg, name)


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("70", 70), ("255", 255)])
def test_max_forwards_range(value: str, expected: int) -> None:
    """Max-Forwards from 0 to 255 is accepted."""
    assert Request("OPTIONS", "sip:a@b.example", [("Max-Forwards", value)]).max_forwards == expected


@pytest.mark.parametrize(
    ("header", "value", "prop"),
    [
        ("Max-Forwards", "256", "max_forwards"),
        ("Max-Forwards", "99999999999999999999999999999999", "max_forwards"),
        ("Max-Forwards", "-1", "max_forwards"),
        ("Max-Forwards", "seventy", "max_forwards"),
        ("CSeq", "2147483648 INVITE", "cseq"),
        ("CSeq", "1", "cseq"),
        ("From", "<sip:a@b", "from_"),
        ("To", 'Al"ice <sip:a@b.example>', "to"),
        ("Via", "SIP/2.0/UDP", "vias"),
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, garbage", "vias"),
        ("Via", 'SIP/2.0/UDP a;x="unterminated', "top_via"),
        ("Contact", "<sip:a@b>, *", "contacts"),
        ("Contact", "<sip:a@b", "contacts"),
        ("Route", "sip:a@b;lr junk", "routes"),
        ("Record-Route", "<sip:a@>", "record_routes"),
        ("Expires", "soon", "expires"),
        ("Expires", "-5", "expires"),
        ("Expires", "\u00b2", "expires"),
        ("Min-Expires", "1.5", "min_expires"),
        ("Event", "pres ence", "event"),
        ("Event", "presence;", "event"),
        ("Subscription-State", "active;expires=x", "subscription_state"),
        ("SIP-ETag", "a b", "sip_etag"),
        ("SIP-ETag", "", "sip_etag"),
        ("SIP-If-Match", '"quoted"', "sip_if_match"),
        ("Retry-After", "later", "retry_after"),
        ("WWW-Authenticate", "Digest realm", "www_authenticate"),
        ("Proxy-Authenticate", 'Digest realm="x', "proxy_authenticate"),
    ],
)
def test_malformed_typed_header_raises_protocol_error(header: str, value: str, prop: str) -> None:
    """Each malformed typed header raises RemoteProtocolError on access, nothing else."""
    msg = Request("OPTIONS", "sip:a@b.example", [(header, value)])
    with pytest.raises(RemoteProtocolError):
        getattr(msg, prop)


def test_typed_value_is_cached_until_headers_change() -> None:
    """A typed value is parsed once, then recomputed after set/add_first/remove."""
    msg = _notify()
    first = msg.cseq
    assert msg.cseq is first  # cached
    msg.headers.set("CSeq", "13 NOTIFY")
    assert msg.cseq == CSeq(13, "NOTIFY")

    assert len(msg.vias) == 3
    msg.headers.add_first("Via", "SIP/2.0/TLS new.example.com;branch=z9hG4bKnew")
    assert msg.top_via.host == "new.example.com"
    assert msg.top_via.transport == "TLS"
    assert len(msg.vias) == 4

    assert msg.contacts
    msg.headers.remove("m")
    assert msg.contacts == []

    assert msg.expires is None
    msg.headers.add("Expires", "30")
    assert msg.expires == 30

    state = msg.subscription_state
    assert state is not None and state.state == "active"
    msg.headers.set("Subscription-State", "terminated;reason=noresource")
    state = msg.subscription_state
    assert state is not None
    assert (state.state, state.reason) == ("terminated", "noresource")

    msg.headers.set("f", "<sip:bob@example.com>;tag=new")
    assert msg.from_.tag == "new"
    msg.headers.set("Event", "dialog;sla")
    event = msg.event
    assert event is not None and event.package == "dialog"
    msg.headers.set("Max-Forwards", "300")
    with pytest.raises(RemoteProtocolError):
        _ = msg.max_forwards


def test_content_type_is_lowercased_without_params() -> None:
    """content_type drops parameters and lower-cases the media type; 'c' works."""
    msg = Request("PUBLISH", "sip:a@b.example", [("c", " Application/PIDF+XML ;charset=UTF-8")])
    assert msg.content_type == "application/pidf+xml"
    msg.headers.set("Content-Type", 'multipart/related;type="application/rlmi+xml"')
    assert msg.content_type == "multipart/related"


def test_request_validate_checks_cseq_method() -> None:
    """validate() refuses a request whose CSeq method differs from the method."""
    raw = NOTIFY.replace(b"CSeq: 12 NOTIFY", b"CSeq: 12 SUBSCRIBE")
    msg = parse_message(raw)
    with pytest.raises(RemoteProtocolError):
        msg.validate()


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport",
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport=5060;received=192.0.2.9",
        "SIP/2.0/tcp h.example.com;branch=z9hG4bKx;ttl=16;maddr=224.2.0.1",
        "SIP/2.0/TLS [2001:db8::9]:65535;branch=z9hG4bKx",
        "SIP/2.0/UDP h.example.com",
        "SIP/2.0/UDP h.example.com;Branch=z9hG4bKx;hidden",
    ],
)
def test_plain_via_parses_as_the_general_grammar(text: str) -> None:
    """A Via of the common shape (its own quick path) parses to what the
    general grammar gives for the same value with surrounding spaces."""
    assert Via.parse(text) == Via.parse(f" {text} ")
    assert str(Via.parse(text)) == str(Via.parse(f" {text} "))


def test_cseq_parses_are_shared_and_still_checked() -> None:
    """The same CSeq text gives an equal value each time; a bad one is
    refused every time, not remembered."""
    assert CSeq.parse("1 PUBLISH") == CSeq.parse("1 PUBLISH") == CSeq(1, "PUBLISH")
    for _ in range(2):
        with pytest.raises(RemoteProtocolError):
            CSeq.parse("1 PUB LISH")
