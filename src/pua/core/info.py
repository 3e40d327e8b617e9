"""What callers hand to ``send_publish`` and ``send_subscribe``.

Every field of the seed's ``publ_info_t`` and ``subs_info_t`` is here, with
its meaning.  URIs are text; the engine checks them when the call is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pua.errors import UsageError

from .flags import EventFlag, SourceFlag, UpdateType

__all__ = ["Body", "Document", "PublishInfo", "ReplyCallback", "SubscribeInfo", "as_body"]


@runtime_checkable
class Document(Protocol):
    """An event document value (pua.bodies: Presence, MessageSummary,
    DialogInfo, RegInfo...): anything that writes itself as bytes."""

    def to_bytes(self) -> bytes:
        """The document's bytes."""
        ...


Body = bytes | str | Document
"""What a body may be given as: bytes, text (sent as UTF-8) or a document."""


def as_body(body: Body | None) -> bytes | None:
    """The bytes of a body given as bytes, text or a document."""
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, bytearray | memoryview):
        return bytes(body)
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, Document) and not isinstance(body, int):
        return body.to_bytes()
    raise UsageError(f"a body is bytes, str or a pua.bodies document, not {type(body).__name__}")


# The seed's publrpl_cb_t: called with the final reply (a Response, or None
# on a local timeout) and the caller's ``cb_param``.
ReplyCallback = Callable[[Any, Any], None]


@dataclass(slots=True, kw_only=True)
class PublishInfo:
    """One publication request (the seed's ``publ_info_t``)."""

    pres_uri: str
    """The presentity: Request-URI, From and To of the PUBLISH."""
    event: EventFlag | int | str = EventFlag.PRESENCE_EVENT
    """The event package, as its flag or its name."""
    body: Body | None = None
    """The document (bytes, text or a pua.bodies value); None for a
    refresh of an existing publication."""
    expires: int = 3600
    """Requested lifetime in seconds; -1 for ever (refreshed with
    default_expires until removed); 0 removes the publication."""
    id: str = ""
    """Optional: tells apart several publications of one pres_uri and source."""
    source_flag: SourceFlag | int = SourceFlag.MI_PUBLISH
    """Who publishes (UL_PUBLISH, MI_PUBLISH, BLA_PUBLISH, XMPP_PUBLISH...)."""
    flag: UpdateType | None = None
    """INSERT_TYPE forces a new initial PUBLISH; otherwise the table decides."""
    content_type: str | None = None
    """Content-Type of the body (default: the event package's)."""
    etag: str | None = None
    """Optional: the entity-tag the request must match (SIP-If-Match)."""
    extra_headers: Sequence[tuple[str, str]] | str = ()
    """Headers added to every PUBLISH of this publication: (name, value)
    pairs or Kamailio's ``Name: value`` lines."""
    outbound_proxy: str | None = None
    """Next hop for this publication (default: the configured one)."""
    callback: ReplyCallback | None = None
    """The seed's cbrpl: called with the final reply to this request."""
    cb_param: Any = None
    """Passed to ``callback`` and to registered callbacks."""


@dataclass(slots=True, kw_only=True)
class SubscribeInfo:
    """One subscription request (the seed's ``subs_info_t``)."""

    pres_uri: str
    """The resource watched: To of the SUBSCRIBE."""
    watcher_uri: str
    """Who watches: From of the SUBSCRIBE."""
    event: EventFlag | int | str = EventFlag.PRESENCE_EVENT
    """The event package, as its flag or its name."""
    expires: int = 3600
    """Requested lifetime; -1 for ever; 0 ends the subscription."""
    id: str = ""
    """Optional: tells apart several subscriptions of one pres_uri and source."""
    contact: str | None = None
    """Contact of the SUBSCRIBE (default: our listen address)."""
    remote_target: str | None = None
    """Request-URI of the initial SUBSCRIBE (default: pres_uri)."""
    outbound_proxy: str | None = None
    """Next hop (default: the configured one)."""
    source_flag: SourceFlag | int = SourceFlag.MI_SUBSCRIBE
    """Who subscribes (MI_SUBSCRIBE, BLA_SUBSCRIBE, XMPP_SUBSCRIBE...)."""
    flag: UpdateType | None = None
    """INSERT_TYPE forces a new dialog; otherwise the table decides."""
    extra_headers: Sequence[tuple[str, str]] | str = ()
    """Headers added to every SUBSCRIBE of this subscription: (name, value)
    pairs or Kamailio's ``Name: value`` lines."""
    callback: ReplyCallback | None = None
    """Called with the final reply to this request."""
    cb_param: Any = None
    """Passed to ``callback`` and to registered callbacks."""
