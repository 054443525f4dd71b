"""Specifies the checkpoint policy: a pool's snapshots cost O(1) per event however big it grows,
replay after a crash stays bounded, and recovery rebuilds exactly the state that was committed,
whichever pools the last checkpoints left to later."""

from __future__ import annotations

import asyncio
import copy
import json
import shutil
import sqlite3
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.domain.views import pool_view
from capsvc.shard.shard import _SNAPSHOT_SHARE, CommandResult, Shard, ShardSettings
from capsvc.storage import codec
from capsvc.storage.codec import snapshot_state
from capsvc.storage.log import EventLog, StoredSnapshot
from capsvc.storage.memory_log import MemoryEventLog
from capsvc.storage.sqlite_log import SqliteEventLog

NOW = 1_893_400_000_000  # 2029-12-31T08:26:40Z: before the 2030-01-01 slots
WAIT_S = 5  # upper bound on any wait that should end promptly; never reached when green
_nonces = iter(range(1, 1 << 30))


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, timeout=60))


def define(pool_id: str, capacity: int) -> cmd.DefinePool:
    slot = ev.SlotSpec("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00Z", capacity)
    return cmd.DefinePool(pool_id, "van", "berlin", "2030-01-01", None, (slot,))


def reserve(pool_id: str, key: str | None = None) -> cmd.ReserveCapacity:
    return cmd.ReserveCapacity(pool_id, "a", 1, key, None, f"{next(_nonces):08x}", NOW)


async def start_shard(log: EventLog, snapshot_every_events: int) -> Shard:
    shard = Shard(7, log, _settings(snapshot_every_events), clock_ms=lambda: NOW)
    shard.on_crash = _no_crash
    await shard.start()
    return shard


async def submit(shard: Shard, command: cmd.Command) -> CommandResult:
    return await asyncio.wait_for(shard.submit(command), WAIT_S)


def shard_state(shard: Shard) -> dict[str, object]:
    """Everything observable about every pool (decoding whatever is still undecoded)."""
    return {
        pool_id: (
            pool_view(pool),
            [
                (r.reservation_id, r.slot_id, r.units, r.idempotency_key, r.active)
                for r in pool.reservations.values()
            ],
            list(pool.keys.items()),
            pool.reservation_count,
        )
        for pool_id, pool in shard.pools.items()
    }


class RecordingLog(MemoryEventLog):
    """A memory log that counts the snapshot work: one unit per slot or reservation written."""

    def __init__(self) -> None:
        super().__init__()
        self.snapshots_written = 0
        self.units_written = 0

    async def save_checkpoint(self, snapshots: list[StoredSnapshot], checkpoint_seq: int) -> None:
        await super().save_checkpoint(snapshots, checkpoint_seq)
        self.snapshots_written += len(snapshots)
        self.units_written += sum(_units(s.body) for s in snapshots)


def _units(body: str) -> int:
    header = json.loads(body.partition("\n")[0])
    return header["reservation_count"] + len(header["slots"])


async def release(shard: Shard, pool_id: str, reservation_id: str) -> None:
    await submit(shard, cmd.ReleaseReservation(pool_id, reservation_id, NOW))


def test_a_growing_hot_pool_costs_snapshot_work_in_proportion_to_its_events():
    """Before: every checkpoint (every 10 events here) rewrote the whole pool, so 2,000
    reservations cost about 200,000 units of snapshot work; now at most a few per event."""

    async def scenario():
        log = RecordingLog()
        shard = await start_shard(log, snapshot_every_events=10)
        await submit(shard, define("hot", capacity=10_000))
        for _ in range(2_000):
            await submit(shard, reserve("hot"))
        assert log.units_written <= 2 * _SNAPSHOT_SHARE * shard.event_count
        assert 10 <= log.snapshots_written <= 100  # snapshots still follow the pool
        await shard.drain()

    run(scenario())


def test_a_cold_pool_left_behind_is_snapshotted_once_the_replay_window_passes_it():
    """A pool changed once and never again must not hold the checkpoint back for ever."""

    async def scenario():
        log = RecordingLog()
        shard = await start_shard(log, snapshot_every_events=10)
        await submit(shard, define("cold", capacity=10))
        await submit(shard, define("hot", capacity=10_000))
        for n in range(200):
            await submit(shard, reserve("cold" if n == 0 else "hot"))
        head = await log.last_seq()
        assert "cold" not in shard._unsnapshotted  # snapshotted by now
        crashed = copy.deepcopy(log)
        crashed.is_open = False
        recovered = await start_shard(crashed, snapshot_every_events=10)
        assert shard_state(recovered) == shard_state(shard)
        assert recovered.replayed_events < head
        await shard.drain()
        await recovered.drain()

    run(scenario())


