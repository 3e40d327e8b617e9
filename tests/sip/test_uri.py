"""SIP/SIPS and other absolute URIs: parsing, errors, RFC 3261 §19.1.4 comparison."""

from __future__ import annotations

import pytest

from pua.errors import RemoteProtocolError
from pua.sip.uri import AbsoluteUri, SipUri, parse_uri

# ---------------------------------------------------------------------------
# Parsing of sip: and sips: URIs (RFC 3261 §19.1.1, §19.1.3, §25.1)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "user", "password", "host", "port"),
    [
        # The examples of RFC 3261 §19.1.3.
        ("sip:alice@atlanta.com", "sip", "alice", None, "atlanta.com", None),
        (
            "sip:alice:secretword@atlanta.com;transport=tcp",
            "sip",
            "alice",
            "secretword",
            "atlanta.com",
            None,
        ),
        (
            "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
            "sips",
            "alice",
            None,
            "atlanta.com",
            None,
        ),
        (
            "sip:+1-212-555-1212:1234@gateway.com;user=phone",
            "sip",
            "+1-212-555-1212",
            "1234",
            "gateway.com",
            None,
        ),
        ("sips:1212@gateway.com", "sips", "1212", None, "gateway.com", None),
        ("sip:alice@192.0.2.4", "sip", "alice", None, "192.0.2.4", None),
        (
            "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
            "sip",
            None,
            None,
            "atlanta.com",
            None,
        ),
        (
            "sip:alice;day=tuesday@atlanta.com",
            "sip",
            "alice;day=tuesday",
            None,
            "atlanta.com",
            None,
        ),
        # Host names, ports, IPv4 and IPv6 references.
        ("sip:bob@biloxi.example.com:5070", "sip", "bob", None, "biloxi.example.com", 5070),
        ("sip:host.example.com.", "sip", None, None, "host.example.com.", None),
        ("sip:a-b.c-d.example", "sip", None, None, "a-b.c-d.example", None),
        ("sip:10.0.0.1:65535", "sip", None, None, "10.0.0.1", 65535),
        ("sip:[2001:db8::10]", "sip", None, None, "[2001:db8::10]", None),
        ("sip:[2001:db8::10]:5070", "sip", None, None, "[2001:db8::10]", 5070),
        ("sips:user@[::ffff:192.0.2.10]:19823", "sips", "user", None, "[::ffff:192.0.2.10]", 19823),
        ("sip:[::1]:0", "sip", None, None, "[::1]", 0),
        # Empty password, escaped characters in user and password.
        ("sip:user:@h.example", "sip", "user", "", "h.example", None),
        ("sip:%61lice@atlanta.com", "sip", "%61lice", None, "atlanta.com", None),
        ("sip:user%20name:p%40ss@h.example", "sip", "user%20name", "p%40ss", "h.example", None),
    ],
)
def test_parse_sip_uri_components(
    text: str, scheme: str, user: str | None, password: str | None, host: str, port: int | None
) -> None:
    """Each component of a well-formed sip:/sips: URI lands in its field, escapes kept."""
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        scheme,
        user,
        password,
        host,
        port,
    )
    assert uri.secure is (scheme == "sips")


def test_parse_params_with_and_without_values() -> None:
    """URI parameters keep their order; a valueless one has value None."""
    uri = parse_uri("sip:p1.example.com;lr;transport=tcp;maddr=[2001:db8::1];x-tag=a%20b")
    assert isinstance(uri, SipUri)
    assert uri.params == (
        ("lr", None),
        ("transport", "tcp"),
        ("maddr", "[2001:db8::1]"),
        ("x-tag", "a%20b"),
    )
    assert uri.param("LR") == ""
    assert uri.param("Transport") == "tcp"
    assert uri.param("missing") is None
    assert uri.param("missing", "dflt") == "dflt"
    assert uri.has_param("lr") and not uri.has_param("ttl")


def test_parse_headers_after_question_mark() -> None:
    """The ?hname=hvalue&... part becomes headers, separate from the parameters."""
    uri = parse_uri("sip:alice@atlanta.com;transport=tcp?subject=project%20x&priority=urgent&x=")
    assert isinstance(uri, SipUri)
    assert uri.params == (("transport", "tcp"),)
    assert uri.headers == (("subject", "project%20x"), ("priority", "urgent"), ("x", ""))


def test_parse_ipv6_with_params_and_port() -> None:
    """Colons inside an IPv6 reference are not mistaken for the port separator."""
    uri = parse_uri("sip:bob@[2001:db8:0:0:8:800:200c:417a]:5061;transport=tls")
    assert isinstance(uri, SipUri)
    assert uri.host == "[2001:db8:0:0:8:800:200c:417a]"
    assert uri.port == 5061
    assert uri.hostport == "[2001:db8:0:0:8:800:200c:417a]:5061"
    assert uri.param("transport") == "tls"


