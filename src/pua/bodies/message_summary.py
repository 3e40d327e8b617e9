"""Message summaries (RFC 3842, ``application/simple-message-summary``).

The body is text, not XML (RFC 3842 §5.2)::

    Messages-Waiting: yes
    Message-Account: sip:alice@vmail.example.com
    Voice-Message: 4/8 (1/2)

    To: <sip:alice@example.com>
    Subject: carpool tomorrow?

A status line, an optional account, one line of counts per message class
(RFC 3458 §6.2's message-context-class), then optionally, after a blank line,
one block of RFC 2822-style headers per message.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from pua.errors import BodyError

__all__ = [
    "MAX_SUMMARY_SIZE",
    "MESSAGE_CLASSES",
    "MESSAGE_SUMMARY_CONTENT_TYPE",
    "Counts",
    "HeaderBlock",
    "MessageSummary",
    "parse_message_summary",
]

MESSAGE_SUMMARY_CONTENT_TYPE = "application/simple-message-summary"
"""The message-summary media type (RFC 3842, registered with IANA)."""

MAX_SUMMARY_SIZE = 64 * 1024
"""Largest message-summary body accepted, in bytes: a real one is a few lines."""

MESSAGE_CLASSES = frozenset(
    {"voice-message", "fax-message", "pager-message", "multimedia-message", "text-message", "none"}
)
"""The message-context-class values of RFC 3458 §6.2 (lower case)."""

HeaderBlock = tuple[tuple[str, str], ...]
"""One message's headers as (name, value) pairs, in order (RFC 3842 §5.2)."""

_WHAT = "message summary"

