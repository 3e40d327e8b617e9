"""Watcher information documents (RFC 3858, ``application/watcherinfo+xml``),
the body of the ``*.winfo`` template package (RFC 3857).

:func:`parse_watcherinfo` reads one into :class:`WatcherInfo`;
:meth:`WatcherInfo.to_bytes` writes one (for tests and fake notifiers: a
PUA only receives these).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from lxml import etree

from pua.errors import BodyError

from ._common import (
    check_choice,
    check_text,
    check_unsigned,
    children,
    optional_attr,
    optional_unsigned,
    required_attr,
    required_choice,
    text_of,
    version_and_state,
)
from .xml import parse_xml, to_bytes

__all__ = [
    "WATCHERINFO_CONTENT_TYPE",
    "WATCHERINFO_NS",
    "WATCHER_EVENTS",
    "WATCHER_STATUSES",
    "DocumentState",
    "Watcher",
    "WatcherInfo",
    "WatcherList",
    "WatcherStatus",
    "parse_watcherinfo",
]

WATCHERINFO_NS = "urn:ietf:params:xml:ns:watcherinfo"
"""The watcherinfo namespace (RFC 3858 §6)."""
WATCHERINFO_CONTENT_TYPE = "application/watcherinfo+xml"
"""The watcherinfo media type (RFC 3858 §8.1)."""
WATCHER_STATUSES = ("pending", "active", "waiting", "terminated")
"""A watcher's subscription ``status`` (RFC 3857's subscription state machine)."""
WATCHER_EVENTS = (
    "subscribe", "approved", "deactivated", "probation", "rejected",
    "timeout", "giveup", "noresource",
)  # fmt: skip
"""The ``event`` values: what moved a subscription to its status (RFC 3857)."""

_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

DocumentState = Literal["full", "partial"]
"""A document's ``state``: every watcher, or only changes (RFC 3858 §4)."""
WatcherStatus = Literal["pending", "active", "waiting", "terminated"]
"""The type of :attr:`Watcher.status`."""

_WHAT = "watcherinfo document"
_ROOT = f"{{{WATCHERINFO_NS}}}watcherinfo"
_LIST = f"{{{WATCHERINFO_NS}}}watcher-list"
_WATCHER = f"{{{WATCHERINFO_NS}}}watcher"


@dataclass(frozen=True, slots=True, kw_only=True)
class Watcher:
    """One ``<watcher>``: a subscription to the resource (RFC 3858 §3)."""

    id: str
    """The notifier's id for the subscription."""
    status: WatcherStatus
    """``pending``, ``active``, ``waiting`` or ``terminated``."""
    event: str
    """What caused the status: ``subscribe``, ``approved``, ``timeout``..."""
    uri: str
    """The watcher's URI (the element's text)."""
    display_name: str | None = None
    """The watcher's display name (``display-name``)."""
    expiration: int | None = None
    """Seconds until the subscription expires."""
    duration_subscribed: int | None = None
    """Seconds the watcher has been subscribed (``duration-subscribed``)."""
    lang: str | None = None
    """The language of ``display_name`` (``xml:lang``)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class WatcherList:
    """One ``<watcher-list>``: the watchers of one resource and package."""

    resource: str
    """The watched resource's URI."""
    package: str
    """The watched event package (``presence``...)."""
    watchers: tuple[Watcher, ...] = ()
    """The watchers, in document order."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "watchers", tuple(self.watchers))


@dataclass(frozen=True, slots=True, kw_only=True)
class WatcherInfo:
    """A ``<watcherinfo>`` document (RFC 3858 §3)."""

    version: int
    """The document version, counting up from 0 per subscription."""
    state: DocumentState
    """``full`` or ``partial``."""
    lists: tuple[WatcherList, ...] = ()
    """The watcher lists, in document order."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lists", tuple(self.lists))

    @property
    def watchers(self) -> tuple[Watcher, ...]:
        """All lists' watchers, in document order."""
        return tuple(w for list_ in self.lists for w in list_.watchers)

    def to_bytes(self) -> bytes:
        """The document as UTF-8 XML.  ValueError if a value cannot be written."""
        return to_bytes(_build(self))


