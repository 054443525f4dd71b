"""A worker's Prometheus metrics: one registry per worker process.

The router's `/metrics` fetches each local worker's exposition (`/internal/metrics`), adds a
`worker` label and serves it with its own, so one scrape of the router covers every process
of the host. Names never clash with the router's own (`capsvc_http_*`, `capsvc_shard_*` gauges).

What is counted where:
- requests and latency per route and outcome status, and problem answers per route and code
  (`overloaded`: commands shed): the `observe` middleware (ops_routes.py), and for the hot
  routes the lean front (`WorkerFront._observe`, front.py), alike;
- group commits, recoveries, handoffs, failovers, shard failures, pools rebuilt from damaged
  snapshots: `Shard.observer` (this class);
- idempotent replays and `capacity_exhausted` per pool kind: the same two, from the reserve
  route's answer;
- ZooKeeper connection state changes: `zookeeper_state`, registered with `Zk.on_state`;
- how long each shard's claim has waited for a previous owner to let go of its file (a frozen
  host keeps its locks): `watch_file_waits`, read at scrape time.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

from capsvc.shard.shard import Shard

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
RECOVERY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class WorkerMetrics:
    """Implements `capsvc.shard.observer.ShardObserver`; every method only counts."""

    def watch_file_waits(self, waits: dict[int, dict]) -> None:
        self.registry.register(_FileWaits(waits))

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter(
            "capsvc_worker_requests",
            "Requests answered by the worker, by route and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "capsvc_worker_request_duration_seconds",
            "Worker request latency by route and outcome status",
            ["route", "status"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.errors = Counter(
            "capsvc_worker_errors",
            "Problem answers by route and code; code overloaded: commands shed (503)",
            ["route", "code"],
            registry=r,
        )
        self.batch_commands = Histogram(
            "capsvc_commit_batch_commands",
            "Commands answered by one group commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.batch_events = Histogram(
            "capsvc_commit_batch_events",
            "Events appended by one group commit",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.commit_latency = Histogram(
            "capsvc_commit_duration_seconds",
            "Time to append and fsync one group commit",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_failures = Counter(
            "capsvc_commit_failures",
            "Appends that failed (memory reloaded from disk)",
            ["code"],
            registry=r,
        )
        self.recovery = Histogram(
            "capsvc_shard_recovery_duration_seconds",
            "Time to open a shard file and rebuild its pools (snapshots + replay)",
            buckets=RECOVERY_BUCKETS,
            registry=r,
        )
        self.replayed = Counter(
            "capsvc_shard_replayed_events",
            "Events replayed by recoveries",
            ["shard"],
            registry=r,
        )
        self.failovers = Counter(
            "capsvc_shard_failovers",
            "Shard opened after its previous owner stopped without a clean close",
            ["shard"],
            registry=r,
        )
        self.handoffs = Counter(
            "capsvc_shard_handoffs",
            "Shard drained, checkpointed and closed by this worker (in a cluster: handed off)",
            ["shard"],
            registry=r,
        )
        self.shard_failures = Counter(
            "capsvc_shard_failures",
            "Shards that failed closed",
            ["shard", "code"],
            registry=r,
        )
        self.rebuilds = Counter(
            "capsvc_pool_rebuilds",
            "Pools rebuilt from their events because their snapshot was damaged",
            ["shard"],
            registry=r,
        )
        self.replays = Counter(
            "capsvc_idempotent_replays",
            "Reservations answered as idempotent replays, by pool kind",
            ["kind"],
            registry=r,
        )
        self.exhausted = Counter(
            "capsvc_capacity_exhausted",
            "Reservations refused with capacity_exhausted, by pool kind",
            ["kind"],
            registry=r,
        )
        self.zk_states = Counter(
            "capsvc_zookeeper_state_changes",
            "ZooKeeper connection state changes seen by this worker",
            ["state"],
            registry=r,
        )

    # -- ShardObserver ------------------------------------------------------------------------
    def recovered(self, shard: Shard, seconds: float, replayed: int, clean: bool) -> None:
        self.recovery.observe(seconds)
        label = str(shard.shard_id)
        if replayed:
            self.replayed.labels(label).inc(replayed)
        if not clean:
            self.failovers.labels(label).inc()

    def committed(self, shard: Shard, commands: int, events: int, seconds: float) -> None:
        self.batch_commands.observe(commands)
        self.batch_events.observe(events)
        self.commit_latency.observe(seconds)

    def commit_failed(self, shard: Shard, error: Exception) -> None:
        self.commit_failures.labels(getattr(error, "code", type(error).__name__)).inc()

    def closed(self, shard: Shard, drained: bool) -> None:
        if drained:
            self.handoffs.labels(str(shard.shard_id)).inc()

    def failed(self, shard: Shard, error: BaseException) -> None:
        code = getattr(error, "code", type(error).__name__)
        self.shard_failures.labels(str(shard.shard_id), code).inc()

    def rebuilt(self, shard: Shard, pool_id: str) -> None:
        self.rebuilds.labels(str(shard.shard_id)).inc()

    # -- ZooKeeper ------------------------------------------------------------------------------
    def zookeeper_state(self, state: str) -> None:
        """A `Zk.on_state` listener: count every connection state change."""
        self.zk_states.labels(str(state).lower()).inc()


class _FileWaits:
    """`capsvc_shard_file_wait_seconds{shard}`: read from the shard host's record when
    scraped, so a wait that lasts shows its age without anything counting it."""

    def __init__(self, waits: dict[int, dict]) -> None:
        self.waits = waits

    def collect(self):  # noqa: ANN201 - prometheus_client protocol
        family = GaugeMetricFamily(
            "capsvc_shard_file_wait_seconds",
            "How long a claimed shard has waited for its previous owner to let go of its file",
            labels=["shard"],
        )
        now = time.time()
        for shard_id, wait in list(self.waits.items()):
            family.add_metric([str(shard_id)], now - wait["since_s"])
        yield family
