"""`capsvc serve` as a child process, for the test harness and the load tools alike.

Writes a small configuration, starts the supervisor in its own session (so a test can signal
the whole group), collects its output in a thread and reads the port from the listening line.
What to wait for and how to stop is the caller's business.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_LISTENING = re.compile(r"listening on http://[\d.]+:(\d+)")


def serve_config(data_dir: Path, *, workers: int, shard_count: int, log_level: str,
                 service_extra: str = "", extra: str = "") -> str:
    """A config.toml for one host on a free port (`port = 0`) and `data_dir`."""
    return (f'[service]\ndata_dir = "{data_dir}"\nport = 0\nworkers = {workers}\n'
            f"shard_count = {shard_count}\n{service_extra}"
            f'[logging]\nlevel = "{log_level}"\nformat = "text"\n' + extra)


class ServeProcess:
    """One running `capsvc serve --config <path>`: its Popen, output lines and port."""

    def __init__(self, config_path: Path, env: dict[str, str], *, prefix: tuple[str, ...] = (),
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.output: list[str] = []
        self.port: int | None = None
        self.process = subprocess.Popen(
            [*prefix, sys.executable, "-m", "capsvc", "serve", "--config", str(config_path)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO,
            start_new_session=True, preexec_fn=preexec_fn,
        )
        self.reader = threading.Thread(target=self._read_output, daemon=True)
        self.reader.start()

    def _read_output(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            match = _LISTENING.search(line)
            if match:
                self.port = int(match.group(1))


class ServedByChild:
    """For a class that holds its running `capsvc serve` in `_serve`: its port and output."""

    _serve: ServeProcess | None = None

    @property
    def port(self) -> int | None:
        return self._serve.port if self._serve is not None else None

    @property
    def output(self) -> list[str]:
        return self._serve.output if self._serve is not None else []


def children(pid: int) -> dict[str, int]:
    """Command line (process title) -> pid of each child of `pid`, read from /proc."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out[cmdline] = int(entry.name)
    return out
