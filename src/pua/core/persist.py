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

__all__ = ["record_from_row", "record_to_row"]

Row = dict[str, Any]


def record_to_row(record: Record, content_type: str | None = None) -> Row:
    """The row for ``record`` (without its ``id``); ``content_type`` is the
    package's default, written when the record has no type of its own."""
    key = record.key
    row: Row = {
        "pres_uri": key.pres_uri,
        "pres_id": key.id,
        "event": key.event,
        "expires": int(record.expires_at),
        "desired_expires": 0 if record.desired_until is None else int(record.desired_until),
        "flag": key.source_flag,
        "watcher_uri": key.watcher_uri,
        "extra_headers": format_extra_headers(record.options.extra_headers),
        "outbound_proxy": record.options.outbound_proxy,
    }
    if isinstance(record, PublicationRecord):
        # What must survive is the newest document wished for.
        pending = record.pending
        body = pending.body if pending is not None and pending.body is not None else record.body
        row.update(
            version=record.publish_count,
            etag=record.etag or "",
            tuple_id=record.tuple_id,
            call_id=record.call_id,
            to_tag="",
            from_tag="",
            cseq=record.cseq,
            record_route=None,
            contact="",
            remote_contact="",
            body=body,
            content_type=record.options.content_type or content_type,
            remote_target=None,
        )
    else:
        row.update(
            version=record.remote_cseq or 0,
            etag="",
            tuple_id=None,
            call_id=record.call_id,
            to_tag=record.to_tag or "",
            from_tag=record.from_tag,
            cseq=record.cseq,
            record_route=", ".join(record.route_set) or None,
            contact=record.route.contact or "",
            remote_contact=record.remote_target,
            body=None,
            content_type=None,
            remote_target=record.initial_target,
        )
    return row


def record_from_row(row: Row, content_type: str | None = None) -> Record:
    """The record a row describes, in the state it was left in: a
    publication with an ETag is PUBLISHED, a subscription with a remote tag
    is ACTIVE in its dialog; anything else is DONE (the engine decides what
    to send when it resumes it).  ``content_type`` is the package's
    default.  Raises ValueError for a row that cannot be a record (its
    extra headers are read with the same strict parser as the API's)."""
    key = RecordKey(
        intern_text(str(row["pres_uri"])),
        int(row["event"]),
        str(row.get("pres_id") or ""),
        int(row["flag"]),
        intern_text(str(row.get("watcher_uri") or "")),
    )
    desired = int(row.get("desired_expires") or 0)
    extra = parse_extra_headers(row.get("extra_headers") or None)
    proxy = row.get("outbound_proxy") or None
    record: Record
    if not key.watcher_uri:
        etag = row.get("etag") or None
        pub = PublicationRecord(key, etag=etag)
        pub.tuple_id = str(row.get("tuple_id") or "")
        body = row.get("body")
        pub.body = bytes(body) if body is not None else None
        stored_type = row.get("content_type") or None
        own_type = None if stored_type == content_type else stored_type
        pub.options = RecordOptions.of(extra, proxy, own_type)
        pub.state = PubState.PUBLISHED if etag else PubState.DONE
        record = pub
    else:
        call_id = str(row.get("call_id") or "")
        from_tag = str(row.get("from_tag") or "")
        if not call_id or not from_tag:
            raise ValueError(f"subscription row {row.get('id')} has no dialog")
        sub = SubscriptionRecord(key, call_id, from_tag)
        sub.to_tag = row.get("to_tag") or None
        routes: tuple[str, ...] = ()
        if row.get("record_route"):
            routes = tuple(
                intern_text(part.strip())
                for part in split_quoted(str(row["record_route"]), ",")
                if part.strip()
            )
        target = str(row.get("remote_target") or key.pres_uri)
        remote = str(row.get("remote_contact") or target)
        contact = str(row.get("contact") or "") or None
        if contact is not None and "@" not in contact:
            # Our own address (no user part) may have changed since the row
            # was written: refreshes carry the current one, which moves the
            # notifier's target (RFC 6665 §4.1.2.1, a target refresh).
            contact = None
        sub.route = SubscriptionRoute.of(
            initial_target=None if target == key.pres_uri else intern_text(target),
            remote_target=None if remote == target else intern_text(remote),
            route_set=routes,
            contact=None if contact is None else intern_text(contact),
        )
        sub.options = RecordOptions.of(extra, proxy)
        sub.state = SubState.ACTIVE if sub.to_tag else SubState.DONE
        record = sub
    record.expires_at = float(row.get("expires") or 0)
    record.desired_until = None if desired == 0 else float(desired)
    record.cseq = int(row.get("cseq") or 0)
    if row.get("id") is not None:
        record.row_id = int(row["id"])
    return record
