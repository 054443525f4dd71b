"""What a shard tells an observer (metrics) about its life; the shard never depends on it.

`Shard.observer` is None by default (unit tests, tools). The worker sets it once per process
to its metrics (`capsvc.worker.metrics.WorkerMetrics`). Observers only count: they must not
raise and must not block, because they run inside the shard's single writer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from capsvc.shard.shard import Shard


class ShardObserver(Protocol):
    def recovered(self, shard: Shard, seconds: float, replayed: int, clean: bool) -> None:
        """The shard opened its file and rebuilt its pools. `clean` is False when events after
        the last checkpoint had to be replayed: the previous owner stopped without a clean close
        (a crash, a kill, a lost host), so this open was a failover or a crash recovery."""

    def committed(self, shard: Shard, commands: int, events: int, seconds: float) -> None:
        """One group commit: `commands` answered together, `events` appended in `seconds`."""

    def commit_failed(self, shard: Shard, error: Exception) -> None:
        """An append failed (disk full, I/O error, fenced); memory was reloaded from disk."""

    def closed(self, shard: Shard, drained: bool) -> None:
        """The shard closed its file; `drained` when it finished its queue and checkpointed
        (in a cluster that is a handoff to the next owner)."""

    def failed(self, shard: Shard, error: BaseException) -> None:
        """The shard failed closed (damaged, fenced, locked, or its writer crashed)."""

    def rebuilt(self, shard: Shard, pool_id: str) -> None:
        """A pool's snapshot was damaged: the pool was rebuilt from its events and given a
        sound snapshot (see `Shard._rebuild`)."""