def test_scheme_is_case_insensitive() -> None:
    """SIP: and SIPS: are recognised as the sip/sips schemes."""
    upper = parse_uri("SIPS:bob@biloxi.com")
    assert isinstance(upper, SipUri)
    assert upper.scheme == "sips"
    assert upper.secure


def test_hostport_and_aor() -> None:
    """hostport shows the port only when given; aor is scheme:user@host, host lower-cased."""
    uri = parse_uri("sip:Bob@BILOXI.com:5070;transport=udp?x=y")
    assert isinstance(uri, SipUri)
    assert uri.hostport == "BILOXI.com:5070"
    assert uri.aor == "sip:Bob@biloxi.com"
    no_user = parse_uri("sips:biloxi.com")
    assert isinstance(no_user, SipUri)
    assert no_user.hostport == "biloxi.com"
    assert no_user.aor == "sips:biloxi.com"


def test_with_params_and_without_params() -> None:
    """with_params replaces or adds parameters; without_params drops params and headers."""
    uri = parse_uri("sip:a@b.example;transport=udp;lr?subject=x")
    assert isinstance(uri, SipUri)
    changed = uri.with_params(transport="tcp", ob=None)
    assert changed.param("transport") == "tcp"
    assert changed.has_param("ob") and changed.param("ob") == ""
    assert str(changed) == "sip:a@b.example;lr;transport=tcp;ob?subject=x"
    assert uri.param("transport") == "udp"  # the original is untouched
    assert str(uri.without_params()) == "sip:a@b.example"


# ---------------------------------------------------------------------------
# Other absolute URIs are carried as text
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "scheme", "opaque"),
    [
        ("tel:+1-201-555-0123", "tel", "+1-201-555-0123"),
        ("tel:7042;phone-context=example.com", "tel", "7042;phone-context=example.com"),
        ("urn:service:sos", "urn", "service:sos"),
        (
            "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            "urn",
            "uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        ),
        ("mailto:alice@atlanta.com", "mailto", "alice@atlanta.com"),
        ("pres:alice@atlanta.com", "pres", "alice@atlanta.com"),
    ],
)
def test_non_sip_uri_is_absolute_uri(text: str, scheme: str, opaque: str) -> None:
    """tel:, urn:, mailto:, pres: parse as AbsoluteUri keeping the text after the colon."""
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert (uri.scheme, uri.opaque) == (scheme, opaque)
    assert str(uri) == text
    assert uri.aor == text
    assert uri.param("user") is None


def test_absolute_uri_never_equals_sip_uri() -> None:
    """A tel: URI and a sip: URI with the same digits are different URIs."""
    tel = parse_uri("tel:+15551234")
    sip = parse_uri("sip:+15551234@gw.example.com;user=phone")
    assert tel != sip
    assert sip != tel
    assert parse_uri("tel:+15551234") == tel


# ---------------------------------------------------------------------------
# Bad URIs
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@atlanta.com",  # no scheme
        ":alice@atlanta.com",  # empty scheme
        "1sip:alice@atlanta.com",  # scheme must start with a letter
        "sip:",  # nothing at all
        "sip:alice@",  # missing host
        "sip:@atlanta.com",  # empty user
        "sip:alice@;transport=tcp",  # missing host before params
        "sip:alice@atlanta.com:",  # empty port
        "sip:alice@atlanta.com:50a0",  # bad port
        "sip:alice@atlanta.com:-1",
        "sip:alice@atlanta.com:65536",  # port > 65535
        "sip:alice@atlanta.com:99999",
        "sip:alice@atlanta.com:123456",
        "sip:alice smith@atlanta.com",  # space in user
        "sip:alice@atlanta .com",  # space in host
        "sip:alice@atlanta.com ;lr",  # space before params
        " sip:alice@atlanta.com",  # leading space
        "sip:alice@atlanta.com\r\n",  # trailing CRLF
        "sip:[2001:db8::1",  # unbalanced IPv6 bracket
        "sip:2001:db8::1]",
        "sip:[2001:db8::1]:",  # empty port after IPv6
        "sip:[2001:db8::1]5060",  # junk after the bracket
        "sip:[2001:db8::1]:70000",
        "sip:[zz::1]",  # not an IPv6 address
        "sip:[]",
        "sip:under_score.example.com",  # '_' is not a hostname character
        "sip:-lead.example.com",
        "sip:a..b.example.com",
        "sip:a%zz@atlanta.com",  # bad escape in user
        "sip:a%4@atlanta.com",  # truncated escape
        "sip:a@b@atlanta.com",  # second '@'
        "sip:alice@atlanta.com;",  # empty parameter
        "sip:alice@atlanta.com;=tcp",  # parameter without a name
        "sip:alice@atlanta.com;transport=",  # '=' without a value
        'sip:alice@atlanta.com;x="q"',  # quotes are not paramchars
        "sip:alice@atlanta.com?",  # empty header part
        "sip:alice@atlanta.com?=v",  # header without a name
        "sip:alice@atlanta.com?a=b c",  # space in a header value
        "tel:",  # empty opaque part
        "tel:+1 555",  # space in another scheme
        'urn:"x"',
        "mailto:<a@b>",
    ],
)
def test_bad_uri_raises_400(text: str) -> None:
    """A malformed URI raises RemoteProtocolError with status 400."""
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status == 400
    assert info.value.reason == "Bad Request"


