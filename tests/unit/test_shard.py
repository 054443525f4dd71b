"""Specifies the shard writer: group commit, no state the disk lacks, recovery and failing closed."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Coroutine
from typing import Any

import pytest

from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.domain import rejections as rj
from capsvc.domain.ids import pool_of_reservation
from capsvc.domain.pool import Pool
from capsvc.domain.views import pool_view
from capsvc.errors import DeadlinePassed, Fenced, Overloaded, ShardUnavailable, StorageFull
from capsvc.shard.shard import CommandResult, Shard, ShardSettings, ShardState
from capsvc.storage.log import StoredEvent
from capsvc.storage.memory_log import MemoryEventLog

NOW = 1_893_400_000_000  # 2029-12-31T08:26:40Z: before the 2030-01-01 slots
WAIT_S = 5  # upper bound on any wait that should end promptly; never reached when green


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(scenario, timeout=30))


def define(pool_id: str, capacity: int = 10, total: int | None = None) -> cmd.DefinePool:
    slot = ev.SlotSpec("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00Z", capacity)
    return cmd.DefinePool(pool_id, "van", "berlin", "2030-01-01", total, (slot,))


_nonces = iter(range(1, 1 << 30))


def reserve(pool_id: str, units: int = 1, key: str | None = None, order_ref=None):
    nonce = f"{next(_nonces):08x}"
    return cmd.ReserveCapacity(pool_id, "a", units, key, order_ref, nonce, NOW)


def close_slot(pool_id: str) -> cmd.UpdateSlot:
    return cmd.UpdateSlot(pool_id, "a", None, False)


async def start_shard(log: MemoryEventLog, **settings: Any) -> Shard:
    shard = Shard(7, log, ShardSettings(**settings), clock_ms=lambda: NOW)
    shard.crashes = []  # a writer crash is a bug: record it instead of exiting the process
    shard.on_crash = shard.crashes.append
    await shard.start()
    return shard


async def submit(shard: Shard, command: cmd.Command) -> CommandResult:
    return await asyncio.wait_for(shard.submit(command), WAIT_S)


def state_of(pool: Pool | None) -> object:
    if pool is None:
        return None
    reservations = [
        (r.reservation_id, r.slot_id, r.units, r.order_ref, r.idempotency_key, r.active)
        for r in pool.reservations.values()
    ]
    return pool_view(pool), reservations, list(pool.keys.items()), pool.reservation_count


def shard_state(shard: Shard) -> dict[str, object]:
    return {pool_id: state_of(pool) for pool_id, pool in shard.pools.items()}


async def stored_events(log: MemoryEventLog) -> list[StoredEvent]:
    return [e async for chunk in log.read_from(0) for e in chunk]


def test_a_command_is_answered_once_its_events_are_stored():
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log)
        defined = await submit(shard, define("p1", capacity=3))
        assert defined.created and defined.body["pool_id"] == "p1"
        booked = await submit(shard, reserve("p1", 2, key="k1", order_ref="o1"))
        assert booked.created and not booked.replayed
        rid = booked.body["reservation_id"]
        assert booked.body == {
            "reservation_id": rid,
            "pool_id": "p1",
            "slot_id": "a",
            "units": 2,
            "status": "active",
            "order_ref": "o1",
        }
        assert pool_of_reservation(rid) == "p1"
        full = await submit(shard, reserve("p1", 2))
        assert full.rejection.code == rj.CAPACITY_EXHAUSTED
        assert full.rejection.fields == {"available_units": 1}
        released = await submit(shard, cmd.ReleaseReservation("p1", rid, NOW))
        assert released.body["status"] == "released" and not released.created
        stored = await stored_events(log)
        assert [type(e.event) for e in stored] == [
            ev.PoolDefined,
            ev.CapacityReserved,
            ev.ReservationReleased,
        ]
        assert [(e.seq, e.pool_version, e.epoch) for e in stored] == [
            (1, 1, 1),
            (2, 2, 1),
            (3, 3, 1),
        ]
        assert shard.last_seq == await log.last_seq() == 3
        await shard.drain()
        assert shard.state is ShardState.CLOSED and not shard.crashes

    run(scenario())


def test_commands_queued_together_are_committed_together_without_overbooking():
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log)
        await submit(shard, define("p1", capacity=30))
        batches_before = shard.batches
        futures = [shard.submit(reserve("p1")) for _ in range(50)]
        results = await asyncio.wait_for(asyncio.gather(*futures), WAIT_S)
        assert shard.batches - batches_before < 50
        # arrival order decides: the first 30 get the capacity
        assert [r.created for r in results] == [True] * 30 + [False] * 20
        assert {r.rejection.code for r in results[30:]} == {rj.CAPACITY_EXHAUSTED}
        assert (shard.read_pool("p1")).slots["a"].reserved == 30
        assert len(await stored_events(log)) == 31
        await shard.drain()
        assert not shard.crashes

    run(scenario())


@pytest.mark.parametrize(
    "snapshot_every_events", [1, 1000], ids=["pools in snapshots", "pools in events only"]
)
def test_a_failed_append_fails_its_pools_commands_and_leaves_memory_as_the_disk_is(
    snapshot_every_events,
):
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log, snapshot_every_events=snapshot_every_events)
        for pool_id in ("a1", "b1", "c1"):
            await submit(shard, define(pool_id, capacity=10))
        await submit(shard, reserve("a1", 2))
        await submit(shard, close_slot("c1"))
        before = shard_state(shard)
        last_seq = shard.last_seq
        log.fail_next_append = StorageFull("disk full")
        batch = [
            reserve("a1", 1),
            reserve("a1", 1, key="k1"),
            reserve("a1", 100),  # rejected, but decided on state that never reached the disk
            reserve("b1", 1),
            define("new1"),
            reserve("c1", 1),  # rejected, and c1 is not in the failed append
        ]
        futures = [shard.submit(c) for c in batch]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT_S)
        assert [type(r) for r in results[:5]] == [StorageFull] * 5
        assert results[5].rejection.code == rj.SLOT_CLOSED
        assert shard_state(shard) == before
        assert shard.read_pool("new1") is None
        assert shard.last_seq == await log.last_seq() == last_seq
        assert shard.state is ShardState.READY
        # the next command succeeds, and the failed key was never remembered
        again = await submit(shard, reserve("a1", 3, key="k1"))
        assert again.created and again.body["units"] == 3
        assert (shard.read_pool("a1")).slots["a"].reserved == 5
        await shard.drain()
        assert not shard.crashes

    run(scenario())


def test_a_restarted_shard_recovers_the_same_state_and_still_replays_keys():
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log)
        await submit(shard, define("p1", capacity=10, total=8))
        await submit(shard, define("p2", capacity=4))
        first = await submit(shard, reserve("p1", 3, key="k1", order_ref="o1"))
        second = await submit(shard, reserve("p2", 2, key="k1"))
        gone = await submit(shard, reserve("p1", 1))
        await submit(shard, cmd.ReleaseReservation("p1", gone.body["reservation_id"], NOW))
        await submit(shard, close_slot("p2"))
        before = shard_state(shard)
        await shard.drain()
        assert log.is_open is False
        with pytest.raises(ShardUnavailable):
            shard.submit(reserve("p1"))

        restarted = await start_shard(log)
        assert restarted.epoch == 2 and restarted.replayed_events == 0  # drain checkpointed
        assert shard_state(restarted) == before
        replay = await submit(restarted, reserve("p1", 3, key="k1", order_ref="o1"))
        assert replay.replayed and not replay.created
        assert replay.body == first.body
        reused = await submit(restarted, reserve("p2", 1, key="k1"))
        assert reused.rejection.code == rj.IDEMPOTENCY_KEY_REUSED
        fresh = await submit(restarted, reserve("p1", 1))
        known = {
            first.body["reservation_id"],
            second.body["reservation_id"],
            gone.body["reservation_id"],
        }
        assert fresh.created and fresh.body["reservation_id"] not in known
        await restarted.drain()
        assert not shard.crashes and not restarted.crashes

    run(scenario())


@pytest.mark.parametrize("snapshot_every_events", [5, 1000])
def test_after_a_crash_recovery_replays_only_events_after_the_checkpoint(
    snapshot_every_events,
):
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log, snapshot_every_events=snapshot_every_events)
        await submit(shard, define("p1", capacity=100))
        await submit(shard, define("p2", capacity=100))
        for i in range(20):
            await submit(shard, reserve("p1" if i % 3 else "p2", 1, key=f"k{i}"))
        assert shard.event_count == 22
        # the crash: the disk as it is now, with no drain and no final checkpoint
        disk = copy.deepcopy(log)
        disk.is_open = False
        before = shard_state(shard)
        await shard.drain()

        recovered = await start_shard(disk)
        assert shard_state(recovered) == before
        if snapshot_every_events == 5:
            assert recovered.replayed_events < 5
        else:
            assert recovered.replayed_events == 22
        await recovered.drain()
        assert not shard.crashes and not recovered.crashes

    run(scenario())


def test_a_full_queue_refuses_commands_instead_of_growing():
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log, queue_max=2, append_batch_max=2)
        await submit(shard, define("p1"))
        queued = [shard.submit(reserve("p1")), shard.submit(reserve("p1"))]
        with pytest.raises(Overloaded):
            shard.submit(reserve("p1"))
        results = await asyncio.wait_for(asyncio.gather(*queued), WAIT_S)
        assert all(r.created for r in results)
        assert (shard.read_pool("p1")).slots["a"].reserved == 2
        await shard.drain()
        assert not shard.crashes

    run(scenario())


class GatedLog(MemoryEventLog):
    """A memory log whose appends wait at a gate while `gate` is set (a slow disk)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.appending = asyncio.Event()

    async def append(self, events: list[StoredEvent]) -> None:
        if self.gate is not None:
            self.appending.set()
            await self.gate.wait()
        await super().append(events)


