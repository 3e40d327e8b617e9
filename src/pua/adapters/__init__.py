"""The users of pua that the seed names (pua_usrloc, pua_reginfo, ...), each
a user of :class:`~pua.runtime.PresenceRuntime`; the runtime never imports
them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .bla import SharedLines
from .dialogs import Dialogs
from .registrations import Registrations

if TYPE_CHECKING:
    # slixmpp is loaded only by a service that runs the gateway
    from .xmpp import XmppGateway

__all__ = ["Adapters"]


@dataclass(frozen=True, slots=True)
class Adapters:
    """The adapters a service runs (None: off), for the API and the page."""

    registrations: Registrations | None = None
    dialogs: Dialogs | None = None
    bla: SharedLines | None = None
    xmpp: XmppGateway | None = None
