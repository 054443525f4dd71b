"""Specifies the event log contract, which every storage backend (memory, SQLite) must keep."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from capsvc.domain import events as ev
from capsvc.errors import Fenced, ShardCorrupt, StorageUnavailable
from capsvc.storage.codec import decode_event
from capsvc.storage.log import EventLog, LogHead, StoredEvent, StoredSnapshot
from capsvc.storage.memory_log import MemoryEventLog
from capsvc.storage.sqlite_log import SqliteEventLog

SLOT = ev.SlotSpec("s", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00Z", 100)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def event_for(pool_id: str, version: int) -> ev.Event:
    """A plausible event for the given pool version (the log does not interpret events)."""
    if version == 1:
        return ev.PoolDefined(pool_id, "van", "berlin", "2030-01-01", None, (SLOT,))
    if version % 3 == 0:
        return ev.ReservationReleased(f"{pool_id}~{version - 1:x}.abcd", 2_000 + version)
    return ev.CapacityReserved(
        f"{pool_id}~{version:x}.abcd", "s", version, f"o-{version}", f"k{version}", 1_000 + version
    )


def record(seq: int, pool_id: str, version: int, epoch: int) -> StoredEvent:
    actor = "admin" if version == 1 else None
    return StoredEvent(
        seq, pool_id, version, epoch, 1_700_000_000_000 + seq, actor, event_for(pool_id, version)
    )


def records(epoch: int, *pool_ids: str, first_seq: int = 1, versions=None) -> list[StoredEvent]:
    """One event per pool id given, in order, each pool's version counting up from 1
    (or from `versions[pool]` + 1)."""
    versions = dict(versions or {})
    out = []
    for i, pool_id in enumerate(pool_ids):
        versions[pool_id] = versions.get(pool_id, 0) + 1
        out.append(record(first_seq + i, pool_id, versions[pool_id], epoch))
    return out


async def read_all(log: EventLog, after_seq: int = 0, batch: int = 5000) -> list[StoredEvent]:
    return [e async for chunk in log.read_from(after_seq, batch) for e in chunk]


def snapshot(pool_id: str, seq: int, version: int, body: str = "{}") -> StoredSnapshot:
    return StoredSnapshot(pool_id, seq, version, 1, body)


@dataclass
class Backend:
    """One store, and how to get an owner's handle on it (memory: the store is the object)."""

    name: str
    handle: Callable[[], EventLog]


@pytest.fixture(params=["memory", "sqlite"])
def backend(request, tmp_path: Path) -> Backend:
    if request.param == "memory":
        store = MemoryEventLog()
        return Backend("memory", lambda: store)
    path = tmp_path / "shard-0007.db"
    return Backend("sqlite", lambda: SqliteEventLog(path, busy_timeout_ms=100))


