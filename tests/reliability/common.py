"""Helpers shared by the reliability tests: test-fault environments, arming pause points,
finding paused processes, defining pools, and judging a run."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from capsvc.testing.checker import Op, Report
from capsvc.testing.faults import ENV_CONFIRM, ENV_FAULTS
from capsvc.testing.harness import Service, wait_for
from capsvc.testing.recorder import judge


def fault_env(*names: str) -> dict[str, str]:
    """The environment that asks for test faults (still only honoured under the temp dir)."""
    return {ENV_FAULTS: ",".join(names), ENV_CONFIRM: "yes"} if names else {}


def arm(data_dir: Path, point: str, action: str = "pause", shard: int | str = "*") -> None:
    """Arm a pause/fail point (see capsvc.testing.faults): the first process to reach it acts."""
    directory = data_dir / "test-faults"
    directory.mkdir(exist_ok=True)
    tmp = directory / f".{point}.tmp"
    tmp.write_text(f"{action} {shard}")
    tmp.rename(directory / point)


def process_state(pid: int) -> str | None:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def stopped_child(service: Service) -> tuple[str, int] | None:
    """(title, pid) of a child of `service` stopped by a signal, if any."""
    for title, pid in service.child_pids().items():
        if process_state(pid) == "T":
            return title, pid
    return None


def wait_stopped(services: list[Service], timeout_s: float = 20) -> tuple[Service, str, int]:
    def find():
        for svc in services:
            found = stopped_child(svc)
            if found:
                return svc, *found
        return None

    return wait_for(find, timeout_s, "a worker to pause itself at the armed point")


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def define_pools(service: Service, pools: list[str], slots: dict[str, int],
                 total: int | None = None) -> None:
    for pool_id in pools:
        status, body = service.define_pool(pool_id, list(slots.items()), total_capacity=total)
        assert status == 201, body


def check_run(ops: list[Op], service: Service, pools: list[str], **kwargs) -> Report:
    """Judge `ops` against what `service` holds now; prints the numbers for the record."""
    report = judge(ops, service.url, service.admin_token, pools, **kwargs)
    print(f"checker: {report.stats}; violations: {len(report.violations)}")
    return report


def wait_writes_resume(workload, pools: list[str], after: float, timeout_s: float = 30) -> float:
    """Seconds from `after` until every pool has acknowledged a reserve invoked after it."""
    wait_for(lambda: workload.acked_since(after) >= set(pools), timeout_s,
             "writes to every pool")
    return time.monotonic() - after