commands = st.lists(
    st.tuples(
        st.sampled_from(("p0", "p1", "p2", "p3")),
        st.sampled_from(("reserve", "reserve", "reserve", "keyed", "release")),
        st.integers(min_value=0, max_value=1_000),
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=60, deadline=None, database=None)
@given(commands=commands, every=st.integers(min_value=1, max_value=9), crash_at=st.data())
def test_after_a_crash_anywhere_recovery_rebuilds_the_committed_state(commands, every, crash_at):
    """Crash (the log as it is, no final checkpoint) after any command of a random mix of
    pools of very different sizes: recovery gives back exactly what was committed, keys
    included, and replays no more than the replay window and one checkpoint interval."""
    stop = crash_at.draw(st.integers(min_value=1, max_value=len(commands)))

    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log, snapshot_every_events=every)
        for pool_id in ("p0", "p1", "p2", "p3"):
            await submit(shard, define(pool_id, capacity=1_000))
        made: dict[str, list[str]] = {p: [] for p in ("p0", "p1", "p2", "p3")}
        for pool_id, action, pick in commands[:stop]:
            if action == "release" and made[pool_id]:
                await release(shard, pool_id, made[pool_id][pick % len(made[pool_id])])
            elif action != "release":
                key = f"k{pick % 7}" if action == "keyed" else None
                result = await submit(shard, reserve(pool_id, key=key))
                made[pool_id].append(result.body["reservation_id"])
        crashed = copy.deepcopy(log)
        crashed.is_open = False
        window = shard._replay_window()
        recovered = await start_shard(crashed, snapshot_every_events=every)
        assert shard_state(recovered) == shard_state(shard)
        assert recovered.replayed_events <= window + every
        # and it goes on deciding the same way: a retried key is still answered
        keyed = [c for c in commands[:stop] if c[1] == "keyed"]
        if keyed:
            pool_id, _, pick = keyed[-1]
            again = await submit(recovered, reserve(pool_id, key=f"k{pick % 7}"))
            assert again.replayed
        await shard.drain()
        await recovered.drain()

    run(scenario())


def test_a_real_file_copied_mid_run_recovers_the_same_state(tmp_path: Path):
    """The same on SQLite: the shard file and its WAL copied while the writer runs (what a
    crash leaves), opened by a fresh shard."""

    async def scenario():
        path = tmp_path / "shard.sqlite3"
        shard = await start_shard(SqliteEventLog(path, synchronous="NORMAL"), 25)
        await submit(shard, define("hot", capacity=100_000))
        for i in range(6):
            await submit(shard, define(f"cold{i}", capacity=10))
        for n in range(600):
            result = await submit(shard, reserve("hot", key=f"k{n}"))
            if n % 7 == 0:
                await release(shard, "hot", result.body["reservation_id"])
            if n % 100 == 0:
                await submit(shard, reserve(f"cold{n // 100}"))
        copy_path = tmp_path / "copy.sqlite3"
        shutil.copyfile(path, copy_path)
        shutil.copyfile(path.with_name(path.name + "-wal"), copy_path.with_name("copy.sqlite3-wal"))
        recovered = await start_shard(SqliteEventLog(copy_path), 25)
        assert 0 < recovered.replayed_events < shard.event_count
        assert shard_state(recovered) == shard_state(shard)
        await shard.drain()
        await recovered.drain()

    run(scenario())


def _settings(every: int) -> ShardSettings:
    return ShardSettings(snapshot_every_events=every)


def _no_crash(error: BaseException) -> None:
    raise AssertionError(f"shard writer crashed: {error!r}")


def test_a_file_with_schema_1_snapshots_recovers_and_goes_on(tmp_path: Path):
    """A shard file checkpointed by a build before schema 2: its snapshots load, the events
    after them replay, keys are still answered, and the next checkpoint writes schema 2."""

    async def scenario():
        path = tmp_path / "old.sqlite3"
        shard = await start_shard(SqliteEventLog(path), 1_000)
        await submit(shard, define("p", capacity=100))
        first = await submit(shard, reserve("p", key="k1"))
        await release(shard, "p", first.body["reservation_id"])
        await submit(shard, reserve("p", key="k2"))
        old = json.dumps(snapshot_state(shard.pools["p"]), separators=(",", ":"))
        await shard.log.save_checkpoint(
            [StoredSnapshot("p", shard.last_seq, shard.pools["p"].version, 1, old)],
            shard.last_seq,
        )
        await submit(shard, reserve("p", key="k3"))  # after the checkpoint: replayed
        before = shard_state(shard)
        shard._writer.cancel()  # a crash: the writer stops, no final checkpoint
        await shard.log.close()

        recovered = await start_shard(SqliteEventLog(path), 1_000)
        assert recovered.replayed_events == 1
        assert shard_state(recovered) == before
        again = await submit(recovered, reserve("p", key="k1"))
        assert again.replayed and again.body["status"] == "active"  # as first answered
        await recovered.drain()
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT schema FROM snapshots").fetchall() == [
                (codec.SNAPSHOT_SCHEMA,)]

    run(scenario())
