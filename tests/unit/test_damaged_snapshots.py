"""Specifies what the shard does with a snapshot whose reservations turn out damaged.

A schema 2 snapshot decodes its reservations on first use, so the damage shows up wherever
that first use is: a command, a read, the replay of a release, a checkpoint. Everywhere the
pool is rebuilt from all its events, given a sound snapshot, and the caller gets the answer an
undamaged shard would give. Events that cannot rebuild it fail the shard closed.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from capsvc.domain import commands as cmd
from capsvc.domain.pool import KeyRetention
from capsvc.errors import ShardCorrupt, ShardUnavailable
from capsvc.shard.shard import Shard, ShardSettings, ShardState
from capsvc.storage.codec import decode_snapshot
from capsvc.storage.memory_log import MemoryEventLog
from tests.unit.test_shard import (
    NOW,
    define,
    reserve,
    run,
    shard_state,
    start_shard,
    state_of,
    submit,
)


class Rebuilds:
    """Records `ShardObserver.rebuilt` (the one observer call these tests look at)."""

    def __init__(self) -> None:
        self.pools: list[str] = []

    def rebuilt(self, shard: Shard, pool_id: str) -> None:
        self.pools.append(pool_id)

    def __getattr__(self, name: str):  # every other observer call only counts
        return lambda *args, **kwargs: None


def damage(log: MemoryEventLog, pool_id: str) -> None:
    """Cut the reservation columns of the pool's stored snapshot short."""
    snap = log._snapshots[pool_id]
    header, newline, columns = snap.body.partition("\n")
    assert newline, "the snapshot has reservation columns to damage"
    log._snapshots[pool_id] = dataclasses.replace(snap, body=f"{header}\n{columns[:-7]}")


def snapshot_is_sound(log: MemoryEventLog, pool_id: str) -> bool:
    snap = log._snapshots[pool_id]
    pool = decode_snapshot(snap.schema, snap.body, KeyRetention())
    pool.reservations  # noqa: B018 (raises if still damaged)
    return pool.version == snap.pool_version


@pytest.fixture
def observer():
    rebuilds = Rebuilds()
    Shard.observer = rebuilds
    yield rebuilds
    Shard.observer = None


async def a_drained_disk(**settings) -> tuple[MemoryEventLog, dict, list[str]]:
    """Two pools with reservations (one released, keys remembered), checkpointed by a drain."""
    log = MemoryEventLog()
    shard = await start_shard(log, **settings)
    await submit(shard, define("p1", capacity=10))
    await submit(shard, define("p2", capacity=10))
    ids = []
    for i in range(4):
        made = await submit(shard, reserve("p1", 1, key=f"k{i}", order_ref=f"o{i}"))
        ids.append(made.body["reservation_id"])
    await submit(shard, reserve("p2", 2, key="k0"))
    await submit(shard, cmd.ReleaseReservation("p1", ids[1], NOW))
    before = shard_state(shard)
    await shard.drain()
    assert not shard.crashes
    return log, before, ids


async def crash_with_damage(log: MemoryEventLog, commands: list) -> tuple[MemoryEventLog, dict]:
    """Run `commands` after the last checkpoint, then crash: the disk as the crash left it
    (those events not in any snapshot), with p1's snapshot damaged; and the state before."""
    shard = await start_shard(log, snapshot_every_events=1000)
    for command in commands:
        await submit(shard, command)
    crashed = copy.deepcopy(log)
    crashed.is_open = False
    before = shard_state(shard)
    await shard.drain()
    damage(crashed, "p1")
    return crashed, before


def test_a_command_on_a_damaged_pool_is_decided_after_the_pool_is_rebuilt(observer):
    async def scenario():
        log, before, ids = await a_drained_disk()
        sound = copy.deepcopy(log)
        damage(log, "p1")
        shard, reference = await start_shard(log), await start_shard(sound)
        assert observer.pools == []  # nothing needed the reservations yet
        again = reserve("p1", 1, key="k0", order_ref="o0")  # an idempotent replay
        fresh = reserve("p1", 2, key="k9")
        for command in (again, fresh):
            got = await submit(shard, command)
            want = await submit(reference, command)
            assert (got.body, got.created, got.replayed) == (want.body, want.created, want.replayed)
        assert shard_state(shard) == shard_state(reference)
        assert observer.pools == ["p1"]
        assert snapshot_is_sound(log, "p1")
        await shard.drain()
        await reference.drain()
        restarted = await start_shard(log)
        assert shard_state(restarted) == shard_state(reference)
        await restarted.drain()
        assert not shard.crashes and not restarted.crashes
        assert observer.pools == ["p1"]  # rebuilt once: its new snapshot is sound

    run(scenario())


