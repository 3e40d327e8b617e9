"""The NOTIFY server: every request that reaches the engine gets an answer.

:func:`check_notify` decides, without changing anything, what a request is
answered (RFC 6665 §4.1.3 and RFC 3261 §12.2.2): 405 to anything but
NOTIFY, 481 outside our dialogs (and from an address family the dialog
does not use), 489 for another event, 400 without
Subscription-State or with a body the package cannot read, 500 for a CSeq
out of order; otherwise 200 and the subscription it belongs to.
:func:`classify_termination` turns a terminated Subscription-State into the
subscription table's input.  :class:`NotifyServer` answers, then updates
the dialog and feeds the subscriber.

Requests that are not NOTIFYs of pua's own dialogs (a REGISTER copy, a
phone's NOTIFY) go to the :data:`RequestHandler` registered for their method
and event, if any (the one hook adapters have): it returns the response, or
None and answers later through :meth:`NotifyServer.respond`.  What no handler
takes is answered as above (405 with the methods taken in Allow, 481).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pua.errors import BodyError, RemoteProtocolError, UsageError
from pua.sip.endpoint import make_response, warning_value
from pua.sip.headers import NameAddress, SubscriptionState
from pua.sip.ids import tag
from pua.sip.message import Request, Response
from pua.sip.transaction import Address, ServerTransaction

from .context import EngineContext
from .events import CallbackFailed, NotifyReceived
from .records import SubscriptionRecord, SubState, intern_text
from .requests import parse_next_hop
from .subscriber import Subscriber
from .subscription import SubInput

__all__ = [
    "IncomingRequest",
    "NotifyCheck",
    "RequestHandler",
    "NotifyServer",
    "address_family",
    "check_notify",
    "classify_termination",
    "dialog_family",
]

# Terminated reasons (RFC 6665 §4.1.3).
RESUBSCRIBE_NOW = frozenset({"deactivated", "timeout"})
RESUBSCRIBE_LATER = frozenset({"probation", "giveup"})


@dataclass(frozen=True, slots=True)
class NotifyCheck:
    """What :func:`check_notify` decided: the status to answer, and for a
    200 the subscription, its state header, and what was read."""

    status: int
    reason: str | None = None
    warning: str | None = None
    sub: SubscriptionRecord | None = None
    state: SubscriptionState | None = None
    document: Any = None
    contact: str | None = None
    route_set: tuple[str, ...] | None = None  # for a NOTIFY that creates the dialog


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """A request handed to a :data:`RequestHandler`: what came, from where,
    and the server transaction its answer goes in."""

    request: Request
    source: Address
    transport: str
    transaction: ServerTransaction


RequestHandler = Callable[[IncomingRequest, float], Response | None]
"""Takes a request (and ``now``) and returns its response, or None when it
answers later (:meth:`PresenceEngine.respond`).  A RemoteProtocolError it
raises is answered with its status; anything else with 500."""


def address_family(host: str) -> int | None:
    """4 or 6 for an IP address (an IPv4-mapped IPv6 address is 4), None
    for a name."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return 4
    return address.version


def dialog_family(ctx: EngineContext, sub: SubscriptionRecord) -> int | None:
    """The address family of the peer a subscription's requests go to (the
    first route, else the next hop toward its target), or None when that
    peer is a name: DNS may give either family."""
    return _hop_family(
        sub.route_set[0] if sub.route_set else None,
        sub.options.outbound_proxy or ctx.router.outbound_proxy,
        sub.remote_target,
    )


@functools.lru_cache(maxsize=4096)
def _hop_family(route: str | None, proxy: str | None, target: str) -> int | None:
    # Cached: every subscription of one notifier asks the same question,
    # once per NOTIFY.
    try:
        hop = str(NameAddress.parse(route).uri) if route else proxy or target
        return address_family(parse_next_hop(hop).host)
    except (RemoteProtocolError, UsageError):
        return None


