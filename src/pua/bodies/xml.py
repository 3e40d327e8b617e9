"""The one way event documents get in and out of XML: a hardened lxml parser.

Every XML body pua reads comes from the network (a NOTIFY, a PUBLISH body
file), so it is treated as hostile.  The parser here:

* refuses anything over :data:`MAX_XML_SIZE` bytes before parsing;
* refuses any document with a DOCTYPE.  None of the event formats (RFC 3863
  §4, RFC 4235 §4, RFC 3680 §5, RFC 3858 §6) uses a DTD, and a DTD is what
  carries the classic attacks: entity expansion ("billion laughs"),
  external entities (XXE, ``SYSTEM "file:///etc/passwd"``) and DTD fetches;
* on top of that never loads a DTD, never resolves an entity, never touches
  the network and keeps libxml2's default limits (no ``huge_tree``: depth
  256, bounded text nodes), so even a DOCTYPE the byte scan cannot see
  (UTF-16) is inert until it is rejected after parsing;
* raises :class:`~pua.sip.errors.BodyError`, and nothing else, for any
  document it will not accept.
"""

from __future__ import annotations

import threading

from lxml import etree

from pua.errors import BodyError

__all__ = ["MAX_XML_SIZE", "parse_xml", "to_bytes"]

MAX_XML_SIZE = 256 * 1024
"""Largest XML body accepted, in bytes.  Real presence, dialog, reginfo and
watcherinfo documents are a few KiB; a server that sends more is broken or
hostile, and RFC 3261 §18.1.1 puts bodies this big on TCP anyway."""


class _Parsers(threading.local):
    """One parser per thread: lxml parsers keep per-parse state (the error
    log) and are not meant to be shared between threads, but one thread may
    use its own parser again and again (a new one costs more than a small
    document's parse)."""

    def __init__(self) -> None:
        self.parser = _new_parser()


def _new_parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,  # no entity expansion (billion laughs, XXE)
        load_dtd=False,  # no external DTD subset is ever fetched
        dtd_validation=False,
        no_network=True,  # libxml2 never opens a socket
        huge_tree=False,  # keep libxml2's depth and text-size limits
        collect_ids=False,  # no ID hash table: ids are plain attributes here
        remove_blank_text=False,  # keep the document as sent (assign_ids)
    )


_PARSERS = _Parsers()


def _has_doctype_bytes(data: bytes) -> bool:
    # A cheap refusal before libxml2 sees the document at all.  XML keywords
    # are case-sensitive, but nothing legitimate says "<!doctype" either.
    # Only ASCII-compatible encodings are caught here; the docinfo check after
    # parsing catches the rest (UTF-16).
    return b"<!DOCTYPE" in data.upper()


def parse_xml(data: bytes, *, what: str, root: str | None = None) -> etree._Element:
    """Parse ``data`` with the hardened parser and return its root element.

    ``what`` names the document in error messages (e.g. ``"PIDF document"``).
    ``root``, a Clark name such as ``"{urn:ietf:params:xml:ns:pidf}presence"``,
    is the root element the caller expects; another root (or the right name
    in another namespace) is refused.

    Raises :class:`BodyError` for: an empty or oversize body, a DOCTYPE (and so
    any DTD or entity declaration), malformed XML, and a wrong root.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BodyError(f"{what}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise BodyError(f"{what}: empty body")
    if len(data) > MAX_XML_SIZE:
        raise BodyError(f"{what}: {len(data)} bytes is over the {MAX_XML_SIZE}-byte limit")
    if _has_doctype_bytes(data):
        raise BodyError(f"{what}: a DOCTYPE is not allowed (DTDs and entities are refused)")
    try:
        element = etree.fromstring(data, _PARSERS.parser)
    except etree.XMLSyntaxError as exc:
        raise BodyError(f"{what}: malformed XML: {exc}") from None
    except (etree.LxmlError, ValueError, TypeError, LookupError) as exc:
        # LookupError: an unknown encoding in the XML declaration.
        raise BodyError(f"{what}: cannot parse: {exc}") from None
    docinfo: etree.DocInfo = element.getroottree().docinfo
    # lxml-stubs 0.5 lacks DocInfo.doctype, which lxml has had since 2.0.
    if docinfo.doctype or docinfo.internalDTD is not None:  # type: ignore[attr-defined]
        raise BodyError(f"{what}: a DOCTYPE is not allowed (DTDs and entities are refused)")
    if root is not None and element.tag != root:
        raise BodyError(f"{what}: root element is {_describe(element)}, expected {root}")
    return element


def _describe(element: etree._Element) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # a comment or PI cannot be the root, but be safe
        return repr(tag)
    return tag if tag.startswith("{") else f"{tag} (no namespace)"


def to_bytes(element: etree._Element) -> bytes:
    """Serialize ``element`` as UTF-8 with an XML declaration.

    A root element is written with its document's top-level comments and
    processing instructions, so a document read by :func:`parse_xml` and
    written back keeps everything but its original encoding.
    """
    node: etree._Element | etree._ElementTree = element
    if element.getparent() is None:
        node = element.getroottree()
    return bytes(etree.tostring(node, xml_declaration=True, encoding="UTF-8"))
