"""Records and engine events as JSON values for the API."""

from __future__ import annotations

import base64
import json
from types import EllipsisType
from typing import Any

from pua.core import (
    CallbackFailed,
    EngineEvent,
    EventRegistry,
    NotifyReceived,
    PublicationFailed,
    PublicationRecord,
    PublicationRemoved,
    PublicationSucceeded,
    RecordKey,
    SourceFlag,
    SubscriptionAccepted,
    SubscriptionFailed,
    SubscriptionRecord,
    SubscriptionStateChanged,
    SubscriptionTerminated,
)
from pua.errors import UnknownEventError

__all__ = [
    "EVENT_TYPES",
    "event_view",
    "key_from_id",
    "record_id",
    "record_view",
    "source_name",
]

EVENT_TYPES: dict[type, str] = {
    PublicationSucceeded: "publication.succeeded",
    PublicationFailed: "publication.failed",
    PublicationRemoved: "publication.removed",
    SubscriptionAccepted: "subscription.accepted",
    SubscriptionStateChanged: "subscription.state",
    NotifyReceived: "notify",
    SubscriptionFailed: "subscription.failed",
    SubscriptionTerminated: "subscription.terminated",
    CallbackFailed: "callback.failed",
}


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def record_id(key: RecordKey) -> str:
    """A URL-safe identifier of a record, stable for its key."""
    raw = _COMPACT.encode([key.pres_uri, key.event, key.id, key.source_flag, key.watcher_uri])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def key_from_id(text: str) -> RecordKey | None:
    """The key of an identifier from :func:`record_id`, or None if it is not one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        pres_uri, event, ident, source, watcher = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if not (
        isinstance(pres_uri, str)
        and isinstance(event, int)
        and isinstance(ident, str)
        and isinstance(source, int)
        and isinstance(watcher, str)
    ):
        return None
    return RecordKey(pres_uri, event, ident, source, watcher)


def source_name(flag: int) -> str:
    """Who asked for a record, by the seed's names (XMPP_PUBLISH,
    UL_PUBLISH|BLA_PUBLISH...); the number when no flag has it."""
    name = SourceFlag(flag).name if flag > 0 else None
    return name or str(flag)


def _event_name(registry: EventRegistry, flag: int) -> str:
    try:
        return registry.lookup(flag).name
    except UnknownEventError:
        return str(flag)


def record_view(
    record: PublicationRecord | SubscriptionRecord,
    registry: EventRegistry,
    last_notify: dict[str, Any] | EllipsisType | None = ...,
) -> dict[str, Any]:
    """What the API shows of a record.  A subscription's ``last_notify`` is
    the view of its last NOTIFY (pua.api.activity) or None when none came;
    left out where it is not known (``...``)."""
    key = record.key
    view: dict[str, Any] = {
        "id": record_id(key),
        "kind": "subscription" if isinstance(record, SubscriptionRecord) else "publication",
        "pres_uri": key.pres_uri,
        "event": _event_name(registry, key.event),
        "event_flag": key.event,
        "record_id": key.id,
        "source_flag": key.source_flag,
        "source": source_name(key.source_flag),
        "state": record.state.value,
        "expires_at": record.expires_at or None,
        "desired_until": record.desired_until,
        "last_status": record.last_status,
        "last_reason": record.last_reason,
    }
    if isinstance(record, PublicationRecord):
        content_type = record.content_type or registry.lookup(key.event).content_type
        view.update(etag=record.etag, content_type=content_type, tuple_id=record.tuple_id)
    else:
        view.update(
            watcher_uri=key.watcher_uri,
            subscription_state=record.subscription_state,
            call_id=record.call_id,
            remote_target=record.remote_target,
            contact=record.route.contact,
        )
        if last_notify is not ...:
            view["last_notify"] = last_notify
    return view


def event_view(
    event: EngineEvent,
    record: PublicationRecord | SubscriptionRecord | None,
    registry: EventRegistry,
    last_notify: dict[str, Any] | EllipsisType | None = ...,
    summary: str | None = None,
) -> dict[str, Any]:
    """An engine event as JSON: its type, its record's id and view (with
    ``last_notify`` as record_view takes it), its fields; a NOTIFY's
    ``summary`` of its body is made unless given."""
    key = event.key
    view: dict[str, Any] = {
        "type": EVENT_TYPES.get(type(event), type(event).__name__),
        "id": record_id(key) if key is not None else None,
        "record": record_view(record, registry, last_notify) if record is not None else None,
    }
    if key is not None:
        # Who the event is about, also when the record is already gone.
        view.update(
            record_kind="subscription" if key.watcher_uri else "publication",
            pres_uri=key.pres_uri,
            watcher_uri=key.watcher_uri or None,
            event=_event_name(registry, key.event),
            record_id=key.id,
        )
    for name in getattr(event, "__slots__", ()):
        if name == "key":
            continue
        value = getattr(event, name)
        if name == "body":
            value = value.decode("utf-8", "replace")
        elif name == "document":
            value = None if value is None else type(value).__name__
        view[name] = value
    if isinstance(event, NotifyReceived):
        if summary is None:
            from pua.bodies import summarize  # noqa: PLC0415 - only NOTIFYs need it

            summary = summarize(event.content_type, event.body)
        view["summary"] = summary
    return view
