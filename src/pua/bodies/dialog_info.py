"""Dialog state documents (RFC 4235, ``application/dialog-info+xml``).

:func:`parse_dialog_info` reads one into :class:`DialogInfo`;
:meth:`DialogInfo.to_bytes` writes one; :func:`set_version` is the dialog
event's ``process_body`` hook that stamps the document version.
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
    first_child,
    one_of,
    optional_attr,
    optional_unsigned,
    parse_unsigned,
    required_attr,
    text_of,
    version_and_state,
)
from .xml import parse_xml, to_bytes

__all__ = [
    "DIALOG_DIRECTIONS",
    "DIALOG_INFO_CONTENT_TYPE",
    "DIALOG_INFO_NS",
    "DIALOG_STATES",
    "DIALOG_STATE_EVENTS",
    "Dialog",
    "DialogState",
    "Direction",
    "DocumentState",
    "Param",
    "DialogInfo",
    "parse_dialog_info",
    "set_version",
]

DIALOG_INFO_NS = "urn:ietf:params:xml:ns:dialog-info"
"""The dialog-info namespace (RFC 4235 §4)."""
DIALOG_INFO_CONTENT_TYPE = "application/dialog-info+xml"
"""The dialog-info media type (RFC 4235, registered with IANA)."""
DIALOG_STATES = ("trying", "proceeding", "early", "confirmed", "terminated")
"""A dialog's ``<state>`` values: the dialog state machine's states (RFC 4235 §3.7.1)."""
DIALOG_DIRECTIONS = ("initiator", "recipient")
"""The ``direction`` attribute values (RFC 4235 §4.1)."""
DIALOG_STATE_EVENTS = (
    "cancelled", "rejected", "replaced", "local-bye", "remote-bye", "error", "timeout",
)  # fmt: skip
"""The ``<state event=...>`` values: why a dialog ended (RFC 4235 §3.7.1)."""

DocumentState = Literal["full", "partial"]
"""A document's ``state``: all dialogs, or only the changed ones (RFC 4235 §4.1)."""
DialogState = Literal["trying", "proceeding", "early", "confirmed", "terminated"]
"""The type of :attr:`Dialog.state` (the values of :data:`DIALOG_STATES`)."""
Direction = Literal["initiator", "recipient"]
"""The type of :attr:`Dialog.direction`."""
Param = tuple[str, str]
"""A target ``<param>``: (pname, pval)."""

_WHAT = "dialog-info document"
_ROOT = f"{{{DIALOG_INFO_NS}}}dialog-info"
_DIALOG = f"{{{DIALOG_INFO_NS}}}dialog"
_STATE = f"{{{DIALOG_INFO_NS}}}state"
_DURATION = f"{{{DIALOG_INFO_NS}}}duration"
_LOCAL = f"{{{DIALOG_INFO_NS}}}local"
_REMOTE = f"{{{DIALOG_INFO_NS}}}remote"
_IDENTITY = f"{{{DIALOG_INFO_NS}}}identity"
_TARGET = f"{{{DIALOG_INFO_NS}}}target"
_PARAM = f"{{{DIALOG_INFO_NS}}}param"


@dataclass(frozen=True, slots=True, kw_only=True)
class Dialog:
    """One ``<dialog>`` (RFC 4235 §4.1)."""

    id: str
    """The notifier's id for this dialog, unique within the document."""
    state: DialogState
    """``trying``, ``proceeding``, ``early``, ``confirmed`` or ``terminated``."""
    direction: Direction | None = None
    """``initiator`` (the entity sent the INVITE) or ``recipient``."""
    call_id: str | None = None
    """The dialog's Call-ID."""
    local_tag: str | None = None
    """The entity's tag."""
    remote_tag: str | None = None
    """The peer's tag."""
    event: str | None = None
    """Why the dialog reached its state (``<state event=...>``, e.g. ``remote-bye``)."""
    code: int | None = None
    """The response code that caused the state (``<state code=...>``)."""
    duration: int | None = None
    """Seconds since the dialog was confirmed (``<duration>``, RFC 4235 §4.1)."""
    local_identity: str | None = None
    """The entity's identity URI (``<local><identity>``, RFC 4235 §4.1)."""
    local_display: str | None = None
    """The display name of ``local_identity``."""
    local_target: str | None = None
    """The entity's target URI (``<local><target uri=...>``, RFC 4235 §4.1)."""
    local_params: tuple[Param, ...] = ()
    """The local target's ``<param>`` (name, value) pairs, e.g. ``+sip.rendering``."""
    remote_identity: str | None = None
    """The peer's identity URI."""
    remote_display: str | None = None
    """The display name of ``remote_identity``."""
    remote_target: str | None = None
    """The peer's target URI."""
    remote_params: tuple[Param, ...] = ()
    """The remote target's ``<param>`` (name, value) pairs."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "local_params", tuple(tuple(p) for p in self.local_params))
        object.__setattr__(self, "remote_params", tuple(tuple(p) for p in self.remote_params))


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogInfo:
    """A ``<dialog-info>`` document (RFC 4235 §4.1)."""

    entity: str
    """The URI whose dialogs these are."""
    version: int
    """The document version; a subscriber drops documents older than the last."""
    state: DocumentState
    """``full`` (all dialogs) or ``partial`` (only those that changed)."""
    dialogs: tuple[Dialog, ...] = ()
    """The dialogs, in document order."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "dialogs", tuple(self.dialogs))

    def to_bytes(self) -> bytes:
        """The document as UTF-8 XML.  ValueError if a value cannot be written."""
        return to_bytes(_build(self))


