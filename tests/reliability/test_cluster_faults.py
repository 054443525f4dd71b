"""Cluster faults under concurrent load, each ending with the history checker and an audit of
the shard files (epochs never go back): a worker paused inside a write past its session
timeout, crashes during recovery and during handoff, ZooKeeper forgetting an epoch counter
(and the deliberately broken build without the epoch check)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from capsvc.testing.checker import audit_shard_files
from capsvc.testing.harness import wait_for
from capsvc.testing.recorder import Workload
from capsvc.testing.zookeeper import ZooKeeper
from tests.reliability.cluster import (
    SESSION_TIMEOUT_MS,
    host,
    new_cluster_name,
    owner,
    set_epoch_counter,
    shard_of,
    wait_all_ready,
    worker_pid,
)
from tests.reliability.common import (
    arm,
    check_run,
    define_pools,
    kill,
    wait_stopped,
    wait_writes_resume,
)

pytestmark = [pytest.mark.cluster, pytest.mark.reliability]
POOLS = [f"p-{i}" for i in range(12)]


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory):
    zk = ZooKeeper(tmp_path_factory.mktemp("zk")).start()
    yield zk
    zk.stop()


@pytest.fixture
def hosts(tmp_path, zookeeper, request):
    """Start the hosts a test asks for: `hosts(("a", faults), ("b", faults))`."""
    started = []
    name = new_cluster_name()

    def start(*specs, **settings):
        for host_id, faults in specs:
            svc = host(tmp_path / "shared", zookeeper, f"host-{host_id}", name, faults=faults,
                       **settings).start(ready=False)
            started.append(svc)
        for svc in started:
            svc.wait_ready()
        wait_all_ready(started[0])
        define_pools(started[0], POOLS, {"s": 100_000})
        return started

    start.name = name
    start.data = tmp_path / "shared"
    yield start
    for svc in started:
        svc.kill_all()


def _worker_index(title: str) -> int:
    return int(title.rsplit(" ", 1)[1])


def test_a_worker_paused_inside_a_write_past_its_session_lets_no_one_write_until_it_lets_go(
        hosts):
    """Fault: a worker stops (SIGSTOP) with a batch decided and its pools in flight, holding the
    shard file, for twice the session timeout, then continues (SIGCONT). Property: the shard is
    claimed elsewhere with a newer epoch, but the new owner writes nothing while the paused one
    holds the file; on waking the old owner finishes its append (nobody else could have
    written), lets go, and the new owner recovers it: nothing lost, nothing doubled, and in
    the file no event of the old epoch follows one of the new."""
    a, b = hosts(("a", ("points",)), ("b", ("points",)))
    victim_shard = next(s for s in range(8) if owner(a, s)["owner"]["host"] == "host-b")
    load = Workload([a.url, b.url], POOLS, clients=8, retry_s=30, tag="pause").start()
    load.wait_flowing()
    arm(hosts.data, "append", "pause", victim_shard)
    paused_host, title, pid = wait_stopped([b])
    old_epoch = owner(a, victim_shard)["owner"]["epoch"]
    # b's session expires while it is paused: the shard is claimed on a with a newer epoch
    wait_for(lambda: (r := owner(a, victim_shard)["owner"])["host"] == "host-a"
             and r["epoch"] > old_epoch, 4 * SESSION_TIMEOUT_MS / 1000,
             f"shard {victim_shard} to be claimed on host-a")
    time.sleep(SESSION_TIMEOUT_MS / 1000)  # the window watched: the new owner must stay out
    row = owner(a, victim_shard)
    assert row["state"] != "ready", f"the new owner opened a file held by a paused owner: {row}"
    os.kill(pid, signal.SIGCONT)
    woke_at = time.monotonic()
    wait_all_ready(a)
    took = wait_writes_resume(load, POOLS, woke_at)
    ops = load.stop()
    print(f"shard {victim_shard}: ready on host-a and every pool written {took:.2f}s after "
          "SIGCONT")
    check_run(ops, a, POOLS).assert_ok()
    for svc in (a, b):
        svc.kill_all()
    assert audit_shard_files(hosts.data) == []


def test_crashes_during_recovery_heal_with_a_newer_epoch(hosts):
    """Fault: (1) recovery fails inside the new owner after the file took its epoch; (2) the
    next owner is killed (kill -9) while it replays. Property: each time the shard is claimed
    again with a newer epoch (an in-process failure must not retry with its spent epoch
    forever) and recovers; the history check passes."""
    (a,) = hosts(("a", ("points",)))
    shard = shard_of(POOLS[0])
    load = Workload([a.url], POOLS, clients=6, retry_s=30, tag="recovery").start()
    load.wait_flowing()
    for action in ("fail", "pause"):
        row = owner(a, shard)
        epoch, index = row["owner"]["epoch"], row["owner"]["worker"]
        arm(hosts.data, "recovery", action, shard)
        pid = worker_pid(a, index)
        kill(pid)
        if action == "pause":
            _, _, paused = wait_stopped([a])
            kill(paused)  # killed while it replays
        started = time.monotonic()
        wait_for(lambda e=epoch: (r := owner(a, shard))["state"] == "ready"
                 and r["owner"]["ready"] and r["owner"]["epoch"] > e + 1, 30,
                 f"shard {shard} to heal after {action}")
        print(f"recovery {action}: shard {shard} ready again in {time.monotonic() - started:.2f}s "
              f"at epoch {owner(a, shard)['owner']['epoch']}")
    resumed_at = time.monotonic()
    wait_writes_resume(load, POOLS, resumed_at)
    ops = load.stop()
    check_run(ops, a, POOLS).assert_ok()
    a.kill_all()
    assert audit_shard_files(hosts.data) == []


def test_a_worker_killed_during_handoff_loses_nothing(hosts):
    """Fault: host b stops (SIGTERM, a planned handoff) and one of its workers is killed (kill
    -9) in the middle of a handoff: its shard drained and closed, its ownership not yet
    released. Property: the shard moves after the session timeout, nothing acknowledged is
    lost, and the history check passes."""
    a, b = hosts(("a", ("points",)), ("b", ("points",)))
    load = Workload([a.url], POOLS, clients=8, retry_s=30, tag="handoff").start()
    load.wait_flowing()
    arm(hosts.data, "handoff", "pause", "*")
    b.process.send_signal(signal.SIGTERM)
    stopped_at = time.monotonic()
    _, title, pid = wait_stopped([b])
    kill(pid)
    assert b.process.wait(30) != 0  # a worker died while draining: not a clean stop
    wait_all_ready(a, timeout_s=30)
    took = wait_writes_resume(load, POOLS, time.monotonic())
    ops = load.stop()
    print(f"handoff crash: every shard ready on host-a {time.monotonic() - stopped_at:.2f}s after "
          f"SIGTERM ({title} killed mid-handoff); writes resumed in {took:.2f}s")
    check_run(ops, a, POOLS).assert_ok()
    a.kill_all()
    assert audit_shard_files(hosts.data) == []


@pytest.mark.parametrize("broken", [False, True], ids=["correct", "no_epoch_check"])
def test_zookeeper_forgetting_an_epoch_counter_never_lets_epochs_go_back(hosts, zookeeper,
                                                                          broken):
    """Fault: ZooKeeper loses a shard's fencing counter (reset to 0, as after restoring an old
    snapshot) and the shard's owner is killed, so the next claim takes an epoch older than
    the file's. Property: the file refuses the old epoch and the worker claims again upward
    until it is newer (no human step); epochs never go back in the file or in answers. With
    the epoch check disabled the checker and the file audit must report epochs going back."""
    faults = ("no_epoch_check",) if broken else ()
    (a,) = hosts(("a", faults))
    shard = shard_of(POOLS[0])
    load = Workload([a.url], POOLS, clients=6, retry_s=30, tag="epoch").start()
    load.wait_flowing()
    for reset in (False, True):  # the first move raises the file's epoch above 1
        row = owner(a, shard)
        epoch, index = row["owner"]["epoch"], row["owner"]["worker"]
        if reset:
            set_epoch_counter(zookeeper, hosts.name, shard, 0)
        kill(worker_pid(a, index))
        wait_for(lambda e=epoch: (r := owner(a, shard))["state"] == "ready"
                 and r["owner"]["ready"] and r["owner"]["epoch"] != e, 30,
                 f"shard {shard} to be claimed again")
        load.wait_flowing()
    wait_writes_resume(load, POOLS, time.monotonic())
    ops = load.stop()
    report = check_run(ops, a, POOLS)
    a.kill_all()
    problems = audit_shard_files(hosts.data)
    print(f"epoch counter reset: file audit {problems}")
    if broken:
        assert any("epoch" in v for v in report.violations), report.violations
        assert any(f"{shard:03d}.sqlite3" in p for p in problems), problems
    else:
        report.assert_ok()
        assert problems == []
