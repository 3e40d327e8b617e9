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

import operator
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pua.sip.abnf import split_quoted

from .records import (
    TAG_LENGTH,
    PublicationRecord,
    PubState,
    Record,
    RecordOptions,
    SubscriptionRecord,
    SubscriptionRoute,
    SubState,
    intern_text,
)
from .requests import format_extra_headers, parse_extra_headers
from .shared import NO_OPTIONS

__all__ = [
    "PUBLICATION_COLUMNS",
    "REFRESH_COLUMNS",
    "ROW_COLUMNS",
    "SUBSCRIPTION_COLUMNS",
    "publication_from_values",
    "record_from_row",
    "record_from_values",
    "record_to_row",
    "records_from_values",
    "subscription_from_values",
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

PUBLICATION_COLUMNS = tuple(
    c
    for c in ROW_COLUMNS
    if c
    not in (
        "watcher_uri",
        "call_id",
        "to_tag",
        "from_tag",
        "record_route",
        "contact",
        "remote_contact",
        "version",
        "remote_target",
    )
)
"""The columns a publication is made from (:func:`publication_from_values`),
in its order: what the other kind alone has (its dialog), what no record
reads back (``version``: the CSeq counts a publication's PUBLISHes, a
subscription's NOTIFY CSeq starts anew) and the empty ``watcher_uri`` left
out.  A restart reads a million rows: each column read costs."""

SUBSCRIPTION_COLUMNS = tuple(
    c for c in ROW_COLUMNS if c not in ("etag", "tuple_id", "version", "body", "content_type")
)
"""The columns a subscription is made from (:func:`subscription_from_values`),
in its order: a publication's ETag, tuple id, body and Content-Type and the
``version`` left out."""

# In a row of values, after its id: the event is at the same place in each
# kind's columns.
_EVENT_AT = 1 + ROW_COLUMNS.index("event")
assert (
    _EVENT_AT == 1 + PUBLICATION_COLUMNS.index("event") == 1 + SUBSCRIPTION_COLUMNS.index("event")
)
_WATCHER_AT = 1 + ROW_COLUMNS.index("watcher_uri")
_publication_values = operator.itemgetter(
    0, *(1 + ROW_COLUMNS.index(c) for c in PUBLICATION_COLUMNS)
)
_subscription_values = operator.itemgetter(
    0, *(1 + ROW_COLUMNS.index(c) for c in SUBSCRIPTION_COLUMNS)
)
# Enum members looked up once (each lookup is a descriptor call).
_PUBLISHED, _PUB_DONE = PubState.PUBLISHED, PubState.DONE
_ACTIVE, _SUB_DONE = SubState.ACTIVE, SubState.DONE

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
    extra headers are read with the same strict parser as the API's).

    A row with an empty ``watcher_uri`` is a publication's: see
    :func:`publication_from_values` and :func:`subscription_from_values`,
    which read the columns each kind has."""
    if row[_WATCHER_AT]:
        return subscription_from_values(_subscription_values(row))
    return publication_from_values(_publication_values(row), content_type)


def publication_from_values(row: Sequence[Any], content_type: str | None = None) -> Record:
    """The publication a row describes: its id or None, then its values in
    the order of :data:`PUBLICATION_COLUMNS` (see
    :func:`record_from_values`)."""
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
        cseq,
        extra_headers,
        body,
        stored_type,
        outbound_proxy,
    ) = row
    # The record's slots are set at once (Record.restored): a restart
    # makes a million of them.  The presentity is the record's own (as one
    # the API makes): a publication shares it with nobody.
    pres_uri = str(pres_uri)
    event = int(event)
    pres_id = str(pres_id or "")
    flag = int(flag)
    desired = int(desired_expires or 0)
    extra = parse_extra_headers(extra_headers) if extra_headers else ()
    proxy = outbound_proxy or None
    own_type = None if not stored_type or stored_type == content_type else stored_type
    return PublicationRecord.restored(
        pres_uri,
        event,
        pres_id,
        flag,
        etag or None,
        str(tuple_id or ""),
        bytes(body) if body is not None else None,
        NO_OPTIONS
        if not extra and proxy is None and own_type is None
        else RecordOptions.of(extra, proxy, own_type),
        _PUBLISHED if etag else _PUB_DONE,
        float(expires or 0),
        None if desired == 0 else float(desired),
        int(cseq or 0),
        None if row_id is None else int(row_id),
    )


def subscription_from_values(row: Sequence[Any], content_type: str | None = None) -> Record:
    """The subscription a row describes: its id or None, then its values
    in the order of :data:`SUBSCRIPTION_COLUMNS`, its ``watcher_uri`` not
    empty (see :func:`record_from_values`; ``content_type`` is not
    needed)."""
    (
        row_id,
        pres_uri,
        pres_id,
        event,
        expires,
        desired_expires,
        flag,
        watcher_uri,
        call_id,
        to_tag,
        from_tag,
        cseq,
        record_route,
        contact,
        remote_contact,
        extra_headers,
        outbound_proxy,
        remote_target,
    ) = row
    # Its presentity and watcher are ones many subscriptions share.
    pres_uri = intern_text(str(pres_uri))
    event = int(event)
    pres_id = str(pres_id or "")
    flag = int(flag)
    watcher_uri = intern_text(str(watcher_uri or ""))
    desired = int(desired_expires or 0)
    extra = parse_extra_headers(extra_headers) if extra_headers else ()
    proxy = outbound_proxy or None
    call_id = str(call_id or "")
    from_tag = str(from_tag or "")
    if not call_id or not from_tag:
        raise ValueError(f"subscription row {row_id} has no dialog")
    routes: tuple[str, ...] = ()
    if record_route:
        routes = tuple(
            intern_text(part.strip())
            for part in split_quoted(str(record_route), ",")
            if part.strip()
        )
    target = str(remote_target or pres_uri)
    remote = str(remote_contact or target)
    own = str(contact or "") or None
    if own is not None and "@" not in own:
        # Our own address (no user part) may have changed since the row
        # was written: refreshes carry the current one, which moves the
        # notifier's target (RFC 6665 §4.1.2.1, a target refresh).
        own = None
    route = SubscriptionRoute.of(
        initial_target=None if target == pres_uri else intern_text(target),
        remote_target=None if remote == target else intern_text(remote),
        route_set=routes,
        contact=None if own is None else intern_text(own),
        # Our tag is made from the Call-ID (see new_dialog_id), unless the
        # row (another UA's) says otherwise.
        from_tag=None if from_tag == call_id[:TAG_LENGTH] else from_tag,
        options=RecordOptions.of(extra, proxy),
    )
    to_tag = to_tag or None
    return SubscriptionRecord.restored(
        pres_uri,
        event,
        pres_id,
        flag,
        watcher_uri,
        call_id,
        to_tag,
        route,
        _ACTIVE if to_tag else _SUB_DONE,
        float(expires or 0),
        None if desired == 0 else float(desired),
        int(cseq or 0),
        None if row_id is None else int(row_id),
    )


_MAKERS: dict[str | None, Callable[[Sequence[Any], str | None], Record]] = {
    None: record_from_values,
    "publication": publication_from_values,
    "subscription": subscription_from_values,
}


def records_from_values(
    rows: Iterable[Sequence[Any]],
    content_type_of: Callable[[int], str | None],
    kind: str | None = None,
) -> tuple[list[Record], list[Any]]:
    """The records of ``rows``, in their order, and the ids of the rows
    that cannot be records: a bad value, or an event ``content_type_of``
    does not know (it raises KeyError).  ``content_type_of(event)`` is the
    package's default Content-Type; it is asked once per event.

    ``kind`` names the rows' columns (see Store.load_values): None, every
    column (:data:`ROW_COLUMNS`, :func:`record_from_values`);
    ``"publication"``, a publication's (:data:`PUBLICATION_COLUMNS`);
    ``"subscription"``, a subscription's (:data:`SUBSCRIPTION_COLUMNS`)."""
    records: list[Record] = []
    bad: list[Any] = []
    types: dict[int, str | None] = {}
    make, add = _MAKERS[kind], records.append
    for row in rows:
        try:
            event = int(row[_EVENT_AT])
            if event in types:
                content_type = types[event]
            else:
                content_type = types[event] = content_type_of(event)
            add(make(row, content_type))
        except (KeyError, ValueError):
            bad.append(row[0])
    return records, bad
