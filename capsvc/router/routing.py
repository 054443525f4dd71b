"""The routing table: which worker answers for a pool. Pure: no I/O.

In the embedded default every shard lives on this host, owned by a fixed worker. The table is
an object (not a function) so that the cluster mode can swap in one fed by ZooKeeper.
"""

from __future__ import annotations

from dataclasses import dataclass

from capsvc.sharding import embedded_owner, shard_for_pool


@dataclass(frozen=True)
class RoutingTable:
    shard_count: int
    owners: tuple[int, ...]  # shard id -> worker index

    @classmethod
    def embedded(cls, shard_count: int, workers: int) -> RoutingTable:
        return cls(shard_count, tuple(embedded_owner(s, workers) for s in range(shard_count)))

    def __post_init__(self) -> None:
        assert len(self.owners) == self.shard_count

    def shard_of(self, pool_id: str) -> int:
        return shard_for_pool(pool_id, self.shard_count)

    def worker_for(self, pool_id: str) -> int:
        return self.owners[self.shard_of(pool_id)]