def test_a_read_of_a_reservation_in_a_damaged_pool_rebuilds_it_and_answers(observer):
    async def scenario():
        log, before, ids = await a_drained_disk()
        damage(log, "p1")
        shard = await start_shard(log)
        pool, reservation = await shard.read_reservation("p1", ids[1])
        assert reservation is not None and reservation.active is False
        assert reservation.order_ref == "o1"
        assert state_of(pool) == before["p1"]
        assert (await shard.read_reservation("p1", "p1~nope"))[1] is None
        assert observer.pools == ["p1"] and snapshot_is_sound(log, "p1")
        assert shard_state(shard) == before
        await shard.drain()
        assert not shard.crashes

    run(scenario())


def test_recovery_rebuilds_a_damaged_pool_that_a_replayed_event_needs(observer):
    async def scenario():
        log, _, ids = await a_drained_disk()
        release = cmd.ReleaseReservation("p1", ids[2], NOW)  # its replay decodes p1
        crashed, before = await crash_with_damage(log, [release, reserve("p2", 1)])
        recovered = await start_shard(crashed)
        assert recovered.replayed_events == 1  # p2's reserve; p1 was rebuilt from its events
        assert observer.pools == ["p1"] and snapshot_is_sound(crashed, "p1")
        assert shard_state(recovered) == before
        await recovered.drain()
        assert not recovered.crashes

    run(scenario())


def test_a_checkpoint_that_meets_a_damaged_pool_rebuilds_it_and_goes_on(observer):
    async def scenario():
        log, _, _ = await a_drained_disk()
        # replayed onto the undecoded pool, these are set aside, not decoded
        crashed, before = await crash_with_damage(log, [reserve("p1", 1) for _ in range(3)])
        recovered = await start_shard(crashed, snapshot_every_events=1)
        assert observer.pools == []
        await submit(recovered, reserve("p2", 1))  # its checkpoint snapshots p1
        assert observer.pools == ["p1"] and snapshot_is_sound(crashed, "p1")
        assert shard_state(recovered)["p1"] == before["p1"]
        await recovered.drain()
        assert not recovered.crashes

    run(scenario())


def test_a_damaged_pool_whose_events_are_gone_fails_the_shard_closed(observer):
    async def scenario():
        log, _, _ = await a_drained_disk()
        damage(log, "p1")
        log._rows = [row for row in log._rows if row[1] != "p1"]  # its events lost as well
        shard = await start_shard(log)
        with pytest.raises(ShardUnavailable):
            await submit(shard, reserve("p1", 1))
        assert shard.state is ShardState.FAILED and "shard_corrupt" in shard.failure
        with pytest.raises(ShardUnavailable):
            shard.submit(reserve("p2", 1))
        assert not shard.crashes  # failed closed, not crashed
        await shard.drain()

    run(scenario())


def test_recovery_fails_the_shard_closed_when_the_events_cannot_rebuild_the_pool(observer):
    async def scenario():
        log, _, ids = await a_drained_disk()
        release = cmd.ReleaseReservation("p1", ids[2], NOW)  # its replay meets the damage
        crashed, _ = await crash_with_damage(log, [release])
        checkpoint = crashed._checkpoint_seq  # p1's events up to it are lost as well
        crashed._rows = [r for r in crashed._rows if r[1] != "p1" or r[0] > checkpoint]
        shard = Shard(7, crashed, ShardSettings(), clock_ms=lambda: NOW)
        with pytest.raises(ShardCorrupt, match="p1"):
            await shard.start()
        assert shard.state is ShardState.FAILED and "shard_corrupt" in shard.failure
        assert observer.pools == []

    run(scenario())
