"""Rows as pua.core.persist makes them, for the store tests."""

from __future__ import annotations

from typing import Any

BINARY = bytes(range(256))  # no valid UTF-8: must come back byte for byte


def publication(n: int, **changes: Any) -> dict[str, Any]:
    """A publication's row (no id)."""
    row: dict[str, Any] = {
        "pres_uri": f"sip:user{n}@example.com",
        "pres_id": f"pub-{n}",
        "event": 1,
        "expires": 1_900_000_000 + n,
        "desired_expires": 0,
        "flag": 1024,
        "etag": f"etag-{n}",
        "tuple_id": f"t{n}",
        "watcher_uri": "",
        "call_id": f"call-{n}",
        "to_tag": "",
        "from_tag": "",
        "cseq": n,
        "record_route": None,
        "contact": "",
        "remote_contact": "",
        "version": 0,
        "extra_headers": "",
        "body": b"<presence/>",
        "content_type": "application/pidf+xml",
        "outbound_proxy": None,
        "remote_target": None,
    }
    row.update(changes)
    return row


def subscription(n: int, **changes: Any) -> dict[str, Any]:
    """A subscription's row (no id)."""
    row = publication(
        n,
        watcher_uri=f"sip:watcher{n}@example.com",
        etag="",
        tuple_id=None,
        to_tag=f"to-{n}",
        from_tag=f"from-{n}",
        record_route="<sip:proxy.example.com;lr>",
        contact="sip:pua@127.0.0.1:5060",
        remote_contact=f"sip:user{n}@10.0.0.1",
        body=None,
        content_type=None,
        remote_target=f"sip:user{n}@example.com",
        flag=2048,
        event=2,
    )
    row.update(changes)
    return row