def test_a_reader_sees_the_committed_state_at_once_while_a_commit_of_its_pool_is_in_flight():
    async def scenario():
        log = GatedLog()
        shard = await start_shard(log)
        await submit(shard, define("p1"))
        await submit(shard, define("p2"))
        log.gate = asyncio.Event()
        booking = shard.submit(reserve("p1", 4))
        await asyncio.wait_for(log.appending.wait(), WAIT_S)
        # the reserve is decided and folded into memory, but not on disk: nobody sees it
        assert shard.read_pool("p1").slots["a"].reserved == 0, "state the disk does not hold"
        assert shard.read_pool("p2").pool_id == "p2"
        assert not booking.done()
        log.gate.set()
        assert (await asyncio.wait_for(booking, WAIT_S)).created
        assert shard.read_pool("p1").slots["a"].reserved == 4  # acknowledged: visible
        await shard.drain()
        assert not shard.crashes

    run(scenario())


def test_a_pool_new_in_the_batch_in_flight_is_not_there_for_readers():
    async def scenario():
        log = GatedLog()
        shard = await start_shard(log)
        log.gate = asyncio.Event()
        defining = shard.submit(define("p1"))
        await asyncio.wait_for(log.appending.wait(), WAIT_S)
        assert shard.read_pool("p1") is None
        log.gate.set()
        assert (await asyncio.wait_for(defining, WAIT_S)).created
        assert shard.read_pool("p1") is not None
        await shard.drain()

    run(scenario())


