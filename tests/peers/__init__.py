"""Real SIP test peers for the pua test-suite and benchmarks.

* :class:`tests.peers.kamailio.KamailioPresence` - a real Kamailio presence
  server (PUBLISH/SUBSCRIBE, SQLite backed) on 127.0.0.1.
* :class:`tests.peers.sipp.SippUAS` / :class:`tests.peers.sipp.SippUAC` -
  SIPp driven with the scenarios in ``tests/peers/scenarios``.

* :class:`tests.peers.prosody.Prosody` - a real XMPP server (Prosody) on
  127.0.0.1; :class:`tests.peers.xmpp_user.XmppUser` and
  :class:`tests.peers.xmpp_user.XmppComponent` talk to it.
* :class:`tests.peers.kamailio_xmpp.KamailioXmppGateway` - Kamailio's own
  SIP <-> XMPP presence gateway (xmpp + pua + pua_xmpp) between the two.

Only the standard library is used here, except in ``xmpp_user.py``
(slixmpp); nothing is imported from ``pua``.
A peer whose binary or files are missing raises :class:`PeerUnavailable`
(tests may turn that into a skip).
"""

from __future__ import annotations

import atexit
import contextlib
import socket
import weakref

__all__ = ["PeerUnavailable", "PeerError", "find_free_port"]


class PeerUnavailable(RuntimeError):
    """The external program (or its data files) needed by a peer is missing.

    The message says what is missing and how to install it
    (``scripts/install-debian-deps.sh``).
    """


class PeerError(RuntimeError):
    """A peer was available but failed to start or misbehaved."""


_LIVE: weakref.WeakSet = weakref.WeakSet()


def _track(peer: object) -> None:
    """Remember a started peer so it is stopped at interpreter exit even if
    the test forgot (or was interrupted before) its ``with`` block ended."""
    _LIVE.add(peer)


def _untrack(peer: object) -> None:
    _LIVE.discard(peer)


@atexit.register
def _stop_leftover_peers() -> None:
    for peer in list(_LIVE):
        with contextlib.suppress(Exception):
            peer.stop()  # type: ignore[attr-defined]


def find_free_port(host: str = "127.0.0.1", *, udp: bool = True, tcp: bool = True,
                   attempts: int = 50) -> int:
    """Return a port number that is currently free on ``host`` for UDP and/or TCP.

    The kernel picks an ephemeral port (bind to port 0); when both transports
    are requested, the same number is checked on the other transport too.
    There is an unavoidable small race between returning and the peer
    binding the port; callers start their peer right away.
    """
    if not (udp or tcp):
        raise ValueError("at least one of udp/tcp must be requested")
    first = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
    for _ in range(attempts):
        s1 = socket.socket(socket.AF_INET, first)
        try:
            s1.bind((host, 0))
            port = s1.getsockname()[1]
            if udp and tcp:
                s2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                try:
                    s2.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s2.bind((host, port))
                except OSError:
                    continue
                finally:
                    s2.close()
            return port
        finally:
            s1.close()
    raise PeerError(f"could not find a free port on {host}")
