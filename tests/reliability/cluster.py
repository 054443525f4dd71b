"""Cluster helpers for the reliability tests: hosts with test faults and their own ZooKeeper
namespace (so that one ZooKeeper serves a whole module), shard lookups, epoch counters."""

from __future__ import annotations

import itertools
from pathlib import Path

from kazoo.client import KazooClient

from capsvc.sharding import shard_for_pool
from capsvc.testing.harness import Service, wait_for
from capsvc.testing.hosts import cluster_host, shard_owners
from capsvc.testing.zookeeper import ZooKeeper
from tests.reliability.common import fault_env

SESSION_TIMEOUT_MS = 3000
_names = itertools.count()


def new_cluster_name() -> str:
    return f"rel{next(_names)}"


def host(data: Path, zk: ZooKeeper, host_id: str, name: str, *, faults: tuple[str, ...] = (),
         workers: int = 2, shard_count: int = 8, extra: str = "", **settings) -> Service:
    """A cluster host (capsvc.testing.hosts) in ZooKeeper namespace `name`, with test faults."""
    svc = cluster_host(data, zk, host_id, workers=workers, shard_count=shard_count,
                       session_timeout_ms=settings.pop("session_timeout_ms", SESSION_TIMEOUT_MS),
                       name=name, **settings)
    svc.config_path.write_text(svc.config_path.read_text() + extra)
    svc.env.update(fault_env(*faults))
    return svc


def shard_of(pool_id: str, shard_count: int = 8) -> int:
    return shard_for_pool(pool_id, shard_count)


def owner(service: Service, shard: int) -> dict:
    return shard_owners(service)[shard]


def worker_pid(service: Service, index: int) -> int:
    return service.child_pids()[f"capsvc: worker {index}"]


def all_ready(service: Service) -> bool:
    return all(row["state"] == "ready" and row["owner"] and row["owner"]["ready"]
               for row in shard_owners(service).values())


def wait_all_ready(service: Service, timeout_s: float = 30) -> None:
    wait_for(lambda: all_ready(service), timeout_s, "every shard ready")


def set_epoch_counter(zk: ZooKeeper, name: str, shard: int, value: int) -> None:
    """Overwrite ZooKeeper's fencing counter for one shard (models ZooKeeper losing data)."""
    client = KazooClient(hosts=zk.hosts, timeout=5)
    client.start(timeout=5)
    try:
        client.set(f"/capsvc/{name}/shards/{shard:03d}/epoch", str(value).encode())
    finally:
        client.stop()
        client.close()
