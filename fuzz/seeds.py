"""Seed corpora of the fuzz targets: RFC 4475's torture messages, the
messages pua exchanges, and one document or more of every event format.

Coverage-guided fuzzing mutates these; a seed that reaches deep into a
reader saves the fuzzer from finding the grammar on its own.
"""

from __future__ import annotations

from pathlib import Path

from pua.bodies import (
    DIALOG_INFO_CONTENT_TYPE,
    MESSAGE_SUMMARY_CONTENT_TYPE,
    PIDF_CONTENT_TYPE,
    REGINFO_CONTENT_TYPE,
    WATCHERINFO_CONTENT_TYPE,
)

from .targets import TYPED_HEADERS, Target, subscribed_engine

__all__ = ["RFC4475", "seeds_for"]

RFC4475 = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "rfc4475"

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf"'
    b' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
    b' xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">'
    b'<tuple id="t1"><status><basic>open</basic></status>'
    b'<contact priority="0.8">sip:alice@192.0.2.3</contact><note xml:lang="en">Lunch</note>'
    b"<timestamp>2026-11-30T12:00:00Z</timestamp></tuple>"
    b'<tuple id="t2"><status><basic>closed</basic></status></tuple>'
    b'<dm:person id="p1"><rpid:activities><rpid:meeting/><rpid:on-the-phone/></rpid:activities>'
    b"<dm:note>In a call</dm:note></dm:person><note>Away</note></presence>"
)
WATCHERINFO = (
    b'<?xml version="1.0"?>\n'
    b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">'
    b'<watcher-list resource="sip:alice@example.com" package="presence">'
    b'<watcher id="w1" status="active" event="approved" display-name="Bob"'
    b' expiration="3600" duration-subscribed="10" xml:lang="en">sip:bob@example.com</watcher>'
    b'<watcher id="w2" status="pending" event="subscribe">sip:carol@example.com</watcher>'
    b'</watcher-list><watcher-list resource="sip:alice@example.com" package="dialog"/>'
    b"</watcherinfo>"
)
DIALOG_INFO = (
    b'<?xml version="1.0"?>\n'
    b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="1" state="full"'
    b' entity="sip:alice@example.com">'
    b'<dialog id="d1" call-id="c1" local-tag="l1" remote-tag="r1" direction="initiator">'
    b'<state event="remote-bye" code="200">terminated</state><duration>30</duration>'
    b'<local><identity display="Alice">sip:alice@example.com</identity>'
    b'<target uri="sip:alice@192.0.2.3"><param pname="+sip.rendering" pval="yes"/></target>'
    b"</local><remote><identity>sip:bob@example.com</identity></remote></dialog>"
    b'<dialog id="d2"><state>early</state></dialog></dialog-info>'
)
REGINFO = (
    b'<?xml version="1.0"?>\n'
    b'<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" version="0" state="full">'
    b'<registration aor="sip:alice@example.com" id="a7" state="active">'
    b'<contact id="c1" state="active" event="registered" duration-registered="7"'
    b' expires="3593" q="0.8" callid="x" cseq="2"><uri>sip:alice@192.0.2.3</uri>'
    b'<display-name xml:lang="en">Alice</display-name><unknown-param name="x">y</unknown-param>'
    b'</contact><contact id="c2" state="terminated" event="expired"><uri>sip:a@b</uri></contact>'
    b'</registration><registration aor="sip:bob@example.com" id="b1" state="init"/></reginfo>'
)
MESSAGE_SUMMARY = (
    b"Messages-Waiting: yes\r\n"
    b"Message-Account: sip:alice@vmail.example.com\r\n"
    b"Voice-Message: 2/8 (0/2)\r\n"
    b"Fax-Message: 0/0\r\n"
    b"\r\n"
    b"To: <alice@example.com>\r\n"
    b"From: <bob@example.com>\r\n"
    b"Subject: a long\r\n  subject\r\n"
)

