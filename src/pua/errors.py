"""The error tree of pua: every exception pua raises is one of these.

::

    PuaError
     +-- UsageError (ValueError)       an argument pua cannot use: a bad URI,
     |    |                            expires below -1, a body of the wrong type
     |    +-- UnknownEventError        an event name or flag that no package has;
     |                                 the message names the known ones
     +-- StateError (RuntimeError)     a call that does not fit now: the runtime
     |                                 is not started, a key of the other kind
     +-- BodyError (ValueError)        an event document that cannot be accepted:
     |                                 malformed, DTD/entities, too big
     +-- PresenceError                 a publication or subscription failed
     |    +-- PublishError             (status and reason of the answer; whether
     |                                 pua keeps retrying in the background)
     |    +-- SubscribeError
     +-- SipError
     |    +-- RemoteProtocolError      the peer sent bytes we cannot accept;
     |    |    |                       carries the status to answer with
     |    |    +-- MessageTooLarge     a limit was exceeded (513)
     |    +-- LocalProtocolError       the SIP layer was asked for something the
     |    |                            protocol does not allow (a bug on our side)
     |    +-- TransactionTimeout       no final response before timer F (§17.1.2.2)
     |    +-- TransportError           the transport could not carry a message
     |         +-- AddressInUse        a listen address is taken by another socket
     +-- ConfigError                   a setting that stops the start (pua.config)
     +-- StoreError                    the database could not do what was asked
     +-- ApiError                      the management API (pua.client) failed
     +-- RpcError                      a JSON-RPC error to answer with (pua.api)

A :class:`RemoteProtocolError` is the only exception that bad bytes from the
wire may raise.  Its ``status`` and ``reason`` are what a server answers with
when the offending message was a request (RFC 3261 §8.2, §21.4); for a bad
response there is no one to answer and it is dropped.  ConfigError,
StoreError, ApiError and RpcError are defined beside the code that raises
them; they derive from :class:`PuaError`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "AddressInUse",
    "BodyError",
    "LocalProtocolError",
    "MessageTooLarge",
    "PresenceError",
    "PuaError",
    "PublishError",
    "RemoteProtocolError",
    "SipError",
    "StateError",
    "SubscribeError",
    "TransactionTimeout",
    "TransportError",
    "UnknownEventError",
    "UsageError",
]


class PuaError(Exception):
    """Base of every error raised by pua."""


class UsageError(PuaError, ValueError):
    """An argument that pua cannot use (a bad URI, an expires below -1, a
    body that is neither bytes, text nor a document).  Also a ValueError."""


class UnknownEventError(UsageError):
    """An event name or flag that no registered package has.  ``known``
    lists the names that are."""

    def __init__(self, event: str | int, known: Iterable[str]) -> None:
        self.event = event
        self.known = tuple(known)
        what = f"event {event!r}" if isinstance(event, str) else f"event flag {event}"
        super().__init__(
            f"unknown {what}: known events are {', '.join(self.known)}"
            " (declare another with the events setting, NAME=TYPE/SUBTYPE, or"
            " add_event() in Python)"
        )


class StateError(PuaError, RuntimeError):
    """A call that does not fit the current state: the runtime is not
    started, or a key names a record of the other kind."""


class BodyError(PuaError, ValueError):
    """An event document that cannot be accepted (malformed, a DTD or an
    entity, over a size limit).  A NOTIFY carrying one is answered 400."""


class PresenceError(PuaError):
    """A publication or subscription failed.  ``status`` is the SIP status
    of the answer (408 for a local timeout, 503 for a transport failure),
    ``reason`` its phrase.  ``retrying`` says whether pua keeps trying in
    the background (the next try at ``retry_at``, Unix time); ``key`` is the
    record's key when there is one."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        reason: str,
        retrying: bool = False,
        retry_at: float | None = None,
        key: object = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retrying = retrying
        self.retry_at = retry_at
        self.key = key


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


class AddressInUse(TransportError):
    """A listen address is already bound by another socket (EADDRINUSE)."""

    def __init__(self, transport: str, host: str, port: int) -> None:
        shown = f"[{host}]" if ":" in host else host
        super().__init__(f"{transport} {shown}:{port} is already in use")
        self.transport = transport
        self.host = host
        self.port = port
