"""The fuzz targets: one function per thing that reads bytes from outside.

Each ``*_input(data)`` feeds ``data`` to one reader of pua and enforces the
rule every reader keeps: an input either works or raises the project's
protocol error (:class:`~pua.errors.RemoteProtocolError` for SIP,
:class:`~pua.errors.BodyError` for event documents), never anything else.
An allowed error is swallowed here; any other exception escapes, and is a
finding.  A broken promise that raises nothing (a request left without an
answer, a framer that cuts a stream differently by chunk size) escapes as
:class:`Finding`.

The functions are plain Python: the atheris scripts beside this module run
them under coverage guidance, and the tests run them over the seed corpus
and random mutations of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pua.bodies import (
    DIALOG_INFO_CONTENT_TYPE,
    MESSAGE_SUMMARY_CONTENT_TYPE,
    PIDF_CONTENT_TYPE,
    REGINFO_CONTENT_TYPE,
    WATCHERINFO_CONTENT_TYPE,
    assign_ids,
    parse_dialog_info,
    parse_message_summary,
    parse_pidf,
    parse_reginfo,
    parse_watcherinfo,
    summarize,
)
from pua.bodies.dialog_info import set_version as set_dialog_version
from pua.bodies.reginfo import set_version as set_reginfo_version
from pua.core import EngineConfig, EventFlag, PresenceEngine, SubscribeInfo
from pua.errors import BodyError, RemoteProtocolError
from pua.sip import CountingIds, Request, make_response, parse_message
from pua.sip.headers import NameAddress, Via
from pua.sip.message import Message
from pua.sip.parser import KeepAlive, StreamFramer
from pua.sip.uri import parse_uri

__all__ = ["TARGETS", "Finding", "Target"]


class Finding(AssertionError):
    """A promise broken without an exception of its own."""


# -- SIP datagrams -----------------------------------------------------------


def datagram_input(data: bytes) -> None:
    """``parse_message`` on a datagram: a message, or RemoteProtocolError."""
    try:
        message = parse_message(data)
    except RemoteProtocolError:
        return
    # What parses must serialize and parse again to the same message.
    again = parse_message(bytes(message))
    if again.start_line() != message.start_line() or again.body != message.body:
        raise Finding(f"round trip changed {message.start_line()!r}")


# -- streams -----------------------------------------------------------------


def _feed_all(framer: StreamFramer, chunks: list[bytes]) -> tuple[list[bytes], bool]:
    """Serialized messages cut from ``chunks``, and whether it stopped on
    a protocol error (after which a stream is closed)."""
    out: list[bytes] = []
    for chunk in chunks:
        try:
            found = framer.feed(chunk)
        except RemoteProtocolError:
            return out, True
        out.extend(b"ping" if isinstance(m, KeepAlive) else bytes(m) for m in found)
    return out, False


def stream_input(data: bytes) -> None:
    """The stream framer fed ``data`` in chunks as TCP hands them over: the
    first byte picks the chunk sizes.  Fed whole or in chunks, it must cut
    the same messages and fail at the same point."""
    if not data:
        return
    sizes = [1 + (b % 7) * (1 + data[0] % 13) for b in data[1:9]] or [1]
    body = data[1:]
    chunks: list[bytes] = []
    at = 0
    turn = 0
    while at < len(body):
        size = sizes[turn % len(sizes)]
        chunks.append(body[at : at + size])
        at += size
        turn += 1
    whole, whole_failed = _feed_all(StreamFramer(), [body])
    cut, cut_failed = _feed_all(StreamFramer(), chunks)
    if whole_failed != cut_failed:
        raise Finding(f"whole stream failed: {whole_failed}, in chunks: {cut_failed}")
    if not whole_failed and whole != cut:
        raise Finding(f"{len(whole)} messages whole, {len(cut)} in chunks")


# -- typed headers -----------------------------------------------------------

# Headers with a typed reading, and how each is read.
TYPED_HEADERS = (
    "From",
    "To",
    "Via",
    "Contact",
    "Route",
    "Record-Route",
    "CSeq",
    "Expires",
    "Min-Expires",
    "Max-Forwards",
    "Event",
    "Subscription-State",
    "SIP-ETag",
    "SIP-If-Match",
    "Retry-After",
    "WWW-Authenticate",
    "Proxy-Authenticate",
    "Date",
    "Content-Type",
)

_TEMPLATE = (
    "NOTIFY sip:bob@192.0.2.9 SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n"
    "From: <sip:alice@example.com>;tag=a\r\n"
    "To: <sip:bob@example.com>;tag=b\r\n"
    "Call-ID: c1\r\n"
    "CSeq: 1 NOTIFY\r\n"
)


def _read_typed(message: Message) -> None:
    """Every typed property of ``message``; each read on its own, so one
    bad header does not hide the next."""
    readers: list[Callable[[], object]] = [
        lambda: message.call_id,
        lambda: message.cseq,
        lambda: message.from_,
        lambda: message.to,
        lambda: message.vias,
        lambda: message.top_via,
        lambda: message.contacts,
        lambda: message.routes,
        lambda: message.record_routes,
        lambda: message.expires,
        lambda: message.min_expires,
        lambda: message.max_forwards,
        lambda: message.event,
        lambda: message.subscription_state,
        lambda: message.sip_etag,
        lambda: message.sip_if_match,
        lambda: message.retry_after,
        lambda: message.www_authenticate,
        lambda: message.proxy_authenticate,
        lambda: message.content_type,
        message.check_essentials,
        message.validate,
    ]
    if isinstance(message, Request):
        readers.append(lambda: message.uri)
    for read in readers:
        try:
            value = read()
        except RemoteProtocolError:
            continue
        # A value that was read must also be written: str() of a parsed
        # header is what the serializer puts on the wire.
        for item in value if isinstance(value, list) else [value]:
            str(item)


def headers_input(data: bytes) -> None:
    """One header, named by the first byte, with the rest as its value,
    in an otherwise good NOTIFY; then every typed property read.  The
    value is also given to the header and URI parsers directly."""
    if not data:
        return
    name = TYPED_HEADERS[data[0] % len(TYPED_HEADERS)]
    value = data[1:]
    wire = _TEMPLATE.encode() + name.encode() + b": " + value + b"\r\n\r\n"
    try:
        message = parse_message(wire)
    except RemoteProtocolError:
        pass
    else:
        _read_typed(message)
    text = value.decode("utf-8", "surrogateescape")
    for parse in (NameAddress.parse, Via.parse, parse_uri):
        try:
            parsed = parse(text)
        except RemoteProtocolError:
            continue
        str(parsed)


# -- event documents ---------------------------------------------------------


def _body_input(
    parse: Callable[[bytes], object],
    content_type: str,
    hook: Callable[[bytes], bytes] | None,
) -> Callable[[bytes], None]:
    def one_input(data: bytes) -> None:
        try:
            parse(data)
            valid = True
        except BodyError:
            valid = False
        line = summarize(content_type, data)
        if not isinstance(line, str):
            raise Finding(f"summarize gave {type(line).__name__}")
        if hook is not None:
            try:
                written = hook(data)
            except BodyError:
                return
            if not valid:
                return
            # A valid document stays valid through the hook.
            try:
                parse(written)
            except BodyError as exc:
                raise Finding(f"the hook made a valid document invalid: {exc}") from None

    return one_input


pidf_input = _body_input(parse_pidf, PIDF_CONTENT_TYPE, lambda b: assign_ids(b, "t0"))
watcherinfo_input = _body_input(parse_watcherinfo, WATCHERINFO_CONTENT_TYPE, None)
dialog_info_input = _body_input(
    parse_dialog_info, DIALOG_INFO_CONTENT_TYPE, lambda b: set_dialog_version(b, 7)
)
message_summary_input = _body_input(parse_message_summary, MESSAGE_SUMMARY_CONTENT_TYPE, None)
reginfo_input = _body_input(
    parse_reginfo, REGINFO_CONTENT_TYPE, lambda b: set_reginfo_version(b, 7)
)


# -- the NOTIFY path of the engine -------------------------------------------

NOTIFIER = ("192.0.2.1", 5060)
LOCAL = ("192.0.2.9", 5070)
START = 1_700_000_000.0
# One subscription per package whose NOTIFY bodies the engine reads.
SUBSCRIBED = (
    ("sip:alice@example.com", EventFlag.PRESENCE_EVENT),
    ("sip:alice@example.com", EventFlag.PWINFO_EVENT),
    ("sip:alice@example.com", EventFlag.MWI_EVENT),
    ("sip:alice@example.com", EventFlag.DIALOG_EVENT),
    ("sip:alice@example.com", EventFlag.REGINFO_EVENT),
)
WATCHER = "sip:bob@example.com"


@dataclass(frozen=True)
class Dialog:
    """What a notifier needs to send a NOTIFY in one of the dialogs."""

    event: str
    call_id: str
    our_tag: str  # To tag of a NOTIFY
    their_tag: str  # From tag of a NOTIFY


def subscribed_engine() -> tuple[PresenceEngine, list[Dialog]]:
    """An engine with one confirmed subscription per package (2xx with a
    To tag, Contact and Record-Route), on fixed ids and a fixed clock."""
    engine = PresenceEngine(EngineConfig(outbound_proxy="sip:192.0.2.1:5060"), CountingIds("fz"))
    engine.set_local_address("udp", *LOCAL)
    dialogs = []
    for n, (pres_uri, event) in enumerate(SUBSCRIBED):
        engine.send_subscribe(
            SubscribeInfo(pres_uri=pres_uri, watcher_uri=WATCHER, event=event, expires=600),
            START,
        )
        (datagram,) = engine.datagrams_to_send()
        subscribe = parse_message(datagram.data)
        assert isinstance(subscribe, Request)
        their_tag = f"srv{n}"
        ok = make_response(subscribe, 200, to_tag=their_tag)
        ok.headers.add("Expires", "600")
        ok.headers.add("Contact", "<sip:ps@192.0.2.1:5060>")
        ok.headers.add("Record-Route", "<sip:192.0.2.1;lr>")
        engine.receive_datagram(bytes(ok), NOTIFIER, "udp", START)
        event_header = subscribe.headers.get("event") or ""
        our_tag = subscribe.from_.tag or ""
        dialogs.append(Dialog(event_header, subscribe.call_id, our_tag, their_tag))
    engine.datagrams_to_send()
    while engine.next_event() is not None:
        pass
    return engine, dialogs


class _Engines:
    """One subscribed engine, made again only when a NOTIFY was accepted:
    every other answer changes nothing (see pua.core.notify.check_notify),
    so each input meets the same state as on a fresh engine, at a fraction
    of the cost."""

    engine: PresenceEngine | None = None

    @classmethod
    def fresh(cls) -> PresenceEngine:
        if cls.engine is None:
            cls.engine, _ = subscribed_engine()
        return cls.engine


def notify_input(data: bytes) -> None:
    """A datagram sent to an engine that holds subscriptions in dialogs.
    ``receive_datagram`` must not raise, and a request it can answer (one
    whose Via, From, To, Call-ID and CSeq read) gets an answer."""
    engine = _Engines.fresh()
    try:
        engine.receive_datagram(data, NOTIFIER, "udp", START + 1)
        sent = engine.datagrams_to_send()
        # Timer J ends the server transaction (64*T1 for UDP), so the next
        # input is no retransmission of this one; no refresh is due yet.
        engine.handle_timer(START + 40)
        engine.datagrams_to_send()
        accepted = False
        while engine.next_event() is not None:
            accepted = True  # a NOTIFY was acted on: the state moved
    except BaseException:
        _Engines.engine = None
        raise
    if accepted or any(d.data.startswith(b"SIP/2.0 200 ") for d in sent):
        _Engines.engine = None
    try:
        message = parse_message(data)
        message.check_essentials()
    except RemoteProtocolError:
        return
    if isinstance(message, Request) and not any(d.data.startswith(b"SIP/2.0 ") for d in sent):
        raise Finding(f"{message.method} got no answer")


@dataclass(frozen=True)
class Target:
    """A fuzz target: its name, its function and its seed corpus's kind."""

    name: str
    one_input: Callable[[bytes], None]
    seeds: str  # "messages", "notify" or a content type


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target("datagram", datagram_input, "messages"),
        Target("stream", stream_input, "stream"),
        Target("headers", headers_input, "headers"),
        Target("pidf", pidf_input, PIDF_CONTENT_TYPE),
        Target("watcherinfo", watcherinfo_input, WATCHERINFO_CONTENT_TYPE),
        Target("dialog_info", dialog_info_input, DIALOG_INFO_CONTENT_TYPE),
        Target("message_summary", message_summary_input, MESSAGE_SUMMARY_CONTENT_TYPE),
        Target("reginfo", reginfo_input, REGINFO_CONTENT_TYPE),
        Target("notify", notify_input, "notify"),
    )
}
