"""Non-INVITE transactions on a virtual clock (RFC 3261 §17.1.2, §17.2.2)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pua.errors import LocalProtocolError
from pua.sip import (
    CountingIds,
    MessageDropped,
    RequestReceived,
    ResponseReceived,
    SipEndpoint,
    SipUri,
    TimerConfig,
    TransactionTimedOut,
    make_response,
    parse_message,
)
from pua.sip.builder import new_request, new_via
from pua.sip.transaction import (
    CLIENT_TABLE,
    SERVER_TABLE,
    ClientInput,
    ClientState,
    ClientTransaction,
    ServerInput,
    ServerState,
    ServerTransaction,
)

PEER = ("192.0.2.1", 5060)
ALICE = SipUri(host="example.com", user="alice")
T1, T2, T4 = 0.5, 4.0, 5.0


def publish(ids: CountingIds, transport: str = "udp"):  # type: ignore[no-untyped-def]
    request = new_request(
        "PUBLISH", ALICE, from_uri=ALICE, to_uri=ALICE,
        via=new_via(ids, transport, "192.0.2.9", 5070), ids=ids,
    )
    request.headers.add("Event", "presence")
    return request


def sent_times(endpoint: SipEndpoint, until: float, step: float = 0.01) -> list[float]:
    """Drive the clock in small ticks; return when datagrams went out."""
    times = []
    now = 0.0
    while now <= until:
        deadline = endpoint.get_timer()
        if deadline is not None and deadline <= now:
            endpoint.handle_timer(now)
        if endpoint.datagrams_to_send():
            times.append(round(now, 2))
        now = round(now + step, 2)
    return times


def jump_times(endpoint: SipEndpoint, until: float) -> list[float]:
    """Drive the clock straight to each deadline (what the runtime does)."""
    times = []
    while (deadline := endpoint.get_timer()) is not None and deadline <= until:
        endpoint.handle_timer(deadline)
        if endpoint.datagrams_to_send():
            times.append(deadline)
    return times


def test_timer_e_doubles_up_to_t2_then_timer_f_at_64_t1() -> None:
    """Over UDP the request is resent at T1, 2T1, 4T1 ... capped at T2, and
    the transaction times out at 64*T1."""
    ep = SipEndpoint(timers=TimerConfig(t1=T1, t2=T2, t4=T4))
    tx = ep.send_request(publish(CountingIds()), PEER, "udp", 0.0)
    assert ep.datagrams_to_send()[0].data == tx.data
    times = jump_times(ep, 64 * T1)
    expected, at, interval = [], 0.0, T1
    while at + interval < 64 * T1:
        at += interval
        expected.append(at)
        interval = min(2 * interval, T2)
    assert times == expected
    assert times[:4] == [0.5, 1.5, 3.5, 7.5]
    assert all(b - a == T2 for a, b in itertools.pairwise(times[3:]))
    assert isinstance(ep.next_event(), TransactionTimedOut)
    assert ep.next_event() is None
    assert ep.get_timer() is None and ep.client_transactions == 0


def test_schedule_is_the_same_when_ticking() -> None:
    """Ticking the clock in 10 ms steps gives the same retransmission times."""
    ep = SipEndpoint()
    ep.send_request(publish(CountingIds()), PEER, "udp", 0.0)
    ep.datagrams_to_send()
    assert sent_times(ep, 10.0) == [0.5, 1.5, 3.5, 7.5]


def test_provisional_moves_to_proceeding_and_retransmits_at_t2() -> None:
    """After a 1xx the request is retransmitted every T2 (§17.1.2.2)."""
    ep = SipEndpoint()
    tx = ep.send_request(publish(CountingIds()), PEER, "udp", 0.0)
    ep.datagrams_to_send()
    ep.receive_datagram(bytes(make_response(tx.request, 100)), PEER, "udp", 0.2)
    event = ep.next_event()
    assert isinstance(event, ResponseReceived) and event.response.status == 100
    assert tx.state is ClientState.PROCEEDING
    times = jump_times(ep, 20.0)
    assert times[0] == 0.5  # the E armed before the 1xx still fires
    assert all(b - a == T2 for a, b in itertools.pairwise(times))


def test_final_response_then_retransmissions_absorbed_then_timer_k() -> None:
    """The final response is passed up once; its retransmissions are absorbed
    until timer K (T4) ends the transaction."""
    ep = SipEndpoint()
    tx = ep.send_request(publish(CountingIds()), PEER, "udp", 0.0)
    ep.datagrams_to_send()
    ok = bytes(make_response(tx.request, 200, to_tag="x"))
    ep.receive_datagram(ok, PEER, "udp", 0.1)
    event = ep.next_event()
    assert isinstance(event, ResponseReceived) and event.response.status == 200
    assert tx.state is ClientState.COMPLETED
    assert ep.get_timer() == pytest.approx(0.1 + T4)
    for t in (0.6, 1.6, 3.6):
        ep.receive_datagram(ok, PEER, "udp", t)
        assert ep.next_event() is None
    assert ep.datagrams_to_send() == []  # no retransmission of the request
    ep.handle_timer(0.1 + T4)
    assert ep.client_transactions == 0 and ep.get_timer() is None
    ep.receive_datagram(ok, PEER, "udp", 6.0)
    assert isinstance(ep.next_event(), MessageDropped)  # now a stray


def test_tcp_has_no_retransmission_and_no_timer_k() -> None:
    """Over a reliable transport only timer F runs; a final response ends
    the transaction at once (timer K is zero)."""
    ep = SipEndpoint()
    tx = ep.send_request(publish(CountingIds(), "tcp"), PEER, "tcp", 0.0)
    assert len(ep.datagrams_to_send()) == 1
    assert ep.get_timer() == 64 * T1
    assert jump_times(ep, 31.0) == []
    ep.receive_message(parse_message(bytes(make_response(tx.request, 202))), PEER, "tcp", 31.0)
    assert isinstance(ep.next_event(), ResponseReceived)
    assert ep.client_transactions == 0 and ep.get_timer() is None


def test_tcp_timeout_without_answer() -> None:
    """Over TCP, no answer still ends in timer F."""
    ep = SipEndpoint(timers=TimerConfig(t1=0.1))
    ep.send_request(publish(CountingIds(), "tcp"), PEER, "tcp", 0.0)
    ep.datagrams_to_send()
    assert ep.get_timer() == pytest.approx(6.4)
    ep.handle_timer(6.4)
    assert isinstance(ep.next_event(), TransactionTimedOut)
    assert ep.datagrams_to_send() == []


def test_response_matching_needs_branch_and_method() -> None:
    """A response with the right branch but another CSeq method matches
    nothing (§17.1.3)."""
    ep = SipEndpoint()
    tx = ep.send_request(publish(CountingIds()), PEER, "udp", 0.0)
    response = make_response(tx.request, 200)
    response.headers.set("CSeq", "1 SUBSCRIBE")
    ep.receive_datagram(bytes(response), PEER, "udp", 0.1)
    assert isinstance(ep.next_event(), MessageDropped)
    assert tx.state is ClientState.TRYING


def test_configurable_timers() -> None:
    """T1 and T2 from the configuration set the schedule."""
    ep = SipEndpoint(timers=TimerConfig(t1=0.1, t2=0.3, t4=1.0))
    ep.send_request(publish(CountingIds()), PEER, "udp", 0.0)
    ep.datagrams_to_send()
    assert jump_times(ep, 1.55) == pytest.approx([0.1, 0.3, 0.6, 0.9, 1.2, 1.5])


def test_bad_timer_config_is_refused() -> None:
    """T1 must be positive and not above T2."""
    with pytest.raises(ValueError):
        TimerConfig(t1=5.0, t2=4.0)


def test_request_needs_a_cookie_branch() -> None:
    """Sending without an RFC 3261 branch is a local error."""
    ep = SipEndpoint()
    request = publish(CountingIds())
    request.headers.set("Via", "SIP/2.0/UDP 192.0.2.9:5070;branch=old")
    with pytest.raises(LocalProtocolError):
        ep.send_request(request, PEER, "udp", 0.0)


# -- server side ---------------------------------------------------------------


def notify_bytes(branch: str = "z9hG4bKsrv1") -> bytes:
    return (
        "NOTIFY sip:alice@192.0.2.9:5070 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n"
        "From: <sip:bob@example.com>;tag=b1\r\nTo: <sip:alice@example.com>;tag=a1\r\n"
        "Call-ID: n1\r\nCSeq: 3 NOTIFY\r\nEvent: presence\r\n"
        "Subscription-State: active;expires=60\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def test_server_absorbs_retransmissions_then_resends_final_until_timer_j() -> None:
    """A retransmitted request is absorbed before the answer, answered with
    the same final response after it, and forgotten at 64*T1."""
    ep = SipEndpoint()
    ep.receive_datagram(notify_bytes(), PEER, "udp", 0.0)
    event = ep.next_event()
    assert isinstance(event, RequestReceived)
    ep.receive_datagram(notify_bytes(), PEER, "udp", 0.5)
    assert ep.next_event() is None and ep.datagrams_to_send() == []
    ep.respond(event.transaction, make_response(event.request, 200, to_tag="a1"), 0.6)
    final = ep.datagrams_to_send()
    assert len(final) == 1 and final[0].address == PEER
    assert event.transaction.state is ServerState.COMPLETED
    ep.receive_datagram(notify_bytes(), PEER, "udp", 1.5)
    assert ep.datagrams_to_send() == final
    assert ep.next_event() is None
    assert ep.get_timer() == pytest.approx(0.6 + 64 * T1)
    ep.handle_timer(0.6 + 64 * T1)
    assert ep.server_transactions == 0
    ep.receive_datagram(notify_bytes(), PEER, "udp", 40.0)
    assert isinstance(ep.next_event(), RequestReceived)  # a new transaction now


def test_completed_server_transaction_holds_only_its_answer() -> None:
    """After the final response over UDP the transaction drops the request
    it holds (it stays 64*T1, and a flood of requests would keep every one
    of them), yet still answers a retransmission with the same response."""
    ep = SipEndpoint()
    ep.receive_datagram(notify_bytes(), PEER, "udp", 0.0)
    event = ep.next_event()
    assert isinstance(event, RequestReceived)
    assert event.transaction.request is event.request
    ep.respond(event.transaction, make_response(event.request, 481), 0.1)
    final = ep.datagrams_to_send()
    assert event.transaction.request is None
    assert event.transaction.last_response == final[0].data
    ep.receive_datagram(notify_bytes(), PEER, "udp", 1.0)
    assert ep.datagrams_to_send() == final


def test_server_over_tcp_ends_at_once_after_final() -> None:
    """Timer J is zero on a reliable transport."""
    ep = SipEndpoint()
    ep.receive_datagram(notify_bytes(), PEER, "tcp", 0.0)
    event = ep.next_event()
    assert isinstance(event, RequestReceived)
    ep.respond(event.transaction, make_response(event.request, 200), 0.1)
    assert ep.server_transactions == 0 and ep.get_timer() is None


def test_server_provisional_then_final_and_no_second_final() -> None:
    """1xx may repeat, one final ends it; a second final is a local error."""
    ep = SipEndpoint()
    ep.receive_datagram(notify_bytes(), PEER, "udp", 0.0)
    event = ep.next_event()
    assert isinstance(event, RequestReceived)
    tx = event.transaction
    ep.respond(tx, make_response(event.request, 100), 0.0)
    assert tx.state is ServerState.PROCEEDING
    ep.receive_datagram(notify_bytes(), PEER, "udp", 0.5)
    assert b"100 Trying" in ep.datagrams_to_send()[-1].data  # last response resent
    ep.respond(tx, make_response(event.request, 200), 0.6)
    with pytest.raises(LocalProtocolError):
        ep.respond(tx, make_response(event.request, 200), 0.7)


def test_server_matching_uses_branch_and_sent_by() -> None:
    """Two requests with different branches are two transactions."""
    ep = SipEndpoint()
    ep.receive_datagram(notify_bytes("z9hG4bKa"), PEER, "udp", 0.0)
    ep.receive_datagram(notify_bytes("z9hG4bKb"), PEER, "udp", 0.0)
    assert isinstance(ep.next_event(), RequestReceived)
    assert isinstance(ep.next_event(), RequestReceived)
    assert ep.server_transactions == 2


def test_malformed_request_gets_stateless_400_and_no_transaction() -> None:
    """A request with a bad CSeq is answered 400 and never reaches the TU."""
    ep = SipEndpoint()
    ep.receive_datagram(notify_bytes().replace(b"CSeq: 3 NOTIFY", b"CSeq: x NOTIFY"), PEER, "udp", 0.0)
    out = ep.datagrams_to_send()
    assert len(out) == 1 and out[0].data.startswith(b"SIP/2.0 400 ")
    event = ep.next_event()
    assert isinstance(event, MessageDropped) and event.status == 400
    assert ep.server_transactions == 0


# -- the tables themselves ------------------------------------------------------


@given(st.sampled_from(list(ClientState)), st.sampled_from(list(ClientInput)))
def test_client_table_is_total_or_refuses(state: ClientState, event: ClientInput) -> None:
    """Every (state, input) pair either has a row or raises LocalProtocolError."""
    tx = ClientTransaction(
        request=publish(CountingIds()), data=b"", address=PEER, transport="udp",
        key=("b", "PUBLISH"), started_at=0.0, state=state,
    )
    if (state, event) in CLIENT_TABLE:
        tx.step(event)
        assert tx.state is CLIENT_TABLE[(state, event)][1]
    else:
        with pytest.raises(LocalProtocolError):
            tx.step(event)
        assert tx.state is state


@given(st.sampled_from(list(ServerState)), st.sampled_from(list(ServerInput)))
def test_server_table_is_total_or_refuses(state: ServerState, event: ServerInput) -> None:
    """Every (state, input) pair either has a row or raises LocalProtocolError."""
    tx = ServerTransaction(
        request=publish(CountingIds()), address=PEER, transport="udp", key=("k",), state=state,
    )
    if (state, event) in SERVER_TABLE:
        tx.step(event)
        assert tx.state is SERVER_TABLE[(state, event)][1]
    else:
        with pytest.raises(LocalProtocolError):
            tx.step(event)
        assert tx.state is state


def test_terminated_states_accept_nothing() -> None:
    """No row leaves Terminated."""
    assert not any(s is ClientState.TERMINATED for s, _ in CLIENT_TABLE)
    assert not any(s is ServerState.TERMINATED for s, _ in SERVER_TABLE)
