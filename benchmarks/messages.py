"""The messages the benchmarks use: a typical PUBLISH, its 200, a NOTIFY."""

from __future__ import annotations

PIDF = (
    b'<?xml version="1.0" encoding="UTF-8"?>\r\n'
    b'<presence xmlns="urn:ietf:params:xml:ns:pidf" '
    b'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
    b'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:alice@example.com">'
    b'<tuple id="t8a3f2"><status><basic>open</basic></status></tuple>'
    b'<dm:person id="p1"><rpid:activities><rpid:on-the-phone/></rpid:activities>'
    b"</dm:person><note>On the phone</note></presence>"
)

_PUBLISH_HEAD = (
    "PUBLISH sip:alice@example.com SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;rport;branch=z9hG4bKpua8f3a2c1d9e\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:alice@example.com>;tag=8c1f0e2a9b\r\n"
    "To: <sip:alice@example.com>\r\n"
    "Call-ID: 5f2c9a1e7b3d4c6f8a0b2d4e6f8a0b2c\r\n"
    "CSeq: 1 PUBLISH\r\n"
    "Event: presence\r\n"
    "Expires: 3600\r\n"
    "Content-Type: application/pidf+xml\r\n"
    "User-Agent: pua/0.1\r\n"
    "Content-Length: {length}\r\n\r\n"
)

PUBLISH = _PUBLISH_HEAD.format(length=len(PIDF)).encode() + PIDF

OK = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;rport=5060;branch=z9hG4bKpua8f3a2c1d9e;received=192.0.2.10\r\n"
    b"From: <sip:alice@example.com>;tag=8c1f0e2a9b\r\n"
    b"To: <sip:alice@example.com>;tag=4f3ad2e0a5b2c5a1e5a5e0e3ad2c40a1-7a2c\r\n"
    b"Call-ID: 5f2c9a1e7b3d4c6f8a0b2d4e6f8a0b2c\r\n"
    b"CSeq: 1 PUBLISH\r\n"
    b"Expires: 3600\r\n"
    b"SIP-ETag: a.1764140000.4211.1.0\r\n"
    b"Server: kamailio (5.6.3 (x86_64/linux))\r\n"
    b"Content-Length: 0\r\n\r\n"
)

NOTIFY = (
    "NOTIFY sip:pua@192.0.2.10:5060 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKcydzigwkX\r\n"
    "To: <sip:bob@example.com>;tag=5b3c1e\r\n"
    "From: <sip:alice@example.com>;tag=4f3ad2e0a5b2c5a1e5a5e0e3ad2c40a1-9c1b\r\n"
    "CSeq: 2 NOTIFY\r\n"
    "Call-ID: 7c9d1e3f5a7b9c1d3e5f7a9b1c3d5e7f\r\n"
    "Max-Forwards: 70\r\n"
    "Content-Type: application/pidf+xml\r\n"
    "Event: presence\r\n"
    "Contact: <sip:192.0.2.1:5060>\r\n"
    "Subscription-State: active;expires=3599\r\n"
    f"Content-Length: {len(PIDF)}\r\n\r\n"
).encode() + PIDF