# RFC 3261 §25.1 token, the charset of header names.
_TOKEN = r"[A-Za-z0-9\-.!%*_+`'~]+"
# HCOLON = *( SP / HTAB ) ":" SWS; the value runs to the end of the line.
_HEADER_LINE = re.compile(rf"({_TOKEN})[ \t]*:[ \t]*(.*?)[ \t]*")
_TOKEN_RE = re.compile(_TOKEN)
# newmsgs SLASH oldmsgs [ LPAREN new-urgentmsgs SLASH old-urgentmsgs RPAREN ],
# where SLASH and LPAREN allow white space around them (RFC 3261 §25.1).
# ASCII digits only, and few enough of them for int() to be cheap.
_N = r"([0-9]{1,10})"
_COUNTS = re.compile(rf"{_N}[ \t]*/[ \t]*{_N}(?:[ \t]*\([ \t]*{_N}[ \t]*/[ \t]*{_N}[ \t]*\))?")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """The counts of one message class (RFC 3842 §5.2 msg-summary-line)."""

    new: int
    """New (unread) messages."""
    old: int
    """Old messages."""
    urgent_new: int = 0
    """Of the new messages, how many are urgent."""
    urgent_old: int = 0
    """Of the old messages, how many are urgent."""

    def __post_init__(self) -> None:
        for name in ("new", "old", "urgent_new", "urgent_old"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, not {value!r}")


def _normalize_class(name: str) -> str:
    lowered = name.lower()
    # RFC 3458 §6.2 registers the classes; all but "none" end in "-message",
    # so that suffix admits classes registered later and nothing else.
    if not _TOKEN_RE.fullmatch(name) or not (
        lowered in MESSAGE_CLASSES or lowered.endswith("-message")
    ):
        raise ValueError(f"{name!r} is not a message-context-class (RFC 3458 §6.2)")
    return lowered


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageSummary:
    """A message-summary document (RFC 3842 §5.2)."""

    waiting: bool
    """The ``Messages-Waiting`` status: True for ``yes``."""
    account: str | None = None
    """The ``Message-Account`` URI, if given."""
    counts: Mapping[str, Counts] = field(default_factory=dict)
    """Counts by message class, lower case (``voice-message``, ``fax-message``...).
    Keys given in another case are lowered; the mapping is read-only."""
    headers: tuple[HeaderBlock, ...] = ()
    """The optional per-message header blocks, in order."""

    def __post_init__(self) -> None:
        counts: dict[str, Counts] = {}
        for name, value in dict(self.counts).items():
            key = _normalize_class(name)
            if key in counts:
                raise ValueError(f"message class {key!r} is given twice")
            if not isinstance(value, Counts):
                raise ValueError(f"counts of {key!r} must be Counts, not {type(value).__name__}")
            counts[key] = value
        object.__setattr__(self, "counts", MappingProxyType(counts))
        object.__setattr__(
            self, "headers", tuple(tuple((str(n), str(v)) for n, v in b) for b in self.headers)
        )

    def __hash__(self) -> int:
        # The mapping is read-only but not hashable itself.
        return hash((self.waiting, self.account, frozenset(self.counts.items()), self.headers))

    def to_bytes(self) -> bytes:
        """The body as UTF-8 text with CRLF line ends.  ValueError if a value
        cannot be written (line breaks or control characters, a bad name)."""
        # "yes" / "no" exactly as RFC 3842 §5.2's msg-status.
        lines = [f"Messages-Waiting: {'yes' if self.waiting else 'no'}"]
        if self.account is not None:
            if not self.account or any(c.isspace() for c in self.account):
                raise ValueError(f"account must be a URI without white space: {self.account!r}")
            _check_value(self.account, "account")
            lines.append(f"Message-Account: {self.account}")
        for name, counts in self.counts.items():
            line = f"{_title(name)}: {counts.new}/{counts.old}"
            if counts.urgent_new or counts.urgent_old:
                line += f" ({counts.urgent_new}/{counts.urgent_old})"
            lines.append(line)
        for block in self.headers:
            if not block:
                raise ValueError("a header block must hold at least one header")
            # opt-msg-headers = CRLF 1*(extension-header CRLF)
            lines.append("")
            for name, value in block:
                if not _TOKEN_RE.fullmatch(name):
                    raise ValueError(f"header name must be a token, not {name!r}")
                _check_value(value, f"header {name}")
                lines.append(f"{name}: {value}" if value else f"{name}:")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _title(name: str) -> str:
    # "voice-message" -> "Voice-Message", the spelling of RFC 3842's examples.
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def _check_value(value: str, field_name: str) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{field_name} must be a str, not {type(value).__name__}")
    if _CONTROL.search(value) or value != value.strip(" \t"):
        raise ValueError(
            f"{field_name} must be one line without control characters "
            f"or surrounding space: {value!r}"
        )


def parse_message_summary(body: bytes) -> MessageSummary:
    """Read a message-summary body.

    Header names and ``yes``/``no`` are case-insensitive and white space
    around ``:``, ``/`` and the parentheses is allowed, as RFC 3842 §5.2's
    grammar says; LF line ends and folded lines are accepted too.  BodyError
    for anything else: not UTF-8, no ``Messages-Waiting`` line first, a line
    that is not a header, counts that are not numbers, a class given twice,
    or more than :data:`MAX_SUMMARY_SIZE` bytes.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise BodyError(f"{_WHAT}: expected bytes, got {type(body).__name__}")
    body = bytes(body)
    if len(body) > MAX_SUMMARY_SIZE:
        raise BodyError(f"{_WHAT}: {len(body)} bytes is over the {MAX_SUMMARY_SIZE}-byte limit")
    try:
        # A byte-order mark is not part of the grammar but harmless.
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise BodyError(f"{_WHAT}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    sections = _sections(text)
    if not sections:
        raise BodyError(f"{_WHAT}: empty body")
    waiting, account, counts = _parse_status_section(sections[0])
    headers = tuple(tuple(section) for section in sections[1:])
    return MessageSummary(waiting=waiting, account=account, counts=counts, headers=headers)


def _sections(text: str) -> list[list[tuple[str, str]]]:
    """Split into blank-line separated sections of (name, value) headers."""
    sections: list[list[tuple[str, str]]] = []
    current: list[tuple[str, str]] | None = None
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r")
        if _CONTROL.search(line):
            raise BodyError(f"{_WHAT}: line {number} holds a control character")
        if not line.strip(" \t"):
            current = None  # a blank line ends a section
            continue
        if line[0] in " \t":
            # A folded line continues the previous header (RFC 3261 §7.3.1).
            if not current:
                raise BodyError(f"{_WHAT}: line {number} is a continuation of nothing")
            name, value = current[-1]
            folded = line.strip(" \t")
            current[-1] = (name, f"{value} {folded}" if value else folded)
            continue
        match = _HEADER_LINE.fullmatch(line)
        if match is None:
            raise BodyError(f"{_WHAT}: line {number} is not 'Name: value': {line[:60]!r}")
        if current is None:
            current = []
            sections.append(current)
        current.append((match.group(1), match.group(2)))
    return sections


def _parse_status_section(
    lines: list[tuple[str, str]],
) -> tuple[bool, str | None, dict[str, Counts]]:
    name, value = lines[0]
    if name.lower() != "messages-waiting":
        raise BodyError(f"{_WHAT}: the first line must be Messages-Waiting, not {name!r}")
    status = value.lower()
    if status not in ("yes", "no"):
        raise BodyError(f"{_WHAT}: Messages-Waiting must be yes or no, not {value!r}")
    account: str | None = None
    counts: dict[str, Counts] = {}
    for name, value in lines[1:]:
        lowered = name.lower()
        if lowered == "messages-waiting":
            raise BodyError(f"{_WHAT}: Messages-Waiting is given twice")
        if lowered == "message-account":
            if account is not None:
                raise BodyError(f"{_WHAT}: Message-Account is given twice")
            if not value or any(c.isspace() for c in value):
                raise BodyError(f"{_WHAT}: Message-Account is not a URI: {value!r}")
            account = value
            continue
        try:
            key = _normalize_class(name)
        except ValueError:
            raise BodyError(
                f"{_WHAT}: {name!r} is not a message class; headers go after a blank line"
            ) from None
        if key in counts:
            raise BodyError(f"{_WHAT}: {name} is given twice")
        match = _COUNTS.fullmatch(value)
        if match is None:
            raise BodyError(f"{_WHAT}: {name} must be 'new/old (urgent/urgent)', not {value!r}")
        new, old, urgent_new, urgent_old = (int(g) if g else 0 for g in match.groups())
        counts[key] = Counts(new=new, old=old, urgent_new=urgent_new, urgent_old=urgent_old)
    return status == "yes", account, counts