def check_notify(
    ctx: EngineContext, request: Request, source: Address | None = None
) -> NotifyCheck:
    """The answer to ``request`` (received from ``source``) and what it
    means; changes nothing.  A malformed header raises RemoteProtocolError
    (answered with its status)."""
    if request.method != "NOTIFY":
        return NotifyCheck(405)
    local_tag = request.to.tag
    remote_tag = request.from_.tag
    sub = None
    if local_tag is not None:
        sub = ctx.table.by_dialog(request.call_id, local_tag, remote_tag)
    if sub is None or sub.state is SubState.DONE:
        return NotifyCheck(481)
    if source is not None:
        # A dialog lives on one address family: a NOTIFY in it from the
        # other one is somebody who learned the dialog's ids, not its peer.
        ours, theirs = dialog_family(ctx, sub), address_family(source[0])
        if ours is not None and theirs is not None and ours != theirs:
            return NotifyCheck(481, warning=f"NOTIFY over IPv{theirs} for a dialog over IPv{ours}")
    package = ctx.registry.by_flag(sub.event)
    event = request.event
    if event is None or event.name.lower() != package.event_type.lower():
        return NotifyCheck(489)
    state = request.subscription_state
    if state is None:
        return NotifyCheck(400, "Missing Subscription-State")
    if (
        sub.remote_cseq is not None
        and request.cseq.seq <= sub.remote_cseq
        and sub.to_tag == remote_tag
    ):
        return NotifyCheck(500, "CSeq out of order")  # §12.2.2
    content_type = request.content_type
    document: Any = None
    if request.body and package.parse_body and content_type:
        parser = package.parse_body.get(content_type)
        if parser is not None:
            try:
                document = parser(request.body)
            except BodyError as exc:
                return NotifyCheck(400, "Bad Body", warning=str(exc))
    # Every header the dialog needs is read before answering: a malformed
    # one is a 400, never a 200 followed by a fault.
    contacts = request.contacts
    route_set = None
    if sub.to_tag is None and remote_tag is not None:
        route_set = tuple(intern_text(str(r)) for r in request.record_routes)
    contact = intern_text(str(contacts[0].uri)) if contacts else None
    return NotifyCheck(
        200, sub=sub, state=state, document=document, contact=contact, route_set=route_set
    )


def classify_termination(reason: str, resubscribes: int, unsubscribing: bool) -> SubInput:
    """The table's input for ``Subscription-State: terminated`` with
    ``reason``, the ``resubscribes``-th in a row without an active NOTIFY."""
    if unsubscribing:
        return SubInput.TERMINATED
    if reason in RESUBSCRIBE_NOW and resubscribes == 1:
        return SubInput.RESUBSCRIBE_NOW
    if reason in RESUBSCRIBE_NOW or reason in RESUBSCRIBE_LATER:
        # A notifier that terminates again before ever saying "active" is
        # not answered at once a second time: that would be a loop.
        return SubInput.RESUBSCRIBE_LATER
    return SubInput.TERMINATED