def test_uri_header_without_equals_is_rejected() -> None:
    """'?subject' lacks the mandatory '=' of a URI header and must be rejected."""
    with pytest.raises(RemoteProtocolError):
        parse_uri("sip:alice@atlanta.com?subject")


# ---------------------------------------------------------------------------
# Comparison (RFC 3261 §19.1.4), using the RFC's own example sets
# ---------------------------------------------------------------------------

# "The URIs within each of the following sets are equivalent"
RFC_EQUIVALENT = [
    ("sip:%61lice@atlanta.com;transport=TCP", "sip:alice@AtLanTa.CoM;Transport=tcp"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=on"),
    ("sip:carol@chicago.com;newparam=5", "sip:carol@chicago.com;security=on"),
    (
        "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
        "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com",
    ),
    (
        "sip:alice@atlanta.com?subject=project%20x&priority=urgent",
        "sip:alice@atlanta.com?priority=urgent&subject=project%20x",
    ),
    # The non-transitivity note: both of these equal the bare URI...
    ("sip:carol@chicago.com", "sip:carol@chicago.com;security=off"),
]

# "The URIs within each of the following sets are not equivalent"
RFC_NOT_EQUIVALENT = [
    # different usernames
    ("SIP:ALICE@AtLanTa.CoM;Transport=udp", "sip:alice@AtLanTa.CoM;Transport=UDP"),
    # can resolve to different ports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
    # can resolve to different transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com;transport=udp"),
    # can resolve to different port and transports
    ("sip:bob@biloxi.com", "sip:bob@biloxi.com:6000;transport=tcp"),
    # different header component
    ("sip:carol@chicago.com", "sip:carol@chicago.com?Subject=next%20meeting"),
    # even though that's what phone21.boxesbybob.com resolves to
    ("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
    # ...but the two differing values of the same parameter do not match.
    ("sip:carol@chicago.com;security=on", "sip:carol@chicago.com;security=off"),
]


@pytest.mark.parametrize(("left", "right"), RFC_EQUIVALENT)
def test_rfc3261_equivalent_uris_compare_equal(left: str, right: str) -> None:
    """Each pair the RFC lists as equivalent compares equal both ways and hashes equal."""
    a, b = parse_uri(left), parse_uri(right)
    assert a == b
    assert b == a
    assert hash(a) == hash(b)
    assert len({a, b}) == 1


@pytest.mark.parametrize(("left", "right"), RFC_NOT_EQUIVALENT)
def test_rfc3261_non_equivalent_uris_differ(left: str, right: str) -> None:
    """Each pair the RFC lists as not equivalent compares unequal both ways."""
    a, b = parse_uri(left), parse_uri(right)
    assert a != b
    assert b != a


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        # userinfo is case-sensitive, host is not.
        ("sip:Alice@atlanta.com", "sip:alice@atlanta.com", False),
        ("sip:alice:Secret@atlanta.com", "sip:alice:secret@atlanta.com", False),
        ("sip:alice@ATLANTA.COM", "sip:alice@atlanta.com", True),
        # a user or password present in only one URI never matches
        ("sip:atlanta.com", "sip:alice@atlanta.com", False),
        ("sip:alice@atlanta.com", "sip:alice:pw@atlanta.com", False),
        # sip and sips are different schemes
        ("sip:alice@atlanta.com", "sips:alice@atlanta.com", False),
        # unreserved characters equal their escapes, in user and password
        ("sip:%41lice:p%61ss@atlanta.com", "sip:Alice:pass@atlanta.com", True),
        ("sip:alice%2eb@atlanta.com", "sip:alice.b@atlanta.com", True),
        # hex digits of an escape are case-insensitive
        ("sip:a%3bb@atlanta.com", "sip:a%3Bb@atlanta.com", True),
        # reserved characters do not equal their escapes
        ("sip:a%3Bb@atlanta.com", "sip:a;b@atlanta.com", False),
        ("sip:a%2Bb@atlanta.com", "sip:a+b@atlanta.com", False),
        # user, ttl, method, maddr in only one URI never match
        ("sip:alice@atlanta.com;user=phone", "sip:alice@atlanta.com", False),
        ("sip:alice@atlanta.com;ttl=1", "sip:alice@atlanta.com", False),
        ("sip:alice@atlanta.com;method=INVITE", "sip:alice@atlanta.com", False),
        ("sip:alice@atlanta.com;maddr=239.255.255.1", "sip:alice@atlanta.com", False),
        # parameters in both must match; names and values case-insensitive
        ("sip:alice@atlanta.com;lr", "sip:alice@atlanta.com;LR", True),
        ("sip:alice@atlanta.com;x=1", "sip:alice@atlanta.com;x=2", False),
        ("sip:alice@atlanta.com;lr", "sip:alice@atlanta.com;lr=on", False),
        (
            "sip:alice@atlanta.com;MADDR=ABC.example",
            "sip:alice@atlanta.com;maddr=abc.example",
            True,
        ),
        # other parameters in one URI only are ignored
        ("sip:alice@atlanta.com;lr", "sip:alice@atlanta.com", True),
        # header names are case-insensitive, headers are never ignored
        ("sip:biloxi.com?to=sip:bob%40biloxi.com", "sip:biloxi.com?TO=sip:bob%40biloxi.com", True),
        ("sip:biloxi.com?to=a", "sip:biloxi.com?to=b", False),
        ("sip:biloxi.com?to=a", "sip:biloxi.com?to=a&subject=b", False),
        # ports compare as numbers
        ("sip:alice@atlanta.com:05060", "sip:alice@atlanta.com:5060", True),
        ("sip:alice@atlanta.com:5060", "sip:alice@atlanta.com:5061", False),
        # IPv6 references compare case-insensitively like host names
        ("sip:[2001:DB8::1]:5060", "sip:[2001:db8::1]:5060", True),
    ],
)
def test_comparison_rules(left: str, right: str, equal: bool) -> None:
    """Further §19.1.4 rules: userinfo case, escapes, must-match parameters, headers, ports."""
    a, b = parse_uri(left), parse_uri(right)
    assert (a == b) is equal
    assert (b == a) is equal
    if equal:
        assert hash(a) == hash(b)


