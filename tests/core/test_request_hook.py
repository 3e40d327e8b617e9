"""The adapters' hook: requests that are not NOTIFYs of pua's dialogs go to
the handler registered for their method and event; what none takes gets
405 (Allow lists what is taken) or 481."""

from __future__ import annotations

import pytest

from pua.core import CallbackFailed, IncomingRequest
from pua.errors import RemoteProtocolError, UsageError
from pua.sip import Response, make_response

from .harness import Harness

PHONE = ("192.0.2.50", 5062)


def request(h: Harness, method: str, *, event: str | None = None, branch: str = "b1",
            cseq: int = 1) -> Response | None:
    """Send ``method`` into the engine from PHONE; the answer, if one came."""
    lines = [
        f"{method} sip:pua@192.0.2.9:5070 SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.50:5062;branch=z9hG4bK{branch}",
        "From: <sip:phone@example.com>;tag=ph1",
        "To: <sip:phone@example.com>",
        "Call-ID: hook-1@192.0.2.50",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        "Contact: <sip:phone@192.0.2.50:5062>",
    ]
    if event:
        lines.append(f"Event: {event}")
    lines.append("Content-Length: 0")
    before = len(h.responses)
    h.agent.receive_datagram(("\r\n".join(lines) + "\r\n\r\n").encode(), PHONE, "udp", h.now)
    h.pump()
    return h.responses[-1] if len(h.responses) > before else None


def test_unhandled_register_is_405_and_allow_names_what_is_taken() -> None:
    h = Harness()
    answer = request(h, "REGISTER")
    assert answer is not None and answer.status == 405
    assert answer.header("allow") == "NOTIFY"
    h.agent.add_request_handler("MESSAGE", lambda incoming, now: None)
    answer = request(h, "REGISTER", branch="b2")
    assert answer is not None and answer.header("allow") == "MESSAGE, NOTIFY"


def test_handler_answers_at_once_and_sees_source_and_time() -> None:
    h = Harness()
    seen: list[tuple[IncomingRequest, float]] = []

    def handler(incoming: IncomingRequest, now: float) -> Response:
        seen.append((incoming, now))
        response = make_response(incoming.request, 200, to_tag="reg1")
        response.headers.add("Contact", "<sip:phone@192.0.2.50:5062>;expires=60")
        return response

    h.agent.add_request_handler("register", handler)
    answer = request(h, "REGISTER")
    assert answer is not None and answer.status == 200
    assert answer.header("contact") == "<sip:phone@192.0.2.50:5062>;expires=60"
    [(incoming, now)] = seen
    assert incoming.source == PHONE and incoming.transport == "udp" and now == h.now
    assert incoming.request.call_id == "hook-1@192.0.2.50"
    with pytest.raises(UsageError):
        h.agent.add_request_handler("REGISTER", handler)
    h.agent.remove_request_handler("REGISTER")
    answer = request(h, "REGISTER", branch="b2", cseq=2)
    assert answer is not None and answer.status == 405


def test_handler_answers_later_and_a_retransmission_is_absorbed() -> None:
    h = Harness()
    kept: list[IncomingRequest] = []
    h.agent.add_request_handler("REGISTER", lambda incoming, now: kept.append(incoming))
    assert request(h, "REGISTER") is None
    # the same request again (a retransmission): same transaction, not handed over again
    assert request(h, "REGISTER") is None
    assert len(kept) == 1
    h.agent.respond(kept[0], make_response(kept[0].request, 200, to_tag="x"), h.now)
    h.pump()
    assert h.responses[-1].status == 200
    # once answered, a retransmission gets the same answer again
    assert request(h, "REGISTER") is not None and h.responses[-1].status == 200
    assert len(kept) == 1


def test_event_specific_handler_wins_and_notify_outside_dialogs_reaches_it() -> None:
    h = Harness()
    got: list[str] = []

    def by_event(incoming: IncomingRequest, now: float) -> Response:
        got.append("dialog")
        return make_response(incoming.request, 200)

    def any_event(incoming: IncomingRequest, now: float) -> Response:
        got.append("any")
        return make_response(incoming.request, 200)

    h.agent.add_request_handler("NOTIFY", by_event, event="dialog")
    h.agent.add_request_handler("NOTIFY", any_event)
    assert request(h, "NOTIFY", event="dialog;sla").status == 200  # type: ignore[union-attr]
    assert request(h, "NOTIFY", event="presence", branch="b2").status == 200  # type: ignore[union-attr]
    assert got == ["dialog", "any"]


def test_notify_outside_dialogs_without_handler_is_481() -> None:
    h = Harness()
    answer = request(h, "NOTIFY", event="presence")
    assert answer is not None and answer.status == 481


def test_a_failing_handler_is_answered_not_raised() -> None:
    h = Harness()

    def refuses(incoming: IncomingRequest, now: float) -> Response:
        raise RemoteProtocolError("Contact expires is negative", status=400, reason="Bad Expires")

    def breaks(incoming: IncomingRequest, now: float) -> Response:
        raise KeyError("bug")

    h.agent.add_request_handler("REGISTER", refuses)
    answer = request(h, "REGISTER")
    assert answer is not None and (answer.status, answer.reason) == (400, "Bad Expires")
    assert "negative" in (answer.header("warning") or "")
    h.agent.remove_request_handler("REGISTER")
    h.agent.add_request_handler("REGISTER", breaks)
    answer = request(h, "REGISTER", branch="b2", cseq=2)
    assert answer is not None and answer.status == 500
    failed = h.take_events(CallbackFailed)
    assert len(failed) == 1 and "REGISTER handler" in failed[0].error  # type: ignore[attr-defined]
