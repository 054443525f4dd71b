"""The systems under test, started side by side for one benchmark run.

- `capsvc-router`: capsvc as clients use it (2 workers, 64 shards, public port);
- `capsvc-worker`: the same instance, straight at worker 0's plain-HTTP port (its pools only):
  the difference is what the router costs;
- `pg-tx`, `pg-cte`, `pg-occ`: the classical service (load/bench/classical), 2 processes per
  variant (SO_REUSEPORT), each variant with its own database in one private PostgreSQL cluster;
- `redis-lua`: the same service over a private Redis (appendonly, appendfsync always), the rule
  in a Lua script (load/bench/classical/redis_store.py), 2 processes.

CPU is accounted per system over its whole process tree: supervisor, router and workers for
capsvc; the app processes plus the postmaster and all its backends for PostgreSQL; the app
processes plus redis-server (and any AOF-rewrite child) for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from load import fixtures
from load.bench import procstat, workloads
from load.bench.classical import redis_store, schema
from load.bench.postgres import PostgresCluster
from load.bench.redis_server import RedisServer
from load.service import REPO, CapsvcProcess, free_port_block, http_status

SHARDS, WORKERS = 64, 2
CLASSICAL_PROCESSES = 2
CLASSICAL_POOL_SIZE = 16  # connections per process


@dataclass
class System:
    name: str
    url: str
    cpu_groups: Callable[[], dict[str, list[int]]]  # role -> pids, for CPU accounting
    pools: list[workloads.BenchPool]  # the uniform pools it serves
    hot_pools: list[workloads.BenchPool]  # one per round
    serves_grid: bool = True
    notes: list[str] = field(default_factory=list)

    def workload(self, name: str, round_index: int) -> workloads.Workload:
        if name == "uniform":
            return workloads.uniform(self.pools)
        if name == "hot":
            return workloads.hot(self.hot_pools[round_index])
        return workloads.grid_mix(self.pools)


def hot_pools_for(system: str, rounds: int) -> list[workloads.BenchPool]:
    return [workloads.hot_pool(f"{system}-{r}", SHARDS, WORKERS) for r in range(rounds)]


@contextlib.contextmanager
def capsvc_systems(rounds: int) -> Iterator[tuple[System, System, CapsvcProcess]]:
    with tempfile.TemporaryDirectory(prefix="capsvc-bench-") as tmp:
        service = CapsvcProcess(Path(tmp) / "data", workers=WORKERS, shard_count=SHARDS)
        service.start()
        try:
            uniform = workloads.uniform_pools()
            hot = {name: hot_pools_for(name, rounds) for name in ("capsvc-router",
                                                                    "capsvc-worker")}
            every = uniform + [p for pools in hot.values() for p in pools]
            fixtures.define(service.url, service.admin_token,
                            [fixtures.PoolSpec(p.pool_id, p.definition()) for p in every])

            def groups() -> dict[str, list[int]]:
                pids = service.pids()
                return {role: [pid] for role, pid in pids.items()}

            router = System("capsvc-router", service.url, groups, uniform, hot["capsvc-router"])
            own = [p for p in uniform if workloads.owned_by(p.pool_id, 0, SHARDS, WORKERS)]
            worker = System("capsvc-worker", service.worker_url(0), groups, own,
                            hot["capsvc-worker"], serves_grid=False,
                            notes=[f"worker 0 only: {len(own)} of the 500 pools"])
            yield router, worker, service
        finally:
            service.stop()


async def _create_databases(cluster: PostgresCluster, variants: list[str],
                            pools: dict[str, list[workloads.BenchPool]]) -> None:
    conn = await asyncpg.connect(cluster.dsn())
    try:
        for variant in variants:
            await conn.execute(f"CREATE DATABASE {variant}")
    finally:
        await conn.close()
    for variant in variants:
        await schema.create(cluster.dsn(variant), pools[variant])


@contextlib.contextmanager
def classical_systems(rounds: int) -> Iterator[tuple[list[System], PostgresCluster]]:
    variants = ["tx", "cte", "occ"]
    cluster = PostgresCluster(free_port_block(1)).start()
    processes: list[subprocess.Popen] = []
    try:
        uniform = workloads.uniform_pools()
        hot = {v: hot_pools_for(f"pg-{v}", rounds) for v in variants}
        asyncio.run(_create_databases(cluster, variants, {v: uniform + hot[v] for v in variants}))
        systems = []
        for variant in variants:
            port = free_port_block(1)
            mine = _app_processes(["--variant", variant, "--dsn", cluster.dsn(variant)], port)
            processes += mine

            def groups(mine: list[subprocess.Popen] = mine) -> dict[str, list[int]]:
                return {"app": [p.pid for p in mine],
                        "postgres": procstat.tree([cluster.postmaster_pid()])}

            systems.append(System(f"pg-{variant}", f"http://127.0.0.1:{port}", groups, uniform,
                                  hot[variant]))
        _wait_healthy([s.url for s in systems])
        yield systems, cluster
    finally:
        _stop_all(processes)
        cluster.stop()


@contextlib.contextmanager
def redis_systems(rounds: int) -> Iterator[tuple[list[System], RedisServer]]:
    """`redis-lua`: a private redis-server and the classical app's processes over it."""
    name = redis_store.VARIANT
    server = RedisServer(free_port_block(1)).start()
    processes: list[subprocess.Popen] = []
    try:
        uniform = workloads.uniform_pools()
        hot = hot_pools_for(name, rounds)
        redis_store.create(server.url, uniform + hot)
        port = free_port_block(1)
        processes += _app_processes(["--variant", name, "--redis-url", server.url], port)

        def groups() -> dict[str, list[int]]:
            return {"app": [p.pid for p in processes], "redis": procstat.tree([server.pid])}

        system = System(name, f"http://127.0.0.1:{port}", groups, uniform, hot)
        _wait_healthy([system.url])
        yield [system], server
    finally:
        _stop_all(processes)
        server.stop()


def _app_processes(store_args: list[str], port: int) -> list[subprocess.Popen]:
    """The classical app over one store, CLASSICAL_PROCESSES of them on one port
    (SO_REUSEPORT)."""
    return [
        subprocess.Popen(
            [sys.executable, "-m", "load.bench.classical", *store_args, "--port", str(port),
             "--pool-size", str(CLASSICAL_POOL_SIZE)], cwd=REPO)
        for _ in range(CLASSICAL_PROCESSES)
    ]


def _stop_all(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(10)


def _wait_healthy(urls: list[str], timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(http_status(u + "/healthz") == 200 for u in urls):
            return
        time.sleep(0.1)
    raise RuntimeError(f"classical services not healthy: {urls}")
