"""Digest authentication of the engine's requests (see :mod:`pua.sip.auth`).

A challenge (401 or 407) is answered below the publication and subscription
machines: the request is sent again at once, as a new transaction (new
branch, CSeq + 1, same Call-ID), with the answer to the strongest challenge
we hold a credential for, and the record's machine only ever sees the final
answer to the authenticated request.  A request is answered once: a second
challenge is the final failure (reported with its realm), unless the server
says the nonce was ``stale``, which earns one more try.

So that refreshes cost no extra round trip, the last nonce of each next hop
(and so of its realm) is kept and used again for the next request of any
record we hold a credential of that realm for, with ``nc`` incremented: a
server whose nonces stay good for a while challenges once per nonce, not
once per request or per record.  A server that no longer takes it (the
nonce expired, or the server binds nonces to a user) challenges once more,
and that is answered as above.  Credentials live here only: never in a record, a stored row, an
event or a log line.
"""

from __future__ import annotations

from pua.errors import RemoteProtocolError
from pua.sip.auth import (
    ALGORITHMS,
    Credential,
    Credentials,
    NonceUse,
    choose_challenge,
    sign,
)
from pua.sip.headers import Challenge
from pua.sip.ids import Ids
from pua.sip.message import Request, Response

from .records import Record
from .requests import Destination

__all__ = ["Authenticator"]

# Nonces kept for reuse (one per next hop); beyond this the oldest are let
# go (a request then costs one challenge again).
MAX_NONCES = 10_000

_Key = tuple[str, int, str]  # next hop host, port, transport


def _identity(record: Record) -> str:
    """Who a record's requests speak for: the watcher of a subscription,
    the presentity of a publication (the From of either)."""
    return record.watcher_uri or record.pres_uri


class Authenticator:
    """Credentials, the nonces in use, and the answers to challenges."""

    def __init__(self, ids: Ids) -> None:
        self._ids = ids
        self.credentials = Credentials()
        self._nonces: dict[_Key, NonceUse] = {}
        self.challenges_answered = 0
        self.nonces_reused = 0

    def __len__(self) -> int:
        """Nonces kept for reuse."""
        return len(self._nonces)

    def prepare(self, record: Record, request: Request, destination: Destination) -> None:
        """Add an answer to the nonce last used toward ``destination`` for
        this identity, if there is one (no round trip for a challenge)."""
        if not self._nonces:
            return
        use = self._nonces.get((destination.host, destination.port, destination.transport))
        if use is None:
            return
        credential = self.credentials.find(_identity(record), use.challenge.realm)
        if credential is None or not credential.answers(use.challenge.algorithm):
            return  # not ours to answer: the server will say who it wants
        self._answer(request, use, credential, fresh=True)
        self.nonces_reused += 1

    def answer(
        self,
        record: Record,
        request: Request,
        response: Response,
        destination: Destination,
        tries: int,
    ) -> bool:
        """Make ``request`` the answer to the challenge in ``response``
        (in place: new CSeq, the Authorization header) and return True; or
        False when it is not to be answered (no credential for its realm,
        no algorithm we can answer, or answered already and not stale)."""
        proxy = response.status == 407
        try:
            challenges = response.proxy_authenticate if proxy else response.www_authenticate
        except RemoteProtocolError:
            return False
        identity = _identity(record)
        chosen = self._choose(challenges, identity, proxy=proxy)
        if chosen is None:
            return False
        use, credential = chosen
        if tries >= 2 or (tries == 1 and not use.challenge.stale):
            return False  # our answer was refused: the credentials are wrong
        key = (destination.host, destination.port, destination.transport)
        self._nonces.pop(key, None)
        if len(self._nonces) >= MAX_NONCES:
            self._nonces.pop(next(iter(self._nonces)))
        self._nonces[key] = use
        record.cseq += 1
        request.headers.set("CSeq", f"{record.cseq} {request.method}")
        self._answer(request, use, credential)
        self.challenges_answered += 1
        return True

    def _choose(
        self, challenges: list[Challenge], identity: str, *, proxy: bool
    ) -> tuple[NonceUse, Credential] | None:
        best: tuple[NonceUse, Credential] | None = None
        for challenge in challenges:
            realm = challenge.params.get("realm")
            credential = self.credentials.find(identity, realm) if realm is not None else None
            if credential is None:
                continue
            allowed = [a for a in ALGORITHMS if credential.answers(a)]
            digest = choose_challenge([challenge], proxy=proxy, can_answer=allowed)
            if digest is None:
                continue
            rank = ALGORITHMS.index(digest.algorithm)
            if best is None or rank > ALGORITHMS.index(best[0].challenge.algorithm):
                best = (NonceUse(digest), credential)
        return best

    def _answer(
        self, request: Request, use: NonceUse, credential: Credential, *, fresh: bool = False
    ) -> None:
        sign(
            request,
            use.challenge,
            credential,
            nc=use.next_count(),
            cnonce=self._ids.token(16),
            use=use,
            fresh=fresh,
        )

    @staticmethod
    def realm_of(response: Response) -> str | None:
        """The realm a 401 or 407 names (for the failure's reason)."""
        try:
            challenges = (
                response.proxy_authenticate if response.status == 407 else response.www_authenticate
            )
        except RemoteProtocolError:
            return None
        return next((c.realm for c in challenges if c.realm), None)
