"""What a worker's metrics count, from the shard's own hooks: group commits, clean and
unclean recoveries (failovers), handoffs, failures; and ZooKeeper state changes."""

from __future__ import annotations

import asyncio

from capsvc.domain import commands as cmd
from capsvc.domain.events import SlotSpec
from capsvc.errors import Fenced
from capsvc.shard.shard import Shard, ShardSettings, ShardState
from capsvc.storage.memory_log import MemoryEventLog
from capsvc.worker.metrics import WorkerMetrics

SLOT = SlotSpec("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00Z", 5)


def _shard(event_log: MemoryEventLog, metrics: WorkerMetrics) -> Shard:
    shard = Shard(3, event_log, ShardSettings(snapshot_every_events=1000))
    shard.observer = metrics  # this shard only: the class-wide default stays None
    return shard


def value(metrics: WorkerMetrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def test_shard_hooks_count_commits_failovers_handoffs_and_failures():
    metrics = WorkerMetrics()
    event_log = MemoryEventLog()

    async def scenario():
        first = _shard(event_log, metrics)
        await first.start()
        define = cmd.DefinePool("p", "van", "r", "2030-01-01", None, (SLOT,))
        futures = [first.submit(define)] + [
            first.submit(cmd.ReserveCapacity("p", "a", 1, None, None, f"{n:012x}", 1))
            for n in range(3)
        ]
        await asyncio.gather(*futures)
        # The process dies without closing: the next owner finds events after the checkpoint.
        first._writer.cancel()
        event_log.is_open = False
        second = _shard(event_log, metrics)
        await second.start()
        await second.drain()  # a clean close: handoff
        third = _shard(event_log, metrics)
        await third.start()  # after a clean close: not a failover
        event_log.fail_next_append = Fenced("a newer owner")
        future = third.submit(cmd.ReserveCapacity("p", "a", 1, None, None, "f" * 12, 2))
        await asyncio.gather(future, return_exceptions=True)
        assert third.state is ShardState.FAILED
        await third.drain()

    asyncio.run(scenario())
    assert value(metrics, "capsvc_commit_batch_commands_count") >= 1
    assert value(metrics, "capsvc_commit_batch_events_sum") == 4
    assert value(metrics, "capsvc_commit_duration_seconds_count") >= 1
    assert value(metrics, "capsvc_shard_recovery_duration_seconds_count") == 3
    assert value(metrics, "capsvc_shard_failovers_total", shard="3") == 1
    assert value(metrics, "capsvc_shard_replayed_events_total", shard="3") == 4
    assert value(metrics, "capsvc_shard_handoffs_total", shard="3") == 1
    assert value(metrics, "capsvc_commit_failures_total", code="shard_fenced") == 1
    assert value(metrics, "capsvc_shard_failures_total", shard="3", code="shard_fenced") == 1


def test_zookeeper_state_changes_are_counted():
    """The worker registers `zookeeper_state` as a `Zk.on_state` listener."""
    metrics = WorkerMetrics()
    for state in ("SUSPENDED", "CONNECTED", "LOST", "CONNECTED"):
        metrics.zookeeper_state(state)
    assert value(metrics, "capsvc_zookeeper_state_changes_total", state="connected") == 2
    assert value(metrics, "capsvc_zookeeper_state_changes_total", state="lost") == 1