class TestEventLogContract:
    def test_open_without_epoch_bumps_the_stored_epoch(self, backend):
        async def scenario():
            log = backend.handle()
            head = await log.open(None)
            assert head == LogHead(epoch=1, last_seq=0, event_count=0, checkpoint_seq=0)
            await log.close()
            log = backend.handle()
            assert (await log.open(None)).epoch == 2
            await log.close()

        run(scenario())

    def test_an_explicit_epoch_must_be_newer_than_the_stored_one(self, backend):
        async def scenario():
            log = backend.handle()
            assert (await log.open(5)).epoch == 5
            await log.close()
            for stale in (5, 4, 1):
                with pytest.raises(Fenced):
                    await backend.handle().open(stale)
            log = backend.handle()
            assert (await log.open(None)).epoch == 6  # refused opens changed nothing
            await log.close()
            log = backend.handle()
            assert (await log.open(9)).epoch == 9
            await log.close()

        run(scenario())

    def test_events_read_back_in_order_as_appended(self, backend):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            first = records(epoch, "a", "b", "a")
            second = records(epoch, "a", "c", first_seq=4, versions={"a": 2, "b": 1})
            await log.append(first)
            await log.append(second)
            assert await read_all(log) == first + second
            chunks = [[e.seq for e in c] async for c in log.read_from(0, batch=2)]
            assert chunks == [[1, 2], [3, 4], [5]]
            assert await log.last_seq() == 5
            await log.close()

        run(scenario())

    def test_read_from_skips_events_up_to_after_seq(self, backend):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            await log.append(records(epoch, "a", "a", "a", "a", "a"))
            assert [e.seq for e in await read_all(log, after_seq=3)] == [4, 5]
            assert await read_all(log, after_seq=5) == []
            await log.close()

        run(scenario())

    def test_encoded_reads_give_the_same_events_still_encoded(self, backend):
        """Recovery reads bodies undecoded, to decode only what no snapshot holds."""

        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            appended = records(epoch, "a", "b", "a", "a", "c")
            await log.append(appended)
            rows = [r async for chunk in log.read_encoded_from(1, batch=2) for r in chunk]
            assert [r[:3] for r in rows] == [
                (e.seq, e.pool_id, e.pool_version) for e in appended[1:]
            ]
            assert [decode_event(*r[3:]) for r in rows] == [e.event for e in appended[1:]]
            chunks = [len(c) async for c in log.read_encoded_from(0, batch=2)]
            assert chunks == [2, 2, 1]
            assert [r async for c in log.read_encoded_from(5) for r in c] == []
            await log.close()

        run(scenario())

    def test_pool_events_pages_one_pools_events_by_version(self, backend):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            stored = records(epoch, "a", "b", "a", "b", "a")
            await log.append(stored)
            a_events = [e for e in stored if e.pool_id == "a"]
            assert await log.pool_events("a", 0, 2) == a_events[:2]
            assert await log.pool_events("a", 2, 2) == a_events[2:]
            assert await log.pool_events("a", 3, 2) == []
            assert [e.pool_version for e in await log.pool_events("b", 1, 10)] == [2]
            assert await log.pool_events("nope", 0, 10) == []
            await log.close()

        run(scenario())

    @pytest.mark.parametrize("stamp", ["older", "newer"])
    def test_an_append_stamped_with_another_epoch_is_fenced_and_stores_nothing(
        self, backend, stamp
    ):
        async def scenario():
            log = backend.handle()
            await log.open(None)
            await log.close()
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            other = epoch - 1 if stamp == "older" else epoch + 1
            good = records(epoch, "a")
            await log.append(good)
            batch = [record(2, "a", 2, epoch), record(3, "a", 3, other)]
            with pytest.raises(Fenced):
                await log.append(batch)
            assert await read_all(log) == good
            assert await log.last_seq() == 1
            await log.close()

        run(scenario())

    @pytest.mark.parametrize(
        "clash",
        [
            pytest.param(
                lambda e: [record(3, "a", 3, e), record(4, "a", 2, e)], id="stored version"
            ),
            pytest.param(
                lambda e: [record(3, "b", 1, e), record(4, "b", 1, e)], id="version in batch"
            ),
            pytest.param(lambda e: [record(3, "b", 1, e), record(2, "c", 1, e)], id="stored seq"),
            pytest.param(lambda e: [record(3, "b", 1, e), record(3, "c", 1, e)], id="seq in batch"),
        ],
    )
    def test_a_clashing_batch_is_fenced_and_stores_nothing(self, backend, clash):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            good = records(epoch, "a", "a")
            await log.append(good)
            with pytest.raises(Fenced):
                await log.append(clash(epoch))
            assert await read_all(log) == good
            assert await log.pool_events("b", 0, 10) == []
            # a refused batch leaves the log usable
            follow_up = records(epoch, "b", first_seq=3)
            await log.append(follow_up)
            assert await read_all(log) == good + follow_up
            await log.close()

        run(scenario())

    @pytest.mark.parametrize(
        "seqs", [(4, 5), (1, 2), (4, 3)], ids=["gap", "restart at 1", "out of order"]
    )
    def test_a_batch_whose_seqs_do_not_follow_on_is_fenced_and_stores_nothing(self, backend, seqs):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            good = records(epoch, "a", "a")
            await log.append(good)
            with pytest.raises(Fenced):
                await log.append([record(seqs[0], "b", 1, epoch), record(seqs[1], "b", 2, epoch)])
            assert await read_all(log) == good
            assert await log.last_seq() == 2
            await log.close()

        run(scenario())

    def test_a_checkpoint_stores_snapshots_that_replace_older_ones(self, backend):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            await log.append(records(epoch, "a", "b", "a", "a", "b"))
            assert await log.load_snapshots() == []
            assert await log.load_snapshot("a") is None
            a1, b1 = snapshot("a", 3, 2, '{"v":2}'), snapshot("b", 2, 1, '{"v":1}')
            await log.save_checkpoint([a1, b1], 3)
            assert sorted(await log.load_snapshots(), key=lambda s: s.pool_id) == [a1, b1]
            a2 = snapshot("a", 4, 3, '{"v":3}')
            await log.save_checkpoint([a2], 4)
            assert await log.load_snapshot("a") == a2
            assert await log.load_snapshot("b") == b1
            assert await log.load_snapshot("nope") is None
            await log.close()
            log = backend.handle()
            head = await log.open(None)
            assert head.checkpoint_seq == 4
            assert sorted(await log.load_snapshots(), key=lambda s: s.pool_id) == [a2, b1]
            await log.close()

        run(scenario())

    def test_the_head_after_reopening_describes_what_is_stored(self, backend):
        async def scenario():
            log = backend.handle()
            epoch = (await log.open(None)).epoch
            assert await log.last_seq() == 0
            stored = records(epoch, "a", "b", "a", "c", "a", "b", "a")
            await log.append(stored[:4])
            await log.append(stored[4:])
            await log.save_checkpoint([snapshot("a", 3, 2)], 3)
            await log.close()
            log = backend.handle()
            head = await log.open(None)
            assert head == LogHead(epoch=epoch + 1, last_seq=7, event_count=7, checkpoint_seq=3)
            assert await log.last_seq() == 7
            assert await read_all(log) == stored  # older epochs' events stay readable
            await log.append(records(head.epoch, "d", first_seq=8))
            assert await log.last_seq() == 8
            await log.close()

        run(scenario())

    def test_a_second_owner_cannot_open_while_the_first_holds_the_log(self, backend):
        async def scenario():
            first = backend.handle()
            await first.open(None)
            second = backend.handle()
            with pytest.raises(StorageUnavailable):
                await second.open(None)
            await first.close()
            assert (await second.open(None)).epoch == 2
            await second.close()

        run(scenario())