def test_reservations_changed_by_the_batch_in_flight_read_as_committed():
    async def scenario():
        log = GatedLog()
        shard = await start_shard(log)
        await submit(shard, define("p1"))
        kept = (await submit(shard, reserve("p1", 2))).body["reservation_id"]
        log.gate = asyncio.Event()
        releasing = shard.submit(cmd.ReleaseReservation("p1", kept, 0))
        booking = shard.submit(reserve("p1", 3))
        await asyncio.wait_for(log.appending.wait(), WAIT_S)
        pool, reservation = await shard.read_reservation("p1", kept)
        assert reservation.active and pool.slots["a"].reserved == 2
        live = shard.pools["p1"]
        made = [r for r in live.reservations if r != kept]
        assert made and (await shard.read_reservation("p1", made[0]))[1] is None
        log.gate.set()
        await asyncio.wait_for(asyncio.gather(releasing, booking), WAIT_S)
        assert not (await shard.read_reservation("p1", kept))[1].active
        assert (await shard.read_reservation("p1", made[0]))[1].units == 3
        assert shard.read_pool("p1").slots["a"].reserved == 3
        await shard.drain()
        assert not shard.crashes

    run(scenario())


async def commit_in_flight() -> tuple[GatedLog, Shard, asyncio.Future]:
    """A shard with pool p1 (capacity 5) whose commit of a 1-unit reserve is in flight and
    held there until `log.gate` is set: what is submitted now queues behind it."""
    log = GatedLog()
    shard = await start_shard(log)
    await submit(shard, define("p1", capacity=5))
    log.gate = asyncio.Event()
    first = shard.submit(reserve("p1", 1))
    await asyncio.wait_for(log.appending.wait(), WAIT_S)
    return log, shard, first


