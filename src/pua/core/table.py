"""The records table: one dict by key, one dialog index by Call-ID, and
counts by state kept as records move."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

from .records import PubState, Record, RecordKey, SubscriptionRecord, SubState

__all__ = ["RecordTable", "partition_of"]


def partition_of(pres_uri: str, watcher_uri: str | None, hash_size: int) -> int:
    """The partition (0 .. 2^hash_size - 1) of a record of ``pres_uri``
    (and ``watcher_uri``, for a subscription), as the seed hashes them.

    Every node of a cluster must name the same partition for a record, so
    this is CRC-32, not Python's ``hash`` (salted per process)."""
    text = f"{pres_uri}\n{watcher_uri or ''}"
    return zlib.crc32(text.encode("utf-8", "surrogatepass")) & ((1 << hash_size) - 1)


class RecordTable:
    """Records by key, and subscriptions by dialog.

    The seed splits its table into 2^hash_size partitions, each with its
    own lock, for Kamailio's worker processes.  Here ``hash_size`` keeps
    only its meaning as the number of partitions (the unit of ownership
    when several nodes share a database): :meth:`partition` names a key's
    partition, and no structure is allocated per partition.  The table is
    one dict; the dialog index is one dict by Call-ID (every dialog we start
    has a Call-ID of its own), whose record is then checked for our tag and
    theirs.
    """

    __slots__ = ("_by_state", "_dialogs", "_mask", "_publications", "_records", "hash_size")

    def __init__(self, hash_size: int = 9) -> None:
        if not 1 <= hash_size <= 20:
            raise ValueError(f"hash_size must be between 1 and 20, not {hash_size}")
        self.hash_size = hash_size
        self._mask = (1 << hash_size) - 1
        # Records are their own keys: looked up with a RecordKey (equal to
        # the record's, same hash), stored without one.
        self._records: dict[object, Record] = {}
        self._dialogs: dict[str, SubscriptionRecord] = {}
        self._publications = 0
        self._by_state: dict[PubState | SubState, int] = dict.fromkeys([*PubState, *SubState], 0)

    def partition(self, key: RecordKey | Record) -> int:
        """The partition (0 .. 2^hash_size - 1) of ``key``: the seed hashes
        pres_uri and watcher_uri (see :func:`partition_of`)."""
        return partition_of(key.pres_uri, key.watcher_uri, self.hash_size)

    def __len__(self) -> int:
        return len(self._records)

    @property
    def publications(self) -> int:
        """Publications held."""
        return self._publications

    @property
    def subscriptions(self) -> int:
        """Subscriptions held."""
        return len(self._records) - self._publications

    def get(self, key: RecordKey | Record) -> Record | None:
        """The record of ``key``, or None."""
        return self._records.get(key)

    def holds(self, record: Record) -> bool:
        """Whether ``record`` itself (not another with its key) is held."""
        return record.held

    def by_state(self) -> dict[PubState | SubState, int]:
        """Records held in each state (kept as records move, O(1))."""
        return dict(self._by_state)

    def moved(self, record: Record, old: PubState | SubState) -> None:
        """``record`` went from state ``old`` to its current one."""
        if old is not record.state and record.held:
            self._by_state[old] -= 1
            self._by_state[record.state] += 1

    def put(self, record: Record) -> None:
        """Insert ``record`` (its key must be free, or held by itself)."""
        old = self._records.setdefault(record, record)
        if old is not record:
            self.remove(old.key)  # another record of this key: replaced
            self._records[record] = record
        if not record.hold():
            return  # already held: nothing to count
        self._by_state[record.state] += 1
        if isinstance(record, SubscriptionRecord):
            self.index_dialog(record)
        else:
            self._publications += 1

    def claim_all(self, records: Iterable[Record]) -> list[Record]:
        """Put each of ``records``, in their order, counted in its current
        state, unless its key is held (by another record or by itself):
        those are returned, unchanged.  What taking back stored records
        needs, one lookup a record (a restart puts a million)."""
        put = self._records.setdefault
        by_state = self._by_state
        dialogs = self._dialogs
        lost: list[Record] = []
        publications = 0
        for record in records:
            if put(record, record) is not record or not record.hold():
                lost.append(record)
                continue
            by_state[record.state] += 1
            if isinstance(record, SubscriptionRecord):
                dialogs[record.call_id] = record
            else:
                publications += 1
        self._publications += publications
        return lost

    def remove(self, key: RecordKey) -> Record | None:
        """Delete and return the record of ``key``."""
        record = self._records.pop(key, None)
        if record is None:
            return None
        record.held = False
        self._by_state[record.state] -= 1
        if isinstance(record, SubscriptionRecord):
            self.unindex_dialog(record)
        else:
            self._publications -= 1
        if not self._records:
            self._records = {}  # a dict keeps its high-water size: start afresh
            self._dialogs = {}
        return record

    def index_dialog(self, sub: SubscriptionRecord) -> None:
        """Index ``sub`` by its current Call-ID."""
        self._dialogs[sub.call_id] = sub

    def unindex_dialog(self, sub: SubscriptionRecord) -> None:
        """Forget the Call-ID of ``sub``."""
        if self._dialogs.get(sub.call_id) is sub:
            del self._dialogs[sub.call_id]

    def by_dialog(
        self, call_id: str, local_tag: str, remote_tag: str | None
    ) -> SubscriptionRecord | None:
        """The subscription of a dialog: same Call-ID and our tag, and their
        tag when the dialog is confirmed (while it is temporary, any)."""
        sub = self._dialogs.get(call_id)
        if sub is None or sub.from_tag != local_tag:
            return None
        if sub.to_tag is not None and sub.to_tag != remote_tag:
            return None
        return sub

    def __iter__(self) -> Any:
        """Every record (iterate a copy if the table may change meanwhile)."""
        return iter(self._records.values())