class NotifyServer:
    """Answers the requests that reach the engine, and acts on NOTIFYs."""

    def __init__(self, ctx: EngineContext, subscriber: Subscriber) -> None:
        self._ctx = ctx
        self._subscriber = subscriber
        self._handlers: dict[tuple[str, str | None], RequestHandler] = {}

    # -- the adapters' hook --------------------------------------------------------
    def add_handler(self, method: str, handler: RequestHandler, event: str | None = None) -> None:
        """Hand requests of ``method`` (with ``event``, or any event when
        None) that are not NOTIFYs of our dialogs to ``handler``."""
        key = (method.upper(), event.lower() if event else None)
        if key in self._handlers:
            raise UsageError(f"a handler for {method} {event or '(any event)'} is registered")
        self._handlers[key] = handler

    def remove_handler(self, method: str, event: str | None = None) -> None:
        """Stop handing those requests over (no error when none was)."""
        self._handlers.pop((method.upper(), event.lower() if event else None), None)

    def _handler_for(self, request: Request) -> RequestHandler | None:
        if not self._handlers:
            return None
        method = request.method
        try:
            event = request.event
        except RemoteProtocolError:
            event = None
        if event is not None:
            handler = self._handlers.get((method, event.name.lower()))
            if handler is not None:
                return handler
        return self._handlers.get((method, None))

    def _hand_over(self, handler: RequestHandler, incoming: IncomingRequest, now: float) -> None:
        try:
            response = handler(incoming, now)
        except RemoteProtocolError as exc:
            response = make_response(incoming.request, exc.status, exc.reason)
            response.headers.add("Warning", warning_value(str(exc)))
        except Exception as exc:
            self._ctx.events.append(
                CallbackFailed(key=None, error=f"{incoming.request.method} handler: {exc!r}")
            )
            response = make_response(incoming.request, 500, "Server Internal Error")
        if response is not None:
            self.respond(incoming, response, now)

    def respond(self, incoming: IncomingRequest, response: Response, now: float) -> None:
        """Send a handler's answer to ``incoming`` (once)."""
        self._ctx.endpoint.respond(incoming.transaction, response, now)

    def on_request(self, tx: ServerTransaction, request: Request, now: float) -> None:
        """Answer ``request`` and act on it."""
        ctx = self._ctx
        if request.method == "NOTIFY":
            ctx.counters.notify_received += 1
        try:
            check = check_notify(ctx, request, tx.address)
        except RemoteProtocolError as exc:
            check = NotifyCheck(exc.status, exc.reason, warning=str(exc))
        if check.status in (405, 481) and (handler := self._handler_for(request)) is not None:
            incoming = IncomingRequest(request, tx.address, tx.transport, tx)
            self._hand_over(handler, incoming, now)
            return
        if check.status == 405:
            response = make_response(request, 405, to_tag=tag(ctx.ids))
            allowed = sorted({"NOTIFY", *(method for method, _ in self._handlers)})
            response.headers.add("Allow", ", ".join(allowed))
        else:
            response = make_response(request, check.status, check.reason)
            if check.warning:
                response.headers.add("Warning", warning_value(check.warning))
        ctx.endpoint.respond(tx, response, now)
        if check.status == 200:
            assert check.sub is not None and check.state is not None
            self._accepted(check.sub, request, check, now)

    def _accepted(
        self, sub: SubscriptionRecord, request: Request, check: NotifyCheck, now: float
    ) -> None:
        ctx = self._ctx
        state = check.state
        assert state is not None
        route = sub.route
        if check.route_set is not None:
            # A NOTIFY that beat the 2xx creates the dialog (RFC 6665 §4.1.2.4).
            sub.to_tag = request.from_.tag
            sub.route = sub.route.replace(route_set=check.route_set)
        sub.remote_cseq = request.cseq.seq
        if check.contact is not None:
            sub.route = sub.route.replace(remote_target=check.contact)
        # A NOTIFY in a dialog whose route it leaves as it was changes only
        # the last CSeq seen (the row's version).
        ctx.mark(sub, refreshed=check.route_set is None and sub.route == route)
        ctx.events.append(
            NotifyReceived(
                key=sub.key,
                state=state.state,
                reason=state.reason,
                expires=state.expires,
                content_type=request.content_type,
                body=request.body,
                document=check.document,
            )
        )
        ctx.callbacks.queue(sub, request, None)
        if state.state in ("active", "pending"):
            self._subscriber.state_changed(sub, state.state, state.expires, now)
            return
        reason = state.reason or ""
        unsubscribing = sub.state is SubState.UNSUBSCRIBING or (
            sub.pending is not None and sub.pending.remove
        )
        if not unsubscribing:
            sub.resubscribes += 1
        event = classify_termination(reason, sub.resubscribes, unsubscribing)
        delay = 0.0
        if event is SubInput.RESUBSCRIBE_LATER:
            if state.retry_after is not None:
                delay = float(min(state.retry_after, ctx.config.retry_after_cap))
            else:
                delay = ctx.lifetimes.retry_delay(sub.resubscribes, None)
        self._subscriber.step(sub, event, now, reason=reason or "terminated", delay=delay)
