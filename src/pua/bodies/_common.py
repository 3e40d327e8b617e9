"""Small helpers shared by the event-document modules (not public API).

They read attributes and text from an already-parsed (hardened) element
and turn every problem into :class:`~pua.sip.errors.BodyError`, so a parse
function never lets a ``ValueError`` or an lxml exception out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

from lxml import etree

from pua.errors import BodyError

# xs:nonNegativeInteger / xs:unsignedLong in ASCII digits only (str.isdigit
# would accept other scripts' digits).  Twenty digits hold any unsignedLong;
# the bound also keeps int() far from Python's 4300-digit conversion limit.
_UNSIGNED = re.compile(r"[0-9]{1,20}")
_UNSIGNED_LONG_MAX = 2**64 - 1

# A simplified NCName (XML Namespaces §3): a letter or "_" first, then
# letters, digits, "_", "-" and ".".  xs:ID values must be NCNames.
_NCNAME = re.compile(r"[^\W\d][\w.\-]*")


def is_ncname(value: str) -> bool:
    """True if ``value`` can be an xs:ID (a letter or ``_`` first)."""
    return _NCNAME.fullmatch(value) is not None


def children(element: etree._Element, tag: str) -> Iterator[etree._Element]:
    """The direct children of ``element`` with Clark name ``tag``."""
    for child in element:
        if child.tag == tag:
            yield child


def first_child(element: etree._Element, tag: str) -> etree._Element | None:
    """The first direct child of ``element`` named ``tag``, or None."""
    return next(children(element, tag), None)


def local_name(element: etree._Element) -> str:
    """The tag of ``element`` without its namespace."""
    return etree.QName(element).localname


def text_of(element: etree._Element) -> str:
    """All text inside ``element`` (not its tail), surrounding space removed."""
    return "".join(str(t) for t in element.itertext()).strip()


def optional_attr(element: etree._Element, name: str) -> str | None:
    """The value of attribute ``name`` without surrounding space, or None."""
    value = element.get(name)
    return None if value is None else str(value).strip()


def required_attr(element: etree._Element, name: str, *, what: str) -> str:
    """The value of attribute ``name``; BodyError if it is absent or blank."""
    value = element.get(name)
    if value is None or not str(value).strip():
        raise BodyError(f"{what}: <{local_name(element)}> has no {name!r} attribute")
    return str(value).strip()


def parse_unsigned(text: str, *, what: str, field: str) -> int:
    """``text`` as an xs:unsignedLong; BodyError if it is not one."""
    value = text.strip()
    if not _UNSIGNED.fullmatch(value) or int(value) > _UNSIGNED_LONG_MAX:
        raise BodyError(f"{what}: {field} must be a non-negative integer, not {text!r}")
    return int(value)


def optional_unsigned(element: etree._Element, name: str, *, what: str) -> int | None:
    """Attribute ``name`` as an unsigned integer, or None if it is absent."""
    value = element.get(name)
    if value is None:
        return None
    return parse_unsigned(str(value), what=what, field=f"{local_name(element)}@{name}")


def one_of(value: str, allowed: Collection[str], *, what: str, field: str) -> str:
    """``value`` if it is in ``allowed``; BodyError naming the choices otherwise."""
    if value not in allowed:
        choices = ", ".join(sorted(allowed))
        raise BodyError(f"{what}: {field} is {value!r}, expected one of {choices}")
    return value


def required_choice(
    element: etree._Element, name: str, allowed: Collection[str], *, what: str, where: str
) -> str:
    """Required attribute ``name``, which must be one of ``allowed``."""
    value = required_attr(element, name, what=what)
    return one_of(value, allowed, what=what, field=f"{where} {name}".strip())


def version_and_state(root: etree._Element, *, what: str) -> tuple[int, str]:
    """The ``version`` and ``state`` (full/partial) of a root element, the
    pair RFC 4235 §4.1, RFC 3680 §5 and RFC 3858 §3 share."""
    version = parse_unsigned(required_attr(root, "version", what=what), what=what, field="version")
    state = required_choice(root, "state", ("full", "partial"), what=what, where="")
    return version, state


def check_choice(value: str | None, allowed: Collection[str], field: str) -> None:
    """ValueError unless ``value`` is None or in ``allowed`` (for builders)."""
    if value is not None and value not in allowed:
        choices = ", ".join(sorted(allowed))
        raise ValueError(f"{field} must be one of {choices}, not {value!r}")


def check_unsigned(value: int | None, field: str) -> None:
    """ValueError unless ``value`` is None or a non-negative unsignedLong."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an int, not {type(value).__name__}")
    if not 0 <= value <= _UNSIGNED_LONG_MAX:
        raise ValueError(f"{field} must be between 0 and 2**64-1, not {value}")


def check_text(value: str | None, field: str, *, attribute: bool = False) -> None:
    """ValueError unless ``value`` is None or text XML can carry unchanged.

    XML 1.0 §2.2 has no control characters but tab and newline; a parser
    turns CR into LF (§2.11), and surrounding space is dropped on reading, so
    such values would not survive a round trip.  In an ``attribute`` value
    tab and newline become spaces (§3.3.3), so they are refused too.
    """
    if value is None:
        return
    if not isinstance(value, str):
        raise ValueError(f"{field} must be a str, not {type(value).__name__}")
    if value != value.strip():
        raise ValueError(f"{field} must not start or end with white space: {value!r}")
    for char in value:
        code = ord(char)
        control = code < 0x20 and (attribute or char not in "\t\n")
        if control or 0xD800 <= code <= 0xDFFF or code in (0xFFFE, 0xFFFF):
            raise ValueError(f"{field} holds a character XML cannot carry: {char!r}")


def check_id(value: str, field: str) -> None:
    """ValueError unless ``value`` is a usable xs:ID (an NCName)."""
    if not isinstance(value, str) or not is_ncname(value):
        raise ValueError(f"{field} must be an XML ID (a letter or '_' first), not {value!r}")
