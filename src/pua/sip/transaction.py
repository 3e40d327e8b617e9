"""Non-INVITE transactions, RFC 3261 §17.1.2 (client) and §17.2.2 (server).

The two state machines are tables of ``(state, input) -> (action, next
state)``.  A pair missing from a table is an input the RFC does not allow
in that state: :class:`~pua.sip.errors.LocalProtocolError` for something we
asked for; inputs from the network that do not fit are absorbed.

Client (Figure 6)::

                                   |Request from TU
                                   |send request
               Timer E             V
               send request  +-----------+
                   +---------|           |-------------------+
                   |         |  Trying   |  Timer F          |
                   +-------->|           |  or Transport Err.|
                             +-----------+  inform TU        |
                200-699         |  |                         |
                resp. to TU     |  |1xx                      |
                +---------------+  |resp. to TU              |
                |                  |                         |
                |   Timer E        V       Timer F           |
                |   send req +-----------+ or Transport Err. |
                |  +---------|           | inform TU         |
                |  |         | Proceeding|------------------>|
                |  +-------->|           |-----+             |
                |            +-----------+     |1xx          |
                |              |      ^        |resp to TU   |
                | 200-699      |      +--------+             |
                | resp. to TU  |                             |
                |              |                             |
                |              V                             |
                |            +-----------+                   |
                |            |           |                   |
                |            | Completed |                   |
                |            |           |                   |
                |            +-----------+                   |
                |              ^   |                         |
                |              |   | Timer K                 |
                +--------------+   | -                       |
                                   |                         |
                                   V                         |
             NOTE:           +-----------+                   |
                             |           |                   |
         transitions         | Terminated|<------------------+
         labeled with        |           |
         the event           +-----------+
         over the action
         to take

Server (Figure 8)::

                                  |Request received
                                  |pass to TU
                                  V
                            +-----------+
                            |           |
                            | Trying    |-------------+
                            |           |             |
                            +-----------+             |200-699 from TU
                                  |                   |send response
                                  |1xx from TU        |
                                  |send response      |
                                  |                   |
               Request            V      1xx from TU  |
               send response+-----------+send response|
                   +--------|           |--------+    |
                   |        | Proceeding|        |    |
                   +------->|           |<-------+    |
            +<--------------|           |             |
            |Trnsprt Err    +-----------+             |
            |Inform TU            |                   |
            |                     |                   |
            |                     |200-699 from TU    |
            |                     |send response      |
            |  Request            V                   |
            |  send response+-----------+             |
            |      +--------|           |             |
            |      |        | Completed |<------------+
            |      +------->|           |
            +<--------------|           |
            |Trnsprt Err    +-----------+
            |Inform TU            |
            |                     |Timer J fires
            |                     |-
            |                     |
            |                     V
            |               +-----------+
            |               |           |
            +-------------->| Terminated|
                            |           |
                            +-----------+
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import LocalProtocolError
from .message import Request, Response
from .timers import Timed

__all__ = [
    "CLIENT_TABLE",
    "SERVER_TABLE",
    "Action",
    "Address",
    "ClientInput",
    "ClientState",
    "ClientTransaction",
    "ServerInput",
    "ServerState",
    "ServerTransaction",
    "is_reliable",
]

Address = tuple[str, int]

_RELIABLE = frozenset({"tcp", "tls", "sctp", "ws", "wss"})


def is_reliable(transport: str) -> bool:
    """True for transports that retransmit by themselves (§17.1.2.2)."""
    return transport.lower() in _RELIABLE


class ClientState(enum.Enum):
    """States of the non-INVITE client transaction."""

    __hash__ = object.__hash__  # identity: Enum's hashes the name, in Python

    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class ClientInput(enum.Enum):
    """What can happen to a client transaction."""

    __hash__ = object.__hash__  # identity: Enum's hashes the name, in Python

    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_K = "timer K"
    PROVISIONAL = "1xx"
    FINAL = "200-699"
    TRANSPORT_ERROR = "transport error"


class Action(enum.Enum):
    """What the transaction layer does on a transition."""

    RETRANSMIT = "retransmit the request"
    PASS_UP = "pass the response to the TU"
    PASS_UP_FINAL = "pass the final response to the TU, start timer K"
    TIMEOUT = "inform the TU of the timeout"
    TRANSPORT_FAILED = "inform the TU of the transport error"
    ABSORB = "absorb"
    SEND = "send the response"
    SEND_FINAL = "send the final response, start timer J"
    RESEND_LAST = "resend the last response"
    PASS_REQUEST = "pass the request to the TU"
    DESTROY = "destroy the transaction"


_C = ClientState
_CI = ClientInput

CLIENT_TABLE: dict[tuple[ClientState, ClientInput], tuple[Action, ClientState]] = {
    (_C.TRYING, _CI.TIMER_E): (Action.RETRANSMIT, _C.TRYING),
    (_C.TRYING, _CI.TIMER_F): (Action.TIMEOUT, _C.TERMINATED),
    (_C.TRYING, _CI.TRANSPORT_ERROR): (Action.TRANSPORT_FAILED, _C.TERMINATED),
    (_C.TRYING, _CI.PROVISIONAL): (Action.PASS_UP, _C.PROCEEDING),
    (_C.TRYING, _CI.FINAL): (Action.PASS_UP_FINAL, _C.COMPLETED),
    (_C.PROCEEDING, _CI.TIMER_E): (Action.RETRANSMIT, _C.PROCEEDING),
    (_C.PROCEEDING, _CI.TIMER_F): (Action.TIMEOUT, _C.TERMINATED),
    (_C.PROCEEDING, _CI.TRANSPORT_ERROR): (Action.TRANSPORT_FAILED, _C.TERMINATED),
    (_C.PROCEEDING, _CI.PROVISIONAL): (Action.PASS_UP, _C.PROCEEDING),
    (_C.PROCEEDING, _CI.FINAL): (Action.PASS_UP_FINAL, _C.COMPLETED),
    (_C.COMPLETED, _CI.PROVISIONAL): (Action.ABSORB, _C.COMPLETED),
    (_C.COMPLETED, _CI.FINAL): (Action.ABSORB, _C.COMPLETED),
    (_C.COMPLETED, _CI.TIMER_K): (Action.DESTROY, _C.TERMINATED),
    (_C.COMPLETED, _CI.TRANSPORT_ERROR): (Action.ABSORB, _C.COMPLETED),
}


class ServerState(enum.Enum):
    """States of the non-INVITE server transaction."""

    __hash__ = object.__hash__  # identity: Enum's hashes the name, in Python

    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    TERMINATED = "terminated"


class ServerInput(enum.Enum):
    """What can happen to a server transaction."""

    __hash__ = object.__hash__  # identity: Enum's hashes the name, in Python

    REQUEST = "request retransmission"
    SEND_PROVISIONAL = "1xx from TU"
    SEND_FINAL = "200-699 from TU"
    TIMER_J = "timer J"
    TRANSPORT_ERROR = "transport error"


_S = ServerState
_SI = ServerInput

SERVER_TABLE: dict[tuple[ServerState, ServerInput], tuple[Action, ServerState]] = {
    (_S.TRYING, _SI.REQUEST): (Action.ABSORB, _S.TRYING),
    (_S.TRYING, _SI.SEND_PROVISIONAL): (Action.SEND, _S.PROCEEDING),
    (_S.TRYING, _SI.SEND_FINAL): (Action.SEND_FINAL, _S.COMPLETED),
    (_S.TRYING, _SI.TRANSPORT_ERROR): (Action.TRANSPORT_FAILED, _S.TERMINATED),
    (_S.PROCEEDING, _SI.REQUEST): (Action.RESEND_LAST, _S.PROCEEDING),
    (_S.PROCEEDING, _SI.SEND_PROVISIONAL): (Action.SEND, _S.PROCEEDING),
    (_S.PROCEEDING, _SI.SEND_FINAL): (Action.SEND_FINAL, _S.COMPLETED),
    (_S.PROCEEDING, _SI.TRANSPORT_ERROR): (Action.TRANSPORT_FAILED, _S.TERMINATED),
    (_S.COMPLETED, _SI.REQUEST): (Action.RESEND_LAST, _S.COMPLETED),
    (_S.COMPLETED, _SI.TIMER_J): (Action.DESTROY, _S.TERMINATED),
    (_S.COMPLETED, _SI.TRANSPORT_ERROR): (Action.TRANSPORT_FAILED, _S.TERMINATED),
}


@dataclass(eq=False, slots=True)
class ClientTransaction(Timed):
    """One outgoing non-INVITE request and its retransmission state.

    ``key`` is what §17.1.3 matches responses on: the branch of the top Via
    and the CSeq method.  Once it has ended (answered, timed out, failed)
    it no longer holds its request, bytes or response.
    """

    request: Request | None
    data: bytes
    address: Address
    transport: str
    key: tuple[str, str]
    started_at: float
    state: ClientState = ClientState.TRYING
    interval: float = 0.0
    retransmissions: int = 0
    final_response: Response | None = None
    timer_e: float | None = None  # deadlines in the stack's DeadlineQueue
    timer_f: float | None = None
    owner: object = None  # whoever above sent it (a presence record)

    @property
    def reliable(self) -> bool:
        """True when the transport retransmits for us."""
        return is_reliable(self.transport)

    def step(self, event: ClientInput) -> Action:
        """Apply ``event``; return the action the table prescribes."""
        try:
            action, self.state = CLIENT_TABLE[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"client transaction in {self.state.value} cannot take {event.value}"
            ) from None
        return action


class CompletedTransaction(Timed):
    """What is left of a client transaction in Completed over UDP: its key,
    to absorb retransmitted responses until timer K (§17.1.2.2).  The
    request and the response are not held that long."""

    __slots__ = ("key", "timer_k")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key = key
        self.timer_k: float | None = None


@dataclass(eq=False, slots=True)
class ServerTransaction(Timed):
    """One incoming non-INVITE request and the responses we gave it.

    ``key`` is what §17.2.3 matches retransmissions on.  Once the final
    response is sent, ``request`` is None: in Completed the transaction
    only answers retransmissions with ``last_response``.
    """

    request: Request | None
    address: Address
    transport: str
    key: tuple[str, ...]
    state: ServerState = ServerState.TRYING
    last_response: bytes | None = None
    timer_j: float | None = None

    @property
    def reliable(self) -> bool:
        """True when the transport retransmits for us."""
        return is_reliable(self.transport)

    def step(self, event: ServerInput) -> Action:
        """Apply ``event``; return the action the table prescribes."""
        try:
            action, self.state = SERVER_TABLE[(self.state, event)]
        except KeyError:
            raise LocalProtocolError(
                f"server transaction in {self.state.value} cannot take {event.value}"
            ) from None
        return action
