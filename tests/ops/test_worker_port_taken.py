"""A worker that cannot bind its TCP port (another program holds it) stops `capsvc serve`
at once, non-zero, naming the port: restarting the worker would never free the port, and a
half-started service would only wait forever for readiness."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from capsvc.testing.harness import REPO, Service

pytestmark = pytest.mark.integration
EXIT_DEADLINE_S = 20  # start-up of three processes and a drain, with room for a slow machine


def test_serve_exits_non_zero_naming_the_port_a_worker_cannot_bind(tmp_path):
    taken = socket.create_server(("127.0.0.1", 0))  # someone else's listening socket
    port = taken.getsockname()[1]
    svc = Service(tmp_path / "data", workers=1, shard_count=2,
                  service_extra=f'worker_host = "127.0.0.1"\nworker_port_base = {port}\n')
    check = subprocess.run(
        [sys.executable, "-m", "capsvc", "check-config", "--config", str(svc.config_path)],
        capture_output=True, text=True, cwd=REPO, timeout=60)
    assert check.returncode == 0, check.stderr  # valid: the port is only taken at run time
    try:
        svc.start(ready=False)
        try:
            svc.process.wait(EXIT_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"serve still running after {EXIT_DEADLINE_S}s:\n{svc.log_text()[-3000:]}")
        code = svc.stop()  # exited already: its code, once all its output is read
        log = svc.log_text()
        assert code != 0, log
        supervisor = [line for line in log.splitlines() if " supervisor " in line]
        assert any(f"127.0.0.1:{port}" in line for line in supervisor), log
        assert f"capsvc: cannot start: worker 0 cannot listen on 127.0.0.1:{port}" in log
        assert log.count("started worker 0") == 1, log  # not restarted
    finally:
        svc.kill_all()
        taken.close()
