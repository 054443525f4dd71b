"""Several capsvc hosts on one machine: each a supervisor with its own host id, router port
and worker ports, all sharing one data directory and one ZooKeeper."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path

from capsvc.testing.harness import Service, wait_for
from capsvc.testing.zookeeper import ZooKeeper, free_port_range

CLUSTER_SECRET = "test-cluster-secret-0123456789"


def cluster_host(data_dir: Path, zk: ZooKeeper, host_id: str, *, workers: int = 2,
                 shard_count: int = 8, session_timeout_ms: int = 3000,
                 owner_lease_ms: int = 2000, name: str | None = None) -> Service:
    base = free_port_range(workers)
    # One ZooKeeper serves many tests: each cluster (the hosts sharing a data directory) gets
    # its own root under it.
    if name is None:
        name = "test-" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Service(
        data_dir, workers=workers, shard_count=shard_count, config_name=f"host-{host_id}",
        service_extra=f"worker_port_base = {base}\n",
        extra_config=(
            f'[cluster]\nzookeeper = "{zk.hosts}"\nname = "{name}"\nhost_id = "{host_id}"\n'
            f'secret = "{CLUSTER_SECRET}"\nsession_timeout_ms = {session_timeout_ms}\n'
            f"owner_lease_ms = {owner_lease_ms}\nrebalance_delay_ms = 200\n"
        ),
    )


def shard_owners(host: Service) -> dict[int, dict]:
    status, cluster = host.admin("GET", "/v1/admin/cluster")
    assert status == 200, cluster
    return {s["shard"]: s for s in cluster["shards"]}


def wait_balanced(host: Service, workers: int, shard_count: int, timeout_s: float = 30) -> dict:
    """Wait until every shard has a ready owner and each worker owns floor or ceil."""
    low, high = shard_count // workers, -(-shard_count // workers)

    def balanced():
        owners = shard_owners(host)
        if any(s["owner"] is None or not s["owner"]["ready"] or s["state"] != "ready"
               for s in owners.values()):
            return None
        counts: dict[str, int] = {}
        for s in owners.values():
            counts[s["owner"]["worker_id"]] = counts.get(s["owner"]["worker_id"], 0) + 1
        if len(counts) == workers and all(low <= c <= high for c in counts.values()):
            return owners
        return None

    return wait_for(balanced, timeout_s, f"{shard_count} shards balanced over {workers} workers")


@contextlib.contextmanager
def running_hosts(data_dir: Path, zk: ZooKeeper, host_ids: str, *, workers: int = 2,
                  shard_count: int = 8, **settings) -> Iterator[list[Service]]:
    """Hosts `host-<id>` for each id, started together, ready, every shard balanced over
    their workers; all killed on the way out, also when one never gets ready."""
    hosts = [cluster_host(data_dir, zk, f"host-{n}", workers=workers, shard_count=shard_count,
                          **settings).start(ready=False) for n in host_ids]
    try:
        for host in hosts:
            host.wait_ready()
        wait_balanced(hosts[0], workers=workers * len(hosts), shard_count=shard_count)
        yield hosts
    finally:
        for host in hosts:
            host.kill_all()
