"""The router's read-model feed on a real service: a normal start logs no feed warning (the
router starts before its workers listen and waits for them quietly); a worker that dies after
it has answered is warned about, and its recovery logged."""

from __future__ import annotations

import os
import signal

import pytest

from capsvc.testing.harness import Service, wait_for
from tests.reliability.common import arm, fault_env, wait_stopped

pytestmark = pytest.mark.integration
FAILING = "read-model feed failing"
WAITING = "read-model feed waiting for the worker"


def test_a_normal_start_logs_no_feed_warning_and_a_dead_worker_does(tmp_path):
    svc = Service(tmp_path / "data", workers=2, shard_count=4).start()
    try:
        assert FAILING not in svc.log_text(), svc.log_text()[-3000:]
        os.kill(svc.child_pids()["capsvc: worker 0"], signal.SIGKILL)
        wait_for(lambda: FAILING in svc.log_text(), 15, "the feed warning for the dead worker")
        wait_for(lambda: "read-model feed recovered" in svc.log_text(), 30,
                 "the feed to recover once the worker is back")
        svc.wait_ready()
    finally:
        assert svc.stop() == 0, svc.log_text()[-3000:]


def test_a_worker_slow_to_listen_is_waited_for_without_a_warning(tmp_path):
    """Deterministic: a worker pauses itself while recovering a shard (before it listens)
    until the router's feed has tried it; then it goes on."""
    svc = Service(tmp_path / "data", workers=2, shard_count=4, env=fault_env("points"))
    svc.config_path.write_text(svc.config_path.read_text().replace('"INFO"', '"DEBUG"'))
    svc.data_dir.mkdir(parents=True)
    arm(svc.data_dir, "recovery", "pause")
    svc.start(ready=False)
    try:
        _, _, pid = wait_stopped([svc])
        wait_for(lambda: WAITING in svc.log_text() or FAILING in svc.log_text(), 15,
                 "the feed to try the paused worker")
        os.kill(pid, signal.SIGCONT)
        svc.wait_ready()
        assert FAILING not in svc.log_text(), svc.log_text()[-3000:]
    finally:
        assert svc.stop() == 0, svc.log_text()[-3000:]
