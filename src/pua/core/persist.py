"""Records as rows of Kamailio's ``pua`` table, and back.

The column names and meanings are Kamailio's (schema version 7): ``expires``
and ``desired_expires`` are absolute Unix times (0 = for ever), ``event`` and
``flag`` the bit values of EventFlag and SourceFlag.  pua adds ``body``,
``content_type``, ``outbound_proxy`` and ``remote_target``, which Kamailio
does not keep and which recovery needs (a 412 after a restart is answered
with the stored body).  This module does no IO: the store reads and writes
the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pua.sip.abnf import split_quoted

from .records import (
    PublicationRecord,
    PubState,
    Record,
    RecordKey,
    RecordOptions,
    SubscriptionRecord,
    SubscriptionRoute,
    SubState,
    intern_text,
)
from .requests import format_extra_headers, parse_extra_headers

__all__ = [
    "REFRESH_COLUMNS",
    "ROW_COLUMNS",
    "record_from_row",
    "record_from_values",
    "record_to_row",
    "record_to_values",
    "refresh_values",
]

Row = dict[str, Any]

ROW_COLUMNS = (
    "pres_uri",
    "pres_id",
    "event",
    "expires",
    "desired_expires",
    "flag",
    "etag",
    "tuple_id",
    "watcher_uri",
    "call_id",
    "to_tag",
    "from_tag",
    "cseq",
    "record_route",
    "contact",
    "remote_contact",
    "version",
    "extra_headers",
    "body",
    "content_type",
    "outbound_proxy",
    "remote_target",
)
"""The columns :func:`record_to_values` gives, in its order (every column
but ``id``)."""

REFRESH_COLUMNS = ("expires", "desired_expires", "version", "etag", "cseq")
"""What a refresh changes (a new ETag, expiry and CSeq; a subscription's
last NOTIFY CSeq): the columns :func:`refresh_values` gives, in its order.
Everything else in a row stays as it was written."""


def record_to_row(record: Record, content_type: str | None = None) -> Row:
    """The row for ``record`` as a dict (without its ``id``); see
    :func:`record_to_values`."""
    return dict(zip(ROW_COLUMNS, record_to_values(record, content_type), strict=True))


def refresh_values(record: Record) -> tuple[Any, ...]:
    """The values of :data:`REFRESH_COLUMNS` for ``record``."""
    if isinstance(record, PublicationRecord):
        version, etag = record.publish_count, record.etag or ""
    else:
        version, etag = record.remote_cseq or 0, ""
    desired = record.desired_until
    return (
        int(record.expires_at),
        0 if desired is None else int(desired),
        version,
        etag,
        record.cseq,
    )


def record_to_values(record: Record, content_type: str | None = None) -> tuple[Any, ...]:
    """The values of the row for ``record``, in the order of
    :data:`ROW_COLUMNS`; ``content_type`` is the package's default, written
    when the record has no type of its own."""
    key = record.key
    desired = record.desired_until
    options = record.options
    extra = options.extra_headers
    if isinstance(record, PublicationRecord):
        # What must survive is the newest document wished for.
        pending = record.pending
        body = pending.body if pending is not None and pending.body is not None else record.body
        return (
            key.pres_uri,
            key.id,
            key.event,
            int(record.expires_at),
            0 if desired is None else int(desired),
            key.source_flag,
            record.etag or "",
            record.tuple_id,
            "",
            record.call_id,
            "",
            "",
            record.cseq,
            None,
            "",
            "",
            record.publish_count,
            format_extra_headers(extra) if extra else "",
            body,
            options.content_type or content_type,
            options.outbound_proxy,
            None,
        )
    route = record.route
    return (
        key.pres_uri,
        key.id,
        key.event,
        int(record.expires_at),
        0 if desired is None else int(desired),
        key.source_flag,
        "",
        None,
        key.watcher_uri,
        record.call_id,
        record.to_tag or "",
        record.from_tag,
        record.cseq,
        ", ".join(record.route_set) or None,
        route.contact or "",
        record.remote_target,
        record.remote_cseq or 0,
        format_extra_headers(extra) if extra else "",
        None,
        None,
        options.outbound_proxy,
        record.initial_target,
    )


def record_from_row(row: Row, content_type: str | None = None) -> Record:
    """The record a row (a dict by column name, ``id`` optional) describes;
    see :func:`record_from_values`."""
    return record_from_values(
        (row.get("id"), *(row.get(name) for name in ROW_COLUMNS)), content_type
    )


def record_from_values(row: Sequence[Any], content_type: str | None = None) -> Record:
    """The record a row describes (its id or None, then its values in the
    order of :data:`ROW_COLUMNS`: a tuple or a driver's row), in the state
    it was left in: a
    publication with an ETag is PUBLISHED, a subscription with a remote tag
    is ACTIVE in its dialog; anything else is DONE (the engine decides what
    to send when it resumes it).  ``content_type`` is the package's
    default.  Raises ValueError for a row that cannot be a record (its
    extra headers are read with the same strict parser as the API's)."""
    (
        row_id,
        pres_uri,
        pres_id,
        event,
        expires,
        desired_expires,
        flag,
        etag,
        tuple_id,
        watcher_uri,
        call_id,
        to_tag,
        from_tag,
        cseq,
        record_route,
        contact,
        remote_contact,
        _version,
        extra_headers,
        body,
        stored_type,
        outbound_proxy,
        remote_target,
    ) = row
    key = RecordKey(
        intern_text(str(pres_uri)),
        int(event),
        str(pres_id or ""),
        int(flag),
        intern_text(str(watcher_uri or "")),
    )
    desired = int(desired_expires or 0)
    extra = parse_extra_headers(extra_headers) if extra_headers else ()
    proxy = outbound_proxy or None
    record: Record
    if not key.watcher_uri:
        pub = PublicationRecord(key, etag=etag or None)
        pub.tuple_id = str(tuple_id or "")
        pub.body = bytes(body) if body is not None else None
        own_type = None if not stored_type or stored_type == content_type else stored_type
        pub.options = RecordOptions.of(extra, proxy, own_type)
        pub.state = PubState.PUBLISHED if etag else PubState.DONE
        record = pub
    else:
        call_id = str(call_id or "")
        from_tag = str(from_tag or "")
        if not call_id or not from_tag:
            raise ValueError(f"subscription row {row_id} has no dialog")
        sub = SubscriptionRecord(key, call_id, from_tag)
        sub.to_tag = to_tag or None
        routes: tuple[str, ...] = ()
        if record_route:
            routes = tuple(
                intern_text(part.strip())
                for part in split_quoted(str(record_route), ",")
                if part.strip()
            )
        target = str(remote_target or key.pres_uri)
        remote = str(remote_contact or target)
        own = str(contact or "") or None
        if own is not None and "@" not in own:
            # Our own address (no user part) may have changed since the row
            # was written: refreshes carry the current one, which moves the
            # notifier's target (RFC 6665 §4.1.2.1, a target refresh).
            own = None
        sub.route = SubscriptionRoute.of(
            initial_target=None if target == key.pres_uri else intern_text(target),
            remote_target=None if remote == target else intern_text(remote),
            route_set=routes,
            contact=None if own is None else intern_text(own),
            from_tag=sub.route.from_tag,  # a tag not made from the Call-ID
        )
        sub.options = RecordOptions.of(extra, proxy)
        sub.state = SubState.ACTIVE if sub.to_tag else SubState.DONE
        record = sub
    record.expires_at = float(expires or 0)
    record.desired_until = None if desired == 0 else float(desired)
    record.cseq = int(cseq or 0)
    if row_id is not None:
        record.row_id = int(row_id)
    return record