def test_sip_uri_is_not_equal_to_a_string() -> None:
    """Comparison with a non-URI object is not equality with its text."""
    uri = parse_uri("sip:alice@atlanta.com")
    assert uri != "sip:alice@atlanta.com"


# ---------------------------------------------------------------------------
# Round trip: str(parse_uri(s)) == s
# ---------------------------------------------------------------------------

ROUND_TRIP = [
    "sip:alice@atlanta.com",
    "sip:alice:secretword@atlanta.com;transport=tcp",
    "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
    "sip:+1-212-555-1212:1234@gateway.com;user=phone",
    "sips:1212@gateway.com",
    "sip:alice@192.0.2.4",
    "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
    "sip:alice;day=tuesday@atlanta.com",
    "sip:%61lice@atlanta.com;transport=TCP",
    "sip:alice@AtLanTa.CoM;Transport=tcp",
    "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
    "sip:bob@biloxi.com:6000;transport=tcp",
    "sip:carol@chicago.com?Subject=next%20meeting",
    "sip:user:@h.example",
    "sip:[2001:db8::10]",
    "sip:[2001:db8::10]:5070;lr;maddr=[2001:db8::1]",
    "sips:user@[::ffff:192.0.2.10]:19823",
    "sip:p1.example.com;lr;ob;x-a=b%20c?h=&k=v",
    "sip:host.example.com.:5060",
    "tel:+1-201-555-0123;phone-context=example.com",
    "urn:service:sos",
    "mailto:alice@atlanta.com",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip(text: str) -> None:
    """Serializing a parsed well-formed URI gives back exactly the text parsed."""
    assert str(parse_uri(text)) == text


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_reparse_equal(text: str) -> None:
    """Parsing the serialization of a URI gives an equal URI."""
    uri = parse_uri(text)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize("text", ["SIP:ALICE@AtLanTa.CoM;Transport=udp", "TEL:+15551234"])
def test_scheme_is_normalised_to_lower_case(text: str) -> None:
    """The scheme is case-insensitive (§19.1.4): it is written in lower case,
    the rest of the URI as it came, and the result is the same URI."""
    scheme, _, rest = text.partition(":")
    written = str(parse_uri(text))
    assert written == f"{scheme.lower()}:{rest}"
    assert parse_uri(written) == parse_uri(text)
