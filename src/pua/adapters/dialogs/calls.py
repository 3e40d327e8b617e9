"""Calls as dialog state: what each presentity's dialog-info document holds
(Kamailio's pua_dialoginfo, RFC 4235).  Pure: no IO, time as an argument.

A :class:`CallEvent` (a proxy saw a call start, ring, be answered or end)
changes the :class:`Leg` of each presentity the call concerns (the caller,
direction ``initiator``; the callee, ``recipient``).  Every presentity's
document is its full state: all its calls, one ``<dialog>`` each, with a
version that grows by one per document.  A leg's state only moves forward
along RFC 4235's dialog state machine (trying, proceeding, early,
confirmed, terminated): a late ``early`` after ``confirmed`` changes
nothing, and ``terminated`` is final.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from pua.bodies import Dialog, DialogInfo
from pua.bodies.dialog_info import DIALOG_STATE_EVENTS, DIALOG_STATES, DialogState
from pua.errors import RemoteProtocolError
from pua.sip.uri import SipUri, parse_uri

__all__ = [
    "CALL_STATES",
    "CallEvent",
    "DialogOptions",
    "Leg",
    "PresentityCalls",
    "Side",
    "address_of",
    "apply",
    "expire",
    "restore",
    "sides",
]

CALL_STATES = ("trying", "early", "confirmed", "terminated")
"""The states a call event may report."""
_RANK = {state: rank for rank, state in enumerate(DIALOG_STATES)}
Side = Literal["caller", "callee"]
PUBLISH_TO = ("caller", "callee", "both")


def _bad(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, status=400)


def address_of(uri: str, what: str) -> str:
    """``uri`` as a presentity key: ``sip:user@host`` (host in lower case, no
    parameters).  RemoteProtocolError (400) when it is not a SIP URI with a
    user."""
    try:
        parsed = parse_uri(uri.strip().strip("<>"))
    except RemoteProtocolError:
        raise _bad(f"{what} {uri[:80]!r} is not a SIP URI") from None
    if not isinstance(parsed, SipUri) or parsed.user is None:
        raise _bad(f"{what} {uri[:80]!r} is not a sip: URI with a user")
    scheme = "sips" if parsed.secure else "sip"
    return f"{scheme}:{parsed.user}@{parsed.host.lower()}"


def _target(uri: Any, what: str) -> str | None:
    if uri is None or uri == "":
        return None
    if not isinstance(uri, str):
        raise _bad(f"{what} must be a SIP URI string")
    text = uri.strip().strip("<>")
    try:
        parsed = parse_uri(text)
    except RemoteProtocolError:
        raise _bad(f"{what} {text[:80]!r} is not a SIP URI") from None
    if not isinstance(parsed, SipUri):
        raise _bad(f"{what} {text[:80]!r} is not a SIP URI")
    return text


def _token(value: Any, what: str, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise _bad(f"{what} is required")
        return None
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string")
    text = value.strip()
    if not text or len(text) > 256 or any(c.isspace() or ord(c) < 33 for c in text):
        raise _bad(f"{what} {text[:80]!r} is not a SIP token (1-256 visible characters)")
    return text


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEvent:
    """What happened to one call: the body of ``POST /dialogs``."""

    call_id: str
    from_tag: str
    caller: str
    """The caller's address (From), ``sip:user@host``."""
    callee: str
    """The callee's address (To, or the Request-URI), ``sip:user@host``."""
    state: str
    """``trying``, ``early``, ``confirmed`` or ``terminated``."""
    to_tag: str | None = None
    direction: Literal["initiator", "recipient"] | None = None
    """Only the caller's side (initiator) or the callee's (recipient); both
    when None."""
    local_target: str | None = None
    """The caller's Contact."""
    remote_target: str | None = None
    """The callee's Contact (from its 1xx or 2xx)."""
    lifetime: int | None = None
    """Seconds the call may last (the proxy's dialog timeout)."""
    reason: str | None = None
    """Why a call ended (RFC 4235 ``<state event=...>``: cancelled, rejected,
    local-bye, remote-bye, error, timeout, replaced)."""
    code: int | None = None
    """The response code that ended or moved the call (``<state code=...>``)."""

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> CallEvent:
        """A checked event from JSON values.  RemoteProtocolError (400)
        naming the first field that is wrong."""
        known = {
            "call_id", "from_tag", "to_tag", "caller", "callee", "state", "direction",
            "local_target", "remote_target", "lifetime", "reason", "code",
        }  # fmt: skip
        unknown = sorted(set(values) - known - {"wait"})
        if unknown:
            raise _bad(f"unknown field {unknown[0]!r}")
        state = values.get("state")
        if state not in CALL_STATES:
            raise _bad(f"state must be one of {', '.join(CALL_STATES)}, not {state!r}")
        direction = values.get("direction")
        if direction not in (None, "initiator", "recipient"):
            raise _bad(f"direction must be initiator or recipient, not {direction!r}")
        lifetime = values.get("lifetime")
        if lifetime is not None and (
            isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime < 1
        ):
            raise _bad(f"lifetime must be a positive integer, not {lifetime!r}")
        reason = values.get("reason")
        if reason is not None and reason not in DIALOG_STATE_EVENTS:
            raise _bad(f"reason must be one of {', '.join(DIALOG_STATE_EVENTS)}, not {reason!r}")
        code = values.get("code")
        if code is not None and (
            isinstance(code, bool) or not isinstance(code, int) or not 100 <= code <= 699
        ):
            raise _bad(f"code must be a SIP status (100-699), not {code!r}")
        return cls(
            call_id=cast(str, _token(values.get("call_id"), "call_id", required=True)),
            from_tag=cast(str, _token(values.get("from_tag"), "from_tag", required=True)),
            to_tag=_token(values.get("to_tag"), "to_tag", required=False),
            caller=address_of(_text(values, "caller"), "caller"),
            callee=address_of(_text(values, "callee"), "callee"),
            state=state,
            direction=direction,
            local_target=_target(values.get("local_target"), "local_target"),
            remote_target=_target(values.get("remote_target"), "remote_target"),
            lifetime=lifetime,
            reason=reason,
            code=code,
        )


