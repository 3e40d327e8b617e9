"""The users of pua that the seed names (pua_usrloc, pua_reginfo, ...), each
a user of :class:`~pua.runtime.PresenceRuntime`; the runtime never imports
them."""
