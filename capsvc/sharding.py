"""Pools to shards: a stable hash that every process and every version agrees on.

Python's `hash()` is salted per process, so it must never be used here; CRC-32 of the UTF-8 id
is stable, fast, and spreads ids evenly enough over a few hundred shards.
"""

from __future__ import annotations

import zlib


def shard_for_pool(pool_id: str, shard_count: int) -> int:
    assert shard_count >= 1
    return zlib.crc32(pool_id.encode()) % shard_count


def embedded_owner(shard_id: int, workers: int) -> int:
    """The worker index that owns a shard on a single host (no ZooKeeper)."""
    assert workers >= 1 and shard_id >= 0
    return shard_id % workers


def embedded_shards(worker_index: int, workers: int, shard_count: int) -> list[int]:
    return [s for s in range(shard_count) if embedded_owner(s, workers) == worker_index]
