"""pua: a SIP Presence User Agent.

It sends PUBLISH (RFC 3903) and SUBSCRIBE (RFC 6665) on behalf of others and
keeps each publication and subscription alive.  The layers are described in
the README; :mod:`pua.sip` is the sans-IO SIP stack underneath.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
