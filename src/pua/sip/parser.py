"""Turning bytes into messages: datagrams, and a framer for streams.

RFC 3261 §7 gives the shape::

    generic-message  =  start-line *message-header CRLF [ message-body ]
    start-line       =  Request-Line / Status-Line
    Request-Line     =  Method SP Request-URI SP SIP-Version CRLF
    Status-Line      =  SIP-Version SP Status-Code SP Reason-Phrase CRLF
    message-header   =  field-name HCOLON field-value CRLF   (with LWS folding)

Framing is done with plain ``bytes``/``str`` operations: find the blank
line, split lines, partition each on the first colon.  Header values are
only interpreted when somebody asks for them (see :mod:`pua.sip.message`).

Anything malformed raises :class:`RemoteProtocolError`, whose ``status`` is
the answer for a request (400, or 513 for a message beyond our limits);
never any other exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import abnf
from .errors import MessageTooLarge, RemoteProtocolError
from .headers import Headers, header_key, header_keys
from .message import Message, Request, Response

__all__ = [
    "MAX_BODY_SIZE",
    "MAX_DATAGRAM_SIZE",
    "MAX_HEADERS",
    "MAX_HEAD_SIZE",
    "MAX_LINE_LENGTH",
    "KeepAlive",
    "StreamFramer",
    "parse_message",
]

# Limits.  A UDP datagram cannot exceed 65,535 bytes; RFC 3261 §18.1.1 keeps
# requests over UDP near the path MTU, so anything near the cap is abuse.
MAX_DATAGRAM_SIZE = 65_535
# The header section of one message.  Kamailio's default BUF_SIZE is 64 KiB
# for a whole message; a presence request's head is rarely above 2 KiB.
MAX_HEAD_SIZE = 32_768
# One header line (after unfolding).  Long Record-Route or Route sets of a
# dozen hops stay well below this.
MAX_LINE_LENGTH = 8_192
# Header fields in one message; sofia-sip and PJSIP parse fewer than this
# in practice, and a few hundred covers any real proxy chain.
MAX_HEADERS = 256
# A body on a stream: PIDF documents and RLMI multiparts for large lists
# stay well under 1 MiB.
MAX_BODY_SIZE = 1 << 20

_CRLF = b"\r\n"
_FOLD_RE = re.compile(r"\r?\n[ \t]+")
_HEADER_NAME_RE = abnf.TOKEN_RE
_HEADER_NAMES_RE = re.compile(rf"{abnf.TOKEN}(?:\n{abnf.TOKEN})*")
_CONTENT_LENGTH_RE = re.compile(
    rb"(?:^|\n)[ \t]*(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE
)


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message)


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one whole message.

    For a datagram (``stream=False``) the body is what follows the blank
    line, cut to Content-Length when that is shorter (§18.3); a
    Content-Length larger than the body is an error.
    """
    if len(data) > (MAX_HEAD_SIZE + MAX_BODY_SIZE if stream else MAX_DATAGRAM_SIZE):
        raise MessageTooLarge(f"message of {len(data)} bytes")
    # §7.5: ignore CRLFs before the start line.
    start = 0
    while data.startswith(_CRLF, start):
        start += 2
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        head_bytes = data[start:end]
        body = data[end + 4 :]
        newline = "\r\n"
    else:
        # Bare LF line ends are not SIP, but are common enough from broken
        # tools that refusing them helps nobody.
        end = data.find(b"\n\n", start)
        if end < 0:
            raise _bad("no blank line after the header section")
        head_bytes = data[start:end]
        body = data[end + 2 :]
        newline = "\n"
    if len(head_bytes) > MAX_HEAD_SIZE:
        raise MessageTooLarge(f"header section of {len(head_bytes)} bytes")
    head = head_bytes.decode("utf-8", "surrogateescape")
    if newline == "\n" and "\r\n" in head:
        head = head.replace("\r\n", "\n")
    if "\n " in head or "\n\t" in head:
        head = _FOLD_RE.sub(" ", head)
    lines = head.split(newline)
    if len(lines) > MAX_HEADERS + 1:
        raise MessageTooLarge(f"{len(lines) - 1} header fields")

    start_line = lines[0]
    del lines[0]
    if len(head) > MAX_LINE_LENGTH:
        for line in lines:
            if len(line) > MAX_LINE_LENGTH:
                raise MessageTooLarge(f"header line of {len(line)} characters")
    # One pass: the fields, and the index of their lookup keys that the
    # transaction layer reads next (Headers would build it on first use).
    items: list[tuple[str, str]] = []
    index: dict[str, list[int]] = {}
    keys = header_keys()
    for i, line in enumerate(lines):
        name, colon, value = line.partition(":")
        if not colon:
            raise _bad(f"header line without colon: {line[:60]!r}")
        # HCOLON = *( SP / HTAB ) ":" SWS: only SP and HTAB are trimmed, so
        # a value keeps any other (non-ASCII) space it ends with.
        name = name.rstrip(" \t")
        items.append((name, value.strip(" \t")))
        key = keys.get(name) or header_key(name)
        found = index.get(key)
        if found is None:
            index[key] = [i]
        else:
            found.append(i)
    # One regex over all names at once is several times cheaper than one
    # per line; on failure, find the culprit for the message.
    names = "\n".join([name for name, _ in items])
    if _HEADER_NAMES_RE.fullmatch(names) is None:
        for name, _ in items:
            if _HEADER_NAME_RE.fullmatch(name) is None:
                raise _bad(f"bad header name {name[:60]!r}")
    lengths = index.get("content-length", ())
    if len(lengths) > 1:
        raise _bad("more than one Content-Length")
    content_length = items[lengths[0]][1] if lengths else None
    # A CR or LF that does not end a line would let a value smuggle a
    # header when the message is written again.  (NUL and other controls
    # may appear in quoted-pairs, RFC 3261 §25.1, and are kept.)
    separators = len(lines) if newline == "\r\n" else 0
    if head.count("\r") != separators or head.count("\n") != len(lines):
        raise _bad("bare CR or LF in a header field")
    message = _parse_start_line(start_line, Headers.adopt(items, index))

    if content_length is not None:
        if not content_length.isdigit() or not content_length.isascii():
            raise _bad(f"bad Content-Length {content_length[:20]!r}")
        if len(content_length) > 9:
            raise MessageTooLarge(f"Content-Length of {len(content_length)} digits")
        length = int(content_length)
        if length > len(body):
            raise _bad(f"Content-Length {length} exceeds the {len(body)} bytes received")
        if length < len(body):
            body = body[:length]
    elif stream:
        raise _bad("missing Content-Length on a stream transport")
    message.body = body
    return message


