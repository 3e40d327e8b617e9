"""Records: one per publication or subscription.

Records are keyed as the seed's module keys them: presentity URI, event,
id and source flag, plus the watcher URI for a subscription.  A record holds
only what must last between requests; what matters while a request is in
flight (its kind, transaction, body, the API's callback) lives on an
:class:`InFlight` that exists only then, and a wish that waits for it on a
:class:`Pending`.  Values that many records share (options, routes, last
answers, URIs of one server) are shared objects, not copies.

At a million records this is what decides pua's size, so the classes are
slotted, defaults are shared singletons and nothing is stored that can be
derived: the event name and default Content-Type come from the package, a
publication's Call-ID from its tuple id, our own Contact from the listen
address.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pua.sip.timers import Timed

from .flags import DialogState
from .keys import PubState, RecordKey, RequestKind, SubState, intern_text
from .shared import NO_OPTIONS, NO_ROUTE, RecordOptions, SubscriptionRoute
from .work import InFlight, Pending

__all__ = [
    "InFlight",
    "Pending",
    "PubState",
    "PublicationRecord",
    "Record",
    "RecordKey",
    "RecordOptions",
    "RequestKind",
    "SubState",
    "SubscriptionRecord",
    "SubscriptionRoute",
    "intern_text",
    "new_dialog_id",
    "tuple_id_of",
]


_new = object.__new__

# The key's event and source flags in one int: shared objects, one per
# pair in use (two slots would cost 16 bytes a record).
_KIND_SHIFT = 32
_KIND_MASK = (1 << _KIND_SHIFT) - 1
_KINDS: dict[int, int] = {}


def _kind_of(event: int, source_flag: int) -> int:
    kind = int(event) | int(source_flag) << _KIND_SHIFT
    shared = _KINDS.get(kind)
    if shared is not None:
        return shared
    if len(_KINDS) > 10_000:
        return kind  # unbounded variety: stop sharing, stay bounded
    return _KINDS.setdefault(kind, kind)


# Small counters and flags of a record, packed in one int (a slot each
# would cost 8 bytes a record): for subscriptions the notifier's word, for
# publications whether a 412 was already answered with a re-PUBLISH, and
# failures in a row and terminations since the last active NOTIFY.  What a
# healthy record holds stays below 256, one of CPython's shared small ints
# (a larger int would be an object of 32 bytes per record).
_COUNT_MAX = 0xFF
_HELD = 1  # in the table (so the table need not look it up)
_AUTHORIZED_SHIFT = 1  # 0: not said yet, 1: pending, 2: active
_RECOVERED_412 = 1 << 3
_FAILURES_SHIFT = 4
_RESUBSCRIBES_SHIFT = 12
_RECHECK = 1 << 20  # a resumed subscription: refresh again once timer F is over
_SUCCESS_MASK = ~((_COUNT_MAX << _FAILURES_SHIFT) | _RECOVERED_412)


class _Record(Timed):
    """What publications and subscriptions share.  ``deadline`` is the one
    timer of the record (refresh, retry, end of lifetime or a resume), armed
    in the engine's DeadlineQueue; which input it is follows from the
    record's state (see ``timer_input`` beside each table)."""

    spread = True  # jittered deadlines: compact heap entries (see Timed)

    __slots__ = (
        "_flags",
        "_kind",
        "_work",
        "cseq",
        "deadline",
        "desired_until",
        "expires_at",
        "id",
        "last_answer",
        "pres_uri",
        "requested",
        "row_id",
    )
    watcher_uri: str
    options: RecordOptions  # the caller's choices beyond the defaults (shared)

    def __init__(self, key: RecordKey) -> None:
        # The key's fields are the record's own: the table holds the record
        # as its own key (see __hash__ and __eq__), so no key tuple is kept.
        self.pres_uri, event, self.id, source_flag, _watcher = key
        self._kind = _kind_of(event, source_flag)
        self.cseq = 0
        self.deadline: float | None = None
        self.desired_until: float | None = None  # end of the wanted lifetime; None: for ever
        self.expires_at = 0.0  # when the server drops it (absolute, `now` clock)
        self._flags = 0
        # The request in flight (which carries the wish waiting for it), or
        # the wish alone, or None: one slot for what exists only now and then.
        self._work: InFlight | Pending | None = None
        self.last_answer: tuple[int, str] | None = None  # status, reason (shared)
        self.requested = 3600  # Expires we ask for
        self.row_id: int | None = None  # the store's id of the row, once written

    @property
    def event(self) -> int:
        """The event package's flag (the key's)."""
        return self._kind & _KIND_MASK

    @property
    def source_flag(self) -> int:
        """Who asked for the record (the key's)."""
        return self._kind >> _KIND_SHIFT

    @property
    def flight(self) -> InFlight | None:
        """The request waiting for its answer, if one is."""
        work = self._work
        return work if isinstance(work, InFlight) else None

    @flight.setter
    def flight(self, flight: InFlight | None) -> None:
        work = self._work
        pending = work.pending if isinstance(work, InFlight) else work
        if flight is None:
            self._work = pending
        else:
            flight.pending = pending
            self._work = flight

    def land(self) -> InFlight:
        """Take the request in flight off the record (its answer came),
        leaving the wish that waited for it; returns the request."""
        flight = self._work
        assert isinstance(flight, InFlight)
        self._work = flight.pending
        return flight

    @property
    def pending(self) -> Pending | None:
        """What the API asked for that waits to be sent, if anything."""
        work = self._work
        return work.pending if isinstance(work, InFlight) else work

    @pending.setter
    def pending(self, pending: Pending | None) -> None:
        work = self._work
        if isinstance(work, InFlight):
            work.pending = pending
        else:
            self._work = pending

    def _fields(self) -> tuple[str, int, str, int, str]:
        kind = self._kind
        return (self.pres_uri, kind & _KIND_MASK, self.id, kind >> _KIND_SHIFT, self.watcher_uri)

    @property
    def key(self) -> RecordKey:
        """What identifies the record (a new tuple at each call)."""
        return RecordKey._make(self._fields())

    def __hash__(self) -> int:
        # The hash of the record's key: the table finds the record by it.
        kind = self._kind
        return hash(
            (self.pres_uri, kind & _KIND_MASK, self.id, kind >> _KIND_SHIFT, self.watcher_uri)
        )

    def __eq__(self, other: object) -> bool:
        # Equal to its key (and to a record with the same key): a dict that
        # holds records as keys is looked up with a RecordKey.
        if other is self:
            return True
        if isinstance(other, tuple):
            return other == self._fields()
        if isinstance(other, _Record):
            return other._fields() == self._fields()
        return NotImplemented

    def _count(self, shift: int) -> int:
        return (self._flags >> shift) & _COUNT_MAX

    def _set_count(self, shift: int, value: int) -> None:
        value = min(max(value, 0), _COUNT_MAX)
        self._flags = (self._flags & ~(_COUNT_MAX << shift)) | (value << shift)

    @property
    def held(self) -> bool:
        """Whether the table holds this record (set by the table)."""
        return bool(self._flags & _HELD)

    @held.setter
    def held(self, value: bool) -> None:
        self._flags = self._flags | _HELD if value else self._flags & ~_HELD

    def hold(self) -> bool:
        """Mark the record held by the table; False if it already was."""
        flags = self._flags
        if flags & _HELD:
            return False
        self._flags = flags | _HELD
        return True

    def succeeded(self) -> None:
        """A success: no failures in a row, no 412 answered any more."""
        self._flags &= _SUCCESS_MASK

    @property
    def failures(self) -> int:
        """Failures in a row (the backoff exponent; counts up to 255)."""
        return self._count(_FAILURES_SHIFT)

    @failures.setter
    def failures(self, value: int) -> None:
        self._set_count(_FAILURES_SHIFT, value)

    @property
    def last_status(self) -> int | None:
        """Status of the last final answer (408 for a local timeout)."""
        return None if self.last_answer is None else self.last_answer[0]

    @property
    def last_reason(self) -> str:
        """Reason phrase of the last final answer."""
        return "" if self.last_answer is None else self.last_answer[1]

    @property
    def extra_headers(self) -> tuple[tuple[str, str], ...]:
        """Headers added to every request of the record."""
        return self.options.extra_headers

    @property
    def outbound_proxy(self) -> str | None:
        """This record's next hop, if it has its own."""
        return self.options.outbound_proxy


