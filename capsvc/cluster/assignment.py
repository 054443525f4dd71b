"""Balanced shard assignment with minimal movement. Pure: no I/O.

Every live worker gets floor or ceil of `shard_count / workers` shards. Shards stay where they
are whenever the balance allows, so a membership change moves only the shards it must: the
departed worker's shards, and just enough shards onto a newcomer.
"""

from __future__ import annotations


def assign(shard_count: int, workers: list[str], current: dict[int, str]) -> dict[int, str]:
    """A new assignment shard -> worker id for the live `workers` (sorted ids)."""
    assert shard_count >= 1
    if not workers:
        return {}
    workers = sorted(set(workers))
    base, extra = divmod(shard_count, len(workers))
    # Workers already holding the most shards keep the `extra` ceil quotas: fewer moves.
    held = {w: sorted(s for s, owner in current.items() if owner == w) for w in workers}
    by_load = sorted(workers, key=lambda w: (-len(held[w]), w))
    quota = {w: base + (1 if i < extra else 0) for i, w in enumerate(by_load)}
    result: dict[int, str] = {}
    for w in workers:
        for shard in held[w][: quota[w]]:
            if 0 <= shard < shard_count:
                result[shard] = w
    free = [s for s in range(shard_count) if s not in result]
    free.reverse()
    counts = dict.fromkeys(workers, 0)
    for w in result.values():
        counts[w] += 1
    for w in workers:
        for _ in range(quota[w] - counts[w]):
            result[free.pop()] = w
    assert not free and len(result) == shard_count
    return result


def moves(before: dict[int, str], after: dict[int, str]) -> int:
    return sum(1 for s, w in after.items() if before.get(s) != w)