DOCUMENTS: dict[str, list[bytes]] = {
    PIDF_CONTENT_TYPE: [
        PIDF,
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:a@b"/>',
        # tuples and persons without ids, for the assign_ids hook
        b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"'
        b' xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"><tuple><status><basic>open'
        b'</basic></status></tuple><tuple id="t0"/><dm:person/></presence>',
    ],
    WATCHERINFO_CONTENT_TYPE: [
        WATCHERINFO,
        b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="4" state="partial"/>',
    ],
    DIALOG_INFO_CONTENT_TYPE: [
        DIALOG_INFO,
        b'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="0" state="partial"'
        b' entity="sip:a@b"/>',
    ],
    REGINFO_CONTENT_TYPE: [REGINFO],
    MESSAGE_SUMMARY_CONTENT_TYPE: [MESSAGE_SUMMARY, b"Messages-Waiting: no\r\n"],
}
# Every body target also starts from what a hostile server sends.
HOSTILE_DOCUMENTS = [
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><presence>&lol;</presence>',
    b'<?xml version="1.0" encoding="UTF-16"?><presence/>',
    b"<a>" * 300 + b"</a>" * 300,
]


def _message(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start, *(f"{name}: {value}" for name, value in headers)]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_DIALOG = [
    ("Via", "SIP/2.0/UDP 192.0.2.9:5070;branch=z9hG4bK776asdhds;rport"),
    ("Max-Forwards", "70"),
    ("From", '"Bob" <sip:bob@example.com>;tag=1928301774'),
    ("To", "<sip:alice@example.com>"),
    ("Call-ID", "a84b4c76e66710@192.0.2.9"),
]

MESSAGES = [
    _message(
        "PUBLISH sip:alice@example.com SIP/2.0",
        [
            *_DIALOG,
            ("CSeq", "1 PUBLISH"),
            ("Event", "presence"),
            ("Expires", "3600"),
            ("SIP-If-Match", "dx200xyz"),
            ("Content-Type", PIDF_CONTENT_TYPE),
        ],
        PIDF,
    ),
    _message(
        "SIP/2.0 200 OK",
        [
            *_DIALOG[:1],
            *_DIALOG[2:],
            ("CSeq", "1 PUBLISH"),
            ("SIP-ETag", "kwj449x"),
            ("Expires", "1800"),
        ],
    ),
    _message(
        "SIP/2.0 401 Unauthorized",
        [
            *_DIALOG[:1],
            *_DIALOG[2:],
            ("CSeq", "2 SUBSCRIBE"),
            (
                "WWW-Authenticate",
                'Digest realm="example.com", nonce="84a4cc6f3082121f32b42a2187831a9e",'
                ' qop="auth,auth-int", algorithm=SHA-256, opaque="5ccc069c", stale=FALSE',
            ),
        ],
    ),
    _message(
        "SIP/2.0 503 Service Unavailable",
        [
            *_DIALOG[:1],
            *_DIALOG[2:],
            ("CSeq", "3 PUBLISH"),
            ("Retry-After", "18000;duration=3600 (maintenance)"),
        ],
    ),
    _message(
        "SIP/2.0 423 Interval Too Brief",
        [*_DIALOG[:1], *_DIALOG[2:], ("CSeq", "4 SUBSCRIBE"), ("Min-Expires", "1800")],
    ),
    _message(
        "SUBSCRIBE sip:alice@example.com SIP/2.0",
        [
            *_DIALOG,
            ("CSeq", "5 SUBSCRIBE"),
            ("Contact", "<sip:bob@192.0.2.9:5070;transport=udp>;expires=60"),
            ("Route", "<sip:p1.example.com;lr>, <sip:[2001:db8::1]:5062;lr;maddr=192.0.2.7>"),
            ("Event", "dialog;sla;id=7"),
            ("Accept", "application/dialog-info+xml"),
            (
                "Proxy-Authorization",
                'Digest username="bob", realm="example.com", nonce="n", uri="sip:a@b",'
                ' response="0123456789abcdef0123456789abcdef"',
            ),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
        ],
    ),
]

