"""PIDF presence documents (RFC 3863)."""

from __future__ import annotations

from lxml import etree

__all__ = ["PIDF_CONTENT_TYPE", "PIDF_NS", "basic_pidf"]

PIDF_NS = "urn:ietf:params:xml:ns:pidf"
PIDF_CONTENT_TYPE = "application/pidf+xml"


def basic_pidf(entity: str, basic: str, *, tuple_id: str, note: str | None = None) -> bytes:
    """The smallest valid PIDF document: one tuple with a basic status.

    ``basic`` is ``open`` or ``closed`` (RFC 3863 §4.1.4); ``tuple_id`` must
    be an XML ID (a letter first), and stays the same across updates of one
    publication so that watchers see one tuple change, not a new one.
    """
    if basic not in ("open", "closed"):
        raise ValueError(f"basic status must be 'open' or 'closed', not {basic!r}")
    presence = etree.Element(f"{{{PIDF_NS}}}presence", nsmap={None: PIDF_NS})  # type: ignore[dict-item]
    presence.set("entity", entity)
    tuple_ = etree.SubElement(presence, f"{{{PIDF_NS}}}tuple", id=tuple_id)
    status = etree.SubElement(tuple_, f"{{{PIDF_NS}}}status")
    etree.SubElement(status, f"{{{PIDF_NS}}}basic").text = basic
    if note is not None:
        etree.SubElement(presence, f"{{{PIDF_NS}}}note").text = note
    return bytes(etree.tostring(presence, xml_declaration=True, encoding="UTF-8"))
