"""One-line human summaries of event bodies, for a CLI that prints NOTIFYs.

:func:`summarize` never raises: a body it cannot read is summarized as
such, so printing a hostile NOTIFY cannot take the printer down.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TypeVar

from pua.errors import BodyError

from .dialog_info import DIALOG_INFO_CONTENT_TYPE, DialogInfo, parse_dialog_info
from .message_summary import MESSAGE_SUMMARY_CONTENT_TYPE, MessageSummary, parse_message_summary
from .pidf import PIDF_CONTENT_TYPE, Presence, parse_pidf
from .reginfo import REGINFO_CONTENT_TYPE, RegInfo, parse_reginfo
from .watcherinfo import WATCHERINFO_CONTENT_TYPE, WatcherInfo, parse_watcherinfo

__all__ = ["summarize"]

_T = TypeVar("_T")

_NOTE_LIMIT = 60
_ERROR_LIMIT = 120
_LINE_LIMIT = 300
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _clean(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters."""
    flat = " ".join(_UNPRINTABLE.sub(" ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _who(uri: str) -> str:
    """The user part of a URI (``alice`` for ``sip:alice@example.com``)."""
    rest = uri.strip().strip("<>")
    match = _SCHEME.match(rest)
    if match is not None:
        rest = rest[match.end() :]
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    user = rest.split("@", 1)[0] if "@" in rest else rest
    return user or uri


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _presence(doc: Presence) -> str:
    line = f"{_who(doc.entity)}: {doc.basic or 'no basic status'}"
    # The person's note says most about the person (RFC 4479), then the
    # tuples', then the document's.
    notes = [
        *(n for p in doc.persons for n in p.notes),
        *(n for t in doc.tuples for n in t.notes),
        *doc.notes,
    ]
    note = next((n for n in notes if n.strip()), None)
    if note is not None:
        line += f' "{_clean(note, _NOTE_LIMIT)}"'
    if doc.activities:
        line += f" ({', '.join(doc.activities)})"
    return line


def _message_summary(doc: MessageSummary) -> str:
    parts = [f"messages waiting: {'yes' if doc.waiting else 'no'}"]
    for name, counts in doc.counts.items():
        part = f"{name.removesuffix('-message')} {counts.new} new / {counts.old} old"
        if counts.urgent_new or counts.urgent_old:
            part += f" ({counts.urgent_new}/{counts.urgent_old} urgent)"
        parts.append(part)
    return ", ".join(parts)


def _dialog_info(doc: DialogInfo) -> str:
    head = f"dialog {_who(doc.entity)}: "
    if not doc.dialogs:
        return head + ("no dialogs" if doc.state == "full" else "no change")
    states = []
    for dialog in doc.dialogs:
        states.append(dialog.state + (f" ({dialog.direction})" if dialog.direction else ""))
    return head + ", ".join(states)


def _reginfo(doc: RegInfo) -> str:
    if not doc.registrations:
        return "registrations: none"
    parts = []
    for registration in doc.registrations:
        active = sum(1 for c in registration.contacts if c.state == "active")
        ended = len(registration.contacts) - active
        part = f"{registration.aor}: {registration.state}, {_plural(active, 'contact')}"
        if ended:
            part += f" (+{ended} terminated)"
        parts.append(part)
    return "; ".join(parts)


def _watcherinfo(doc: WatcherInfo) -> str:
    watchers = doc.watchers
    line = _plural(len(watchers), "watcher")
    if watchers:
        names = (f"{w.display_name or _who(w.uri)} {w.status}" for w in watchers)
        line += ": " + ", ".join(names)
    return line


def _reader(parse: Callable[[bytes], _T], show: Callable[[_T], str]) -> Callable[[bytes], str]:
    return lambda body: show(parse(body))


_READERS: dict[str, Callable[[bytes], str]] = {
    PIDF_CONTENT_TYPE: _reader(parse_pidf, _presence),
    MESSAGE_SUMMARY_CONTENT_TYPE: _reader(parse_message_summary, _message_summary),
    DIALOG_INFO_CONTENT_TYPE: _reader(parse_dialog_info, _dialog_info),
    REGINFO_CONTENT_TYPE: _reader(parse_reginfo, _reginfo),
    WATCHERINFO_CONTENT_TYPE: _reader(parse_watcherinfo, _watcherinfo),
}


def summarize(content_type: str | None, body: bytes) -> str:
    """A one-line summary of an event body, for people.

    For instance ``alice: open "On the phone" (on-the-phone)``,
    ``messages waiting: yes, voice 2 new / 8 old``, ``dialog 3: confirmed
    (initiator)``, ``sip:alice@example.com: active, 2 contacts`` or
    ``1 watcher: bob active``.  An empty body gives ``(no body)``; a type
    without a reader ``<content type>, N bytes``; a body that does not parse
    ``<content type>: unreadable (<why>)``.  Never raises.
    """
    try:
        if not body or not bytes(body).strip():
            return "(no body)"
        label = _clean(content_type, 80) if content_type else "no content type"
        media = (content_type or "").split(";", 1)[0].strip().lower()
        reader = _READERS.get(media)
        if reader is None:
            return f"{label}, {_plural(len(body), 'byte')}"
        try:
            return _clean(reader(bytes(body)), _LINE_LIMIT)
        except BodyError as exc:
            return f"{media}: unreadable ({_clean(str(exc), _ERROR_LIMIT)})"
    except Exception as exc:  # a summary is for display: never let it raise
        return f"(unsummarizable body: {type(exc).__name__})"