def test_a_command_whose_caller_gave_up_while_queued_is_never_applied():
    async def scenario():
        log, shard, first = await commit_in_flight()
        abandoned = shard.submit(reserve("p1", 3))  # queued behind the slow commit
        abandoned.cancel()
        log.gate.set()
        later = await submit(shard, reserve("p1", 4))
        assert (await first).created and later.created
        pool = shard.read_pool("p1")
        assert pool.slots["a"].reserved == 5
        assert sorted(r.units for r in pool.reservations.values()) == [1, 4]
        assert len(await stored_events(log)) == 3
        await shard.drain()
        assert not shard.crashes

    run(scenario())


def test_a_command_the_writer_reaches_after_its_deadline_is_never_applied():
    """The router's deadline travels with the command: queued behind a slow commit until
    after it, the command is dropped undecided (DeadlinePassed, a 504 `timeout`); one whose
    deadline is still ahead is applied."""

    async def scenario():
        log, shard, first = await commit_in_flight()
        with pytest.raises(DeadlinePassed):  # already past: refused before it is queued
            shard.submit(reserve("p1", 4), deadline=time.time() - 0.001)
        late = shard.submit(reserve("p1", 3), deadline=time.time() + 0.05)
        timely = shard.submit(reserve("p1", 2), deadline=time.time() + 60)
        await asyncio.sleep(0.1)  # the commit in flight outlasts the first deadline
        log.gate.set()
        with pytest.raises(DeadlinePassed) as dropped:
            await asyncio.wait_for(late, WAIT_S)
        assert dropped.value.code == "timeout"
        assert (await first).created and (await timely).created
        assert shard.read_pool("p1").slots["a"].reserved == 3
        assert len(await stored_events(log)) == 3
        await shard.drain()
        assert not shard.crashes

    run(scenario())


def test_a_fenced_append_fails_the_shard_closed():
    async def scenario():
        log = MemoryEventLog()
        shard = await start_shard(log, append_batch_max=1)
        await submit(shard, define("p1"))
        log.epoch = shard.epoch + 1  # a newer owner has taken the file
        futures = [shard.submit(reserve("p1")) for _ in range(3)]
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), WAIT_S)
        assert type(results[0]) is Fenced
        assert [type(r) for r in results[1:]] == [ShardUnavailable] * 2  # queued behind it
        assert shard.state is ShardState.FAILED and "shard_fenced" in shard.failure
        with pytest.raises(ShardUnavailable):
            shard.submit(reserve("p1"))
        with pytest.raises(ShardUnavailable):
            shard.read_pool("p1")
        assert len(await stored_events(log)) == 1
        await shard.drain()
        assert shard.state is ShardState.FAILED and not log.is_open
        assert not shard.crashes

    run(scenario())
