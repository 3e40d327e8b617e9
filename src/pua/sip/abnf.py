"""Pieces of the RFC 3261 §25 grammar, as compiled regular expressions.

Each expression quotes the ABNF rule it implements.  Only what the parser
and the typed headers need is here; the message framing itself is done with
plain string operations for speed (see :mod:`pua.sip.parser`).
"""

from __future__ import annotations

import re
import urllib.parse

# alphanum / mark, RFC 3261 §25.1:
#   unreserved  =  alphanum / mark
#   mark        =  "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
#   escaped     =  "%" HEXDIG HEXDIG
_UNRESERVED = r"A-Za-z0-9\-_.!~*'()"
_ESCAPED = r"%[0-9A-Fa-f]{2}"

# token       =  1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~" )
TOKEN_CHARS = r"A-Za-z0-9\-.!%*_+`'~"
TOKEN = rf"[{TOKEN_CHARS}]+"
TOKEN_RE = re.compile(TOKEN)

# Method  =  INVITEm / ACKm / OPTIONSm / BYEm / CANCELm / REGISTERm / extension-method
# extension-method  =  token
METHOD_RE = TOKEN_RE

# user             =  1*( unreserved / escaped / user-unreserved )
# user-unreserved  =  "&" / "=" / "+" / "$" / "," / ";" / "?" / "/"
USER_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,;?/]|{_ESCAPED})+")

# password         =  *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
PASSWORD_RE = re.compile(rf"(?:[{_UNRESERVED}&=+$,]|{_ESCAPED})*")

# hostname         =  *( domainlabel "." ) toplabel [ "." ]
# domainlabel      =  alphanum / alphanum *( alphanum / "-" ) alphanum
# toplabel         =  ALPHA / ALPHA *( alphanum / "-" ) alphanum
# IPv4address      =  1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
# (a dotted quad also matches the hostname rule when the top label is
#  numeric, so both are accepted here; IPv6 references are checked with
#  the ipaddress module.)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
HOSTNAME_RE = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")

# port  =  1*DIGIT
PORT_RE = re.compile(r"[0-9]{1,5}")

# paramchar        =  param-unreserved / unreserved / escaped
# param-unreserved =  "[" / "]" / "/" / ":" / "&" / "+" / "$"
PARAMCHARS_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/:&+$]|{_ESCAPED})+")

# hname / hvalue   =  1*( hnv-unreserved / unreserved / escaped )
# hnv-unreserved   =  "[" / "]" / "/" / "?" / ":" / "+" / "$"
HNV_RE = re.compile(rf"(?:[{_UNRESERVED}\[\]/?:+$]|{_ESCAPED})*")

# scheme  =  ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )
SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")

# Status-Code  =  3DIGIT (100..699 in practice, §21)
STATUS_CODE_RE = re.compile(r"[1-6][0-9][0-9]")

# SIP-Version  =  "SIP" "/" 1*DIGIT "." 1*DIGIT  (only 2.0 is spoken)
SIP_VERSION = "SIP/2.0"

# header-name  =  token ; field names are tokens, compared case-insensitively
HEADER_NAME_RE = TOKEN_RE

# reserved  =  ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ","
RESERVED = frozenset(";/?:@&=+$,")

_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")


def normalize_escapes(text: str) -> str:
    """Decode %HH escapes of non-reserved characters, upper-case the rest.

    RFC 3261 §19.1.4: "characters other than those in the reserved set are
    equivalent to their %HH encoding", so two URIs that differ only there
    compare equal once normalised.
    """
    if "%" not in text:
        return text

    def repl(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        if char in RESERVED or not char.isprintable() or char == "%":
            return "%" + match.group(1).upper()
        return char

    return _ESCAPE_RE.sub(repl, text)


def unescape(text: str) -> str:
    """Decode every %HH escape (as UTF-8, undecodable bytes replaced)."""
    if "%" not in text:
        return text
    return urllib.parse.unquote(text, errors="replace")


def split_quoted(text: str, sep: str) -> list[str]:
    """Split ``text`` on ``sep`` outside quoted strings and angle brackets.

    Used for comma-separated header values (RFC 3261 §7.3.1) and for
    ``;``-separated parameters, where a quoted-string or a bracketed URI may
    hold the separator itself.  Raises ValueError on an unterminated quote.
    """
    if '"' not in text and "<" not in text:
        return text.split(sep)
    parts: list[str] = []
    start = 0
    in_quote = False
    in_angle = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if in_quote:
            if c == "\\":
                i += 1
            elif c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            in_angle = True
        elif c == ">":
            in_angle = False
        elif c == sep and not in_angle:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if in_quote:
        raise ValueError("unterminated quoted string")
    if in_angle:
        raise ValueError("unterminated <")
    parts.append(text[start:])
    return parts


# quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
# qdtext         =  LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
# quoted-pair    =  "\" (%x00-09 / %x0B-0C / %x0E-7F)
QUOTED_STRING_RE = re.compile(r'"(?:[^"\\\r\n]|\\[^\r\n])*"')


def unquote(text: str) -> str:
    """Strip the quotes of a quoted-string and undo its quoted-pairs."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        body = text[1:-1]
        if "\\" in body:
            return re.sub(r"\\(.)", r"\1", body)
        return body
    return text


def quote(text: str) -> str:
    """Make a quoted-string of ``text``."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