def tuple_id_of(pres_uri: str, event: int, id: str, source_flag: int) -> str:
    """The tuple id of a publication (RFC 3863 §4.1.2: an XML ID, unique in
    the presentity's document): made from the key, so it is the same across
    refreshes and restarts without being stored."""
    text = f"{pres_uri}\n{event}\n{id}\n{source_flag}"
    if text == _last_tuple_id[0]:
        return _last_tuple_id[1]  # a body and a Call-ID of one request need it twice
    made = "t" + hashlib.blake2b(text.encode(), digest_size=5).hexdigest()  # 40 bits
    _last_tuple_id[:] = (text, made)
    return made


_last_tuple_id = ["", ""]  # the last key's text and its id
_TUPLE_ID_LENGTH = 11  # "t" and 40 bits in hex: a text of another length is no made id


def _own_tuple_id(pres_uri: str, event: int, id: str, source_flag: int, value: str) -> str | None:
    """What a publication keeps of tuple id ``value``: None when it is
    empty or the one made from the key (the hash is skipped for a text
    that cannot be a made id)."""
    if not value:
        return None
    if len(value) == _TUPLE_ID_LENGTH and value == tuple_id_of(pres_uri, event, id, source_flag):
        return None
    return value


class PublicationRecord(_Record):
    """A publication: the seed's ``ua_pres_t`` for PUBLISH, plus the body
    that recovery from a 412 needs."""

    __slots__ = ("_tuple_id", "body", "etag", "options", "state")

    watcher_uri = ""  # a publication has no watcher

    def __init__(self, key: RecordKey, *, etag: str | None = None) -> None:
        super().__init__(key)
        self.options = NO_OPTIONS
        self.state = PubState.DONE
        self.etag = etag
        self.body: bytes | None = None  # the last body the server accepted
        self._tuple_id: str | None = None  # None: made from the key

    @property
    def tuple_id(self) -> str:
        """The record's tuple id: made from its key, unless a stored row
        (e.g. one Kamailio wrote) gave another."""
        if self._tuple_id is not None:
            return self._tuple_id
        kind = self._kind
        return tuple_id_of(self.pres_uri, kind & _KIND_MASK, self.id, kind >> _KIND_SHIFT)

    @tuple_id.setter
    def tuple_id(self, value: str) -> None:
        kind = self._kind
        self._tuple_id = _own_tuple_id(
            self.pres_uri, kind & _KIND_MASK, self.id, kind >> _KIND_SHIFT, value
        )

    @classmethod
    def restored(
        cls,
        pres_uri: str,
        event: int,
        id: str,
        source_flag: int,
        etag: str | None,
        tuple_id: str,
        body: bytes | None,
        options: RecordOptions,
        state: PubState,
        expires_at: float,
        desired_until: float | None,
        cseq: int,
        row_id: int | None,
    ) -> PublicationRecord:
        """The publication of a stored row (see pua.core.persist): what
        ``PublicationRecord(key, etag=etag)`` and setting each of these
        make, every slot set at once (a restart makes a million)."""
        pub = _new(cls)
        pub.pres_uri = pres_uri
        pub.id = id
        pub._kind = kind = _KINDS.get(event | source_flag << _KIND_SHIFT) or _kind_of(
            event, source_flag
        )
        pub._flags = 0
        pub._work = None
        pub.cseq = cseq
        pub.deadline = None
        pub.desired_until = desired_until
        pub.expires_at = expires_at
        pub.last_answer = None
        pub.requested = 3600
        pub.row_id = row_id
        pub.options = options
        pub.state = state
        pub.etag = etag
        pub.body = body
        pub._tuple_id = _own_tuple_id(
            pres_uri, kind & _KIND_MASK, id, kind >> _KIND_SHIFT, tuple_id
        )
        return pub

    @property
    def call_id(self) -> str:
        """Call-ID of the record's PUBLISHes: one per publication, the same
        across restarts, made from its tuple id (so not stored)."""
        return f"{self.tuple_id}@pua"

    @property
    def publish_count(self) -> int:
        """PUBLISHes sent (process_body's ``ver``): the CSeq counts them."""
        return self.cseq

    @property
    def recovered_412(self) -> bool:
        """A 412 was answered with a re-PUBLISH (one per streak of 412s)."""
        return bool(self._flags & _RECOVERED_412)

    @recovered_412.setter
    def recovered_412(self, value: bool) -> None:
        self._flags = self._flags | _RECOVERED_412 if value else self._flags & ~_RECOVERED_412

    @property
    def content_type(self) -> str | None:
        """The caller's Content-Type; None: the package's default."""
        return self.options.content_type

    def __repr__(self) -> str:
        return f"<PublicationRecord {self.pres_uri} {self.state.value}>"


