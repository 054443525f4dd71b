"""Failures and changes of a cluster under concurrent load, each ending with a history check:
no slot overbooked, every acknowledged reservation present, no idempotency key applied twice."""

from __future__ import annotations

import os
import signal
import time

import pytest

from capsvc.sharding import shard_for_pool
from capsvc.testing.harness import days_from_today, wait_for
from capsvc.testing.history import Load, check
from capsvc.testing.hosts import cluster_host, running_hosts, shard_owners, wait_balanced

# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
pytestmark = pytest.mark.cluster
SESSION_TIMEOUT_S = 3.0
CAPACITY = 100_000


@pytest.fixture
def cluster(request, tmp_path, zookeeper):
    """Two hosts of two workers over 8 shards, 16 pools defined. A test may ask for other
    session settings with @pytest.mark.parametrize("cluster", [{...}], indirect=True)."""
    settings = getattr(request, "param", {})
    with running_hosts(tmp_path / "shared", zookeeper, "ab", **settings) as hosts:
        pools = [f"p-{i}" for i in range(16)]
        for pool_id in pools:
            assert hosts[0].define_pool(pool_id, [("s", CAPACITY)])[0] == 201
        yield hosts, pools


def _owned_by(host, host_id: str) -> set[int]:
    return {s for s, row in shard_owners(host).items()
            if row["owner"] and row["owner"]["host"] == host_id}


def test_a_crashed_host_loses_nothing_and_its_shards_move_within_the_session_timeout(cluster):
    """Fault: kill -9 of every process of one host under load. Property: its shards accept
    writes on the other host within session_timeout + 3 s; the history check passes."""
    (a, b), pools = cluster
    load = Load([a.url], pools, clients=8, retry_s=15).start()
    load.wait_flowing()
    moved = _owned_by(a, "host-b")
    killed_at = time.monotonic()
    b.kill_all()
    wait_for(lambda: not _owned_by(a, "host-b") and all(
        row["state"] == "ready" for row in shard_owners(a).values()), 20, "b's shards to move")
    wait_for(lambda: len(load.history.first_success_after(killed_at)) == len(pools), 20,
             "writes to every pool after the kill")
    history = load.stop()
    firsts = history.first_success_after(killed_at)
    failover_s = max(firsts[p] for p in pools) - killed_at
    print(f"failover after kill -9 of a host: {failover_s:.2f}s for shards {sorted(moved)}")
    assert failover_s < SESSION_TIMEOUT_S + 3.0
    result = check(history, a, pools, CAPACITY)
    assert result["acked"] > 100


def test_a_refusal_still_replays_after_its_shards_owner_crashes(cluster):
    """Issue 15: a keyed reserve refused with capacity_exhausted binds its key. Fault: kill -9
    of the host owning the pool's shard, after the capacity came free again. Property: the
    retry through the survivor gets the same 409, marked replayed (the refusal is an event in
    the shard's file, which the new owner recovers), while a new key books the freed unit."""
    (a, b), _pools = cluster
    on_b = _owned_by(a, "host-b")
    pool_id = next(p for p in (f"refuse-{i}" for i in range(1000))
                   if shard_for_pool(p, 8) in on_b)
    assert a.define_pool(pool_id, [("s", 1)])[0] == 201
    path = f"/v1/pools/{pool_id}/reservations"
    status, held, _ = a.request("POST", path, {"slot_id": "s"}, {"Idempotency-Key": "fill"})
    assert status == 201, held
    status, refused, _ = a.request("POST", path, {"slot_id": "s"}, {"Idempotency-Key": "late"})
    assert (status, refused["code"]) == (409, "capacity_exhausted"), refused
    status, _, _ = a.request("DELETE", f"/v1/reservations/{held['reservation_id']}")
    assert status == 200
    b.kill_all()
    wait_for(lambda: not _owned_by(a, "host-b") and all(
        row["state"] == "ready" for row in shard_owners(a).values()), 20, "b's shards to move")
    status, again, headers = a.request("POST", path, {"slot_id": "s"},
                                       {"Idempotency-Key": "late"})
    assert (status, again, headers.get("Idempotent-Replayed")) == (409, refused, "true")
    status, fresh, _ = a.request("POST", path, {"slot_id": "s"}, {"Idempotency-Key": "new"})
    assert status == 201, fresh


def test_a_rolling_restart_fails_no_request(cluster, tmp_path):
    """Change: SIGTERM each host in turn (clients sent to the other host's router, as a load
    balancer would), start it again. Property: zero failed requests; history check passes."""
    (a, b), pools = cluster
    load = Load([a.url], pools, clients=6, retry_s=0).start()
    for leaving, staying in ((b, a), (a, b)):
        load.routers = [staying.url]
        load.wait_every_client_past(time.monotonic())
        assert leaving.stop() == 0, leaving.log_text()[-3000:]
        wait_balanced(staying, workers=2, shard_count=8)
        leaving.start(ready=False)
        leaving.wait_ready()
        wait_balanced(staying, workers=4, shard_count=8)
        load.wait_flowing()
    history = load.stop()
    assert not history.failures(), [(o.status, o.code) for o in history.failures()[:10]]
    result = check(history, a, pools, CAPACITY)
    assert result["acked"] > 100


def test_a_worker_killed_alone_is_restarted_and_reclaims_quickly(cluster):
    """Fault: kill -9 of one worker (its host's supervisor restarts it). Property: it clears
    its previous life's nodes instead of waiting for the session to expire; history passes."""
    (a, b), pools = cluster
    load = Load([a.url, b.url], pools, clients=6, retry_s=15).start()
    load.wait_flowing()
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


@pytest.mark.own_zookeeper
@pytest.mark.parametrize(
    "cluster", [{"session_timeout_ms": 30000, "owner_lease_ms": 20000}], indirect=True)
