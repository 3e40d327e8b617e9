"""One table of messages that drives the parser and serializer tests.

Each case gives the bytes on the wire, what they parse to, and the bytes
the serializer writes for that message (the same, unless the wire form has
something the serializer normalises, such as folded lines).
"""

from __future__ import annotations

from dataclasses import dataclass, field

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">'
    b'<tuple id="t8a3"><status><basic>open</basic></status>'
    b"<note>Lunch</note></tuple></presence>"
)


@dataclass(frozen=True)
class Case:
    name: str
    wire: bytes
    start: tuple[str | int, ...]  # (method, uri) or (status, reason)
    headers: list[tuple[str, str]]
    body: bytes = b""
    canonical: bytes | None = None  # serializer output when != wire
    typed: dict[str, object] = field(default_factory=dict)

    @property
    def written(self) -> bytes:
        return self.wire if self.canonical is None else self.canonical


def _msg(start: str, headers: list[tuple[str, str]], body: bytes = b"") -> bytes:
    lines = [start, *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


PUBLISH_HEADERS = [
    ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport"),
    ("Max-Forwards", "70"),
    ("From", "<sip:alice@example.com>;tag=1928301774"),
    ("To", "<sip:alice@example.com>"),
    ("Call-ID", "a84b4c76e66710@pc33.example.com"),
    ("CSeq", "1 PUBLISH"),
    ("Event", "presence"),
    ("Expires", "3600"),
    ("Content-Type", "application/pidf+xml"),
    ("User-Agent", "pua/0.1"),
    ("Content-Length", str(len(PIDF))),
]

OK_HEADERS = [
    ("Via", "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds8;rport=5060;received=192.0.2.10"),
    ("From", "<sip:alice@example.com>;tag=1928301774"),
    ("To", "<sip:alice@example.com>;tag=a6c85cf"),
    ("Call-ID", "a84b4c76e66710@pc33.example.com"),
    ("CSeq", "1 PUBLISH"),
    ("SIP-ETag", "a.1700000000.1234.1.0"),
    ("Expires", "3600"),
    ("Content-Length", "0"),
]

NOTIFY_HEADERS = [
    ("v", "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK-524287-1---"),
    ("f", '"Presence Server" <sip:bob@example.com>;tag=ps1'),
    ("t", "<sip:alice@example.com>;tag=w2"),
    ("i", "sub-1@example.com"),
    ("CSeq", "2 NOTIFY"),
    ("o", "presence;id=7"),
    ("Subscription-State", "active;expires=599"),
    ("m", "<sip:ps@[2001:db8::1]:5060;transport=udp>"),
    ("c", "application/pidf+xml"),
    ("l", str(len(PIDF))),
]

CASES: list[Case] = [
    Case(
        "publish",
        _msg("PUBLISH sip:alice@example.com SIP/2.0", PUBLISH_HEADERS, PIDF),
        ("PUBLISH", "sip:alice@example.com"),
        PUBLISH_HEADERS,
        PIDF,
        typed={"cseq": (1, "PUBLISH"), "expires": 3600, "event": "presence", "branch": "z9hG4bKnashds8"},
    ),
    Case(
        "200-to-publish",
        _msg("SIP/2.0 200 OK", OK_HEADERS),
        (200, "OK"),
        OK_HEADERS,
        typed={"etag": "a.1700000000.1234.1.0", "expires": 3600, "cseq": (1, "PUBLISH")},
    ),
    Case(
        "notify-compact-ipv6",
        _msg("NOTIFY sip:alice@[2001:db8::2]:5062 SIP/2.0", NOTIFY_HEADERS, PIDF),
        ("NOTIFY", "sip:alice@[2001:db8::2]:5062"),
        NOTIFY_HEADERS,
        PIDF,
        typed={"cseq": (2, "NOTIFY"), "event": "presence", "substate": ("active", 599)},
    ),
    Case(
        "412-no-reason-text",
        _msg("SIP/2.0 412 ", OK_HEADERS[:5] + [("Content-Length", "0")]),
        (412, ""),
        OK_HEADERS[:5] + [("Content-Length", "0")],
        typed={"cseq": (1, "PUBLISH")},
    ),
    Case(
        "423-min-expires",
        _msg("SIP/2.0 423 Interval Too Brief", OK_HEADERS[:5] + [("Min-Expires", "1800"), ("Content-Length", "0")]),
        (423, "Interval Too Brief"),
        OK_HEADERS[:5] + [("Min-Expires", "1800"), ("Content-Length", "0")],
        typed={"min_expires": 1800},
    ),
    Case(
        "folded-lines-and-hcolon-space",
        b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx1,\r\n"
        b"  SIP/2.0/TCP 192.0.2.11;branch=z9hG4bKx0\r\n"
        b"From  : <sip:alice@example.com>;tag=9\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"Call-ID: c1\r\n"
        b"CSeq: 7\r\n\tSUBSCRIBE\r\n"
        b"Event: presence.winfo\r\n"
        b"Content-Length: 0\r\n\r\n",
        ("SUBSCRIBE", "sip:bob@example.com"),
        [
            ("Via", "SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx1, SIP/2.0/TCP 192.0.2.11;branch=z9hG4bKx0"),
            ("From", "<sip:alice@example.com>;tag=9"),
            ("To", "<sip:bob@example.com>"),
            ("Call-ID", "c1"),
            ("CSeq", "7 SUBSCRIBE"),
            ("Event", "presence.winfo"),
            ("Content-Length", "0"),
        ],
        canonical=b"SUBSCRIBE sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10;branch=z9hG4bKx1, SIP/2.0/TCP 192.0.2.11;branch=z9hG4bKx0\r\n"
        b"From: <sip:alice@example.com>;tag=9\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"Call-ID: c1\r\n"
        b"CSeq: 7 SUBSCRIBE\r\n"
        b"Event: presence.winfo\r\n"
        b"Content-Length: 0\r\n\r\n",
        typed={"vias": 2, "cseq": (7, "SUBSCRIBE"), "event": "presence.winfo"},
    ),
    Case(
        "leading-crlf-and-utf8-reason",
        b"\r\n\r\nSIP/2.0 489 \xc3\x89v\xc3\xa9nement inconnu\r\n"
        + b"\r\n".join(f"{n}: {v}".encode() for n, v in OK_HEADERS[:5])
        + b"\r\nAllow-Events: presence, message-summary\r\nContent-Length: 0\r\n\r\n",
        (489, "Événement inconnu"),
        OK_HEADERS[:5] + [("Allow-Events", "presence, message-summary"), ("Content-Length", "0")],
        canonical=b"SIP/2.0 489 \xc3\x89v\xc3\xa9nement inconnu\r\n"
        + b"\r\n".join(f"{n}: {v}".encode() for n, v in OK_HEADERS[:5])
        + b"\r\nAllow-Events: presence, message-summary\r\nContent-Length: 0\r\n\r\n",
        typed={"allow_events": ["presence", "message-summary"]},
    ),
]
