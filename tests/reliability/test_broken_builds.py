"""The checker can fail on the real service: deliberately broken builds (test-only faults, see
capsvc.testing.faults) run the same scenario as a correct build, and the checker reports the
broken one and passes the correct one.

The epoch-check build lives with the cluster tests (test_cluster_faults.py): it needs claims.
"""

from __future__ import annotations

import time

import pytest

from capsvc.testing.harness import Service, wait_for
from capsvc.testing.recorder import Workload
from tests.reliability.common import (
    arm,
    check_run,
    define_pools,
    fault_env,
    kill,
    stopped_child,
    wait_stopped,
    wait_writes_resume,
)

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.mark.parametrize("broken", [False, True], ids=["correct", "no_capacity_check"])
def test_scarce_capacity_under_concurrency_is_never_overbooked(tmp_path, broken):
    """Fault: 12 clients race for 8 units per pool (reserves, releases, reads). Property: no
    overbooking on any prefix of any pool's log, and every answer matches the log. With the
    capacity check removed the checker must report overbooking."""
    svc = Service(tmp_path / "data", workers=2, shard_count=4,
                  env=fault_env("no_capacity_check") if broken else None).start()
    try:
        pools = [f"scarce-{i}" for i in range(3)]
        define_pools(svc, pools, {"a": 5, "b": 3})
        ops = Workload([svc.url], pools, ("a", "b"), clients=12, mix=(0.75, 0.05, 0.15),
                       tag="scarce").run_for(2.0)
        report = check_run(ops, svc, pools)
        if broken:
            assert any("overbooked" in v for v in report.violations), report.violations
            assert "TEST FAULTS ACTIVE: no_capacity_check" in svc.log_text()
        else:
            report.assert_ok()
            assert report.stats["rejected"] > 0, "the premise failed: capacity never ran out"
            assert "TEST FAULTS ACTIVE" not in svc.log_text()
    finally:
        svc.kill_all()


@pytest.mark.parametrize("broken", [False, True], ids=["correct", "reply_before_commit"])
def test_a_worker_killed_while_paused_before_its_commit_loses_no_acknowledged_write(
        tmp_path, broken):
    """Fault: a worker stops itself (SIGSTOP) with a batch decided and its pools in flight,
    just before the batch's append, under load; it is then killed (kill -9) and restarted by
    the supervisor. Property: nobody was answered for that batch, so nothing acknowledged is
    lost; clients' retries with their keys apply each reservation once. With replies sent
    before the commit the checker must report acknowledged reservations that are gone."""
    faults = ("points", "reply_before_commit") if broken else ("points",)
    svc = Service(tmp_path / "data", workers=2, shard_count=4, env=fault_env(*faults)).start()
    try:
        pools = [f"crash-{i}" for i in range(6)]
        define_pools(svc, pools, {"s": 10_000})
        load = Workload([svc.url], pools, clients=10, retry_s=20, tag="crash").start()
        load.wait_flowing()
        arm(svc.data_dir, "append")
        _, title, pid = wait_stopped([svc])
        time.sleep(0.3)  # any reply that can go out, does
        kill(pid)
        killed_at = time.monotonic()
        wait_for(lambda: svc.child_pids().get(title) not in (None, pid), 15, "the restart")
        took = wait_writes_resume(load, pools, killed_at)
        ops = load.stop()
        print(f"{title} paused before commit, killed: writes everywhere again after {took:.2f}s")
        assert stopped_child(svc) is None
        report = check_run(ops, svc, pools)
        if broken:
            assert any("gone" in v or "not in the log" in v for v in report.violations), (
                report.violations)
        else:
            report.assert_ok()
            assert report.stats["unknown"] >= 0
    finally:
        svc.kill_all()