def test_zookeeper_restart_within_the_session_timeout_moves_nothing(cluster, zookeeper):
    """Fault: ZooKeeper stops and starts again within the session timeout (30 s here: the JVM
    alone can take seconds to start on a busy machine). Property: every shard keeps its owner
    and epoch; writes resume by themselves; the history check passes.

    The owner lease (20 s, renewed every 5 s) must outlast the outage plus one renewal
    interval, or owners rightly give their files up: with 10 s and a restart of 8-9 s this
    test failed now and then on a busy machine."""
    (a, b), pools = cluster
    before = {s: (r["owner"]["worker_id"], r["owner"]["epoch"]) for s, r in shard_owners(a).items()}
    load = Load([a.url, b.url], pools, clients=6, retry_s=15).start()
    load.wait_flowing()
    stopped_at = time.monotonic()
    zookeeper.stop()
    zookeeper.start()
    down_s = time.monotonic() - stopped_at
    assert down_s < 10, f"the premise failed: ZooKeeper took {down_s:.1f}s to restart"
    wait_for(lambda: a.get("/readyz")[0] == 200 and b.get("/readyz")[0] == 200, 10, "ready")
    resumed_at = time.monotonic()
    wait_for(lambda: load.history.first_success_after(resumed_at), 10, "writes to resume")
    history = load.stop()

    def owners_listed():  # the cluster view rereads ZooKeeper after the restart
        owners = shard_owners(a)
        if any(r["owner"] is None for r in owners.values()):
            return None
        return {s: (r["owner"]["worker_id"], r["owner"]["epoch"]) for s, r in owners.items()}

    after = wait_for(owners_listed, 10, "every shard's owner listed again")
    assert after == before
    check(history, a, pools, CAPACITY)


def _epochs_never_go_back(data_dir) -> None:
    """In every shard file, events are stamped with non-decreasing epochs in seq order: no
    stale owner appended after a newer one took over."""
    import sqlite3

    for path in sorted((data_dir / "shards").glob("*.sqlite3")):
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        epochs = [row[0] for row in db.execute("SELECT epoch FROM events ORDER BY seq")]
        db.close()
        assert epochs == sorted(epochs), f"{path.name}: epochs go back: {epochs}"


def test_a_paused_host_appends_nothing_after_it_wakes(cluster, tmp_path):
    """Fault: SIGSTOP of every process of one host past its session timeout, then SIGCONT.
    Property: its shards move (unavailable, never wrong, while the paused workers still hold
    the files); on waking it appends nothing, lets go, and rejoins; the history check passes
    and no shard file has an event from an older epoch after a newer one."""
    (a, b), pools = cluster
    load = Load([a.url], pools, clients=8, retry_s=20).start()
    load.wait_flowing()
    paused_shards = _owned_by(a, "host-b")
    os.killpg(b.process.pid, signal.SIGSTOP)
    time.sleep(SESSION_TIMEOUT_S + 2.0)
    os.killpg(b.process.pid, signal.SIGCONT)
    woke_at = time.monotonic()
    wait_for(lambda: all(row["state"] == "ready" for row in shard_owners(a).values()), 30,
             "every shard ready again")
    wait_balanced(a, workers=4, shard_count=8, timeout_s=30)
    wait_for(lambda: len(load.history.first_success_after(woke_at)) == len(pools), 20,
             "writes to every pool")
    history = load.stop()
    assert paused_shards
    check(history, a, pools, CAPACITY)
    for host in (a, b):
        assert host.stop() == 0
    _epochs_never_go_back(tmp_path / "shared")


def test_a_host_joining_takes_its_share_without_failing_a_request(cluster, tmp_path, zookeeper):
    """Change: a third host joins under load. Property: shards rebalance onto it by handoff
    (floor or ceil of 8/6 per worker) with zero failed requests; history check passes."""
    (a, b), pools = cluster
    load = Load([a.url, b.url], pools, clients=6, retry_s=0).start()
    load.wait_flowing()
    c = cluster_host(tmp_path / "shared", zookeeper, "host-c").start(ready=False)
    try:
        c.wait_ready()
        owners = wait_balanced(a, workers=6, shard_count=8)
        assert any(row["owner"]["host"] == "host-c" for row in owners.values())
        load.wait_flowing()
        history = load.stop()
        assert not history.failures(), [(o.status, o.code) for o in history.failures()[:10]]
        check(history, c, pools, CAPACITY)
    finally:
        c.kill_all()


@pytest.mark.own_zookeeper
def test_a_long_zookeeper_outage_stops_writes_keeps_reads_and_heals(cluster, zookeeper):
    """Fault: ZooKeeper down for twice the session timeout. Property: writes answer 503
    (consistency over availability), the availability grid keeps being served, and once
    ZooKeeper is back every shard is owned again and writes succeed with no human step."""
    (a, b), pools = cluster
    zookeeper.stop()
    time.sleep(SESSION_TIMEOUT_S * 2)
    status, problem, headers = a.request("POST", f"/v1/pools/{pools[0]}/reservations",
                                         {"slot_id": "s"}, {"Idempotency-Key": "outage-1"})
    assert status == 503 and "Retry-After" in headers, problem
    status, grid = a.get(f"/v1/availability?region=sg-north&date={D1}")
    assert status == 200 and len(grid["pools"]) == len(pools)
    zookeeper.start()
    wait_balanced(a, workers=4, shard_count=8, timeout_s=30)
    load = Load([a.url, b.url], pools, clients=4, retry_s=15).start()
    wait_for(lambda: len(load.history.first_success_after(0)) == len(pools), 20,
             "writes to every pool")
    history = load.stop()
    check(history, a, pools, CAPACITY)
