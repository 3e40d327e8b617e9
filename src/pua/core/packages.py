"""Event packages: the seed's ``add_event`` registry.

An :class:`EventPackage` names an event (``presence``, ``dialog;sla``...),
its flag, its default Content-Type and an optional ``process_body`` hook that
rewrites a body before it is published (tuple ids for presence, version
counters for dialog-info and reginfo).  ``parse_body`` turns a NOTIFY body
into a document value for the user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pua.bodies.dialog_info import parse_dialog_info
from pua.bodies.dialog_info import set_version as set_dialog_version
from pua.bodies.message_summary import parse_message_summary
from pua.bodies.pidf import assign_ids, parse_pidf
from pua.bodies.reginfo import parse_reginfo
from pua.bodies.reginfo import set_version as set_reginfo_version
from pua.bodies.watcherinfo import parse_watcherinfo
from pua.bodies.xml import parse_xml
from pua.errors import UnknownEventError, UsageError

from .flags import EventFlag

__all__ = [
    "USER_FLAG_BASE",
    "BodyHook",
    "EventPackage",
    "EventRegistry",
    "default_registry",
    "is_xml_type",
    "parse_event_spec",
    "prepare_body",
]

# RFC 3265 §7.2.1 (kept by RFC 6665 §8.4):
#   event-type     = event-package *( "." event-template )
#   event-package  = token-nodot
#   event-template = token-nodot
#   token-nodot    = 1*( alphanum / "-" / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
_TOKEN_NODOT = r"[A-Za-z0-9\-!%*_+`'~]+"
_EVENT_TYPE = re.compile(rf"{_TOKEN_NODOT}(?:\.{_TOKEN_NODOT})*")
# RFC 3261 §25.1: m-type and m-subtype are tokens (token-nodot plus ".").
_MEDIA_TYPE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+/[A-Za-z0-9\-.!%*_+`'~]+")

# process_body(body, version, tuple_id) -> final body.  ``version`` counts
# the PUBLISHes of the record; ``tuple_id`` is the record's stable id.
BodyHook = Callable[[bytes, int, str], bytes]
BodyParser = Callable[[bytes], Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventPackage:
    """One event package (the arguments of the seed's ``add_event``)."""

    flag: int
    """Its bit (EventFlag value, or a user bit above them)."""
    name: str
    """The Event header value, e.g. ``presence`` or ``dialog;sla``."""
    content_type: str | None
    """Default Content-Type of a PUBLISH body; None: subscribe only."""
    process_body: BodyHook | None = None
    """Rewrites a body before it is sent (None: sent as given)."""
    parse_body: dict[str, BodyParser] | None = None
    """NOTIFY body parsers by content type (None: bodies stay bytes)."""

    @property
    def publishable(self) -> bool:
        """False for subscribe-only packages (presence.winfo)."""
        return self.content_type is not None

    @property
    def event_type(self) -> str:
        """The event type without parameters (``dialog`` for ``dialog;sla``)."""
        return self.name.split(";", 1)[0].strip()


# The first bit of packages added by users: above every EventFlag, with
# room for Kamailio's own bits to grow.
USER_FLAG_BASE = 1 << 16


class EventRegistry:
    """Packages by flag and by name."""

    def __init__(self) -> None:
        self._by_flag: dict[int, EventPackage] = {}

    def add(self, package: EventPackage) -> None:
        """Register ``package``; a flag or a name may be registered once."""
        if package.flag <= 0 or package.flag & (package.flag - 1):
            raise UsageError(f"event flag must be a single bit, not {package.flag}")
        if package.flag in self._by_flag:
            raise UsageError(f"event flag {package.flag} is already registered")
        if any(p.name.lower() == package.name.lower() for p in self._by_flag.values()):
            raise UsageError(f"event {package.name!r} is already registered")
        self._by_flag[package.flag] = package

    def free_flag(self) -> int:
        """The lowest bit from ``USER_FLAG_BASE`` up that no package has: the
        flag of the next package a user adds."""
        flag = USER_FLAG_BASE
        while flag in self._by_flag:
            flag <<= 1
        return flag

    def by_flag(self, flag: int) -> EventPackage:
        """The package of ``flag``; UnknownEventError (a ValueError) otherwise."""
        package = self._by_flag.get(flag)
        return package if package is not None else self.lookup(int(flag))

    def lookup(self, event: str | int) -> EventPackage:
        """The package of an event name (case-insensitive) or flag: the one
        lookup every layer uses.  UnknownEventError names the known events."""
        if isinstance(event, str):
            package = self.by_name(event)
        else:
            package = self._by_flag.get(int(event))
        if package is None:
            raise UnknownEventError(event, [p.name for p in self._by_flag.values()])
        return package

    def add_custom(self, name: str, content_type: str | None) -> EventPackage:
        """Register a package for an event with no built-in knowledge
        (bodies sent as given, XML ones checked), on the first free bit from
        USER_FLAG_BASE up; returns it.  UsageError for a name already known."""
        package = EventPackage(flag=self.free_flag(), name=name, content_type=content_type)
        self.add(package)
        return package

    def by_name(self, name: str) -> EventPackage | None:
        """The package called ``name`` (case-insensitive), or None."""
        wanted = name.replace(" ", "").lower()
        for package in self._by_flag.values():
            if package.name.replace(" ", "").lower() == wanted:
                return package
        return None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_flag.values())


