"""A throwaway capsvc for load runs and benchmarks: `capsvc serve` on a temp data directory.

Starts the supervisor in its own session, reads the listening line, waits for `/readyz`, and
stops it with SIGTERM to the supervisor's pid (the only pid it ever signals, plus that pid's
process group as a last resort, which it created itself). If the process that started it dies
first, the kernel sends the supervisor SIGTERM (PR_SET_PDEATHSIG), so nothing is left behind.
"""

from __future__ import annotations

import ctypes
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from capsvc.testing.serve_process import REPO as REPO  # re-exported for the load tools
from capsvc.testing.serve_process import ServedByChild, ServeProcess, children, serve_config


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it (a clean drain) if our process dies."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port_block(count: int, start: int = 20000, end: int = 60000) -> int:
    """The first of `count` consecutive TCP ports that are free on 127.0.0.1 right now."""
    rng = secrets.SystemRandom()
    for _ in range(200):
        base = rng.randrange(start, end - count)
        if all(_port_free(base + i) for i in range(count)):
            return base
    raise RuntimeError(f"no block of {count} free ports found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def http_status(url: str, timeout_s: float = 2.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


class CapsvcProcess(ServedByChild):
    """One supervisor with its router and workers, listening on 127.0.0.1."""

    def __init__(self, data_dir: Path, *, workers: int = 2, shard_count: int = 64,
                 worker_ports: bool = True, admin_token: str | None = None,
                 extra_config: str = "") -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.admin_token = admin_token or "load-" + secrets.token_hex(16)
        self.worker_port_base = free_port_block(workers) if worker_ports else 0
        self.config_path = data_dir.parent / f"{data_dir.name}.toml"
        self.config_path.write_text(serve_config(
            data_dir, workers=workers, shard_count=shard_count, log_level="WARNING",
            service_extra=f"worker_port_base = {self.worker_port_base}\n", extra=extra_config))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def worker_url(self, index: int) -> str:
        assert self.worker_port_base, "started without worker ports"
        return f"http://127.0.0.1:{self.worker_port_base + index}"

    def start(self, timeout_s: float = 120) -> CapsvcProcess:
        env = {**os.environ, "CAPSVC_ADMIN_TOKEN": self.admin_token}
        self._serve = ServeProcess(self.config_path, env, preexec_fn=_die_with_parent)
        self.process = self._serve.process
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"capsvc exited: {''.join(self.output)[-2000:]}")
            if self.port and http_status(self.url + "/readyz") == 200:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"capsvc not ready in {timeout_s}s: {''.join(self.output)[-2000:]}")

    def pids(self) -> dict[str, int]:
        """Role -> pid: 'supervisor', 'router', 'worker 0', ... (children found in /proc)."""
        assert self.process is not None
        return {"supervisor": self.process.pid,
                **{title.removeprefix("capsvc: "): pid
                   for title, pid in children(self.process.pid).items()}}

    def stop(self, timeout_s: float = 60) -> int:
        """SIGTERM the supervisor (it drains everything); SIGKILL its own group if stuck."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # the session we created at start
            return self.process.wait(10)
