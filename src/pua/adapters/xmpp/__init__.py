"""The SIP <-> XMPP presence gateway (Kamailio's pua_xmpp with its xmpp
module): an XMPP component (XEP-0114, slixmpp) on one side, pua's engine on
the other."""

from __future__ import annotations

from .addresses import AddressError, Addresses
from .gateway import XmppGateway, XmppSettings
from .presence import XmppPresence, from_pidf, to_pidf

__all__ = [
    "AddressError",
    "Addresses",
    "XmppGateway",
    "XmppPresence",
    "XmppSettings",
    "from_pidf",
    "to_pidf",
]
