"""Building requests outside a dialog (RFC 3261 §8.1.1).

A UAC request carries at least To, From, CSeq, Call-ID, Max-Forwards and
Via; this module makes them from URIs and an :class:`~pua.sip.ids.Ids`
source, so the caller only adds what its method needs.

:func:`new_request` formats every header each time.  A user that sends the
same request again and again (a publication refreshed or modified, a load
generator) prepares a :class:`RequestTemplate` once: its header text is
formatted then, and each :meth:`RequestTemplate.build` only draws the fresh
identifiers (branch, From tag, Call-ID) and the CSeq.
"""

from __future__ import annotations

from collections.abc import Iterable

from .headers import CSeq, Headers, NameAddress, Via, header_key
from .ids import Ids, branch, call_id, tag
from .message import Request
from .uri import SipUri, Uri

__all__ = ["MAX_FORWARDS", "RequestTemplate", "new_request", "new_via"]

# §8.1.1.6: a UAC SHOULD set Max-Forwards to 70.
MAX_FORWARDS = 70
_MAX_FORWARDS_TEXT = str(MAX_FORWARDS)


def new_via(ids: Ids, transport: str, host: str, port: int | None) -> Via:
    """A Via for a new client transaction: fresh branch, and ``rport``
    (RFC 3581) so that answers come back through NATs."""
    return Via(
        transport=transport.upper(),
        host=host,
        port=port,
        params=(("branch", branch(ids)), ("rport", None)),
    )


def new_request(
    method: str,
    request_uri: Uri,
    *,
    from_uri: Uri,
    to_uri: Uri,
    via: Via,
    ids: Ids,
    cseq: int = 1,
    call_id_value: str | None = None,
    from_tag: str | None = None,
    contact: SipUri | None = None,
) -> Request:
    """A request outside any dialog, with every header §8.1.1 requires."""
    from_addr = NameAddress(from_uri, params=(("tag", from_tag or tag(ids)),))
    headers = Headers(
        [
            ("Via", str(via)),
            ("Max-Forwards", str(MAX_FORWARDS)),
            ("From", str(from_addr)),
            ("To", str(NameAddress(to_uri))),
            ("Call-ID", call_id_value or call_id(ids)),
            ("CSeq", f"{cseq} {method}"),
        ]
    )
    if contact is not None:
        headers.add("Contact", f"<{contact}>")
    headers.remember("via:top", via)
    headers.remember("cseq", CSeq(cseq, method))
    return Request(method, request_uri, headers)


class RequestTemplate:
    """A request outside any dialog, prepared once and built many times.

    ``build`` gives what :func:`new_request` gives for the same arguments
    (Via with a fresh branch and ``rport``, Max-Forwards, From with a tag,
    To, Call-ID, CSeq, then Contact and ``headers`` in order, and ``body``),
    drawing the branch, the From tag and the Call-ID from ``ids`` in that
    order, as ``via_for`` then ``new_request`` do.  The header text that
    does not change (URIs, the Via's sent-by, the extra headers) is
    formatted here, once.

    ``transport``, ``host`` and ``port`` are the Via's sent-by (our
    address for the transport the request goes over).
    """

    __slots__ = (
        "_after_branch",
        "_after_tag",
        "_body",
        "_extra",
        "_from_prefix",
        "_head",
        "_tail",
        "_to_text",
        "_uri_text",
        "_via_host",
        "_via_port",
        "_via_prefix",
        "_via_transport",
        "method",
        "request_uri",
    )

    def __init__(
        self,
        method: str,
        request_uri: Uri,
        *,
        from_uri: Uri,
        to_uri: Uri,
        transport: str,
        host: str,
        port: int | None,
        headers: Iterable[tuple[str, str]] = (),
        body: bytes = b"",
        contact: SipUri | None = None,
    ) -> None:
        self.method = method
        self.request_uri = request_uri
        self._uri_text = str(request_uri)
        probe = Via(transport=transport.upper(), host=host, port=port)
        self._via_transport = probe.transport
        self._via_host = host
        self._via_port = port
        self._via_prefix = f"{probe};branch="
        self._from_prefix = f"{NameAddress(from_uri)};tag="
        self._to_text = str(NameAddress(to_uri))
        extra = [("Contact", f"<{contact}>")] if contact is not None else []
        extra.extend((str(name), str(value)) for name, value in headers)
        self._extra = tuple(extra)
        self._body = bytes(body)
        # The text around the fresh values, laid out as Message.__bytes__
        # does (Content-Length from the body, in place of the first one).
        self._head = f"{method} {self._uri_text} SIP/2.0\r\nVia: {self._via_prefix}"
        self._after_branch = f";rport\r\nMax-Forwards: {MAX_FORWARDS}\r\nFrom: {self._from_prefix}"
        self._after_tag = f"\r\nTo: {self._to_text}\r\nCall-ID: "
        self._tail = f" {method}\r\n{_fields_text(self._extra, len(self._body))}\r\n\r\n"

    def build(
        self,
        ids: Ids,
        *,
        cseq: int = 1,
        call_id_value: str | None = None,
        from_tag: str | None = None,
    ) -> Request:
        """A new request: fresh branch, From tag (unless ``from_tag``) and
        Call-ID (unless ``call_id_value``), CSeq ``cseq``."""
        new_branch = branch(ids)
        new_tag = from_tag or tag(ids)
        new_call_id = call_id_value or call_id(ids)
        items = [
            ("Via", f"{self._via_prefix}{new_branch};rport"),
            ("Max-Forwards", _MAX_FORWARDS_TEXT),
            ("From", self._from_prefix + new_tag),
            ("To", self._to_text),
            ("Call-ID", new_call_id),
            ("CSeq", f"{cseq} {self.method}"),
            *self._extra,
        ]
        headers = Headers.adopt(items)
        headers.remember(
            "via:top",
            Via(
                self._via_transport,
                self._via_host,
                self._via_port,
                (("branch", new_branch), ("rport", None)),
            ),
        )
        headers.remember("cseq", CSeq(cseq, self.method))
        request = Request(
            self.method, self.request_uri, headers, self._body, uri_text=self._uri_text
        )
        text = (
            f"{self._head}{new_branch}{self._after_branch}{new_tag}"
            f"{self._after_tag}{new_call_id}\r\nCSeq: {cseq}{self._tail}"
        )
        request.keep_wire(text.encode("utf-8", "surrogateescape") + self._body)
        return request


def _fields_text(fields: tuple[tuple[str, str], ...], length: int) -> str:
    """Header lines as Message.__bytes__ writes them, Content-Length last
    unless one of ``fields`` is it (the first gets ``length``; the others
    are left out)."""
    lines: list[str] = []
    have_length = False
    for name, value in fields:
        if header_key(name) == "content-length":
            if not have_length:
                lines.append(f"{name}: {length}")
                have_length = True
        else:
            lines.append(f"{name}: {value}")
    if not have_length:
        lines.append(f"Content-Length: {length}")
    return "\r\n".join(lines)
