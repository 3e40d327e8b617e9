"""What the gateway knows beyond pua's records, kept in the store so that a
restart starts where it stopped: the XMPP users it knows, each one's
available resources, the last presence each SIP user notified, the SIP
watchers each XMPP user was asked about, and the watchers each approved.

Every change is noted for the store (kind, digest of its addresses) and
written by the gateway in groups (:meth:`GatewayState.take_changes`)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from .presence import XmppPresence

__all__ = ["GatewayState"]

log = logging.getLogger("pua.xmpp")

USER, RESOURCE, SIP, WATCHER, APPROVED = "user", "resource", "sip", "watcher", "approved"


def _name(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:40]


class GatewayState:
    """The gateway's facts, in memory, with the changes the store lacks."""

    def __init__(self) -> None:
        self.users: set[str] = set()
        self.resources: dict[str, dict[str, XmppPresence]] = {}
        self.sip_presence: dict[str, XmppPresence | None] = {}
        self.watchers: dict[str, set[str]] = {}
        self.approved: dict[str, set[str]] = {}
        self._changes: dict[tuple[str, str], str | None] = {}

    def _note(self, kind: str, parts: tuple[str, ...], value: dict[str, Any] | None) -> None:
        self._changes[(kind, _name(*parts))] = None if value is None else json.dumps(value)

    def take_changes(self) -> dict[tuple[str, str], str | None]:
        """The changes since the last call, for the store."""
        changes, self._changes = self._changes, {}
        return changes

    def give_back(self, changes: dict[tuple[str, str], str | None]) -> None:
        """Changes the store could not take: written with the next ones
        (a newer change of the same fact wins)."""
        self._changes = {**changes, **self._changes}

    @property
    def pending(self) -> int:
        """Changes not yet stored."""
        return len(self._changes)

    # -- XMPP users -----------------------------------------------------------
    def add_user(self, jid: str) -> bool:
        """Know an XMPP user (bare JID); True when new."""
        if jid in self.users:
            return False
        self.users.add(jid)
        self._note(USER, (jid,), {"jid": jid})
        return True

    def set_resource(self, jid: str, resource: str, presence: XmppPresence | None) -> bool:
        """A resource's presence (None: it went away); True when it changed."""
        held = self.resources.setdefault(jid, {})
        if held.get(resource) == presence:
            if not held:
                del self.resources[jid]
            return False
        if presence is None:
            del held[resource]
            if not held:
                del self.resources[jid]
            self._note(RESOURCE, (jid, resource), None)
        else:
            held[resource] = presence
            self._note(
                RESOURCE, (jid, resource), {"jid": jid, "resource": resource, **presence.as_dict()}
            )
        return True

    def clear_resources(self, jid: str) -> bool:
        """Every resource of a user went away; True when any was there."""
        held = self.resources.pop(jid, {})
        for resource in held:
            self._note(RESOURCE, (jid, resource), None)
        return bool(held)

    # -- SIP users ------------------------------------------------------------
    def set_sip_presence(self, uri: str, presence: XmppPresence | None) -> None:
        """The last presence a SIP user's NOTIFY carried (None: unavailable)."""
        if uri in self.sip_presence and self.sip_presence[uri] == presence:
            return
        self.sip_presence[uri] = presence
        value = None if presence is None else presence.as_dict()
        self._note(SIP, (uri,), {"uri": uri, "presence": value})

    def forget_sip_presence(self, uri: str) -> None:
        """No XMPP user watches the SIP user any more."""
        if self.sip_presence.pop(uri, ...) is not ...:
            self._note(SIP, (uri,), None)

    # -- SIP watchers of XMPP users -------------------------------------------
    def add_watcher(self, jid: str, watcher: str) -> bool:
        """A SIP watcher the XMPP user was asked about; True when new."""
        held = self.watchers.setdefault(jid, set())
        if watcher in held:
            return False
        held.add(watcher)
        self._note(WATCHER, (jid, watcher), {"jid": jid, "watcher": watcher})
        return True

    def remove_watcher(self, jid: str, watcher: str) -> None:
        """Forget a watcher (its subscription ended)."""
        held = self.watchers.get(jid)
        if held is not None and watcher in held:
            held.discard(watcher)
            if not held:
                del self.watchers[jid]
            self._note(WATCHER, (jid, watcher), None)

    def set_approved(self, jid: str, contact: str, approved: bool) -> None:
        """Whether the XMPP user lets the watcher's JID see its presence."""
        held = self.approved.setdefault(jid, set())
        if (contact in held) == approved:
            if not held:
                del self.approved[jid]
            return
        if approved:
            held.add(contact)
            self._note(APPROVED, (jid, contact), {"jid": jid, "contact": contact})
        else:
            held.discard(contact)
            if not held:
                del self.approved[jid]
            self._note(APPROVED, (jid, contact), None)

    def approvals(self) -> Iterator[tuple[str, str]]:
        """(XMPP user, watcher JID) of every approval."""
        for jid, contacts in self.approved.items():
            for contact in contacts:
                yield jid, contact

    # -- the store ------------------------------------------------------------
    def load(self, rows: Iterable[tuple[str, str, str]]) -> int:
        """Take back stored rows; returns how many were unreadable (skipped,
        and logged)."""
        bad = 0
        for kind, _, value in rows:
            try:
                data = json.loads(value)
                self._load(kind, data)
            except (ValueError, KeyError, TypeError) as exc:
                bad += 1
                log.warning("skipping a stored %s fact of the XMPP gateway: %s", kind, exc)
        self._changes.clear()
        return bad

    def _load(self, kind: str, data: dict[str, Any]) -> None:
        if kind == USER:
            self.users.add(str(data["jid"]))
        elif kind == RESOURCE:
            presence = XmppPresence.from_dict(data)
            self.resources.setdefault(str(data["jid"]), {})[str(data["resource"])] = presence
        elif kind == SIP:
            raw = data["presence"]
            self.sip_presence[str(data["uri"])] = (
                None if raw is None else XmppPresence.from_dict(raw)
            )
        elif kind == WATCHER:
            self.watchers.setdefault(str(data["jid"]), set()).add(str(data["watcher"]))
        elif kind == APPROVED:
            self.approved.setdefault(str(data["jid"]), set()).add(str(data["contact"]))
        else:
            raise ValueError(f"unknown kind {kind!r}")