# -- SQLite only -----------------------------------------------------------------------------
class TestSqliteEventLogFile:
    def test_the_file_is_in_wal_mode_and_survives_reopening(self, tmp_path):
        path = tmp_path / "shard.db"

        async def scenario():
            log = SqliteEventLog(path)
            epoch = (await log.open(None)).epoch
            stored = records(epoch, "a", "b", "a")
            await log.append(stored)
            await log.close()
            with sqlite3.connect(path) as db:
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 3
            db.close()
            log = SqliteEventLog(path)
            head = await log.open(None)
            assert (head.epoch, head.last_seq) == (2, 3)
            assert await read_all(log) == stored
            await log.close()

        run(scenario())

    def test_a_garbage_file_is_corrupt_and_left_untouched(self, tmp_path):
        path = tmp_path / "shard.db"
        garbage = random.Random(7).randbytes(64 * 1024)
        path.write_bytes(garbage)

        async def scenario():
            log = SqliteEventLog(path, busy_timeout_ms=100)
            with pytest.raises(ShardCorrupt):
                await log.open(None)
            await log.close()

        run(scenario())
        assert path.read_bytes() == garbage

    def test_an_undecodable_stored_event_reads_as_corrupt(self, tmp_path):
        path = tmp_path / "shard.db"

        async def scenario():
            log = SqliteEventLog(path)
            epoch = (await log.open(None)).epoch
            await log.append(records(epoch, "a"))
            await log.close()
            with sqlite3.connect(path) as db:
                db.execute("UPDATE events SET type = 'FromTheFuture' WHERE seq = 1")
            db.close()
            log = SqliteEventLog(path)
            await log.open(None)
            with pytest.raises(ShardCorrupt):
                await read_all(log)
            with pytest.raises(ShardCorrupt):
                await log.pool_events("a", 0, 10)
            await log.close()

        run(scenario())
