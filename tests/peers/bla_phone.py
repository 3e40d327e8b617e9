"""A bridged line appearance phone (draft-anil-sipping-bla) as a test peer.

Usage::

    from tests.peers.bla_phone import BlaPhone, has_dialog

    with BlaPhone("sip:line1@example.com") as phone:    # its own UDP socket
        phone.register(reg.host, reg.sip_port, expires=600)
        phone.subscribe_line(kam.host, kam.port, expires=600)
        ...                              # pua SUBSCRIBEs dialog;sla to phone.contact
        phone.wait_subscribe()           # the SUBSCRIBE it answered (200 + NOTIFY)
        phone.set_call("call-1", "confirmed")   # NOTIFY with the new dialog
        phone.wait_notify(has_dialog("call-2", "confirmed"))  # from the server

The phone has ONE Contact, ``phone.contact`` (``<sip:USER@127.0.0.1:PORT>``,
``phone.contact_uri`` without the brackets), used in its REGISTERs, its
SUBSCRIBEs and its NOTIFYs.  ``USER`` is the line's user unless ``user`` is
given: Kamailio's presence module takes the presentity of a ``dialog;sla``
SUBSCRIBE from the *Contact user* and the *From domain*, not from the
Request-URI, so a phone whose Contact user differs from the line's watches
another presentity.

A background thread (started by :meth:`BlaPhone.serve`, and by ``with``)
reads the socket and:

* answers a ``SUBSCRIBE`` with ``Event: dialog;sla`` (pua's, per the
  draft's state agent role) with ``200`` (``Expires`` echoed, default 3600,
  its Contact, a To tag of its own) and then sends a NOTIFY in that
  dialog: ``Event: dialog;sla``, ``Subscription-State: active;expires=N``
  (``terminated;reason=timeout`` for ``Expires: 0``), its Contact, and its
  dialog-info document (``entity`` = the line, ``version`` counting from 0
  in each subscription, ``state="full"``) as the body, also when the
  subscription ends.  A refresh (To tag known) gets the same; an unknown
  To tag gets ``481``; another event ``489``.  ``subscribe_code`` (e.g.
  403) answers new subscriptions with that code instead, without NOTIFY.
* answers every ``NOTIFY`` (the presence server's) with ``200`` and keeps
  it in :attr:`BlaPhone.notifies`; ``OPTIONS`` get ``200``, anything else
  ``405``.
* keeps every message it received in :attr:`BlaPhone.received` and every
  request it sent in :attr:`BlaPhone.sent`; retransmissions (same Call-ID
  and CSeq) are answered again but listed once in ``notifies`` and
  ``subscribes``.

:meth:`BlaPhone.set_call` changes one of its dialogs and NOTIFYs the
latest active ``dialog;sla`` subscription it answered.  UDP only; the
phone does not retransmit its requests (loopback loses nothing).

Only the standard library is used; nothing from ``pua``.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from .rawsip import SipMessage, parse_message

__all__ = ["BlaPhone", "Call", "Subscription", "DialogInfo", "dialog_info",
           "parse_dialog_info", "has_dialog", "SLA_EVENT", "DIALOG_INFO_TYPE",
           "DIALOG_INFO_NS"]

SLA_EVENT = "dialog;sla"
DIALOG_INFO_TYPE = "application/dialog-info+xml"
DIALOG_INFO_NS = "urn:ietf:params:xml:ns:dialog-info"
_NS = "{" + DIALOG_INFO_NS + "}"
DIALOG_STATES = ("trying", "proceeding", "early", "confirmed", "terminated")


# --------------------------------------------------------------- documents
@dataclass
class Call:
    """One dialog of the phone, as its dialog-info reports it
    (RFC 4235 ``<dialog>``; ``appearance`` is the draft's line appearance,
    written as ``<param pname="x-line-id" pval="N"/>`` in ``<local><target>``
    unless another ``appearance_param`` is given, e.g. -04's ``appearance``)."""

    call_id: str
    state: str
    direction: str = "initiator"
    local_tag: str = ""
    remote_tag: str = ""
    remote_uri: str = ""
    appearance: int | None = None
    appearance_param: str = "x-line-id"

    @property
    def dialog_id(self) -> str:
        return self.call_id


def dialog_info(entity: str, calls: list[Call], version: int, *,
                local_uri: str | None = None) -> str:
    """A full dialog-info document (RFC 4235, draft-anil-sipping-bla) for
    ``entity`` with one ``<dialog>`` per call."""
    parts = ['<?xml version="1.0" encoding="UTF-8"?>\n',
             f'<dialog-info xmlns="{DIALOG_INFO_NS}" version="{int(version)}" '
             f'state="full" entity={quoteattr(entity)}>\n']
    for c in calls:
        attrs = f"id={quoteattr(c.dialog_id)} call-id={quoteattr(c.call_id)}"
        if c.local_tag:
            attrs += f" local-tag={quoteattr(c.local_tag)}"
        if c.remote_tag:
            attrs += f" remote-tag={quoteattr(c.remote_tag)}"
        attrs += f" direction={quoteattr(c.direction)}"
        parts.append(f"  <dialog {attrs}>\n    <state>{c.state}</state>\n")
        target = (f'<target uri={quoteattr(local_uri)}>'
                  f'<param pname={quoteattr(c.appearance_param)} pval="{int(c.appearance)}"/>'
                  '</target>') if c.appearance is not None and local_uri else ""
        parts.append(f"    <local><identity>{_xml_text(entity)}</identity>{target}</local>\n")
        if c.remote_uri:
            parts.append(f"    <remote><identity>{_xml_text(c.remote_uri)}</identity>"
                         "</remote>\n")
        parts.append("  </dialog>\n")
    parts.append("</dialog-info>\n")
    return "".join(parts)


def _xml_text(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@dataclass
class DialogInfo:
    """A parsed dialog-info document: its root attributes and its dialogs
    (each a dict of the ``<dialog>`` attributes plus ``state``, and
    ``appearance`` when a ``x-line-id``/``appearance`` param is there)."""

    entity: str
    version: int | None
    state: str
    dialogs: list[dict[str, str]] = field(default_factory=list)

    def dialog(self, call_id: str) -> dict[str, str] | None:
        return next((d for d in self.dialogs if d.get("call-id") == call_id), None)


def parse_dialog_info(body: bytes | str) -> DialogInfo:
    """Parse an ``application/dialog-info+xml`` body (ValueError if it is
    not one)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as e:
        raise ValueError(f"not XML: {e}: {body!r}") from None
    if root.tag != _NS + "dialog-info":
        raise ValueError(f"not a dialog-info document: {root.tag}")
    version = root.get("version")
    out = DialogInfo(entity=root.get("entity", ""),
                     version=int(version) if version is not None and version.isdigit()
                     else None, state=root.get("state", ""))
    for d in root.findall(_NS + "dialog"):
        item = dict(d.attrib)
        st = d.find(_NS + "state")
        item["state"] = (st.text or "").strip() if st is not None else ""
        for p in d.iter(_NS + "param"):
            if p.get("pname") in ("x-line-id", "appearance"):
                # draft-era phones write pvalue for RFC 4235's pval
                item["appearance"] = p.get("pval", p.get("pvalue", ""))
        out.dialogs.append(item)
    return out


def has_dialog(call_id: str, state: str | None = None) -> Callable[[SipMessage], bool]:
    """A predicate for :meth:`BlaPhone.wait_notify`: the message's body is a
    dialog-info document with a dialog of that Call-ID (in that state)."""

    def pred(msg: SipMessage) -> bool:
        if not msg.body.strip():
            return False
        try:
            d = parse_dialog_info(msg.body).dialog(call_id)
        except ValueError:
            return False
        return d is not None and (state is None or d["state"] == state)

    return pred


# --------------------------------------------------------------- SIP bits
def _uri_of(value: str) -> str:
    """``"Name" <sip:a@h;p>;tag=x`` / ``sip:a@h;tag=x`` -> the URI."""
    v = value.strip()
    if "<" in v:
        return v.split("<", 1)[1].split(">", 1)[0]
    return v.split(";", 1)[0]


def _hostport(uri: str) -> tuple[str, int]:
    """``sip:user@host:port;params`` -> (host, port), 5060 by default."""
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[-1].split(";", 1)[0].split("?", 1)[0]
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port = rest.partition(":")
    return host, int(port) if port.isdigit() else 5060


def _event_is_sla(value: str) -> bool:
    parts = [p.strip().lower() for p in value.split(";")]
    return parts[0] == "dialog" and "sla" in parts[1:]


def _expires_of(msg: SipMessage, default: int) -> int:
    v = msg.header("Expires").strip()
    return int(v) if v.isdigit() else default


@dataclass
class Subscription:
    """A ``dialog;sla`` subscription the phone answered (it is the notifier).

    ``local_tag`` is the phone's To tag, ``remote_tag`` the subscriber's From
    tag, ``target`` the subscriber's Contact URI (where the NOTIFYs go),
    ``version`` the next dialog-info version, ``cseq`` the last NOTIFY CSeq.
    """

    call_id: str
    local_tag: str
    remote_tag: str
    from_value: str          # the SUBSCRIBE's From (the NOTIFY's To)
    to_value: str            # the SUBSCRIBE's To, without tag (the NOTIFY's From)
    target: str
    route: list[str]
    expires_at: float
    subscribe: SipMessage
    cseq: int = 0
    version: int = 0
    terminated: bool = False

    def remaining(self) -> int:
        return max(0, round(self.expires_at - time.monotonic()))


@dataclass
class _LineSub:
    """A dialog;sla subscription the phone made (it is the subscriber)."""

    call_id: str
    from_tag: str
    to_tag: str = ""
    cseq: int = 0


class BlaPhone:
    """A shared-line phone on its own UDP socket on ``local_host``.

    ``line_aor``: the shared line (``sip:line1@example.com``), the default of
    :meth:`register` and :meth:`subscribe_line` and the ``entity`` of its
    dialog-info; ``user``: its Contact user (default: the line's user).
    """

    def __init__(self, line_aor: str = "sip:line1@example.com", *, user: str | None = None,
                 local_host: str = "127.0.0.1", user_agent: str = "pua-test-bla-phone") -> None:
        self.line_aor = line_aor
        self.local_host = local_host
        self.user_agent = user_agent
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_host, 0))
        self.local_port: int = self.sock.getsockname()[1]
        self.user = user if user is not None else line_aor.split(":", 1)[-1].split("@", 1)[0]
        self.contact_uri = f"sip:{self.user}@{local_host}:{self.local_port}"
        #: what it received (requests and responses), in order
        self.received: list[SipMessage] = []
        #: the requests it sent (REGISTER, SUBSCRIBE, NOTIFY), in order
        self.sent: list[SipMessage] = []
        #: NOTIFYs received (each answered 200), without retransmissions
        self.notifies: list[SipMessage] = []
        #: SUBSCRIBEs received, without retransmissions
        self.subscribes: list[SipMessage] = []
        #: the dialog;sla subscriptions it answered 200, oldest first
        self.subscriptions: list[Subscription] = []
        #: its dialogs, reported in each NOTIFY (terminated ones once)
        self.calls: dict[str, Call] = {}
        #: the answer to a new dialog;sla SUBSCRIBE (200: accept and NOTIFY)
        self.subscribe_code = 200
        self._responses: list[SipMessage] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._replies: dict[tuple[str, str, str], bytes] = {}  # retransmissions
        self._registrations: dict[tuple[str, int, str], tuple[str, int]] = {}
        self._line_subs: dict[tuple[str, int, str], _LineSub] = {}
        self._cseq = 0

    # ---------------------------------------------------------------- props
    @property
    def contact(self) -> str:
        """``<sip:USER@127.0.0.1:PORT>``: the Contact of everything it sends."""
        return f"<{self.contact_uri}>"

    @property
    def address(self) -> tuple[str, int]:
        return (self.local_host, self.local_port)

    @property
    def subscription(self) -> Subscription | None:
        """The latest subscription it answered that is still active."""
        with self._cond:
            for sub in reversed(self.subscriptions):
                if not sub.terminated and sub.remaining() > 0:
                    return sub
        return None

    # ------------------------------------------------------------ lifecycle
    def serve(self) -> BlaPhone:
        """Start the thread that reads the socket (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"bla-phone-{self.local_port}",
                                            daemon=True)
            self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        self.sock.close()

    def __enter__(self) -> BlaPhone:
        return self.serve()

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<BlaPhone {self.contact_uri} line={self.line_aor}>"

    # ----------------------------------------------------------- reception
    def _run(self) -> None:
        self.sock.settimeout(0.2)  # how often the stop flag is looked at
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except (TimeoutError, ConnectionRefusedError):
                continue
            except OSError:
                return
            if not data.strip():
                continue  # keep-alive
            msg = parse_message(data)
            with self._cond:
                self.received.append(msg)
                if msg.is_response:
                    self._responses.append(msg)
                self._cond.notify_all()
            if not msg.is_response:
                try:
                    self._handle(msg, addr)
                except Exception as e:  # keep serving; the test sees the answer missing
                    with contextlib.suppress(OSError):
                        self._reply(msg, addr, 500, "Server Internal Error",
                                    [("Warning", f'399 bla-phone "{type(e).__name__}"')])

    def _record(self, lst: list[SipMessage], msg: SipMessage) -> bool:
        """Append ``msg`` unless it retransmits one there; True if new."""
        key = (msg.header("Call-ID"), msg.header("CSeq"))
        with self._cond:
            if any((m.header("Call-ID"), m.header("CSeq")) == key for m in lst):
                return False
            lst.append(msg)
            self._cond.notify_all()
            return True

    def _handle(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        method = msg.method
        if method == "ACK":
            return
        key = (msg.header("Call-ID"), msg.header("CSeq"), msg.tag("From"))
        if key in self._replies:  # a retransmission: same answer, nothing else
            self.sock.sendto(self._replies[key], addr)
            return
        if method == "NOTIFY":
            self._record(self.notifies, msg)
            self._reply(msg, addr, 200, "OK")
        elif method == "SUBSCRIBE":
            self._record(self.subscribes, msg)
            self._on_subscribe(msg, addr)
        elif method == "OPTIONS":
            self._reply(msg, addr, 200, "OK", [("Allow", "SUBSCRIBE, NOTIFY, OPTIONS")])
        else:
            self._reply(msg, addr, 405, "Method Not Allowed",
                        [("Allow", "SUBSCRIBE, NOTIFY, OPTIONS")])

    def _reply(self, req: SipMessage, addr: tuple[str, int], code: int, reason: str,
               headers: list[tuple[str, str]] | None = None, to_tag: str = "") -> None:
        lines = [f"SIP/2.0 {code} {reason}"]
        for v in req.header_all("Via"):
            lines.append(f"Via: {v}")
        lines.append(f"From: {req.header('From')}")
        to = req.header("To")
        if to_tag and not req.tag("To"):
            to += f";tag={to_tag}"
        lines.append(f"To: {to}")
        lines.append(f"Call-ID: {req.header('Call-ID')}")
        lines.append(f"CSeq: {req.header('CSeq')}")
        lines += [f"{k}: {v}" for k, v in headers or []]
        lines.append(f"User-Agent: {self.user_agent}")
        lines.append("Content-Length: 0")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self._replies[(req.header("Call-ID"), req.header("CSeq"), req.tag("From"))] = data
        self.sock.sendto(data, addr)

    def _on_subscribe(self, msg: SipMessage, addr: tuple[str, int]) -> None:
        if not _event_is_sla(msg.header("Event")):
            self._reply(msg, addr, 489, "Bad Event", [("Allow-Events", SLA_EVENT)])
            return
        expires = _expires_of(msg, 3600)
        to_tag = msg.tag("To")
        with self._cond:
            if to_tag:
                sub = next((s for s in self.subscriptions
                            if s.call_id == msg.header("Call-ID") and s.local_tag == to_tag
                            and s.remote_tag == msg.tag("From")), None)
            else:
                sub = None
        if to_tag and sub is None:
            self._reply(msg, addr, 481, "Subscription Does Not Exist")
            return
        if sub is None:
            if self.subscribe_code != 200:
                self._reply(msg, addr, self.subscribe_code, "Refused")
                return
            contact = msg.header("Contact")
            target = _uri_of(contact) if contact else f"sip:{addr[0]}:{addr[1]}"
            sub = Subscription(
                call_id=msg.header("Call-ID"), local_tag=uuid.uuid4().hex[:12],
                remote_tag=msg.tag("From"), from_value=msg.header("From"),
                to_value=msg.header("To"), target=target,
                route=[v.strip() for rr in msg.header_all("Record-Route")
                       for v in rr.split(",")],
                expires_at=time.monotonic() + expires, subscribe=msg)
            with self._cond:
                self.subscriptions.append(sub)
        else:
            sub.expires_at = time.monotonic() + expires
            sub.subscribe = msg
        self._reply(msg, addr, 200, "OK",
                    [("Contact", self.contact), ("Expires", str(expires))],
                    to_tag=sub.local_tag)
        if expires == 0:
            sub.terminated = True
        self._send_notify(sub)

    # ------------------------------------------------------------- sending
    def _next_cseq(self) -> int:
        with self._cond:
            self._cseq += 1
            return self._cseq

    def _send(self, dest: tuple[str, int], first_line: str, headers: list[tuple[str, str]],
              body: str | bytes = b"") -> SipMessage:
        body_b = body.encode() if isinstance(body, str) else body
        lines = [first_line,
                 f"Via: SIP/2.0/UDP {self.local_host}:{self.local_port};rport;"
                 f"branch=z9hG4bK{uuid.uuid4().hex}",
                 "Max-Forwards: 70"]
        lines += [f"{k}: {v}" for k, v in headers]
        lines.append(f"User-Agent: {self.user_agent}")
        lines.append(f"Content-Length: {len(body_b)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body_b
        msg = parse_message(data)
        with self._cond:
            self.sent.append(msg)
            self._cond.notify_all()
        self.sock.sendto(data, dest)
        return msg

    def _wait_response(self, req: SipMessage, timeout: float) -> SipMessage | None:
        """The final response to ``req`` (None when ``timeout`` passes)."""
        key = (req.header("Call-ID"), req.header("CSeq"))
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for r in self._responses:
                    if (r.header("Call-ID"), r.header("CSeq")) == key and r.status >= 200:
                        return r
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def _request(self, method: str, ruri: str, dest: tuple[str, int], *, from_value: str,
                 to_value: str, call_id: str, cseq: int,
                 headers: list[tuple[str, str]], body: str | bytes = b"",
                 timeout: float = 5.0) -> SipMessage | None:
        self.serve()
        req = self._send(dest, f"{method} {ruri} SIP/2.0",
                         [("From", from_value), ("To", to_value), ("Call-ID", call_id),
                          ("CSeq", f"{cseq} {method}"), *headers], body)
        return self._wait_response(req, timeout)

    def register(self, registrar_host: str, registrar_port: int, line_aor: str | None = None,
                 expires: int = 3600, *, headers: list[tuple[str, str]] | None = None,
                 timeout: float = 5.0) -> SipMessage | None:
        """REGISTER ``line_aor`` (default: the phone's line) with its Contact;
        returns the final response (None on timeout).  The same Call-ID and a
        higher CSeq for each REGISTER of that line to that registrar:
        ``expires=0`` unregisters."""
        aor = line_aor or self.line_aor
        key = (registrar_host, int(registrar_port), aor)
        call_id, cseq = self._registrations.get(key, (uuid.uuid4().hex, 0))
        cseq += 1
        self._registrations[key] = (call_id, cseq)
        domain = aor.split("@", 1)[-1].split(";", 1)[0].split(">", 1)[0]
        return self._request(
            "REGISTER", f"sip:{domain}", (registrar_host, int(registrar_port)),
            from_value=f"<{aor}>;tag={uuid.uuid4().hex[:10]}", to_value=f"<{aor}>",
            call_id=call_id, cseq=cseq,
            headers=[("Contact", self.contact), ("Expires", str(int(expires))),
                     *(headers or [])], timeout=timeout)

    def subscribe_line(self, presence_host: str, presence_port: int,
                       line_aor: str | None = None, expires: int = 3600, *,
                       timeout: float = 5.0) -> SipMessage | None:
        """SUBSCRIBE to ``dialog;sla`` of ``line_aor`` (default: the phone's
        line) at the presence server, Contact its own; a later call for the
        same line and server refreshes in the same dialog, ``expires=0``
        ends it.  Returns the final response (None on timeout); the
        server's NOTIFYs land in :attr:`notifies`."""
        aor = line_aor or self.line_aor
        key = (presence_host, int(presence_port), aor)
        ls = self._line_subs.get(key)
        if ls is None:
            ls = self._line_subs[key] = _LineSub(uuid.uuid4().hex, uuid.uuid4().hex[:10])
        ls.cseq += 1
        to_value = f"<{aor}>" + (f";tag={ls.to_tag}" if ls.to_tag else "")
        r = self._request(
            "SUBSCRIBE", aor, (presence_host, int(presence_port)),
            from_value=f"<{aor}>;tag={ls.from_tag}", to_value=to_value,
            call_id=ls.call_id, cseq=ls.cseq,
            headers=[("Contact", self.contact), ("Event", SLA_EVENT),
                     ("Accept", DIALOG_INFO_TYPE), ("Expires", str(int(expires)))],
            timeout=timeout)
        if r is not None and 200 <= r.status < 300 and not ls.to_tag:
            ls.to_tag = r.tag("To")
        if r is None or r.status >= 300 or int(expires) == 0:
            self._line_subs.pop(key, None)
        return r

    def document(self, sub: Subscription | None = None) -> str:
        """Its current dialog-info document (the version of ``sub``)."""
        with self._cond:
            calls = list(self.calls.values())
        return dialog_info(self.line_aor, calls, sub.version if sub else 0,
                           local_uri=self.contact_uri)

    def _send_notify(self, sub: Subscription) -> SipMessage:
        with self._cond:
            body = self.document(sub)
            sub.version += 1
            sub.cseq += 1
            cseq = sub.cseq
        state = "terminated;reason=timeout" if sub.terminated \
            else f"active;expires={sub.remaining()}"
        route = list(sub.route)
        dest = _hostport(_uri_of(route[0]) if route else sub.target)
        headers = [("From", f"{sub.to_value};tag={sub.local_tag}"), ("To", sub.from_value),
                   ("Call-ID", sub.call_id), ("CSeq", f"{cseq} NOTIFY")]
        headers += [("Route", r) for r in route]
        headers += [("Contact", self.contact), ("Event", SLA_EVENT),
                    ("Subscription-State", state), ("Content-Type", DIALOG_INFO_TYPE)]
        return self._send(dest, f"NOTIFY {sub.target} SIP/2.0", headers, body)

    def send_notify(self, *, timeout: float = 5.0) -> SipMessage | None:
        """NOTIFY the current document in the latest active subscription it
        answered; returns the final response, None on timeout or when it
        has no active subscription."""
        sub = self.subscription
        if sub is None:
            return None
        req = self._send_notify(sub)
        return self._wait_response(req, timeout)

    def set_call(self, call_id: str, state: str, *, direction: str = "initiator",
                 local_tag: str | None = None, remote_tag: str = "", remote_uri: str = "",
                 appearance: int | None = None, appearance_param: str = "x-line-id",
                 notify: bool = True, timeout: float = 5.0) -> SipMessage | None:
        """Add or change its dialog ``call_id`` (``state``: trying,
        proceeding, early, confirmed or terminated) and, with ``notify``,
        NOTIFY the latest active subscription (see :meth:`send_notify`;
        its answer is returned).  A terminated dialog is reported once and
        then dropped."""
        if state not in DIALOG_STATES:
            raise ValueError(f"dialog state must be one of {DIALOG_STATES}, got {state!r}")
        with self._cond:
            old = self.calls.get(call_id)
            self.calls[call_id] = Call(
                call_id=call_id, state=state, direction=direction,
                local_tag=local_tag if local_tag is not None
                else (old.local_tag if old else uuid.uuid4().hex[:10]),
                remote_tag=remote_tag or (old.remote_tag if old else ""),
                remote_uri=remote_uri or (old.remote_uri if old else ""),
                appearance=appearance if appearance is not None
                else (old.appearance if old else None),
                appearance_param=appearance_param)
        try:
            return self.send_notify(timeout=timeout) if notify else None
        finally:
            if state == "terminated":
                with self._cond:
                    self.calls.pop(call_id, None)

    # -------------------------------------------------------------- waiting
    def _wait_in(self, lst: list[SipMessage], predicate: Callable[[SipMessage], bool] | None,
                 timeout: float, after: int) -> SipMessage | None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in lst[after:]:
                    if predicate is None or predicate(m):
                        return m
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def wait_notify(self, predicate: Callable[[SipMessage], bool] | None = None,
                    timeout: float = 5.0, *, after: int = 0) -> SipMessage | None:
        """The first NOTIFY in :attr:`notifies` (from index ``after``) for
        which ``predicate`` is true, waiting up to ``timeout`` seconds for
        it; None if none came."""
        return self._wait_in(self.notifies, predicate, timeout, after)

    def wait_subscribe(self, timeout: float = 5.0,
                       predicate: Callable[[SipMessage], bool] | None = None, *,
                       after: int = 0) -> SipMessage | None:
        """Like :meth:`wait_notify`, for :attr:`subscribes`."""
        return self._wait_in(self.subscribes, predicate, timeout, after)

    def wait_sent(self, predicate: Callable[[SipMessage], bool], timeout: float = 5.0, *,
                  after: int = 0) -> SipMessage | None:
        """Like :meth:`wait_notify`, for the requests it sent (:attr:`sent`),
        e.g. the NOTIFY that follows its answer to a SUBSCRIBE."""
        return self._wait_in(self.sent, predicate, timeout, after)

    def response_to(self, req: SipMessage, timeout: float = 5.0) -> SipMessage | None:
        """The final response to a request it sent (see :attr:`sent`)."""
        return self._wait_response(req, timeout)