HEADER_VALUES = {
    "From": ['"A \\"q\\"" <sip:a@b;transport=tcp>;tag=x', "sip:a@b;tag=1", "<tel:+1234>"],
    "To": ["<sips:a@[2001:db8::1]:5061>", "Bob <sip:b@c>;tag=2;x"],
    "Via": [
        "SIP/2.0/TCP [2001:db8::2]:5060;branch=z9hG4bKa;received=192.0.2.1;rport=1",
        "SIP / 2.0 / UDP h.example ; branch = z9hG4bKb , SIP/2.0/TLS t:5061;branch=x",
    ],
    "Contact": [
        "*",
        '<sip:a@b>;q=0.7;expires=60, "x" <sip:c@d>',
        'sip:e@f;+sip.instance="<urn:x>"',
    ],
    "Route": ["<sip:p1;lr>,<sip:p2:5070;lr;transport=tcp>"],
    "Record-Route": ["<sip:192.0.2.1;lr;ftag=x>"],
    "CSeq": ["4711 NOTIFY", "0009 INVITE"],
    "Expires": ["0", "4294967295", "00003600"],
    "Min-Expires": ["60"],
    "Max-Forwards": ["70", "0068"],
    "Event": ["presence;id=1", "dialog;sla", "message-summary"],
    "Subscription-State": [
        "active;expires=600",
        "terminated;reason=probation;retry-after=30",
        "pending;expires=1;x=y",
    ],
    "SIP-ETag": ["kwj449x"],
    "SIP-If-Match": ["dx200xyz"],
    "Retry-After": ["120 (I'm in a meeting);duration=1800"],
    "WWW-Authenticate": ['Digest realm="r", nonce="n", qop="auth", algorithm=MD5, stale=true'],
    "Proxy-Authenticate": ['Digest realm="r", nonce="n", domain="sip:a sip:b", opaque="o"'],
    "Date": ["Sat, 13 Nov 2010 23:29:00 GMT"],
    "Content-Type": ["application/pidf+xml;charset=utf-8", "multipart/related;boundary=x"],
}


def _notifies() -> list[bytes]:
    """NOTIFYs in each dialog of the fuzzed engine, one per state, with a
    document of the dialog's package."""
    _, dialogs = subscribed_engine()
    bodies = {
        "presence": (PIDF_CONTENT_TYPE, PIDF),
        "presence.winfo": (WATCHERINFO_CONTENT_TYPE, WATCHERINFO),
        "message-summary": (MESSAGE_SUMMARY_CONTENT_TYPE, MESSAGE_SUMMARY),
        "dialog": (DIALOG_INFO_CONTENT_TYPE, DIALOG_INFO),
        "reg": (REGINFO_CONTENT_TYPE, REGINFO),
    }
    states = [
        "active;expires=300",
        "pending",
        "terminated;reason=deactivated",
        "terminated;reason=giveup;retry-after=60",
        "terminated;reason=rejected",
    ]
    out = []
    for n, dialog in enumerate(dialogs):
        content_type, body = bodies[dialog.event]
        for state in states:
            out.append(
                _message(
                    "NOTIFY sip:bob@192.0.2.9:5070 SIP/2.0",
                    [
                        ("Via", f"SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKn{n}"),
                        ("Max-Forwards", "70"),
                        ("From", f"<sip:alice@example.com>;tag={dialog.their_tag}"),
                        ("To", f"<sip:bob@example.com>;tag={dialog.our_tag}"),
                        ("Call-ID", dialog.call_id),
                        ("CSeq", "2 NOTIFY"),
                        ("Event", dialog.event),
                        ("Subscription-State", state),
                        ("Contact", "<sip:ps@192.0.2.1:5060>"),
                        ("Content-Type", content_type),
                    ],
                    body,
                )
            )
    return out


def _rfc4475() -> list[bytes]:
    return [path.read_bytes() for path in sorted(RFC4475.glob("*.dat"))]


def seeds_for(target: Target) -> list[bytes]:
    """The seed corpus of ``target``."""
    kind = target.seeds
    if kind == "messages":
        return _rfc4475() + MESSAGES
    if kind == "stream":
        # The first byte picks the chunk sizes (see targets.stream_input).
        stream = b"".join(MESSAGES) + b"\r\n\r\n" + MESSAGES[0]
        return [bytes([k]) + stream for k in (0, 5, 12)] + [bytes([3]) + m for m in _rfc4475()]
    if kind == "headers":
        return [
            bytes([TYPED_HEADERS.index(name)]) + value.encode()
            for name, values in HEADER_VALUES.items()
            for value in values
        ]
    if kind == "notify":
        return _notifies() + MESSAGES
    return DOCUMENTS[kind] + HOSTILE_DOCUMENTS