def _text(values: Mapping[str, Any], name: str) -> str:
    value = values.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _bad(f"{name} is required (a SIP URI)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class DialogOptions:
    """How calls become documents (the service's settings of the same names)."""

    include_tags: bool = True
    include_localremote: bool = True
    include_callid: bool = True
    caller_confirmed: bool = False
    """Show the caller's early call as confirmed (for phones that light a
    busy lamp only for confirmed calls)."""
    callee_trying: bool = False
    """Publish ``trying`` for the callee too (the caller always gets it)."""
    publish_to: str = "both"
    """caller, callee or both."""
    local_domains: tuple[str, ...] = ()
    """Publish only for presentities in these domains (empty: all)."""
    lifetime: int = 43200
    """A call's lifetime when its events name none."""
    override_lifetime: int | None = None
    """Every call's lifetime, whatever its events say."""
    terminated_expires: int = 10
    """Expires of the document that shows a presentity's last call ended."""


@dataclass(slots=True)
class Leg:
    """One call as one presentity sees it: a ``<dialog>`` of its document."""

    call_id: str
    from_tag: str
    side: Side
    state: DialogState
    until: float
    """When the call's lifetime ends (Unix time)."""
    to_tag: str | None = None
    peer: str = ""
    local_target: str | None = None
    remote_target: str | None = None
    reason: str | None = None
    code: int | None = None
    confirmed_at: float | None = None
    ended_at: float | None = None

    @property
    def direction(self) -> Literal["initiator", "recipient"]:
        """The presentity's role in the call."""
        return "initiator" if self.side == "caller" else "recipient"


@dataclass(slots=True)
class PresentityCalls:
    """The calls of one presentity and the publication that carries them."""

    uri: str
    id: str
    """The publication's id: ``DIALOG_PUBLISH.<Call-ID>`` of the call that
    opened it."""
    version: int = -1
    """The version of the last document made (-1: none yet)."""
    legs: dict[tuple[str, str, Side], Leg] = field(default_factory=dict)

    def live(self) -> bool:
        """Whether any call of the presentity has not ended."""
        return any(leg.state != "terminated" for leg in self.legs.values())

    def expires(self, now: float, options: DialogOptions) -> int:
        """The Expires of the next document: the longest remaining call
        lifetime, or ``terminated_expires`` when every call has ended."""
        live = [leg.until for leg in self.legs.values() if leg.state != "terminated"]
        if not live:
            return options.terminated_expires
        return max(1, int(max(live) - now + 0.5))

    def forget_ended(self, now: float, options: DialogOptions) -> None:
        """Drop calls that ended ``terminated_expires`` ago or more: they
        have been shown terminated long enough."""
        old = [
            key
            for key, leg in self.legs.items()
            if leg.ended_at is not None and leg.ended_at + options.terminated_expires <= now
        ]
        for key in old:
            del self.legs[key]

    def document(self, now: float, options: DialogOptions) -> DialogInfo:
        """The next full-state document (its version one more than the last)."""
        self.version += 1
        sides = {(leg.call_id, leg.from_tag) for leg in self.legs.values() if leg.side == "caller"}
        # Live calls first: a presence server may judge a document by its
        # first dialog (Kamailio takes no update to a document whose first
        # dialog is terminated, and answers 200 all the same).
        order = sorted(
            self.legs.values(),
            key=lambda leg: (leg.state == "terminated", leg.until, leg.call_id),
        )
        dialogs = [
            _dialog(self.uri, leg, options, now, both=(leg.call_id, leg.from_tag) in sides)
            for leg in order
        ]
        return DialogInfo(
            entity=self.uri, version=self.version, state="full", dialogs=tuple(dialogs)
        )


def _dialog(entity: str, leg: Leg, options: DialogOptions, now: float, *, both: bool) -> Dialog:
    state: DialogState = leg.state
    if state == "early" and leg.side == "caller" and options.caller_confirmed:
        state = "confirmed"
    # A call between two legs of one presentity (a call to oneself) has
    # both sides in one document: their ids must differ.
    ident = leg.call_id if leg.side == "caller" or not both else f"{leg.call_id}.recipient"
    local_tag, remote_tag = (
        (leg.from_tag, leg.to_tag) if leg.side == "caller" else (leg.to_tag, leg.from_tag)
    )
    local = options.include_localremote
    duration = None
    if leg.confirmed_at is not None and leg.state == "confirmed":
        duration = max(0, int(now - leg.confirmed_at))
    return Dialog(
        id=ident,
        state=state,
        direction=leg.direction,
        call_id=leg.call_id if options.include_callid else None,
        local_tag=local_tag if options.include_tags else None,
        remote_tag=remote_tag if options.include_tags else None,
        event=leg.reason if leg.state == "terminated" else None,
        code=leg.code,
        duration=duration,
        local_identity=entity if local else None,
        local_target=leg.local_target if local else None,
        remote_identity=leg.peer if local and leg.peer else None,
        remote_target=leg.remote_target if local else None,
    )


def sides(event: CallEvent, options: DialogOptions) -> Iterator[tuple[Side, str, str]]:
    """(side, presentity, peer) of each presentity ``event`` is published
    for: the caller and the callee, as ``publish_to``, ``direction`` and
    ``local_domains`` allow; the callee's ``trying`` only with
    ``callee_trying``."""
    wanted: list[tuple[Side, str, str]] = []
    if options.publish_to in ("caller", "both") and event.direction in (None, "initiator"):
        wanted.append(("caller", event.caller, event.callee))
    if options.publish_to in ("callee", "both") and event.direction in (None, "recipient"):
        wanted.append(("callee", event.callee, event.caller))
    for side, uri, peer in wanted:
        if options.local_domains and uri.partition("@")[2] not in options.local_domains:
            continue
        yield side, uri, peer


def apply(
    calls: PresentityCalls,
    side: Side,
    peer: str,
    event: CallEvent,
    now: float,
    options: DialogOptions,
) -> bool:
    """Apply ``event`` to the presentity's leg of the call; whether its
    document changed.  A state never moves back, and an ended call stays
    ended."""
    key = (event.call_id, event.from_tag, side)
    leg = calls.legs.get(key)
    lifetime = options.override_lifetime or event.lifetime or options.lifetime
    state = cast(DialogState, event.state)
    if leg is None:
        if side == "callee" and state == "trying" and not options.callee_trying:
            return False
        leg = calls.legs[key] = Leg(
            call_id=event.call_id, from_tag=event.from_tag, side=side, state=state,
            until=now + lifetime, peer=peer,
        )  # fmt: skip
    elif leg.state == "terminated" or _RANK[state] < _RANK[leg.state]:
        return False
    elif state == leg.state and not _news(leg, event, side):
        leg.until = now + lifetime
        return False
    leg.state = state
    leg.until = now + lifetime
    leg.to_tag = event.to_tag or leg.to_tag
    caller_target, callee_target = event.local_target, event.remote_target
    mine, theirs = (
        (caller_target, callee_target) if side == "caller" else (callee_target, caller_target)
    )
    leg.local_target = mine or leg.local_target
    leg.remote_target = theirs or leg.remote_target
    if event.code is not None:
        leg.code = event.code
    if state == "confirmed" and leg.confirmed_at is None:
        leg.confirmed_at = now
    if state == "terminated":
        leg.ended_at = now
        leg.reason = event.reason
    return True


def _news(leg: Leg, event: CallEvent, side: Side) -> bool:
    """Whether an event in the leg's current state says anything new."""
    mine, theirs = (
        (event.local_target, event.remote_target)
        if side == "caller"
        else (event.remote_target, event.local_target)
    )
    return (
        (event.to_tag is not None and event.to_tag != leg.to_tag)
        or (mine is not None and mine != leg.local_target)
        or (theirs is not None and theirs != leg.remote_target)
    )


def expire(calls: PresentityCalls, now: float) -> bool:
    """End the calls whose lifetime is over (``timeout``); whether any did."""
    changed = False
    for leg in calls.legs.values():
        if leg.state != "terminated" and leg.until <= now:
            leg.state = "terminated"
            leg.reason = "timeout"
            leg.ended_at = now
            changed = True
    return changed


def restore(
    uri: str, ident: str, document: DialogInfo, until: float, now: float
) -> PresentityCalls:
    """The calls of a presentity read back from its stored document (after
    a restart): every dialog with its state, tags and targets; each live
    call's lifetime ends with the stored publication's (``until``), and a
    call shown ended is forgotten ``terminated_expires`` after ``now``."""
    calls = PresentityCalls(uri=uri, id=ident, version=document.version)
    for dialog in document.dialogs:
        side: Side = "callee" if dialog.direction == "recipient" else "caller"
        call_id = dialog.call_id or dialog.id.removesuffix(".recipient")
        local_tag, remote_tag = dialog.local_tag, dialog.remote_tag
        from_tag = (local_tag if side == "caller" else remote_tag) or ""
        to_tag = remote_tag if side == "caller" else local_tag
        terminated = dialog.state == "terminated"
        calls.legs[(call_id, from_tag, side)] = Leg(
            call_id=call_id,
            from_tag=from_tag,
            side=side,
            state=dialog.state,
            until=until,
            to_tag=to_tag,
            peer=dialog.remote_identity or "",
            local_target=dialog.local_target,
            remote_target=dialog.remote_target,
            reason=dialog.event,
            code=dialog.code,
            ended_at=now if terminated else None,
        )
    return calls
