"""Kamailio's own pua_usrloc as a reference: a registrar that PUBLISHes.

Usage::

    from tests.peers.kamailio_pua_usrloc import KamailioPuaUsrloc
    from tests.peers.sipp import SippUAS

    with SippUAS("publish_200", trace_msg=True) as uas, \\
            KamailioPuaUsrloc(uas.uri) as reg:
        ...  # phones REGISTER at reg.host:reg.sip_port; PUBLISHes reach uas

It is :class:`tests.peers.kamailio_registrar.KamailioRegistrar` with
``pua`` + ``pua_usrloc`` loaded and ``pua_set_publish()`` called before
``save("location")``; every PUBLISH goes to ``presence_server`` (pua's
``outbound_proxy``).  All other options, the binding readers and the log
are the registrar's.

What Kamailio 5.6.3 sends (verified by tests/peers/test_registrar_selfcheck.py):

* A new binding: ``PUBLISH sip:<aor>`` (To = From = the same URI), Event
  presence, ``Expires`` = the binding's remaining lifetime + 1 (pua adds one
  second), a PIDF with one ``<tuple>`` (id: a C pointer, e.g.
  ``0x7f...``) ``<status><basic>open``, ``entity`` = the AOR *without* a
  scheme (``alice@example.com``) unless ``entity_prefix`` is given.
* A refresh of that binding: a body-less PUBLISH with ``SIP-If-Match`` (the
  ETag of the last 200).  An unregister (Expires 0): Expires 0 with
  ``SIP-If-Match``, no body.  A binding removed by the expiry timer is not
  published (only the first binding a REGISTER touches is).
* Each PUBLISH has a new Call-ID (``<hex>-<pid>@127.0.0.1``) and ``CSeq: 10``.
  It is sent by tm from inside ``save()``, from the registrar's SIP socket;
  its reply is absorbed by pua.
"""

from __future__ import annotations

from typing import Any

from .kamailio_registrar import Binding, KamailioRegistrar, PeerError, PeerUnavailable

__all__ = ["KamailioPuaUsrloc", "Binding", "PeerUnavailable", "PeerError"]


class KamailioPuaUsrloc(KamailioRegistrar):
    """A :class:`KamailioRegistrar` with pua_usrloc publishing to
    ``presence_server`` (a SIP URI, e.g. ``SippUAS.uri`` or
    ``KamailioPresence.uri``).  Keyword arguments are the registrar's
    (``replicate_to``, ``default_expires``, ``max_expires``,
    ``min_expires``, ``entity_prefix``, ``children``, ``debug``, ...)."""

    def __init__(self, presence_server: str, **kwargs: Any) -> None:
        if "publish_to" in kwargs:
            raise TypeError("give the presence server as the first argument")
        super().__init__(publish_to=presence_server, **kwargs)

    @property
    def presence_server(self) -> str:
        assert self.publish_to is not None
        return self.publish_to

    def __repr__(self) -> str:
        state = "running" if self.proc and self.proc.poll() is None else "stopped"
        return (f"<KamailioPuaUsrloc {self.uri} -> {self.publish_to} {state} "
                f"workdir={self.workdir}>")
