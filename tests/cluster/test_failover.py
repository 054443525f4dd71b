"""Failures and changes of a cluster under concurrent load, each ending with a history check:
no slot overbooked, every acknowledged reservation present, no idempotency key applied twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.cluster.history import Load, check
from tests.cluster.hosts import cluster_host, shard_owners, wait_balanced
from tests.cluster.zookeeper import ZooKeeper
from tests.integration.harness import wait_for

pytestmark = pytest.mark.cluster
SESSION_TIMEOUT_S = 3.0
CAPACITY = 100_000


@pytest.fixture
def zookeeper(tmp_path):
    zk = ZooKeeper(tmp_path / "zk").start()
    yield zk
    zk.stop()


@pytest.fixture
def cluster(request, tmp_path, zookeeper):
    """Two hosts of two workers over 8 shards, 16 pools defined. A test may ask for other
    session settings with @pytest.mark.parametrize("cluster", [{...}], indirect=True)."""
    settings = getattr(request, "param", {})
    data = tmp_path / "shared"
    hosts = [cluster_host(data, zookeeper, f"host-{n}", **settings).start(ready=False)
             for n in "ab"]
    for host in hosts:
        host.wait_ready()
    wait_balanced(hosts[0], workers=4, shard_count=8)
    pools = [f"p-{i}" for i in range(16)]
    for pool_id in pools:
        assert hosts[0].define_pool(pool_id, [("s", CAPACITY)])[0] == 201
    yield hosts, pools
    for host in hosts:
        host.kill_all()


def _owned_by(host, host_id: str) -> set[int]:
    return {s for s, row in shard_owners(host).items()
            if row["owner"] and row["owner"]["host"] == host_id}


def test_a_crashed_host_loses_nothing_and_its_shards_move_within_the_session_timeout(cluster):
    """Fault: kill -9 of every process of one host under load. Property: its shards accept
    writes on the other host within session_timeout + 3 s; the history check passes."""
    (a, b), pools = cluster
    load = Load([a.url], pools, clients=8, retry_s=15).start()
    time.sleep(1.0)
    moved = _owned_by(a, "host-b")
    killed_at = time.monotonic()
    b.kill_all()
    wait_for(lambda: not _owned_by(a, "host-b") and all(
        row["state"] == "ready" for row in shard_owners(a).values()), 20, "b's shards to move")
    time.sleep(1.0)
    history = load.stop()
    firsts = history.first_success_after(killed_at)
    failover_s = max(firsts[p] for p in pools) - killed_at
    print(f"failover after kill -9 of a host: {failover_s:.2f}s for shards {sorted(moved)}")
    assert failover_s < SESSION_TIMEOUT_S + 3.0
    result = check(history, a, pools, CAPACITY)
    assert result["acked"] > 100


def test_a_rolling_restart_fails_no_request(cluster, tmp_path):
    """Change: SIGTERM each host in turn (clients sent to the other host's router, as a load
    balancer would), start it again. Property: zero failed requests; history check passes."""
    (a, b), pools = cluster
    load = Load([a.url], pools, clients=6, retry_s=0).start()
    for leaving, staying in ((b, a), (a, b)):
        load.routers = [staying.url]
        time.sleep(0.5)
        assert leaving.stop() == 0, leaving.log_text()[-3000:]
        wait_balanced(staying, workers=2, shard_count=8)
        leaving.start(ready=False)
        leaving.wait_ready()
        wait_balanced(staying, workers=4, shard_count=8)
        time.sleep(0.5)
    history = load.stop()
    assert not history.failures(), [(o.status, o.code) for o in history.failures()[:10]]
    result = check(history, a, pools, CAPACITY)
    assert result["acked"] > 100


def test_a_worker_killed_alone_is_restarted_and_reclaims_quickly(cluster):
    """Fault: kill -9 of one worker (its host's supervisor restarts it). Property: it clears
    its previous life's nodes instead of waiting for the session to expire; history passes."""
    (a, b), pools = cluster
    load = Load([a.url, b.url], pools, clients=6, retry_s=15).start()
    time.sleep(0.5)
    victim = b.child_pids()["capsvc: worker 0"]
    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: b.child_pids().get("capsvc: worker 0") not in (None, victim), 10,
             "the worker to be restarted")
    wait_balanced(a, workers=4, shard_count=8)
    recovered_s = time.monotonic() - killed_at
    history = load.stop()
    print(f"worker kill -9 to balanced again: {recovered_s:.2f}s")
    check(history, a, pools, CAPACITY)


@pytest.mark.parametrize(
    "cluster", [{"session_timeout_ms": 9000, "owner_lease_ms": 6000}], indirect=True)
def test_zookeeper_restart_within_the_session_timeout_moves_nothing(cluster, zookeeper):
    """Fault: ZooKeeper stops and starts again within the session timeout (9 s here: the JVM
    alone takes seconds to start). Property: every shard keeps its owner and epoch; writes
    resume by themselves; the history check passes."""
    (a, b), pools = cluster
    before = {s: (r["owner"]["worker_id"], r["owner"]["epoch"]) for s, r in shard_owners(a).items()}
    load = Load([a.url, b.url], pools, clients=6, retry_s=15).start()
    time.sleep(0.5)
    stopped_at = time.monotonic()
    zookeeper.stop()
    zookeeper.start()
    print(f"zookeeper was down for {time.monotonic() - stopped_at:.2f}s")
    wait_for(lambda: a.get("/readyz")[0] == 200 and b.get("/readyz")[0] == 200, 10, "ready")
    resumed_at = time.monotonic()
    wait_for(lambda: load.history.first_success_after(resumed_at), 10, "writes to resume")
    history = load.stop()
    after = {s: (r["owner"]["worker_id"], r["owner"]["epoch"]) for s, r in shard_owners(a).items()}
    assert after == before
    check(history, a, pools, CAPACITY)