def _build(info: DialogInfo) -> etree._Element:
    check_text(info.entity, "entity", attribute=True)
    if not info.entity:
        raise ValueError("entity must not be empty (RFC 4235 §4.1)")
    check_unsigned(info.version, "version")
    check_choice(info.state, ("full", "partial"), "state")
    root = etree.Element(_ROOT, nsmap={None: DIALOG_INFO_NS})  # type: ignore[dict-item]
    root.set("version", str(info.version))
    root.set("state", info.state)
    root.set("entity", info.entity)
    ids = [d.id for d in info.dialogs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"dialog ids must be unique: {ids}")
    for dialog in info.dialogs:
        _build_dialog(root, dialog)
    return root


def _build_dialog(root: etree._Element, dialog: Dialog) -> None:
    check_text(dialog.id, "dialog id", attribute=True)
    if not dialog.id:
        raise ValueError("a dialog id must not be empty")
    check_choice(dialog.state, DIALOG_STATES, "dialog state")
    check_choice(dialog.direction, DIALOG_DIRECTIONS, "direction")
    check_choice(dialog.event, DIALOG_STATE_EVENTS, "state event")
    check_unsigned(dialog.code, "code")
    check_unsigned(dialog.duration, "duration")
    element = etree.SubElement(root, _DIALOG, id=dialog.id)
    for attribute, value in (
        ("call-id", dialog.call_id),
        ("local-tag", dialog.local_tag),
        ("remote-tag", dialog.remote_tag),
        ("direction", dialog.direction),
    ):
        if value is not None:
            check_text(value, attribute, attribute=True)
            element.set(attribute, value)
    # Schema order (RFC 4235's XML schema): state, duration?, replaces?,
    # referred-by?, route-set?, local?, remote?.
    state = etree.SubElement(element, _STATE)
    state.text = dialog.state
    if dialog.event is not None:
        state.set("event", dialog.event)
    if dialog.code is not None:
        state.set("code", str(dialog.code))
    if dialog.duration is not None:
        etree.SubElement(element, _DURATION).text = str(dialog.duration)
    _build_participant(
        element, _LOCAL, dialog.local_identity, dialog.local_display,
        dialog.local_target, dialog.local_params,
    )  # fmt: skip
    _build_participant(
        element, _REMOTE, dialog.remote_identity, dialog.remote_display,
        dialog.remote_target, dialog.remote_params,
    )  # fmt: skip


def _build_participant(
    parent: etree._Element,
    tag: str,
    identity: str | None,
    display: str | None,
    target: str | None,
    params: tuple[Param, ...],
) -> None:
    if identity is None and display is not None:
        raise ValueError("a display name needs an identity")
    if target is None and params:
        raise ValueError("target params need a target")
    if identity is None and target is None:
        return
    element = etree.SubElement(parent, tag)
    if identity is not None:
        check_text(identity, "identity")
        node = etree.SubElement(element, _IDENTITY)
        node.text = identity
        if display is not None:
            check_text(display, "display", attribute=True)
            node.set("display", display)
    if target is not None:
        check_text(target, "target", attribute=True)
        node = etree.SubElement(element, _TARGET, uri=target)
        for name, value in params:
            check_text(name, "param name", attribute=True)
            check_text(value, "param value", attribute=True)
            # RFC 4235's XML schema names the value "pval"; its example
            # says "pvalue", which parse_dialog_info accepts too.
            etree.SubElement(node, _PARAM, pname=name, pval=value)


