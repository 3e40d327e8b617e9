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
from pua.sip.errors import RemoteProtocolError
from pua.sip.headers import NameAddress

from .records import Publication, PubState, RecordKey, Subscription, SubState

__all__ = ["record_from_row", "record_to_row"]

Row = dict[str, Any]


def _headers_text(headers: list[tuple[str, str]]) -> str:
    return "".join(f"{name}: {value}\r\n" for name, value in headers)


def _headers_list(text: str | None) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for line in (text or "").replace("\r\n", "\n").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip():
            out.append((name.strip(), value.strip()))
    return out


def record_to_row(record: Publication | Subscription) -> Row:
    """The row for ``record`` (without its ``id``)."""
    key = record.key
    row: Row = {
        "pres_uri": key.pres_uri,
        "pres_id": key.id,
        "event": key.event,
        "expires": int(record.expires_at),
        "desired_expires": 0 if record.desired_until is None else int(record.desired_until),
        "flag": key.source_flag,
        "watcher_uri": key.watcher_uri,
        "version": record.version,
        "extra_headers": _headers_text(record.extra_headers),
        "outbound_proxy": record.outbound_proxy,
    }
    if isinstance(record, Publication):
        # What must survive is the newest document wished for.
        body = record.pending_body if record.pending_body is not None else record.body
        row.update(
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
            content_type=record.content_type,
            remote_target=None,
        )
    else:
        row.update(
            etag="",
            tuple_id=None,
            call_id=record.call_id,
            to_tag=record.to_tag or "",
            from_tag=record.from_tag,
            cseq=record.cseq,
            record_route=", ".join(str(route) for route in record.route_set) or None,
            contact=record.contact,
            remote_contact=record.remote_target,
            body=None,
            content_type=None,
            remote_target=record.initial_target,
        )
    return row


def record_from_row(
    row: Row, event_name: str, content_type: str | None
) -> Publication | Subscription:
    """The record a row describes, in the state it was left in: a
    publication with an ETag is PUBLISHED, a subscription with a remote tag
    is ACTIVE in its dialog; anything else is DONE (the engine decides what
    to send when it resumes it).  Raises ValueError for a row that cannot
    be a record."""
    key = RecordKey(
        str(row["pres_uri"]),
        int(row["event"]),
        str(row.get("pres_id") or ""),
        int(row["flag"]),
        str(row.get("watcher_uri") or ""),
    )
    desired = int(row.get("desired_expires") or 0)
    common: dict[str, Any] = {
        "key": key,
        "event_name": event_name,
        "expires_at": float(row.get("expires") or 0),
        "desired_until": None if desired == 0 else float(desired),
        "version": int(row.get("version") or 0),
        "cseq": int(row.get("cseq") or 0),
        "extra_headers": _headers_list(row.get("extra_headers")),
        "outbound_proxy": row.get("outbound_proxy") or None,
    }
    if not key.watcher_uri:
        body = row.get("body")
        etag = row.get("etag") or None
        return Publication(
            **common,
            content_type=row.get("content_type") or content_type,
            body=bytes(body) if body is not None else None,
            etag=etag,
            tuple_id=str(row.get("tuple_id") or ""),
            call_id=str(row.get("call_id") or ""),
            state=PubState.PUBLISHED if etag else PubState.DONE,
        )
    call_id = str(row.get("call_id") or "")
    from_tag = str(row.get("from_tag") or "")
    if not call_id or not from_tag:
        raise ValueError(f"subscription row {row.get('id')} has no dialog")
    to_tag = row.get("to_tag") or None
    routes: list[NameAddress] = []
    if row.get("record_route"):
        try:
            routes = [
                NameAddress.parse(part) for part in split_quoted(str(row["record_route"]), ",")
            ]
        except (RemoteProtocolError, ValueError):
            routes = []
    target = str(row.get("remote_target") or key.pres_uri)
    return Subscription(
        **common,
        remote_target=str(row.get("remote_contact") or target),
        initial_target=target,
        contact=str(row.get("contact") or ""),
        call_id=call_id,
        from_tag=from_tag,
        to_tag=to_tag,
        route_set=routes,
        state=SubState.ACTIVE if to_tag else SubState.DONE,
    )
