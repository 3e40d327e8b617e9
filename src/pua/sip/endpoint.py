"""The sans-IO SIP endpoint: transaction layer, framing, stateless errors.

Inputs: :meth:`SipEndpoint.send_request`, :meth:`SipEndpoint.respond`,
:meth:`SipEndpoint.receive_datagram` / :meth:`SipEndpoint.receive_message`,
:meth:`SipEndpoint.transport_error`, :meth:`SipEndpoint.handle_timer`.
Outputs: :meth:`SipEndpoint.datagrams_to_send`, :meth:`SipEndpoint.next_event`
and :meth:`SipEndpoint.get_timer`.  Every input takes ``now`` (seconds, any
monotonic origin); nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .errors import LocalProtocolError, RemoteProtocolError
from .headers import MAGIC_COOKIE, Headers, header_key
from .message import Message, Request, Response
from .parser import parse_message
from .timers import DeadlineQueue, TimerConfig
from .transaction import (
    Action,
    Address,
    ClientInput,
    ClientTransaction,
    CompletedTransaction,
    ServerInput,
    ServerTransaction,
    is_reliable,
)

__all__ = [
    "Datagram",
    "EndpointEvent",
    "MessageDropped",
    "RequestReceived",
    "ResponseReceived",
    "SipEndpoint",
    "TransactionTimedOut",
    "TransportFailed",
    "make_response",
    "warning_value",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Datagram:
    """Bytes to send to ``address`` over ``transport``."""

    data: bytes
    address: Address
    transport: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseReceived:
    """A response matched a client transaction (1xx and the first final)."""

    transaction: ClientTransaction
    response: Response
    request: Request | None = None
    """The request answered (given with a final answer: the transaction
    lets go of it as it ends)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TransactionTimedOut:
    """Timer F fired: no final response in 64*T1 (§17.1.2.2)."""

    transaction: ClientTransaction


@dataclass(frozen=True, slots=True, kw_only=True)
class TransportFailed:
    """The transport could not carry a request of ours (§17.1.4)."""

    transaction: ClientTransaction
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestReceived:
    """A new request; answer it with :meth:`SipEndpoint.respond`."""

    transaction: ServerTransaction
    request: Request


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageDropped:
    """Bytes that were not accepted: malformed, or a response that matches
    no transaction.  ``status`` is the error answered, if one was."""

    address: Address
    transport: str
    reason: str
    status: int | None = None


EndpointEvent = (
    ResponseReceived | TransactionTimedOut | TransportFailed | RequestReceived | MessageDropped
)

# Headers copied from a request into a response (§8.2.6.2).
_COPIED = ("via", "from", "to", "call-id", "cseq")


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """A response to ``request`` with Via, From, To, Call-ID and CSeq copied
    (§8.2.6.2); ``to_tag`` is added to To when it has none."""
    items: list[tuple[str, str]] = []
    for name, value in request.headers:
        key = header_key(name)
        if key in _COPIED:
            if key == "to" and to_tag is not None and ";tag=" not in value.replace(" ", ""):
                value = f"{value};tag={to_tag}"
            items.append((name, value))
    return Response(status, reason, Headers(items))


