"""A scripted peer on a virtual clock for the sans-IO presence engine.

The harness owns a PresenceEngine, collects the requests it sends (parsed),
answers them with whatever status and headers a test chooses, sends NOTIFYs
into it, and moves the clock from deadline to deadline.
"""

from __future__ import annotations

from collections.abc import Iterable

from pua.core import EngineConfig, PresenceEngine
from pua.sip import CountingIds, Request, Response, make_response, parse_message

LOCAL = ("192.0.2.9", 5070)
SERVER = ("192.0.2.1", 5060)
START = 1_700_000_000.0


class Harness:
    """One engine and the scripted server it talks to."""

    def __init__(self, config: EngineConfig | None = None, *, seed: str = "pua") -> None:
        self.agent = PresenceEngine(config or EngineConfig(outbound_proxy="sip:192.0.2.1:5060"),
                                   CountingIds(seed))
        self.agent.set_local_address("udp", *LOCAL)
        self.now = START
        self.requests: list[Request] = []  # every request the server got
        self.inbox: list[Request] = []  # requests no test has looked at yet
        self.responses: list[Response] = []  # every response the engine sent
        self.events: list[object] = []

    # -- what the engine sent -------------------------------------------------
    def pump(self) -> list[Request]:
        """Collect what the engine sent; return the new requests."""
        new: list[Request] = []
        for datagram in self.agent.datagrams_to_send():
            message = parse_message(datagram.data)
            if isinstance(message, Request):
                new.append(message)
            else:
                self.responses.append(message)
        self.requests.extend(new)
        self.inbox.extend(new)
        while (event := self.agent.next_event()) is not None:
            self.events.append(event)
        return new

    def take(self) -> list[Request]:
        """Requests sent since a test last looked."""
        self.pump()
        new, self.inbox = self.inbox, []
        return new

    def one(self) -> Request:
        """Exactly one new request, or fail."""
        new = self.take()
        assert len(new) == 1, f"expected one request, got {[str(r.cseq) for r in new]}"
        return new[0]

    def none(self) -> None:
        """Assert nothing new was sent."""
        new = self.take()
        assert new == [], f"expected no request, got {[str(r.cseq) for r in new]}"

    def take_events(self, kind: type | None = None) -> list[object]:
        """Events so far (of ``kind``), then forget them."""
        self.pump()
        got = [e for e in self.events if kind is None or isinstance(e, kind)]
        self.events = [e for e in self.events if not (kind is None or isinstance(e, kind))]
        return got

    # -- answering --------------------------------------------------------------
    def answer(
        self, request: Request, status: int, headers: Iterable[tuple[str, str]] = (),
        *, to_tag: str | None = "srv1", body: bytes = b"",
    ) -> None:
        """Send a final response to ``request`` into the engine."""
        response = make_response(request, status, to_tag=to_tag)
        for name, value in headers:
            response.headers.add(name, value)
        response.body = body
        self.agent.receive_datagram(bytes(response), SERVER, "udp", self.now)

    def ok_publish(self, request: Request, etag: str, expires: int = 3600) -> None:
        """200 with SIP-ETag and Expires."""
        self.answer(request, 200, [("SIP-ETag", etag), ("Expires", str(expires))])

    def notify(
        self, subscribe: Request, state: str, *, body: bytes = b"", content_type: str | None = None,
        cseq: int = 1, event: str | None = "presence", to_tag: str | None = None,
        from_tag: str = "srv1", contact: str | None = "<sip:ps@192.0.2.1:5060>",
        extra: Iterable[tuple[str, str]] = (), source: tuple[str, int] = SERVER,
    ) -> Response:
        """A NOTIFY in the dialog of ``subscribe`` (from ``source``); returns
        the engine's answer."""
        our_tag = to_tag if to_tag is not None else subscribe.from_.tag
        lines = [
            f"NOTIFY {subscribe.headers.get('contact', '<sip:x@192.0.2.9>').strip('<>')} SIP/2.0",
            f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKn{len(self.responses)}x{cseq}",
            f"From: <{subscribe.to.uri}>;tag={from_tag}",
            f"To: <{subscribe.from_.uri}>;tag={our_tag}",
            f"Call-ID: {subscribe.call_id}",
            f"CSeq: {cseq} NOTIFY",
            "Max-Forwards: 70",
        ]
        if event is not None:
            lines.append(f"Event: {event}")
        if state:
            lines.append(f"Subscription-State: {state}")
        if contact:
            lines.append(f"Contact: {contact}")
        lines.extend(f"{n}: {v}" for n, v in extra)
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        before = len(self.responses)
        self.agent.receive_datagram(data, source, "udp", self.now)
        self.pump()
        assert len(self.responses) == before + 1, "the NOTIFY got no answer"
        return self.responses[-1]

    # -- the clock --------------------------------------------------------------
    def advance(self, seconds: float) -> None:
        """Move the clock forward, firing every deadline on the way."""
        end = self.now + seconds
        while (deadline := self.agent.get_timer()) is not None and deadline <= end:
            self.now = max(self.now, deadline)
            self.agent.handle_timer(self.now)
            self.pump()
        self.now = end

    def next_request(self, within: float) -> Request:
        """Fire deadlines until the engine sends a request (within
        ``within`` seconds) and return it; the clock stops there."""
        end = self.now + within
        self.take()
        while not self.inbox:
            deadline = self.agent.get_timer()
            assert deadline is not None and deadline <= end, f"no request within {within} s"
            self.now = max(self.now, deadline)
            self.agent.handle_timer(self.now)
            self.pump()
        return self.one()

    def advance_to_next(self) -> float:
        """Jump to the next deadline and fire it; returns how far it was."""
        deadline = self.agent.get_timer()
        assert deadline is not None, "nothing scheduled"
        step = deadline - self.now
        self.now = deadline
        self.agent.handle_timer(self.now)
        return step
