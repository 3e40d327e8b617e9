"""Hypothesis over the engine: the tables, and random conversations."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pua.core import PublishInfo, PubState, SubscribeInfo, SubState
from pua.core.publication import PUBLICATION_TABLE, PubInput, publication_step
from pua.core.subscription import SUBSCRIPTION_TABLE, SubInput, subscription_step
from pua.errors import LocalProtocolError

from .harness import Harness

ALICE = "sip:alice@example.com"
BOB = "sip:bob@example.com"


@given(st.sampled_from(list(PubState)), st.sampled_from(list(PubInput)))
def test_publication_table_is_total_or_refuses(state: PubState, event: PubInput) -> None:
    """Every (state, input) pair has a row or is a LocalProtocolError."""
    if (state, event) in PUBLICATION_TABLE:
        assert publication_step(state, event) == PUBLICATION_TABLE[(state, event)]
    else:
        with pytest.raises(LocalProtocolError):
            publication_step(state, event)


@given(st.sampled_from(list(SubState)), st.sampled_from(list(SubInput)))
def test_subscription_table_is_total_or_refuses(state: SubState, event: SubInput) -> None:
    """Every (state, input) pair has a row or is a LocalProtocolError."""
    if (state, event) in SUBSCRIPTION_TABLE:
        assert subscription_step(state, event) == SUBSCRIPTION_TABLE[(state, event)]
    else:
        with pytest.raises(LocalProtocolError):
            subscription_step(state, event)


def pidf(n: int) -> bytes:
    return (
        f'<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="{ALICE}">'
        f"<tuple><status><basic>open</basic></status><note>v{n}</note></tuple></presence>"
    ).encode()


STATUSES = [200, 200, 200, 202, 412, 423, 408, 481, 500, 503, 403, 489]
publish_steps = st.lists(
    st.one_of(
        st.tuples(st.just("update"), st.integers(0, 99)),
        st.tuples(st.just("remove"), st.just(0)),
        st.tuples(st.just("answer"), st.sampled_from(STATUSES)),
        st.tuples(st.just("wait"), st.sampled_from([0.1, 1, 5, 40, 400, 4000])),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(publish_steps)
def test_random_publish_conversations_keep_one_request_in_flight(steps: list[tuple[str, float]]) -> None:
    """Whatever the API asks and the server answers, the engine raises
    nothing, keeps at most one PUBLISH in flight per publication, and the
    last body asked for is the one published after a 200."""
    h = Harness()
    open_requests: list[object] = []
    last_body: bytes | None = None
    for kind, value in steps:
        if kind == "update":
            h.agent.send_publish(PublishInfo(pres_uri=ALICE, body=pidf(int(value)), expires=-1), h.now)
            last_body = pidf(int(value))
        elif kind == "remove":
            h.agent.send_publish(PublishInfo(pres_uri=ALICE, expires=0), h.now)
            last_body = None
        elif kind == "answer" and open_requests:
            request = open_requests.pop()
            headers = [("SIP-ETag", f"e{len(h.requests)}"), ("Expires", "600")]
            if value == 423:
                headers = [("Min-Expires", "900")]
            elif value == 503:
                headers = [("Retry-After", "3")]
            h.answer(request, int(value), headers)  # type: ignore[arg-type]
        elif kind == "wait":
            h.advance(float(value))
        new = [r for r in h.take() if r.cseq.method == "PUBLISH"]
        for request in new:
            # A retransmission repeats a request still open; anything else
            # must come after the previous one was answered.
            if any(request.top_via.branch == r.top_via.branch for r in open_requests):  # type: ignore[attr-defined]
                continue
            open_requests.clear()  # earlier ones were answered or timed out
            open_requests.append(request)
        assert len(h.agent.requests_in_flight()) <= 1  # one PUBLISH waiting at most
    # Let everything settle: answer every PUBLISH at once with 200, from
    # deadline to deadline, for an hour of virtual time.
    for request in open_requests:
        h.answer(request, 200, [("SIP-ETag", "final"), ("Expires", "600")])  # type: ignore[arg-type]
    end = h.now + 3600
    while (deadline := h.agent.get_timer()) is not None and deadline <= end:
        h.now = max(h.now, deadline)
        h.agent.handle_timer(h.now)
        for request in h.take():
            if request.cseq.method == "PUBLISH":
                h.answer(request, 200, [("SIP-ETag", "final"), ("Expires", "600")])
    if last_body is not None and h.agent.counts()["records"]:
        record = next(iter(list(h.agent.records())))
        assert record.state is PubState.PUBLISHED  # type: ignore[union-attr]
        assert b"<note>" in (record.body or b"")  # type: ignore[union-attr]
        assert record.body.split(b"<note>")[1] == last_body.split(b"<note>")[1]  # type: ignore[union-attr]


sub_steps = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.sampled_from([60, 600, -1])),
        st.tuples(st.just("unsubscribe"), st.just(0)),
        st.tuples(st.just("answer"), st.sampled_from(STATUSES)),
        st.tuples(st.just("notify"), st.sampled_from([
            "active;expires=300", "pending", "terminated;reason=deactivated",
            "terminated;reason=probation;retry-after=5", "terminated;reason=rejected",
            "terminated", "garbage;;",
        ])),
        st.tuples(st.just("wait"), st.sampled_from([0.1, 5, 40, 400])),
    ),
    max_size=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sub_steps)
def test_random_subscribe_conversations_never_break(steps: list[tuple[str, object]]) -> None:
    """Whatever the API asks, the server answers and the notifier sends, the
    engine raises nothing, answers every NOTIFY, waits for one SUBSCRIBE at
    most, and abandoned transactions end with timer F."""
    h = Harness()
    last = None
    notifies = 0
    sent_at: dict[str | None, float] = {}
    for kind, value in steps:
        if kind == "subscribe":
            h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=int(value)), h.now)  # type: ignore[call-overload]
        elif kind == "unsubscribe":
            h.agent.send_subscribe(SubscribeInfo(pres_uri=ALICE, watcher_uri=BOB, expires=0), h.now)
        elif kind == "answer" and last is not None:
            headers = [("Expires", "300")] if value != 423 else [("Min-Expires", "900")]
            h.answer(last, int(value), headers)  # type: ignore[call-overload]
        elif kind == "notify" and last is not None:
            notifies += 1
            answer = h.notify(last, str(value), cseq=notifies)
            assert answer.status in (200, 400, 481, 489, 500)
        elif kind == "wait":
            h.advance(float(value))  # type: ignore[arg-type]
        new = [r for r in h.take() if r.cseq.method == "SUBSCRIBE"]
        for request in new:
            sent_at.setdefault(request.top_via.branch, h.now)
        if new:
            last = new[-1]
        # The engine waits for one SUBSCRIBE at most.  A terminated NOTIFY
        # can make it abandon one still open (a new dialog starts); such a
        # transaction lives on until timer F, so every live one is younger
        # than 64*T1.
        waiting = [r for r in list(h.agent.records()) if r.flight is not None]
        assert len(waiting) <= 1
        for tx in h.agent.requests_in_flight():
            assert h.now - sent_at[tx.key[0]] <= 32.0