class SipEndpoint:
    """Non-INVITE transactions for one user agent, driven by ``now``."""

    def __init__(
        self, *, timers: TimerConfig | None = None, deadlines: DeadlineQueue | None = None
    ) -> None:
        self.timers = timers or TimerConfig()
        self._clients: dict[tuple[str, str], ClientTransaction] = {}
        # Completed client transactions only absorb retransmitted responses
        # until timer K (§17.1.2.2); for that their key is enough, so the
        # request and response are not held for T4 after the answer.
        self._completed: dict[tuple[str, str], CompletedTransaction] = {}
        self._servers: dict[tuple[str, ...], ServerTransaction] = {}
        # A user above (the presence engine) may share its queue: one heap
        # for every timer of the stack.  It then pops the due timers itself
        # and hands the endpoint's to :meth:`fire`.
        self._deadlines = deadlines if deadlines is not None else DeadlineQueue()
        self._outgoing: list[Datagram] = []
        self._events: deque[EndpointEvent] = deque()
        self.counters: dict[str, int] = {
            "requests_sent": 0,
            "retransmissions": 0,
            "timeouts": 0,
            "responses_received": 0,
            "requests_received": 0,
            "dropped": 0,
            "absorbed": 0,
        }

    # -- outputs ------------------------------------------------------------
    def datagrams_to_send(self) -> list[Datagram]:
        """Everything to transmit since the last call, in order."""
        out, self._outgoing = self._outgoing, []
        return out

    def next_event(self) -> EndpointEvent | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called, or None."""
        return self._deadlines.next_deadline()

    @property
    def client_transactions(self) -> int:
        """Client transactions alive (waiting for an answer, or completed
        and absorbing retransmissions until timer K)."""
        return len(self._clients) + len(self._completed)

    @property
    def in_flight(self) -> int:
        """Client transactions waiting for their final answer: O(1)."""
        return len(self._clients)

    def waiting(self) -> list[ClientTransaction]:
        """Client transactions still waiting for their final answer."""
        return list(self._clients.values())

    @property
    def server_transactions(self) -> int:
        """Server transactions alive."""
        return len(self._servers)

    # -- client side ----------------------------------------------------------
    def send_request(
        self, request: Request, address: Address, transport: str, now: float
    ) -> ClientTransaction:
        """Start a client transaction for ``request`` (its top Via must carry
        a unique branch with the magic cookie) and send it."""
        if request.method in ("INVITE", "ACK", "CANCEL"):
            raise LocalProtocolError(f"{request.method} transactions are not supported")
        branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise LocalProtocolError("the top Via needs a branch starting with z9hG4bK")
        key = (branch, request.cseq.method)
        if key in self._clients or key in self._completed:
            raise LocalProtocolError(f"branch {branch} is already in use")
        transport = transport.lower()
        data = bytes(request)
        tx = ClientTransaction(request, data, address, transport, key, now)
        self._clients[key] = tx
        self._outgoing.append(Datagram(data=data, address=address, transport=transport))
        self.counters["requests_sent"] += 1
        timers = self.timers
        if not is_reliable(transport):
            tx.interval = timers.t1
            self._deadlines.arm(tx, "timer_e", now + timers.t1)
        self._deadlines.arm(tx, "timer_f", now + 64 * timers.t1)  # timer F = 64*T1
        return tx

    def _client_input(
        self,
        tx: ClientTransaction,
        event: ClientInput,
        now: float,
        response: Response | None = None,
        reason: str = "",
    ) -> None:
        action = tx.step(event)
        if action is Action.RETRANSMIT:
            self._send(tx.data, tx.address, tx.transport)
            tx.retransmissions += 1
            self.counters["retransmissions"] += 1
            # §17.1.2.2: E doubles up to T2 in Trying; in Proceeding it is T2.
            if event is ClientInput.TIMER_E:
                tx.interval = min(2 * tx.interval, self.timers.t2)
                if tx.state.value == "proceeding":
                    tx.interval = self.timers.t2
                self._deadlines.arm(tx, "timer_e", now + tx.interval)
        elif action is Action.PASS_UP:
            assert response is not None
            if not tx.reliable:
                # In Proceeding, retransmit at T2 from now on.
                tx.interval = self.timers.t2
                if tx.timer_e is None:
                    self._deadlines.arm(tx, "timer_e", now + tx.interval)
            self._events.append(ResponseReceived(transaction=tx, response=response))
        elif action is Action.PASS_UP_FINAL:
            assert response is not None
            tx.final_response = response
            self._deadlines.cancel(tx, "timer_e")
            self._deadlines.cancel(tx, "timer_f")
            self._events.append(
                ResponseReceived(transaction=tx, response=response, request=tx.request)
            )
            if tx.reliable:
                self._client_input(tx, ClientInput.TIMER_K, now)
            else:
                self._drop_client(tx.key)
                completed = CompletedTransaction(tx.key)
                self._completed[tx.key] = completed
                self._deadlines.arm(completed, "timer_k", now + self.timers.timer_k)
        elif action is Action.TIMEOUT:
            self.counters["timeouts"] += 1
            self._forget_client(tx)
            self._events.append(TransactionTimedOut(transaction=tx))
        elif action is Action.TRANSPORT_FAILED:
            self._forget_client(tx)
            self._events.append(TransportFailed(transaction=tx, reason=reason))
        elif action is Action.DESTROY:
            self._forget_client(tx)
        # ABSORB: nothing to do.

    def _forget_client(self, tx: ClientTransaction) -> None:
        self._deadlines.cancel(tx, "timer_e")
        self._deadlines.cancel(tx, "timer_f")
        self._drop_client(tx.key)

    def _drop_client(self, key: tuple[str, str]) -> None:
        tx = self._clients.pop(key, None)
        if tx is not None:
            # A finished transaction may wait in the deadline heap as a
            # stale entry for a while: it keeps nothing heavy meanwhile.
            tx.data = b""
            tx.request = None
            tx.final_response = None
        if not self._clients:
            self._clients = {}  # a dict keeps its high-water size: start afresh

    # -- server side ----------------------------------------------------------
    def respond(self, transaction: ServerTransaction, response: Response, now: float) -> None:
        """Send ``response`` in ``transaction`` (1xx any number of times, then
        one final response)."""
        data = bytes(response)
        event = ServerInput.SEND_PROVISIONAL if response.is_provisional else ServerInput.SEND_FINAL
        action = transaction.step(event)
        transaction.last_response = data
        self._send(data, transaction.address, transaction.transport)
        if action is Action.SEND_FINAL:
            if transaction.reliable:
                self._server_input(transaction, ServerInput.TIMER_J, now)
            else:
                # Completed absorbs retransmissions for timer J (32 s) with
                # the last response alone: the parsed request, several KiB,
                # is not held that long.  A flood of requests (NOTIFYs
                # outside every dialog, answered 481) held 6.5 KiB each for
                # those 32 s: 200 MiB at 1,000 a second.
                transaction.request = None
                self._deadlines.arm(transaction, "timer_j", now + self.timers.timer_j)

    def _server_input(self, tx: ServerTransaction, event: ServerInput, now: float) -> None:
        action = tx.step(event)
        if action is Action.RESEND_LAST and tx.last_response is not None:
            self._send(tx.last_response, tx.address, tx.transport)
        elif action in (Action.DESTROY, Action.TRANSPORT_FAILED):
            self._deadlines.cancel(tx, "timer_j")
            self._servers.pop(tx.key, None)
            if not self._servers:
                self._servers = {}

    @staticmethod
    def _server_key(request: Request) -> tuple[str, ...]:
        via = request.top_via
        method = "INVITE" if request.method == "ACK" else request.method
        branch = via.branch or ""
        if branch.startswith(MAGIC_COOKIE):
            # §17.2.3: branch, sent-by and method.
            return (branch, via.sent_by.lower(), method)
        # RFC 2543 peers: the request's identity (§17.2.3, last paragraph).
        return (
            request.uri_text,
            request.from_.tag or "",
            request.to.tag or "",
            request.call_id,
            str(request.cseq.seq),
            method,
            str(via),
        )

    # -- network input -------------------------------------------------------
    def receive_datagram(self, data: bytes, address: Address, transport: str, now: float) -> None:
        """Take the bytes of one datagram (or one message cut by a framer)."""
        try:
            message = parse_message(data, stream=is_reliable(transport))
        except RemoteProtocolError as exc:
            self._reject_bytes(data, address, transport, exc)
            return
        self.receive_message(message, address, transport, now)

    def receive_message(
        self, message: Message, address: Address, transport: str, now: float
    ) -> None:
        """Take one parsed message."""
        transport = transport.lower()
        try:
            message.check_essentials()
        except RemoteProtocolError as exc:
            if isinstance(message, Request):
                self._reject_request(message, address, transport, exc)
            else:
                self._drop(address, transport, f"bad response: {exc}")
            return
        if isinstance(message, Response):
            self._on_response(message, address, transport, now)
        elif isinstance(message, Request):
            self._on_request(message, address, transport, now)

    def fail_destination(self, address: Address, transport: str, reason: str, now: float) -> None:
        """The runtime could not send to ``address``: every client
        transaction waiting on it fails (§17.1.4)."""
        for tx in [
            t
            for t in self._clients.values()
            if t.address == address and t.transport == transport.lower()
        ]:
            self._client_input(tx, ClientInput.TRANSPORT_ERROR, now, reason=reason)

    def transport_error(self, transaction: ClientTransaction, reason: str, now: float) -> None:
        """The runtime could not send for ``transaction``."""
        if transaction.key in self._clients:
            self._client_input(transaction, ClientInput.TRANSPORT_ERROR, now, reason=reason)

    def _on_response(
        self, response: Response, address: Address, transport: str, now: float
    ) -> None:
        branch = response.top_via.branch or ""
        key = (branch, response.cseq.method)
        tx = self._clients.get(key)
        if tx is None:
            if key in self._completed:
                self.counters["absorbed"] += 1  # a retransmission (§17.1.2.2)
                return
            self._drop(address, transport, "response matches no transaction")
            return
        self.counters["responses_received"] += 1
        event = ClientInput.PROVISIONAL if response.is_provisional else ClientInput.FINAL
        self._client_input(tx, event, now, response)

    def _on_request(self, request: Request, address: Address, transport: str, now: float) -> None:
        if request.method in ("INVITE", "ACK", "CANCEL"):
            if request.method != "ACK":
                self._stateless_reply(request, address, transport, 501, "Not Implemented")
            return
        key = self._server_key(request)
        tx = self._servers.get(key)
        if tx is not None:
            self._server_input(tx, ServerInput.REQUEST, now)
            return
        tx = ServerTransaction(request=request, address=address, transport=transport, key=key)
        self._servers[key] = tx
        self.counters["requests_received"] += 1
        self._events.append(RequestReceived(transaction=tx, request=request))

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (when the endpoint owns its queue)."""
        for owner, name in self._deadlines.pop_due(now):
            self.fire(owner, name, now)

    def fire(self, owner: object, name: str, now: float) -> None:
        """Act on one of the endpoint's timers, popped from a shared queue."""
        if isinstance(owner, ServerTransaction):
            self._server_input(owner, ServerInput.TIMER_J, now)
        elif isinstance(owner, CompletedTransaction):
            self._completed.pop(owner.key, None)  # Completed -> Terminated
            if not self._completed:
                self._completed = {}
        elif isinstance(owner, ClientTransaction) and owner.key in self._clients:
            event = ClientInput.TIMER_E if name == "timer_e" else ClientInput.TIMER_F
            self._client_input(owner, event, now)

    # -- errors -----------------------------------------------------------------
    def _drop(
        self, address: Address, transport: str, reason: str, status: int | None = None
    ) -> None:
        self.counters["dropped"] += 1
        self._events.append(
            MessageDropped(address=address, transport=transport, reason=reason, status=status)
        )

    def _reject_request(
        self, request: Request, address: Address, transport: str, exc: RemoteProtocolError
    ) -> None:
        self._stateless_reply(request, address, transport, exc.status, exc.reason, str(exc))

    def _stateless_reply(
        self,
        request: Request,
        address: Address,
        transport: str,
        status: int,
        reason: str,
        why: str | None = None,
    ) -> None:
        # A response needs the request's Via, From, To, Call-ID and CSeq
        # (§8.2.6.2); without them nobody could match it, so drop instead.
        if any(request.headers.get(name) is None for name in _COPIED):
            self._drop(address, transport, why or reason)
            return
        response = make_response(request, status, reason)
        if why:
            response.headers.add("Warning", warning_value(why))
        self._send(bytes(response), address, transport)
        self._drop(address, transport, why or reason, status)

    def _reject_bytes(
        self, data: bytes, address: Address, transport: str, exc: RemoteProtocolError
    ) -> None:
        request = _salvage_request(data)
        if request is None:
            self._drop(address, transport, str(exc))
            return
        self._stateless_reply(request, address, transport, exc.status, exc.reason, str(exc))

    def _send(self, data: bytes, address: Address, transport: str) -> None:
        self._outgoing.append(Datagram(data=data, address=address, transport=transport))


def warning_value(text: str) -> str:
    """A Warning header value (RFC 3261 §20.43, code 399) carrying ``text``,
    made safe for a quoted-string and cut to 120 characters."""
    cleaned = "".join(c if c.isprintable() and c not in '"\\' else "?" for c in text)
    return f'399 pua "{cleaned[:120]}"'


def _salvage_request(data: bytes) -> Request | None:
    """The headers a response needs, read leniently from bytes that did not
    parse, so that a malformed request still gets its 4xx (§8.2.6)."""
    head = data[:8192].split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    lines = head.replace("\r\n", "\n").split("\n")
    first = lines[0].split(" ")
    if len(first) < 3 or first[0].startswith("SIP/"):
        return None
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and header_key(name.strip()) in _COPIED and "\r" not in value:
            items.append((name.strip(), value.strip()))
    request = Request(first[0][:32] or "UNKNOWN", "sip:invalid", Headers(items))
    return request
