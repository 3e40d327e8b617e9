"""What exists only while a record has work: the request in flight and the
wish that waits for it."""

from __future__ import annotations

from typing import Any

from .keys import RequestKind

__all__ = ["InFlight", "Pending", "answered_for"]


class InFlight:
    """A request of a record that waits for its answer: exists only then."""

    __slots__ = (
        "api",
        "auth_tries",
        "body",
        "callback",
        "cb_param",
        "kind",
        "notify_until",
        "pending",
        "tx_key",
    )

    def __init__(self, kind: RequestKind, tx_key: tuple[str, str], body: bytes | None) -> None:
        self.kind = kind
        self.pending: Pending | None = None  # the record's wish while this is in flight
        self.tx_key = tx_key
        self.body = body  # the body sent (initial and modify PUBLISH)
        self.api = False  # asked for by the API: its answer reaches callbacks
        self.callback: Any = None
        self.cb_param: Any = None
        # Expiry a NOTIFY announced while a SUBSCRIBE was in flight: the
        # refresh follows the sooner of it and the 2xx.
        self.notify_until = 0.0
        self.auth_tries = 0  # challenges answered for this request (pua.core.auth)


class Pending:
    """What the API asked for while a request was in flight: the newest
    body (updates coalesce), or a removal; and who to call back."""

    __slots__ = ("api", "body", "callback", "cb_param", "remove")

    def __init__(self) -> None:
        self.api = False  # asked for by the API (its answer reaches callbacks)
        self.body: bytes | None = None
        self.remove = False
        self.callback: Any = None
        self.cb_param: Any = None

    def asked(self, *, remove: bool, callback: Any, cb_param: Any) -> None:
        """The API asked for this (an update or a removal), with its callback."""
        self.api, self.remove = True, remove
        self.callback, self.cb_param = callback, cb_param
        if remove:
            self.body = None


def answered_for(replaced: InFlight | None, taken: Pending | None) -> InFlight | Pending | None:
    """Whose callback a new request's answer goes to: the wish it takes, if
    the API made it; else the request it replaces (a re-PUBLISH, a resend)."""
    if taken is not None and taken.api:
        return taken
    return replaced
