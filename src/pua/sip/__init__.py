"""Sans-IO SIP: messages, parser, typed headers, URIs, non-INVITE transactions.

Nothing in this package performs IO, reads a clock or draws random numbers:
time comes in as ``now`` and identifiers from an :class:`~pua.sip.ids.Ids`.
"""

from __future__ import annotations

from .endpoint import (
    Datagram,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    SipEndpoint,
    TransactionTimedOut,
    TransportFailed,
    make_response,
)
from .errors import LocalProtocolError, MessageTooLarge, PuaError, RemoteProtocolError, SipError
from .headers import (
    Challenge,
    CSeq,
    Event,
    Headers,
    NameAddress,
    RetryAfter,
    SubscriptionState,
    Via,
)
from .ids import CountingIds, Ids
from .message import Message, Request, Response
from .parser import KeepAlive, StreamFramer, parse_message
from .timers import DeadlineQueue, TimerConfig
from .transaction import ClientTransaction, ServerTransaction
from .uri import AbsoluteUri, SipUri, Uri, parse_uri

__all__ = [
    "AbsoluteUri",
    "CSeq",
    "Challenge",
    "ClientTransaction",
    "CountingIds",
    "Datagram",
    "DeadlineQueue",
    "Event",
    "Headers",
    "Ids",
    "KeepAlive",
    "LocalProtocolError",
    "Message",
    "MessageDropped",
    "MessageTooLarge",
    "NameAddress",
    "PuaError",
    "RemoteProtocolError",
    "Request",
    "RequestReceived",
    "Response",
    "ResponseReceived",
    "RetryAfter",
    "ServerTransaction",
    "SipEndpoint",
    "SipError",
    "SipUri",
    "StreamFramer",
    "SubscriptionState",
    "TimerConfig",
    "TransactionTimedOut",
    "TransportFailed",
    "Uri",
    "Via",
    "make_response",
    "parse_message",
    "parse_uri",
]
