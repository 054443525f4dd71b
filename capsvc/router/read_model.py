"""The router's eventually consistent read model of every pool, for the availability grid.

Fed per shard: each feed answer carries the shard's position (a seq in its event log) and the
current view of every pool that changed after the position we asked from. Views are states,
not deltas, so applying one twice changes nothing, and a position that moves backwards
(a restored or replaced file) simply triggers a full reload of that shard: no gaps, no double
counting after a failover.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any


class ReadModel:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count
        self.positions: dict[int, int] = {}
        self.shard_states: dict[int, str] = {}
        self._pools: dict[str, dict[str, Any]] = {}
        self._by_shard: dict[int, set[str]] = defaultdict(set)
        self._by_day: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.synced_at: dict[str, float] = {}  # worker name -> wall time of its last answer
        self.caught_up: set[int] = set()  # shards whose pools were all loaded once
        self.generation = 0  # bumped on every change, so that readers can cache answers

    def apply(self, worker: str, answer: dict[str, Any], at: float | None = None) -> None:
        for key, shard in answer["shards"].items():
            shard_id = int(key)
            self.shard_states[shard_id] = shard["state"]
            if shard["full"]:
                for pool_id in list(self._by_shard[shard_id]):
                    self._drop(pool_id)
                self.generation += 1
            for view in shard["pools"]:
                self._put(shard_id, view)
            if shard["pools"]:
                self.generation += 1
            self.positions[shard_id] = shard["position"]
            if shard["position"] >= shard.get("last_seq", shard["position"]):
                self.caught_up.add(shard_id)  # loaded completely at least once
        self.synced_at[worker] = time.time() if at is None else at

    def _put(self, shard_id: int, view: dict[str, Any]) -> None:
        pool_id = view["pool_id"]
        old = self._pools.get(pool_id)
        if old is not None:
            self._by_day[(old["region"], old["date"])].discard(pool_id)
        self._pools[pool_id] = view
        self._by_shard[shard_id].add(pool_id)
        self._by_day[(view["region"], view["date"])].add(pool_id)

    def _drop(self, pool_id: str) -> None:
        view = self._pools.pop(pool_id)
        self._by_day[(view["region"], view["date"])].discard(pool_id)
        for members in self._by_shard.values():
            members.discard(pool_id)

    def since_parameter(self) -> str:
        return ",".join(f"{s}:{p}" for s, p in sorted(self.positions.items()))

    def grid(self, region: str, date: str, kind: str | None) -> list[dict[str, Any]]:
        out = []
        for pool_id in sorted(self._by_day.get((region, date), ())):
            view = self._pools[pool_id]
            if kind is not None and view["kind"] != kind:
                continue
            out.append(
                {
                    "pool_id": pool_id,
                    "kind": view["kind"],
                    "region": region,
                    "date": date,
                    "slots": [
                        {
                            "slot_id": s["slot_id"],
                            "starts_at": s["starts_at"],
                            "ends_at": s["ends_at"],
                            "bookable": s["bookable"],
                        }
                        for s in view["slots"]
                    ],
                }
            )
        return out

    def as_of(self, workers: list[str]) -> float | None:
        """The time up to which the model is known complete: the oldest worker's last answer
        (None until every worker has answered once)."""
        if not workers or any(w not in self.synced_at for w in workers):
            return None
        if len(self.caught_up) < self.shard_count:
            return None  # still paging through the first load
        return min(self.synced_at[w] for w in workers)

    def pool_count(self) -> int:
        return len(self._pools)
