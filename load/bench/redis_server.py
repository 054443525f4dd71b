"""A private Redis server for the benchmark: Debian's `redis-server`, a temp directory, a free
port, durable like PostgreSQL's defaults: every write is in the append-only file and fsynced
before it is answered (`appendonly yes`, `appendfsync always`).

The configuration is on the command line: where it listens, its directory, the AOF settings,
and `save ""` (no RDB snapshots: the AOF is the durable copy). Everything else is Redis's
default. `stop()` is SIGTERM to the one process it started (a clean shutdown that flushes the
AOF), then the temp directory is removed.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis

REDIS_SERVER = Path("/usr/bin/redis-server")
DURABLE = {"appendonly": "yes", "appendfsync": "always", "save": ""}


def server_binary() -> Path:
    found = REDIS_SERVER if REDIS_SERVER.exists() else shutil.which("redis-server")
    if not found:
        raise RuntimeError("Redis is not installed: apt-get install -y redis-server")
    return Path(found)


def version() -> str:
    """`redis-server --version`'s number, e.g. 7.0.15 (no server needed)."""
    try:
        out = subprocess.run([str(server_binary()), "--version"], capture_output=True,
                             text=True, check=True).stdout
    except (OSError, RuntimeError, subprocess.CalledProcessError):
        return "not installed"
    return next((w[2:] for w in out.split() if w.startswith("v=")), out.strip())


class RedisServer:
    def __init__(self, port: int) -> None:
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="capsvc-bench-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self, timeout_s: float = 30) -> RedisServer:
        settings = {"port": str(self.port), "bind": "127.0.0.1", "dir": str(self.root),
                    "logfile": str(self.root / "redis.log"), "daemonize": "no", **DURABLE}
        command = [str(server_binary())]
        for name, value in settings.items():
            command += [f"--{name}", value]
        self.process = subprocess.Popen(command, cwd=self.root, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                if self.process.poll() is not None:
                    stderr = self.process.stderr.read().decode(errors="replace")
                    raise RuntimeError(f"redis-server exited {self.process.returncode}: "
                                       f"{stderr[-2000:]}{self._log_tail()}")
                try:
                    if client.ping():
                        break
                except redis.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server not answering on {self.port}: "
                                       f"{self._log_tail()}")
                time.sleep(0.05)
            got = {k: client.config_get(k)[k] for k in DURABLE}
            if got != DURABLE:
                raise RuntimeError(f"redis-server is not durable as asked: {got}")
        except BaseException:
            self.stop()
            raise
        finally:
            client.close()
        return self

    def setting(self, name: str) -> str:
        with redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True) as client:
            return client.config_get(name)[name]

    def _log_tail(self) -> str:
        try:
            return (self.root / "redis.log").read_text()[-2000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process is not None and self.process.stderr is not None:
            self.process.stderr.close()
        shutil.rmtree(self.root, ignore_errors=True)
