"""The event log interface of one shard, and the records it stores.

Contract (checked by `tests/contract/test_event_log.py` for every implementation):
- `open` takes ownership with a fencing epoch and returns the last sequence number.
- `append` writes a batch atomically: all records durable, or none and an exception.
  Sequence numbers are dense and increasing; (pool_id, pool_version) is unique.
- An append stamped with an epoch other than the file's current one raises `Fenced`.
- Snapshots are per pool and replace the previous one. A checkpoint stores the snapshots of
  all pools changed since the previous one; recovery = snapshots + events after the checkpoint.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass

from capsvc.domain.events import Event
from capsvc.storage.codec import encode_event


@dataclass(frozen=True, slots=True)
class StoredEvent:
    seq: int
    pool_id: str
    pool_version: int  # the pool's version after this event
    epoch: int  # the owner epoch that wrote it (fencing token)
    at_ms: int  # wall-clock time of the append, for people; never used for ordering
    actor: str | None  # who asked for it (admin token name), None for customers
    event: Event


@dataclass(frozen=True, slots=True)
class StoredSnapshot:
    pool_id: str
    seq: int  # the last event seq folded into it
    pool_version: int
    schema: int
    body: str


@dataclass(frozen=True, slots=True)
class LogHead:
    epoch: int
    last_seq: int
    event_count: int
    checkpoint_seq: int  # every pool's state up to this seq is in its snapshot


class EventLog(abc.ABC):
    @abc.abstractmethod
    async def open(self, epoch: int | None) -> LogHead:
        """Take the file. epoch None: embedded mode, bump the stored epoch by one.
        Otherwise store `epoch`, which must be newer than the stored one (else `Fenced`)."""

    @abc.abstractmethod
    async def append(self, events: list[StoredEvent]) -> None:
        """Durably append a batch; all or nothing."""

    @abc.abstractmethod
    def read_from(self, after_seq: int, batch: int = 5000) -> AsyncIterator[list[StoredEvent]]:
        """Every event with seq > after_seq, in order, in lists of at most `batch`."""

    async def read_encoded_from(
        self, after_seq: int, batch: int = 5000
    ) -> AsyncIterator[list[tuple[int, str, int, str, int, str]]]:
        """`read_from` with bodies still encoded: (seq, pool_id, pool_version, type, schema,
        body), so that recovery decodes only the events it folds in. This default encodes
        what `read_from` decoded; a backend that stores the encoded rows returns them as is."""
        async for chunk in self.read_from(after_seq, batch):
            yield [(e.seq, e.pool_id, e.pool_version, *encode_event(e.event)) for e in chunk]

    @abc.abstractmethod
    async def pool_events(self, pool_id: str, after_version: int, limit: int) -> list[StoredEvent]:
        """One pool's events with pool_version > after_version, oldest first."""

    @abc.abstractmethod
    async def save_checkpoint(self, snapshots: list[StoredSnapshot], checkpoint_seq: int) -> None:
        """Store snapshots of every pool changed since the last checkpoint, and move the
        checkpoint to `checkpoint_seq`, atomically: recovery replays only events after it."""

    @abc.abstractmethod
    async def last_seq(self) -> int:
        """The highest stored seq (after a failed append, the truth about what committed)."""

    @abc.abstractmethod
    async def load_snapshots(self) -> list[StoredSnapshot]: ...

    @abc.abstractmethod
    async def load_snapshot(self, pool_id: str) -> StoredSnapshot | None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...
