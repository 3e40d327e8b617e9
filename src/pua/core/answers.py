"""A final answer to one of our requests, read once into plain values.

The classifiers beside the publication and subscription tables decide on
these values, never on the raw message; a header the peer sent malformed
reads as absent (a 2xx without a usable SIP-ETag is then an error, as RFC
3903 §11.3 needs one).
"""

from __future__ import annotations

from typing import NamedTuple

from pua.errors import RemoteProtocolError
from pua.sip.message import Response

__all__ = ["RETRYABLE", "Answer", "read_answer", "status_line"]

# Answers after which the server may do better later (RFC 3261 §21).
RETRYABLE = frozenset({408, 480, 500, 502, 503, 504, 580})


class Answer(NamedTuple):
    """What the engine needs of a final answer (``response`` is None for a
    local timeout, 408, or a transport failure, 503).  A tuple: one is made
    for every answer, and a tuple is the cheapest immutable value to make."""

    status: int
    reason: str
    response: Response | None = None
    etag: str | None = None
    expires: int | None = None
    min_expires: int | None = None
    retry_after: int | None = None
    to_tag: str | None = None

    @property
    def success(self) -> bool:
        """A 2xx from the server."""
        return self.response is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        """Timeouts, transport failures, 408, 480, 5xx: worth another try."""
        return self.status in RETRYABLE or 500 <= self.status < 600


_STATUS_LINES: dict[tuple[int, str], tuple[int, str]] = {}


def status_line(status: int, reason: str) -> tuple[int, str]:
    """One shared (status, reason) pair per distinct answer: every record
    keeps its last answer, and most records share a handful of them."""
    pair = (status, reason)
    shared = _STATUS_LINES.get(pair)
    if shared is None:
        if len(_STATUS_LINES) > 10_000:
            _STATUS_LINES.clear()  # reasons a peer made up: stay bounded
        shared = _STATUS_LINES[pair] = pair
    return shared


def read_answer(response: Response | None, status: int, reason: str, *, publish: bool) -> Answer:
    """The values of a final answer that the engine will look at (headers
    read leniently, and only those that matter for this status: parsing
    costs, and a 2xx is most answers)."""
    if response is None:
        return Answer(status, reason)
    # Each header is read alone: one that is malformed reads as absent and
    # does not hide the others.
    if 200 <= status < 300:
        try:
            expires: int | None = response.expires
        except RemoteProtocolError:
            expires = None
        if publish:
            try:
                etag = response.sip_etag or None
            except RemoteProtocolError:
                etag = None
            return Answer(status, reason, response, etag, expires)
        try:
            to_tag = response.to.tag or None
        except RemoteProtocolError:
            to_tag = None
        return Answer(status, reason, response, None, expires, None, None, to_tag)
    if status == 423:
        try:
            minimum = response.min_expires
        except RemoteProtocolError:
            minimum = None
        return Answer(status, reason, response, min_expires=minimum)
    try:
        retry_after = response.retry_after
    except RemoteProtocolError:
        retry_after = None
    return Answer(
        status,
        reason,
        response,
        retry_after=None if retry_after is None else retry_after.seconds,
    )
