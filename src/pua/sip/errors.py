"""The error tree of pua.

::

    PuaError
     +-- BodyError                    an event document (XML, text) that cannot
     |                                be accepted: malformed, DTD/entities, too big
     +-- PresenceError                a publication or subscription failed for good
     |    +-- PublishError            (status and reason of the last answer)
     |    +-- SubscribeError
     +-- SipError
          +-- RemoteProtocolError     the peer sent bytes we cannot accept;
          |    |                      carries the status to answer with
          |    +-- MessageTooLarge    a limit was exceeded (513)
          +-- LocalProtocolError      the caller asked for something the
          |                           protocol does not allow (a bug on our side)
          +-- TransactionTimeout      no final response before timer F (§17.1.2.2)
          +-- TransportError          the transport could not carry a message

A :class:`RemoteProtocolError` is the only exception that bad bytes from the
wire may raise.  Its ``status`` and ``reason`` are what a server answers with
when the offending message was a request (RFC 3261 §8.2, §21.4); for a bad
response there is no one to answer and it is dropped.
"""

from __future__ import annotations

__all__ = [
    "BodyError",
    "PresenceError",
    "PublishError",
    "SubscribeError",
    "LocalProtocolError",
    "TransactionTimeout",
    "TransportError",
    "MessageTooLarge",
    "PuaError",
    "RemoteProtocolError",
    "SipError",
]


class PuaError(Exception):
    """Base of every error raised by pua."""


class BodyError(PuaError):
    """An event document that cannot be accepted (malformed, a DTD or an
    entity, over a size limit).  A NOTIFY carrying one is answered 400."""


class PresenceError(PuaError):
    """A publication or subscription failed for good.  ``status`` is the SIP
    status of the last answer (408 for a timeout), ``reason`` its phrase."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class PublishError(PresenceError):
    """A PUBLISH failed for good."""


class SubscribeError(PresenceError):
    """A SUBSCRIBE failed for good, or the subscription was terminated."""


class SipError(PuaError):
    """An error of the SIP layer."""


class RemoteProtocolError(SipError):
    """The peer sent something that violates RFC 3261 or its extensions.

    ``status`` is the response code a UAS answers with (400 unless a more
    precise code applies) and ``reason`` its reason phrase.
    """

    def __init__(self, message: str, *, status: int = 400, reason: str = "Bad Request") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


class MessageTooLarge(RemoteProtocolError):
    """A size limit was exceeded (RFC 3261 §21.4.12: 513 Message Too Large)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=513, reason="Message Too Large")


class LocalProtocolError(SipError):
    """The caller asked the SIP layer for something the protocol forbids."""


class TransactionTimeout(SipError):
    """A request got no final response before timer F fired (64*T1)."""


class TransportError(SipError):
    """A message could not be sent (no route, connection refused, ...)."""
