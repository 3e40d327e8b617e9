"""Watcher information documents (RFC 3857/3858): the RFC's example,
building and round trips, refusal of invalid documents."""

from __future__ import annotations

import pytest

from pua.bodies import Watcher, WatcherInfo, WatcherList, parse_watcherinfo
from pua.errors import BodyError

# RFC 3858 §5's example: an active and a pending watcher of a presentity.
RFC_EXAMPLE = b"""<?xml version="1.0"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"
             version="0" state="full">
  <watcher-list resource="sip:professor@example.net" package="presence">
    <watcher status="active"
             id="8ajksjda7s"
             duration-subscribed="509"
             event="approved">sip:userA@example.net</watcher>
    <watcher status="pending"
             id="hh8juja87s997-ass7"
             display-name="Mr. Subscriber"
             event="subscribe">sip:userB@example.org</watcher>
  </watcher-list>
</watcherinfo>
"""

# A presence server's partial update: a watcher whose subscription timed out,
# with expiration and a language for its display name.
PARTIAL = b"""<?xml version="1.0" encoding="UTF-8"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="4" state="partial">
  <watcher-list resource="sip:alice@example.com" package="presence">
    <watcher id="w1" status="terminated" event="timeout" expiration="0"
        display-name="Herr Beobachter" xml:lang="de">sip:bob@example.com</watcher>
  </watcher-list>
  <watcher-list resource="sip:alice@example.com" package="dialog"/>
</watcherinfo>
"""


def test_rfc_example() -> None:
    """RFC 3858's example parses to one list with its two watchers."""
    assert parse_watcherinfo(RFC_EXAMPLE) == WatcherInfo(
        version=0,
        state="full",
        lists=(
            WatcherList(
                resource="sip:professor@example.net",
                package="presence",
                watchers=(
                    Watcher(id="8ajksjda7s", status="active", event="approved",
                            uri="sip:userA@example.net", duration_subscribed=509),
                    Watcher(id="hh8juja87s997-ass7", status="pending", event="subscribe",
                            uri="sip:userB@example.org", display_name="Mr. Subscriber"),
                ),
            ),
        ),
    )  # fmt: skip


def test_partial_update_with_language() -> None:
    """expiration and xml:lang are read; an empty list is kept; watchers spans lists."""
    info = parse_watcherinfo(PARTIAL)
    assert (info.version, info.state) == (4, "partial")
    assert info.watchers == (
        Watcher(id="w1", status="terminated", event="timeout", uri="sip:bob@example.com",
                display_name="Herr Beobachter", expiration=0, lang="de"),
    )  # fmt: skip
    assert info.lists[1] == WatcherList(resource="sip:alice@example.com", package="dialog")


@pytest.mark.parametrize("body", [RFC_EXAMPLE, PARTIAL], ids=["rfc", "partial"])
def test_round_trip(body: bytes) -> None:
    """A parsed document, built and parsed again, is equal to the first reading."""
    info = parse_watcherinfo(body)
    assert parse_watcherinfo(info.to_bytes()) == info


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="a" state="full"/>', "version"),
        (b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">'
         b'<watcher-list package="presence"/></watcherinfo>', "'resource'"),
        (b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">'
         b'<watcher-list resource="r" package="presence"><watcher id="w" status="happy" event="approved">'
         b"sip:x</watcher></watcher-list></watcherinfo>", "status"),
        (b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">'
         b'<watcher-list resource="r" package="presence"><watcher id="w" status="active" event="approved"/>'
         b"</watcher-list></watcherinfo>", "no URI"),
        (b'<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full">'
         b'<watcher-list resource="r" package="presence"><watcher status="active" event="approved">'
         b"sip:x</watcher></watcher-list></watcherinfo>", "'id'"),
    ],
    ids=["bad version", "no resource", "bad status", "no uri", "no id"],
)  # fmt: skip
def test_invalid_documents_raise_body_error(body: bytes, message: str) -> None:
    """Documents breaking RFC 3858's schema are refused with a BodyError naming the problem."""
    with pytest.raises(BodyError, match=message):
        parse_watcherinfo(body)


def test_builder_refuses_bad_values() -> None:
    """An unknown status or an empty URI raises ValueError."""
    for watcher, message in (
        (Watcher(id="w", status="happy", event="approved", uri="sip:x"), "status"),  # type: ignore[arg-type]
        (Watcher(id="w", status="active", event="approved", uri=""), "uri"),
    ):
        info = WatcherInfo(version=0, state="full",
                           lists=(WatcherList(resource="r", package="presence", watchers=(watcher,)),))  # fmt: skip
        with pytest.raises(ValueError, match=message):
            info.to_bytes()