def parse_dialog_info(body: bytes) -> DialogInfo:
    """Read a dialog-info document.  BodyError if it is not one (bad XML, a
    DTD, the wrong root, a missing or bad version/state/entity, a dialog
    without an id or with an unknown state)."""
    root = parse_xml(body, what=_WHAT, root=_ROOT)
    version, state = version_and_state(root, what=_WHAT)
    entity = required_attr(root, "entity", what=_WHAT)
    return DialogInfo(
        entity=entity,
        version=version,
        state=cast(DocumentState, state),
        dialogs=tuple(_parse_dialog(d) for d in children(root, _DIALOG)),
    )


def _parse_dialog(element: etree._Element) -> Dialog:
    id_ = required_attr(element, "id", what=_WHAT)
    where = f"dialog {id_!r}"
    state_element = first_child(element, _STATE)
    if state_element is None:
        # RFC 4235 §4.1: <state> is mandatory in a <dialog>.
        raise BodyError(f"{_WHAT}: {where} has no <state>")
    state = one_of(text_of(state_element), DIALOG_STATES, what=_WHAT, field=f"{where} state")
    direction = optional_attr(element, "direction")
    if direction is not None:
        one_of(direction, DIALOG_DIRECTIONS, what=_WHAT, field=f"{where} direction")
    event = optional_attr(state_element, "event")
    if event is not None:
        one_of(event, DIALOG_STATE_EVENTS, what=_WHAT, field=f"{where} state event")
    duration_element = first_child(element, _DURATION)
    duration = None
    if duration_element is not None:
        duration = parse_unsigned(text_of(duration_element), what=_WHAT, field=f"{where} duration")
    local = _parse_participant(element, _LOCAL)
    remote = _parse_participant(element, _REMOTE)
    return Dialog(
        id=id_,
        state=cast(DialogState, state),
        direction=cast(Direction | None, direction),
        call_id=optional_attr(element, "call-id"),
        local_tag=optional_attr(element, "local-tag"),
        remote_tag=optional_attr(element, "remote-tag"),
        event=event,
        code=optional_unsigned(state_element, "code", what=_WHAT),
        duration=duration,
        local_identity=local[0],
        local_display=local[1],
        local_target=local[2],
        local_params=local[3],
        remote_identity=remote[0],
        remote_display=remote[1],
        remote_target=remote[2],
        remote_params=remote[3],
    )


def _parse_participant(
    dialog: etree._Element, tag: str
) -> tuple[str | None, str | None, str | None, tuple[Param, ...]]:
    element = first_child(dialog, tag)
    if element is None:
        return None, None, None, ()
    identity = display = target = None
    params: list[Param] = []
    identity_element = first_child(element, _IDENTITY)
    if identity_element is not None:
        identity = text_of(identity_element)
        display = optional_attr(identity_element, "display")
    target_element = first_child(element, _TARGET)
    if target_element is not None:
        target = required_attr(target_element, "uri", what=_WHAT)
        for param in children(target_element, _PARAM):
            name = required_attr(param, "pname", what=_WHAT)
            value = optional_attr(param, "pval")
            if value is None:
                value = optional_attr(param, "pvalue")
            if value is None:
                raise BodyError(f"{_WHAT}: <param pname={name!r}> has no pval")
            params.append((name, value))
    return identity, display, target, tuple(params)


def set_version(body: bytes, version: int) -> bytes:
    """The dialog event's ``process_body`` hook: set the root ``version``.

    RFC 4235 §4.1 makes ``version`` count the documents of one notifier; a
    publisher that lets each PUBLISH carry its own counter (Kamailio's
    ``dlginfo_increase_version``, BLA) rewrites it here.  The attribute is
    replaced whatever it held, or added if the root had none; nothing else
    in the document changes.  The result is UTF-8 XML.

    BodyError if ``body`` is not a dialog-info document; ValueError if
    ``version`` is not a non-negative int.
    """
    check_unsigned(version, "version")
    root = parse_xml(body, what=_WHAT, root=_ROOT)
    root.set("version", str(version))
    return to_bytes(root)
