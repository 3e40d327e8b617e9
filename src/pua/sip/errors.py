"""The SIP layer's errors: the SipError branch of the one tree in
:mod:`pua.errors` (drawn there), re-exported for the SIP layer's users."""

from __future__ import annotations

from pua.errors import (
    LocalProtocolError,
    MessageTooLarge,
    PuaError,
    RemoteProtocolError,
    SipError,
    TransactionTimeout,
    TransportError,
)

__all__ = [
    "LocalProtocolError",
    "MessageTooLarge",
    "PuaError",
    "RemoteProtocolError",
    "SipError",
    "TransactionTimeout",
    "TransportError",
]
