"""A real ZooKeeper for tests: Debian's package (installed if missing), one standalone server
on a free port in a temp dir, with a short tickTime so that sessions of a few seconds work."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from kazoo.client import KazooClient

ZK_SERVER = Path("/usr/share/zookeeper/bin/zkServer.sh")


def ensure_installed() -> None:
    if ZK_SERVER.exists():
        return
    if shutil.which("apt-get") is None:
        raise RuntimeError("ZooKeeper is not installed and apt-get is not available")
    subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", "zookeeper"], check=True,
                   capture_output=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(count: int) -> int:
    """A base port such that base .. base+count-1 are all free right now."""
    for _ in range(200):
        base = free_port()
        if base + count >= 65000:
            continue
        try:
            socks = []
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


class ZooKeeper:
    def __init__(self, directory: Path, tick_ms: int = 250) -> None:
        ensure_installed()
        self.directory = directory
        self.port = free_port()
        self.config = directory / "zoo.cfg"
        (directory / "data").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"tickTime={tick_ms}\ndataDir={directory / 'data'}\nclientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
            f"minSessionTimeout={2 * tick_ms}\nmaxSessionTimeout=60000\n"
            "4lw.commands.whitelist=*\n"
        )
        self.process: subprocess.Popen | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30) -> ZooKeeper:
        log = open(self.directory / "zookeeper.log", "ab")  # noqa: SIM115 - lives with the server
        self.process = subprocess.Popen(
            [str(ZK_SERVER), "start-foreground", str(self.config)], stdout=log,
            stderr=subprocess.STDOUT, env={"ZOO_LOG_DIR": str(self.directory),
                                           "PATH": "/usr/bin:/bin", "JVMFLAGS": "-Xmx256m"})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            client = KazooClient(hosts=self.hosts, timeout=2)
            try:
                client.start(timeout=1)
                client.stop()
                client.close()
                return self
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.2)
        raise RuntimeError(f"ZooKeeper did not start on {self.hosts}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