class SubscriptionRecord(_Record):
    """A subscription: the seed's ``ua_pres_t`` for SUBSCRIBE, with its dialog."""

    __slots__ = ("call_id", "remote_cseq", "route", "state", "to_tag", "watcher_uri")

    def __init__(self, key: RecordKey, call_id: str, from_tag: str | None = None) -> None:
        super().__init__(key)
        self.watcher_uri = key.watcher_uri
        self.state = SubState.DONE
        self.call_id = call_id
        self.to_tag: str | None = None  # theirs; None while the dialog is temporary
        self.remote_cseq: int | None = None  # last NOTIFY CSeq
        self.route = NO_ROUTE
        if from_tag is not None and from_tag != call_id[:TAG_LENGTH]:
            # Our tag is made from the Call-ID (see new_dialog_id), unless a
            # row another UA wrote says otherwise.
            self.route = self.route.replace(from_tag=from_tag)

    @classmethod
    def restored(
        cls,
        pres_uri: str,
        event: int,
        id: str,
        source_flag: int,
        watcher_uri: str,
        call_id: str,
        to_tag: str | None,
        route: SubscriptionRoute,
        state: SubState,
        expires_at: float,
        desired_until: float | None,
        cseq: int,
        row_id: int | None,
    ) -> SubscriptionRecord:
        """The subscription of a stored row (see pua.core.persist): what
        ``SubscriptionRecord(key, call_id)`` and setting each of these
        make, every slot set at once (a restart makes a million).
        ``route`` holds the options and a From tag not made from the
        Call-ID."""
        sub = _new(cls)
        sub.pres_uri = pres_uri
        sub.id = id
        sub._kind = _KINDS.get(event | source_flag << _KIND_SHIFT) or _kind_of(event, source_flag)
        sub._flags = 0
        sub._work = None
        sub.cseq = cseq
        sub.deadline = None
        sub.desired_until = desired_until
        sub.expires_at = expires_at
        sub.last_answer = None
        sub.requested = 3600
        sub.row_id = row_id
        sub.watcher_uri = watcher_uri
        sub.state = state
        sub.call_id = call_id
        sub.to_tag = to_tag
        sub.remote_cseq = None
        sub.route = route
        return sub

    def start_dialog(self, call_id: str) -> None:
        """Forget the dialog: a new Call-ID (our tag derived from it), no
        remote tag, route set or remote target, CSeq from 1 again."""
        self.call_id = call_id
        self.to_tag = None
        self.cseq = 0
        self.remote_cseq = None
        self.route = self.route.replace(remote_target=None, route_set=(), from_tag=None)

    @property
    def options(self) -> RecordOptions:
        """The caller's choices beyond the defaults (kept in the shared route)."""
        return self.route.options

    @options.setter
    def options(self, value: RecordOptions) -> None:
        self.route = self.route.replace(options=value)

    @property
    def from_tag(self) -> str:
        """Our tag in the dialog."""
        return self.route.from_tag or self.call_id[:TAG_LENGTH]

    @property
    def resubscribes(self) -> int:
        """Terminations since the last active NOTIFY (counts up to 255)."""
        return self._count(_RESUBSCRIBES_SHIFT)

    @resubscribes.setter
    def resubscribes(self, value: int) -> None:
        self._set_count(_RESUBSCRIBES_SHIFT, value)

    @property
    def authorized(self) -> bool | None:
        """The notifier's word: None before it said anything, False while
        it says pending (RFC 6665 §4.1.3), True once active."""
        word = (self._flags >> _AUTHORIZED_SHIFT) & 3
        return None if word == 0 else word == 2

    @authorized.setter
    def authorized(self, value: bool | None) -> None:
        word = 0 if value is None else (2 if value else 1)
        self._flags = (self._flags & ~(3 << _AUTHORIZED_SHIFT)) | (word << _AUTHORIZED_SHIFT)

    @property
    def recheck(self) -> bool:
        """Whether the next 2xx is that of a resumed subscription's first
        refresh, to be followed by a second once a NOTIFY sent before it
        has had timer F to fail (see ``Subscriber.resume_all``)."""
        return bool(self._flags & _RECHECK)

    @recheck.setter
    def recheck(self, value: bool) -> None:
        self._flags = self._flags | _RECHECK if value else self._flags & ~_RECHECK

    @property
    def initial_target(self) -> str:
        """Request-URI of an initial SUBSCRIBE."""
        return self.route.initial_target or self.pres_uri

    @property
    def remote_target(self) -> str:
        """Request-URI of the next request."""
        return self.route.remote_target or self.initial_target

    @property
    def route_set(self) -> tuple[str, ...]:
        """The dialog's route set (Record-Route of the 2xx, reversed)."""
        return self.route.route_set

    @property
    def dialog_state(self) -> DialogState:
        """TEMPORARY until the first 2xx or NOTIFY gives the remote tag."""
        return DialogState.TEMPORARY if self.to_tag is None else DialogState.CONFIRMED

    @property
    def subscription_state(self) -> str:
        """The subscription as the notifier sees it: init, pending, active
        or terminated."""
        if self.state is SubState.DONE:
            return "terminated"
        if self.authorized is None:
            return "init"
        return "active" if self.authorized else "pending"

    def __repr__(self) -> str:
        return f"<SubscriptionRecord {self.pres_uri} <- {self.watcher_uri} {self.state.value}>"


Record = PublicationRecord | SubscriptionRecord

# A dialog's Call-ID: 15 random characters of [0-9a-z] (77 bits; a string
# of 15 characters is the largest that fits CPython's 64-byte block), and
# our From tag its first 8 (41 bits, RFC 3261 §19.3 asks at least 32).
CALL_ID_LENGTH = 15
TAG_LENGTH = 8


def new_dialog_id(ids: Any) -> str:
    """A fresh Call-ID for a dialog we start (our tag is derived from it)."""
    return str(ids.token(CALL_ID_LENGTH))
