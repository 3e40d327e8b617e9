"""Building requests outside a dialog (RFC 3261 §8.1.1).

A UAC request carries at least To, From, CSeq, Call-ID, Max-Forwards and
Via; this module makes them from URIs and an :class:`~pua.sip.ids.Ids`
source, so the caller only adds what its method needs.
"""

from __future__ import annotations

from .headers import CSeq, Headers, NameAddress, Via
from .ids import Ids, branch, call_id, tag
from .message import Request
from .uri import SipUri, Uri

__all__ = ["new_request", "new_via"]

# §8.1.1.6: a UAC SHOULD set Max-Forwards to 70.
MAX_FORWARDS = 70


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