def _build(info: WatcherInfo) -> etree._Element:
    check_unsigned(info.version, "version")
    check_choice(info.state, ("full", "partial"), "state")
    root = etree.Element(_ROOT, nsmap={None: WATCHERINFO_NS})  # type: ignore[dict-item]
    root.set("version", str(info.version))
    root.set("state", info.state)
    for list_ in info.lists:
        for name, value in (("resource", list_.resource), ("package", list_.package)):
            check_text(value, name, attribute=True)
            if not value:
                raise ValueError(f"{name} must not be empty")
        element = etree.SubElement(root, _LIST, resource=list_.resource, package=list_.package)
        for watcher in list_.watchers:
            _build_watcher(element, watcher)
    return root


def _build_watcher(parent: etree._Element, watcher: Watcher) -> None:
    check_text(watcher.id, "watcher id", attribute=True)
    if not watcher.id:
        raise ValueError("a watcher id must not be empty")
    check_choice(watcher.status, WATCHER_STATUSES, "watcher status")
    check_choice(watcher.event, WATCHER_EVENTS, "watcher event")
    check_text(watcher.uri, "watcher uri")
    if not watcher.uri:
        raise ValueError("a watcher uri must not be empty")
    element = etree.SubElement(
        parent, _WATCHER, id=watcher.id, status=watcher.status, event=watcher.event
    )
    element.text = watcher.uri
    if watcher.display_name is not None:
        check_text(watcher.display_name, "display name", attribute=True)
        element.set("display-name", watcher.display_name)
    for attribute, number in (
        ("expiration", watcher.expiration),
        ("duration-subscribed", watcher.duration_subscribed),
    ):
        check_unsigned(number, attribute)
        if number is not None:
            element.set(attribute, str(number))
    if watcher.lang is not None:
        check_text(watcher.lang, "lang", attribute=True)
        element.set(_XML_LANG, watcher.lang)


def parse_watcherinfo(body: bytes) -> WatcherInfo:
    """Read a watcherinfo document.  BodyError if it is not one (bad XML, a
    DTD, the wrong root, a missing or bad attribute)."""
    root = parse_xml(body, what=_WHAT, root=_ROOT)
    version, state = version_and_state(root, what=_WHAT)
    return WatcherInfo(
        version=version,
        state=cast(DocumentState, state),
        lists=tuple(_parse_list(element) for element in children(root, _LIST)),
    )


def _parse_list(element: etree._Element) -> WatcherList:
    resource = required_attr(element, "resource", what=_WHAT)
    package = required_attr(element, "package", what=_WHAT)
    return WatcherList(
        resource=resource,
        package=package,
        watchers=tuple(_parse_watcher(w, resource) for w in children(element, _WATCHER)),
    )


def _parse_watcher(element: etree._Element, resource: str) -> Watcher:
    id_ = required_attr(element, "id", what=_WHAT)
    where = f"watcher {id_!r} of {resource}"
    status = required_choice(element, "status", WATCHER_STATUSES, what=_WHAT, where=where)
    event = required_choice(element, "event", WATCHER_EVENTS, what=_WHAT, where=where)
    uri = text_of(element)
    if not uri:
        # RFC 3858 §3: the element's content is the watcher's URI.
        raise BodyError(f"{_WHAT}: {where} has no URI")
    return Watcher(
        id=id_,
        status=cast(WatcherStatus, status),
        event=event,
        uri=uri,
        display_name=optional_attr(element, "display-name"),
        expiration=optional_unsigned(element, "expiration", what=_WHAT),
        duration_subscribed=optional_unsigned(element, "duration-subscribed", what=_WHAT),
        lang=optional_attr(element, _XML_LANG),
    )
