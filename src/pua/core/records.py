"""The records table: one record per publication or subscription.

Records are keyed as the seed's module keys them: presentity URI, event,
id and source flag, plus the watcher URI for a subscription.  The table is
split into 2^hash_size partitions (the seed's ``hash_size``); a second index
finds subscriptions by dialog (Call-ID, our tag, their tag) and by the
temporary dialog of a SUBSCRIBE not yet answered (Call-ID, our tag).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from pua.sip.headers import NameAddress

from .flags import DialogState

__all__ = [
    "PubState",
    "Publication",
    "RecordKey",
    "RecordTable",
    "SubState",
    "Subscription",
]


@dataclass(frozen=True, slots=True)
class RecordKey:
    """What identifies a record (empty ``watcher_uri`` for publications)."""

    pres_uri: str
    event: int
    id: str
    source_flag: int
    watcher_uri: str = ""

    @property
    def is_subscription(self) -> bool:
        """True for a subscription's key."""
        return bool(self.watcher_uri)


class PubState(enum.Enum):
    """Where a publication stands (see pua.core.publication for the table)."""

    SENDING = "sending"  # a PUBLISH is in flight
    PUBLISHED = "published"  # the server holds it; a refresh is scheduled
    BACKOFF = "backoff"  # a retry is scheduled after a failure
    DONE = "done"  # removed, expired or failed for good


class SubState(enum.Enum):
    """Where a subscription stands (see pua.core.subscription)."""

    SUBSCRIBING = "subscribing"  # initial SUBSCRIBE in flight (temporary dialog)
    ACTIVE = "active"  # dialog confirmed, refresh scheduled
    REFRESHING = "refreshing"  # in-dialog SUBSCRIBE in flight
    UNSUBSCRIBING = "unsubscribing"  # SUBSCRIBE with Expires: 0 in flight
    BACKOFF = "backoff"  # a retry is scheduled
    DONE = "done"  # terminated for good


@dataclass(eq=False, slots=True, kw_only=True)
class Publication:
    """A publication: the seed's ``ua_pres_t`` for PUBLISH, plus the body
    and what the engine needs to recover from errors."""

    key: RecordKey
    event_name: str
    content_type: str | None
    body: bytes | None = None  # the last body we published (processed)
    etag: str | None = None
    expires_at: float = 0.0  # when the server drops it (absolute, `now` clock)
    desired_until: float | None = None  # end of the wanted lifetime; None: for ever
    requested: int = 3600  # Expires we ask for
    tuple_id: str = ""
    version: int = 0  # PUBLISHes sent (process_body's counter)
    call_id: str = ""
    cseq: int = 0
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    outbound_proxy: str | None = None
    state: PubState = PubState.SENDING
    in_flight: str | None = None  # "initial", "modify", "refresh", "remove"
    in_flight_tx: tuple[str, str] | None = None
    pending_body: bytes | None = None  # latest update not yet sent (coalesced)
    pending_remove: bool = False
    sent_body: bytes | None = None  # body of the request in flight
    recovered_412: bool = False  # one re-PUBLISH per 412 streak
    failures: int = 0  # consecutive retryable failures (backoff exponent)
    last_status: int | None = None
    last_reason: str = ""
    api_request: bool = False  # the request in flight was asked for by the API
    callback: Any = None
    cb_param: Any = None


