"""HTTP Digest authentication for SIP requests (RFC 3261 §22, RFC 7616,
RFC 8760), sans-IO.

A server that wants to know who we are answers 401 with WWW-Authenticate
(a registrar or user agent) or 407 with Proxy-Authenticate (a proxy); the
request is sent again, as a new transaction, with an Authorization or
Proxy-Authorization header computed from the challenge and our credentials:

    HA1      = H(username ":" realm ":" password)              (RFC 7616 §3.4.2)
    HA1-sess = H(HA1 ":" nonce ":" cnonce)                      (-sess algorithms)
    HA2      = H(method ":" digest-uri)                         (qop=auth, or none)
    HA2      = H(method ":" digest-uri ":" H(body))             (qop=auth-int)
    response = H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" HA2)
    response = H(HA1 ":" nonce ":" HA2)                         (no qop, RFC 2069)

H is MD5, SHA-256 or SHA-512/256 as the challenge's ``algorithm`` says.
With ``userhash=true`` the username is sent as H(username ":" realm).  A
stored HA1 (Kamailio's ``subscriber.ha1`` column) is an MD5 HA1: it answers
MD5 challenges only.  The client nonce comes from the caller (the ``ids``
source); ``nc`` counts the uses of one nonce (:class:`NonceUse`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from .abnf import quote
from .headers import Challenge
from .message import Request

__all__ = [
    "ALGORITHMS",
    "Credential",
    "Credentials",
    "DigestChallenge",
    "NonceUse",
    "authorization",
    "choose_challenge",
    "sign",
]

# Supported algorithms, weakest first: the strongest one offered is chosen.
ALGORITHMS = ("MD5", "MD5-sess", "SHA-256", "SHA-256-sess", "SHA-512-256", "SHA-512-256-sess")
_HASHES = {"MD5": "md5", "SHA-256": "sha256", "SHA-512-256": "sha512_256"}


def _hash(algorithm: str, text: str) -> str:
    name = _HASHES[algorithm.removesuffix("-sess")]
    return hashlib.new(name, text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class Credential:
    """Who we are to a realm: a username and its password, or a stored MD5
    HA1.  ``uri`` (an identity: the presentity we publish or the watcher
    that subscribes) and ``realm`` narrow where it applies; None: anywhere.
    The password is never shown by ``repr``."""

    username: str
    password: str | None = None
    ha1: str | None = None
    realm: str | None = None
    uri: str | None = None

    def __post_init__(self) -> None:
        if not self.username:
            raise ValueError("a credential needs a username")
        if (self.password is None) == (self.ha1 is None):
            raise ValueError("a credential needs a password or an ha1, not both")
        if self.ha1 is not None and (
            len(self.ha1) != 32 or any(c not in "0123456789abcdefABCDEF" for c in self.ha1)
        ):
            raise ValueError("ha1 must be 32 hex digits (an MD5 HA1)")

    def __repr__(self) -> str:
        secret = "password=***" if self.password is not None else "ha1=***"
        return (
            f"Credential(username={self.username!r}, {secret}, realm={self.realm!r},"
            f" uri={self.uri!r})"
        )

    def answers(self, algorithm: str) -> bool:
        """Whether this credential can answer a challenge of ``algorithm``."""
        return self.password is not None or algorithm in ("MD5", "MD5-sess")


class Credentials:
    """The credentials pua knows, looked up by identity and realm: the most
    specific one wins (identity and realm, then identity, then realm, then
    a default with neither)."""

    def __init__(self, items: Iterable[Credential] = ()) -> None:
        self._items: list[Credential] = []
        for item in items:
            self.add(item)

    def add(self, credential: Credential) -> None:
        """Add ``credential``, replacing one for the same identity and realm."""
        self._items = [
            c for c in self._items if (c.uri, c.realm) != (credential.uri, credential.realm)
        ]
        self._items.append(credential)

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)

    def __repr__(self) -> str:
        return f"<Credentials: {len(self._items)}>"

    def find(self, identity: str, realm: str) -> Credential | None:
        """The credential for ``identity`` in ``realm``, or None."""
        best: tuple[int, Credential] | None = None
        for credential in self._items:
            if credential.uri is not None and credential.uri != identity:
                continue
            if credential.realm is not None and credential.realm != realm:
                continue
            rank = (credential.uri is not None) * 2 + (credential.realm is not None)
            if best is None or rank > best[0]:
                best = (rank, credential)
        return None if best is None else best[1]


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestChallenge:
    """A Digest challenge, read: what an answer needs from it."""

    realm: str
    nonce: str
    algorithm: str  # one of ALGORITHMS, canonical spelling
    qop: str | None  # "auth", "auth-int" or None (no qop offered)
    opaque: str | None
    stale: bool
    userhash: bool
    proxy: bool  # from a 407 (answered with Proxy-Authorization)

    @property
    def header(self) -> str:
        """The header the answer goes in."""
        return "Proxy-Authorization" if self.proxy else "Authorization"


def _read(challenge: Challenge, proxy: bool) -> DigestChallenge | None:
    if challenge.scheme.lower() != "digest":
        return None
    params = challenge.params
    realm, nonce = params.get("realm"), params.get("nonce")
    if realm is None or not nonce:
        return None
    wanted = params.get("algorithm", "MD5")
    algorithm = next((a for a in ALGORITHMS if a.lower() == wanted.lower()), None)
    if algorithm is None:
        return None
    offered = [q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()]
    if not offered:
        qop = None
    elif "auth" in offered:
        qop = "auth"
    elif "auth-int" in offered:
        qop = "auth-int"
    else:
        return None  # only qop values we do not know
    return DigestChallenge(
        realm=realm,
        nonce=nonce,
        algorithm=algorithm,
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        userhash=params.get("userhash", "").lower() == "true",
        proxy=proxy,
    )


def choose_challenge(
    challenges: Iterable[Challenge], *, proxy: bool, can_answer: Iterable[str] = ALGORITHMS
) -> DigestChallenge | None:
    """The challenge to answer among those of one response: the strongest
    algorithm we support (and ``can_answer``, e.g. MD5 only with a stored
    HA1), RFC 8760 §2.4; None when none can be answered."""
    allowed = set(can_answer)
    usable = [d for c in challenges if (d := _read(c, proxy)) is not None]
    usable = [d for d in usable if d.algorithm in allowed]
    if not usable:
        return None
    return max(usable, key=lambda d: ALGORITHMS.index(d.algorithm))


class NonceUse:
    """A nonce we answer with, and how many times it was used (``nc``).
    It keeps what does not change from one answer to the next (the HA1 of
    each credential, the fixed part of the header) so that using it again
    costs one hash of the request and one of the response."""

    __slots__ = ("_fixed", "challenge", "count")

    def __init__(self, challenge: DigestChallenge) -> None:
        self.challenge = challenge
        self.count = 0
        self._fixed: dict[Credential, tuple[str, str]] = {}

    def fixed(self, credential: Credential) -> tuple[str, str]:
        """(HA1, the header's opening) for ``credential`` (-sess algorithms
        have an HA1 per cnonce: not kept)."""
        known = self._fixed.get(credential)
        if known is None:
            if len(self._fixed) > 64:
                self._fixed.clear()
            known = self._fixed[credential] = _fixed(self.challenge, credential)
        return known

    def next_count(self) -> int:
        """The ``nc`` of the next use (RFC 7616 §3.4: counts from 1)."""
        self.count += 1
        return self.count


def _fixed(challenge: DigestChallenge, credential: Credential) -> tuple[str, str]:
    algorithm, realm = challenge.algorithm, challenge.realm
    if credential.password is not None:
        ha1 = _hash(algorithm, f"{credential.username}:{realm}:{credential.password}")
    else:
        if credential.ha1 is None or not algorithm.startswith("MD5"):
            raise ValueError(f"a stored HA1 cannot answer {algorithm}")
        ha1 = credential.ha1.lower()
    username = credential.username
    if challenge.userhash:
        username = _hash(algorithm, f"{username}:{realm}")
    opening = (
        f"Digest username={quote(username)}, realm={quote(realm)}, nonce={quote(challenge.nonce)}, "
    )
    return ha1, opening


def authorization(
    challenge: DigestChallenge,
    credential: Credential,
    *,
    method: str,
    uri: str,
    body: bytes,
    nc: int,
    cnonce: str,
    use: NonceUse | None = None,
) -> str:
    """The Authorization (or Proxy-Authorization) value answering
    ``challenge`` for a request of ``method`` to ``uri`` with ``body``
    (``use``: the nonce's :class:`NonceUse`, which keeps what is fixed)."""
    algorithm = challenge.algorithm
    nonce = challenge.nonce
    ha1, opening = use.fixed(credential) if use is not None else _fixed(challenge, credential)
    if algorithm.endswith("-sess"):
        ha1 = _hash(algorithm, f"{ha1}:{nonce}:{cnonce}")
    if challenge.qop == "auth-int":
        body_hash = hashlib.new(_HASHES[algorithm.removesuffix("-sess")], body).hexdigest()
        ha2 = _hash(algorithm, f"{method}:{uri}:{body_hash}")
    else:
        ha2 = _hash(algorithm, f"{method}:{uri}")
    count = f"{nc:08x}"
    if challenge.qop is None:
        response = _hash(algorithm, f"{ha1}:{nonce}:{ha2}")
    else:
        response = _hash(algorithm, f"{ha1}:{nonce}:{count}:{cnonce}:{challenge.qop}:{ha2}")
    parts = [f'{opening}uri={quote(uri)}, response="{response}", algorithm={algorithm}']
    if challenge.opaque is not None:
        parts.append(f"opaque={quote(challenge.opaque)}")
    if challenge.qop is not None:
        parts.append(f"qop={challenge.qop}, nc={count}, cnonce={quote(cnonce)}")
    if challenge.userhash:
        parts.append("userhash=true")
    return ", ".join(parts)


def sign(
    request: Request,
    challenge: DigestChallenge,
    credential: Credential,
    *,
    nc: int,
    cnonce: str,
    use: NonceUse | None = None,
    fresh: bool = False,
) -> None:
    """Put the answer to ``challenge`` in ``request`` (Authorization, or
    Proxy-Authorization for a proxy's): added to a ``fresh`` request, which
    has none yet, in place of an earlier one otherwise."""
    value = authorization(
        challenge,
        credential,
        method=request.method,
        uri=request.uri_text,
        body=request.body,
        nc=nc,
        cnonce=cnonce,
        use=use,
    )
    if fresh:
        request.headers.add(challenge.header, value)
    else:
        request.headers.set(challenge.header, value)