def _parse_start_line(line: str, headers: Headers) -> Request | Response:
    # Request-Line  =  Method SP Request-URI SP SIP-Version
    # Status-Line   =  SIP-Version SP Status-Code SP Reason-Phrase
    if line.startswith("SIP/"):
        version, sp1, rest = line.partition(" ")
        code, _sp2, reason = rest.partition(" ")
        if version != abnf.SIP_VERSION:
            raise RemoteProtocolError(
                f"unsupported version {version[:20]!r}", status=505, reason="Version Not Supported"
            )
        if not sp1 or abnf.STATUS_CODE_RE.fullmatch(code) is None:
            raise _bad(f"bad status line {line[:80]!r}")
        return Response(int(code), reason, headers)
    parts = line.split(" ")
    if len(parts) != 3:
        raise _bad(f"bad request line {line[:80]!r}")
    method, uri, version = parts
    if abnf.METHOD_RE.fullmatch(method) is None:
        raise _bad(f"bad method {method[:40]!r}")
    if version != abnf.SIP_VERSION:
        if version.upper().startswith("SIP/"):
            raise RemoteProtocolError(
                f"unsupported version {version[:20]!r}", status=505, reason="Version Not Supported"
            )
        raise _bad(f"bad request line {line[:80]!r}")
    colon = uri.find(":")
    if colon <= 0 or abnf.SCHEME_RE.fullmatch(uri[:colon]) is None or "<" in uri or ">" in uri:
        raise _bad(f"bad Request-URI {uri[:80]!r}")
    return Request(method, uri, headers)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A CRLFCRLF keep-alive ping on a stream (RFC 5626 §3.5.1); the answer
    is a single CRLF."""


class StreamFramer:
    """Cuts a byte stream (TCP, TLS) into messages.

    Feed it whatever a read returned; it returns the complete messages (and
    keep-alive pings) found so far and keeps the rest.  A stream must carry
    Content-Length (§18.3).  After a :class:`RemoteProtocolError` the
    stream cannot be resynchronised: close the connection.
    """

    __slots__ = ("_buffer", "_head_end", "_need", "_scan_from")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scan_from = 0
        self._head_end = -1
        self._need = -1

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as a message."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Message | KeepAlive]:
        """Add bytes; return the messages they complete."""
        buffer = self._buffer
        buffer += data
        out: list[Message | KeepAlive] = []
        while buffer:
            if self._head_end < 0:
                if buffer[0] in (0x0D, 0x0A):
                    if not self._consume_crlf(out):
                        break
                    continue
                end = buffer.find(b"\r\n\r\n", self._scan_from)
                if end < 0:
                    if len(buffer) > MAX_HEAD_SIZE:
                        raise MessageTooLarge("header section too long")
                    self._scan_from = max(0, len(buffer) - 3)
                    break
                if end > MAX_HEAD_SIZE:
                    raise MessageTooLarge("header section too long")
                self._head_end = end + 4
                self._need = self._head_end + self._body_length(bytes(buffer[:end]))
            if len(buffer) < self._need:
                break
            raw = bytes(buffer[: self._need])
            del buffer[: self._need]
            self._head_end = self._need = -1
            self._scan_from = 0
            out.append(parse_message(raw, stream=True))
        return out

    def _consume_crlf(self, out: list[Message | KeepAlive]) -> bool:
        buffer = self._buffer
        if buffer.startswith(b"\r\n\r\n"):
            del buffer[:4]
            out.append(KeepAlive())
            return True
        if len(buffer) < 4 and b"\r\n\r\n".startswith(bytes(buffer)):
            return False  # maybe a ping still arriving
        if buffer.startswith(b"\r\n"):
            del buffer[:2]  # a pong, or a CRLF between messages (§7.5)
            return True
        raise _bad("stray line-feed on the stream")

    @staticmethod
    def _body_length(head: bytes) -> int:
        found = _CONTENT_LENGTH_RE.findall(head)
        if not found:
            raise _bad("missing Content-Length on a stream transport")
        if len(found) > 1:
            raise _bad("more than one Content-Length")
        text = found[0].strip(b" \t")
        if not text.isdigit():
            raise _bad(f"bad Content-Length {text[:20]!r}")
        if len(text) > 9:
            raise MessageTooLarge(f"Content-Length of {len(text)} digits")
        length = int(text)
        if length > MAX_BODY_SIZE:
            raise MessageTooLarge(f"body of {length} bytes")
        return length
