"""Rebuild a shard's pools from its log: the latest snapshots, then the events after them.

Events at or below a pool's snapshot version are skipped before they are decoded, so replay is
exact whatever order snapshots and events were written in, and a checkpoint that left some
pools to later (see `Shard._checkpoint`) costs only the reading of the others' rows.

Invariants: replay folds events without the per-event check (`evolve(check=False)`); once every
event is in, each pool gets the full check (`check_pool`). A pool restored from a schema 2
snapshot has its reservations checked when they are first decoded (`Pool.defer`): by the
replay itself if an event of it needed them, else on its first use.

A damaged snapshot: one that does not decode at all fails the shard closed (`ShardCorrupt`), as
a damaged file does. One whose reservations turn out damaged when an event needs them costs only
its pool: the pool is rebuilt from all of its events (every event of a pool stays in its shard
file; only `capsvc archive` removes a whole pool) and named in `Recovered.rebuilt`, so that
the shard writes it a sound snapshot before it serves.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from capsvc.domain.evolve import evolve
from capsvc.domain.invariants import check_pool
from capsvc.domain.pool import DeferredStateDamaged, KeyRetention, Pool
from capsvc.errors import ShardCorrupt
from capsvc.storage.codec import CodecError, decode_event, decode_snapshot
from capsvc.storage.gc_pause import cyclic_gc_paused
from capsvc.storage.log import EventLog, LogHead

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recovered:
    pools: dict[str, Pool]
    pool_seqs: dict[str, int]  # pool id -> seq of its latest event (for the read-model feed)
    # pool id -> (seq of its first event that no snapshot holds, the version its snapshot
    # holds), oldest first
    unsnapshotted: dict[str, tuple[int, int]]
    replayed_events: int
    seconds: float
    rebuilt: tuple[str, ...] = ()  # pools rebuilt from all their events: damaged snapshots


async def recover_shard(event_log: EventLog, head: LogHead, retention: KeyRetention) -> Recovered:
    with cyclic_gc_paused():
        return await _recover(event_log, head, retention)


async def _recover(event_log: EventLog, head: LogHead, retention: KeyRetention) -> Recovered:
    started = time.perf_counter()
    pools: dict[str, Pool] = {}
    pool_seqs: dict[str, int] = {}
    try:
        for snap in await event_log.load_snapshots():
            pools[snap.pool_id] = decode_snapshot(snap.schema, snap.body, retention)
            pool_seqs[snap.pool_id] = snap.seq
    except CodecError as e:
        raise ShardCorrupt(f"shard snapshot: {e}") from e
    unsnapshotted: dict[str, tuple[int, int]] = {}
    damaged: dict[str, DeferredStateDamaged] = {}
    replayed = 0
    async for batch in event_log.read_encoded_from(head.checkpoint_seq):
        for seq, pool_id, version, type_name, schema, body in batch:
            pool = pools.get(pool_id)
            if pool is not None and version <= pool.version or pool_id in damaged:
                continue  # already inside the snapshot, or rebuilt below
            try:
                event = decode_event(type_name, schema, body)
            except CodecError as e:
                raise ShardCorrupt(f"event {seq}: {e}") from e
            try:
                pool = evolve(pool, event, retention, check=False)
            except DeferredStateDamaged as e:
                damaged[pool_id] = e
                continue
            assert pool.version == version, (pool_id, seq)
            pools[pool_id] = pool
            pool_seqs[pool_id] = seq
            if pool_id not in unsnapshotted:
                unsnapshotted[pool_id] = (seq, version - 1)
            replayed += 1
    for pool_id, error in damaged.items():
        pools[pool_id], pool_seqs[pool_id] = await rebuild_pool(event_log, error, retention)
        unsnapshotted.pop(pool_id, None)  # the shard snapshots it before it serves
    for pool in pools.values():
        check_pool(pool)
    return Recovered(
        pools, pool_seqs, unsnapshotted, replayed, time.perf_counter() - started, tuple(damaged)
    )


async def rebuild_pool(
    event_log: EventLog, damage: DeferredStateDamaged, retention: KeyRetention
) -> tuple[Pool, int]:
    """A pool whose snapshot is damaged, rebuilt from all its events, and the seq of its
    latest event. Events that cannot rebuild it (none, or breaking its invariants) are a
    damaged file: ShardCorrupt, so that the shard fails closed."""
    pool_id = damage.pool_id
    log.error("%s; rebuilding it from its events", damage, extra={"pool": pool_id})
    try:
        pool, seq = await reload_pool(event_log, pool_id, retention, use_snapshot=False)
        if pool is None:
            raise ShardCorrupt(f"pool {pool_id} has a snapshot but no events")
        check_pool(pool)
    except AssertionError as e:
        raise ShardCorrupt(f"the events of pool {pool_id} break its invariants: {e}") from e
    return pool, seq


async def reload_pool(
    event_log: EventLog,
    pool_id: str,
    retention: KeyRetention,
    page: int = 5000,
    use_snapshot: bool = True,
) -> tuple[Pool | None, int]:
    """One pool as the disk holds it (used to undo a batch whose append failed, and without
    its snapshot by `rebuild_pool`). Returns the pool (None if it has no events) and the seq
    of its latest event."""
    snap = await event_log.load_snapshot(pool_id) if use_snapshot else None
    try:
        pool = decode_snapshot(snap.schema, snap.body, retention) if snap else None
    except CodecError as e:
        raise ShardCorrupt(f"snapshot of {pool_id}: {e}") from e
    seq = snap.seq if snap else 0
    while True:
        after = pool.version if pool else 0
        events = await event_log.pool_events(pool_id, after, page)
        for stored in events:
            try:
                pool = evolve(pool, stored.event, retention)
            except DeferredStateDamaged as e:
                return await rebuild_pool(event_log, e, retention)
            assert pool.version == stored.pool_version, (pool_id, stored.seq)
            seq = stored.seq
        if len(events) < page:
            return pool, seq