# application/xml, text/xml and every type/subtype+xml (RFC 7303).
_XML_TYPE = re.compile(r"[a-z0-9!#$&^_.+-]+/(?:[a-z0-9!#$&^_.+-]+\+)?xml", re.IGNORECASE)
_LINE_END = re.compile(rb"\r?\n")


def is_xml_type(content_type: str) -> bool:
    """Whether a Content-Type (parameters allowed) names an XML document."""
    return _XML_TYPE.fullmatch(content_type.split(";", 1)[0].strip()) is not None


def parse_event_spec(text: str) -> tuple[str, str]:
    """``NAME=TYPE/SUBTYPE`` (how a package is declared in settings and on
    the command line) as (name, content type).  Raises UsageError (a
    ValueError) saying what is wrong."""
    name, sep, content_type = (part.strip() for part in text.partition("="))
    if not sep:
        raise UsageError(f"{text!r}: expected NAME=TYPE/SUBTYPE")
    if not _EVENT_TYPE.fullmatch(name):
        raise UsageError(
            f"{text!r}: {name!r} is not an event type (token characters and dots, RFC 3265)"
        )
    if not _MEDIA_TYPE.fullmatch(content_type):
        raise UsageError(f"{text!r}: {content_type!r} is not a content type TYPE/SUBTYPE")
    return name, content_type


def prepare_body(
    package: EventPackage,
    body: bytes,
    *,
    content_type: str | None = None,
    version: int = 0,
    tuple_id: str = "",
) -> bytes:
    """A body as it is published, by every route (the engine, the CLI): the
    package's ``process_body`` applied; otherwise an XML body (by its
    Content-Type) checked to be well-formed.  Raises BodyError (a
    ValueError) naming what is wrong; nothing is sent then."""
    if package.process_body is not None:
        return package.process_body(body, version, tuple_id)
    if is_xml_type(content_type or package.content_type or ""):
        parse_xml(body, what=f"{package.name} body")
    return body


def _summary_hook(body: bytes, version: int, tuple_id: str) -> bytes:
    # RFC 3842 §5.2: lines end in CRLF.  A body written in an editor has LF
    # only, and presence servers refuse it (Kamailio answers 500): checked,
    # then every line end made CRLF.
    parse_message_summary(body)
    return _LINE_END.sub(b"\r\n", body)


def _presence_hook(body: bytes, version: int, tuple_id: str) -> bytes:
    return assign_ids(body, tuple_id)


def _dialog_version_hook(body: bytes, version: int, tuple_id: str) -> bytes:
    return set_dialog_version(body, version)


def _reginfo_version_hook(body: bytes, version: int, tuple_id: str) -> bytes:
    return set_reginfo_version(body, version)


def default_registry(
    *, dialog_version: bool = False, reginfo_version: bool = False
) -> EventRegistry:
    """The built-in packages.  ``dialog_version``/``reginfo_version`` turn on
    the version rewrite (Kamailio's dlginfo_increase_version and
    reginfo_increase_version); ``dialog;sla`` always rewrites it."""
    registry = EventRegistry()
    registry.add(
        EventPackage(
            flag=EventFlag.PRESENCE_EVENT,
            name="presence",
            content_type="application/pidf+xml",
            process_body=_presence_hook,
            parse_body={"application/pidf+xml": parse_pidf},
        )
    )
    registry.add(
        EventPackage(
            flag=EventFlag.PWINFO_EVENT,
            name="presence.winfo",
            content_type=None,
            parse_body={"application/watcherinfo+xml": parse_watcherinfo},
        )
    )
    registry.add(
        EventPackage(
            flag=EventFlag.BLA_EVENT,
            name="dialog;sla",
            content_type="application/dialog-info+xml",
            process_body=_dialog_version_hook,
            parse_body={"application/dialog-info+xml": parse_dialog_info},
        )
    )
    registry.add(
        EventPackage(
            flag=EventFlag.MWI_EVENT,
            name="message-summary",
            content_type="application/simple-message-summary",
            process_body=_summary_hook,
            parse_body={"application/simple-message-summary": parse_message_summary},
        )
    )
    registry.add(
        EventPackage(
            flag=EventFlag.DIALOG_EVENT,
            name="dialog",
            content_type="application/dialog-info+xml",
            process_body=_dialog_version_hook if dialog_version else None,
            parse_body={"application/dialog-info+xml": parse_dialog_info},
        )
    )
    registry.add(
        EventPackage(
            flag=EventFlag.REGINFO_EVENT,
            name="reg",
            content_type="application/reginfo+xml",
            process_body=_reginfo_version_hook if reginfo_version else None,
            parse_body={"application/reginfo+xml": parse_reginfo},
        )
    )
    return registry
