"""An in-memory event log with the same contract as the SQLite one (for unit tests and
simulation). It round-trips every event through the codec, so it also catches encoding bugs."""

from __future__ import annotations

from collections.abc import AsyncIterator

from capsvc.errors import Fenced, StorageUnavailable
from capsvc.storage.codec import decode_event, encode_event
from capsvc.storage.log import EventLog, LogHead, StoredEvent, StoredSnapshot


class MemoryEventLog(EventLog):
    def __init__(self) -> None:
        self._rows: list[tuple] = []
        self._versions: set[tuple[str, int]] = set()
        self._snapshots: dict[str, StoredSnapshot] = {}
        self._checkpoint_seq = 0
        self.epoch = 0
        self.is_open = False
        self.fail_next_append: Exception | None = None  # fault injection for tests

    async def open(self, epoch: int | None) -> LogHead:
        if self.is_open:
            raise StorageUnavailable("memory log: locked by another owner")
        if epoch is None:
            epoch = self.epoch + 1
        elif epoch <= self.epoch:
            raise Fenced(f"epoch {epoch} is not newer than {self.epoch}")
        self.epoch = epoch
        self.is_open = True
        last = self._rows[-1][0] if self._rows else 0
        return LogHead(epoch, last, len(self._rows), self._checkpoint_seq)

    async def append(self, events: list[StoredEvent]) -> None:
        assert self.is_open
        if self.fail_next_append is not None:
            error, self.fail_next_append = self.fail_next_append, None
            raise error
        last = self._rows[-1][0] if self._rows else 0
        versions = set()
        for i, e in enumerate(events):
            if e.epoch != self.epoch:
                raise Fenced("memory log: a newer owner holds this shard")
            key = (e.pool_id, e.pool_version)
            if e.seq != last + 1 + i or key in self._versions or key in versions:
                raise Fenced("memory log: append conflicts with stored events")
            versions.add(key)
        for e in events:
            self._rows.append(
                (
                    e.seq,
                    e.pool_id,
                    e.pool_version,
                    e.epoch,
                    e.at_ms,
                    e.actor,
                    *encode_event(e.event),
                )
            )
        self._versions |= versions

    @staticmethod
    def _decode(row: tuple) -> StoredEvent:
        seq, pool_id, version, epoch, at_ms, actor, type_name, schema, body = row
        return StoredEvent(
            seq, pool_id, version, epoch, at_ms, actor, decode_event(type_name, schema, body)
        )

    async def read_from(
        self, after_seq: int, batch: int = 5000
    ) -> AsyncIterator[list[StoredEvent]]:
        rows = [r for r in self._rows if r[0] > after_seq]
        for i in range(0, len(rows), batch):
            yield [self._decode(r) for r in rows[i : i + batch]]

    async def pool_events(self, pool_id: str, after_version: int, limit: int) -> list[StoredEvent]:
        rows = [r for r in self._rows if r[1] == pool_id and r[2] > after_version]
        return [self._decode(r) for r in rows[:limit]]

    async def save_checkpoint(self, snapshots: list[StoredSnapshot], checkpoint_seq: int) -> None:
        assert self.is_open
        for s in snapshots:
            self._snapshots[s.pool_id] = s
        self._checkpoint_seq = checkpoint_seq

    async def last_seq(self) -> int:
        return self._rows[-1][0] if self._rows else 0

    async def load_snapshots(self) -> list[StoredSnapshot]:
        return list(self._snapshots.values())

    async def load_snapshot(self, pool_id: str) -> StoredSnapshot | None:
        return self._snapshots.get(pool_id)

    async def close(self) -> None:
        self.is_open = False