@dataclass(eq=False, slots=True, kw_only=True)
class Subscription:
    """A subscription: the seed's ``ua_pres_t`` for SUBSCRIBE, with its dialog."""

    key: RecordKey
    event_name: str
    remote_target: str  # Request-URI of the next request
    initial_target: str  # Request-URI of an initial SUBSCRIBE
    contact: str
    call_id: str
    from_tag: str  # ours
    to_tag: str | None = None  # theirs; None while the dialog is temporary
    cseq: int = 0  # our last CSeq
    remote_cseq: int | None = None  # last NOTIFY CSeq
    route_set: list[NameAddress] = field(default_factory=list)
    expires_at: float = 0.0
    notify_until: float = 0.0  # expiry the last NOTIFY announced
    desired_until: float | None = None
    requested: int = 3600
    outbound_proxy: str | None = None
    extra_headers: list[tuple[str, str]] = field(default_factory=list)
    state: SubState = SubState.SUBSCRIBING
    sub_state: str = "init"  # last Subscription-State: pending, active, terminated
    in_flight_tx: tuple[str, str] | None = None
    pending_unsubscribe: bool = False
    failures: int = 0
    resubscribes: int = 0  # terminations since the last active NOTIFY
    last_status: int | None = None
    last_reason: str = ""
    version: int = 0  # NOTIFYs received
    api_request: bool = False
    callback: Any = None
    cb_param: Any = None

    @property
    def dialog_state(self) -> DialogState:
        """TEMPORARY until the first 2xx or NOTIFY gives the remote tag."""
        return DialogState.TEMPORARY if self.to_tag is None else DialogState.CONFIRMED


Record = Publication | Subscription


class RecordTable:
    """Records in 2^hash_size partitions, with dialog indexes."""

    def __init__(self, hash_size: int = 9) -> None:
        if not 1 <= hash_size <= 20:
            raise ValueError(f"hash_size must be between 1 and 20, not {hash_size}")
        self.hash_size = hash_size
        self._mask = (1 << hash_size) - 1
        self._partitions: list[dict[RecordKey, Record]] = [{} for _ in range(1 << hash_size)]
        self._dialogs: dict[tuple[str, str, str], Subscription] = {}
        self._temporary: dict[tuple[str, str], Subscription] = {}
        self._count = 0

    def _partition(self, key: RecordKey) -> dict[RecordKey, Record]:
        # The seed hashes pres_uri and watcher_uri into the table.
        return self._partitions[hash((key.pres_uri, key.watcher_uri)) & self._mask]

    def __len__(self) -> int:
        return self._count

    def get(self, key: RecordKey) -> Record | None:
        """The record of ``key``, or None."""
        return self._partition(key).get(key)

    def put(self, record: Record) -> None:
        """Insert or replace ``record``."""
        partition = self._partition(record.key)
        if record.key not in partition:
            self._count += 1
        partition[record.key] = record
        if isinstance(record, Subscription):
            self.index_dialog(record)

    def remove(self, key: RecordKey) -> Record | None:
        """Delete and return the record of ``key``."""
        record = self._partition(key).pop(key, None)
        if record is not None:
            self._count -= 1
            if isinstance(record, Subscription):
                self.unindex_dialog(record)
        return record

    def index_dialog(self, sub: Subscription) -> None:
        """(Re)index ``sub`` by its current dialog identifiers."""
        self._temporary[(sub.call_id, sub.from_tag)] = sub
        if sub.to_tag is not None:
            self._dialogs[(sub.call_id, sub.from_tag, sub.to_tag)] = sub

    def unindex_dialog(self, sub: Subscription) -> None:
        """Forget the dialog identifiers of ``sub``."""
        if self._temporary.get((sub.call_id, sub.from_tag)) is sub:
            del self._temporary[(sub.call_id, sub.from_tag)]
        if (
            sub.to_tag is not None
            and self._dialogs.get((sub.call_id, sub.from_tag, sub.to_tag)) is sub
        ):
            del self._dialogs[(sub.call_id, sub.from_tag, sub.to_tag)]

    def by_dialog(
        self, call_id: str, local_tag: str, remote_tag: str | None
    ) -> Subscription | None:
        """The subscription of a dialog: confirmed match first, else the
        temporary one (same Call-ID and our tag, no remote tag yet)."""
        if remote_tag is not None:
            sub = self._dialogs.get((call_id, local_tag, remote_tag))
            if sub is not None:
                return sub
        sub = self._temporary.get((call_id, local_tag))
        if sub is not None and (sub.to_tag is None or sub.to_tag == remote_tag):
            return sub
        return None

    def records(self) -> list[Record]:
        """Every record (a copy; for listing, not for timers)."""
        return [r for partition in self._partitions for r in partition.values()]
