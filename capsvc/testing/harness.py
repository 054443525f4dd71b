"""A real capsvc on real sockets: starts `capsvc serve` as a process, waits on conditions with
deadlines, and talks HTTP to it. Used by every integration test."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from capsvc.testing.serve_process import REPO as REPO  # re-exported for the tests
from capsvc.testing.serve_process import ServedByChild, ServeProcess, children, serve_config

ADMIN_TOKEN = "test-admin-token-0123456789"


def wait_for(condition: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.05):
    """Poll `condition` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - the condition may fail until it holds
            last_error = e
        time.sleep(every_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last_error!r})")


class Service(ServedByChild):
    """One supervisor (with its workers and router) on a free port and a temp data dir."""

    def __init__(self, data_dir: Path, workers: int = 2, shard_count: int = 8,
                 extra_config: str = "", env: dict[str, str] | None = None,
                 admin_token: str | None = ADMIN_TOKEN, service_extra: str = "",
                 config_name: str | None = None) -> None:
        self.data_dir = data_dir
        self.workers = workers
        self.config_path = data_dir.parent / f"{config_name or data_dir.name}.toml"
        self.config_path.write_text(serve_config(
            data_dir, workers=workers, shard_count=shard_count, log_level="INFO",
            service_extra=service_extra, extra=extra_config))
        self.env = {**os.environ, **(env or {})}
        self.env.pop("CAPSVC_ADMIN_TOKEN", None)
        if admin_token is not None:
            self.env["CAPSVC_ADMIN_TOKEN"] = admin_token
        self.admin_token = admin_token
        self.process: subprocess.Popen | None = None
        self.ssl_context = None  # set by TLS tests: the client then speaks https

    # -- process control -------------------------------------------------------------------
    def command_prefix(self) -> tuple[str, ...]:
        """What runs `capsvc serve` (a subclass may enter a network namespace)."""
        return ()

    def start(self, ready: bool = True) -> Service:
        self._serve = ServeProcess(self.config_path, self.env, prefix=self.command_prefix())
        self.process = self._serve.process
        if ready:
            wait_for(lambda: self.port, 30, "the listening line")
            self.wait_ready()
        return self

    def log_text(self) -> str:
        return "".join(self.output)

    def wait_ready(self, timeout_s: float = 30) -> None:
        wait_for(lambda: self.port, timeout_s, f"the listening line\n{self.log_text()[-3000:]}")
        wait_for(lambda: self.get("/readyz")[0] == 200, timeout_s,
                 f"/readyz to answer 200\n{self.log_text()[-3000:]}")

    def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM the supervisor and return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        finally:
            if self._serve is not None:
                self._serve.reader.join(5)

    def kill_all(self) -> None:
        """SIGKILL the whole process group (supervisor, workers, router)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def child_pids(self) -> dict[str, int]:
        """Process title -> pid for this supervisor's children (read from /proc)."""
        assert self.process is not None
        return children(self.process.pid)

    # -- HTTP ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                raw: bytes | None = None) -> tuple[int, Any, dict[str, str]]:
        return asyncio.run(self._one(method, path, body, headers, raw))

    def get(self, path: str, headers: dict | None = None) -> tuple[int, Any]:
        status, body, _ = self.request("GET", path, headers=headers)
        return status, body

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, payload, _ = self.request(method, path, body, self.admin_headers())
        return status, payload

    async def _one(self, method, path, body, headers, raw):
        connector = aiohttp.TCPConnector(ssl=self.ssl_context or True)
        async with aiohttp.ClientSession(connector=connector) as session:
            return await request(session, self.url, method, path, body, headers, raw)

    def define_pool(self, pool_id: str, slots: list[tuple[str, int]], **fields: Any):
        return self.admin("PUT", f"/v1/admin/pools/{pool_id}", pool_body(slots, **fields))


async def request(session: aiohttp.ClientSession, base: str, method: str, path: str,
                  body: Any = None, headers: dict | None = None, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    async with session.request(method, base + path, data=data, headers=headers) as response:
        text = await response.text()
        try:
            payload = json.loads(text) if text else None
        except ValueError:
            payload = text
        return response.status, payload, dict(response.headers)


def days_from_today(days: int) -> str:
    """A date relative to today (UTC), YYYY-MM-DD: test data whose slots stay bookable (a slot
    that has started, or passed its pool's booking cut-off, takes no reservation)."""
    return (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=days)).isoformat()


# The day after tomorrow: every slot on it, in any UTC offset (+14:00 included), starts after
# now, whatever the time of day. Test pools use it unless they need another day.
SOON = days_from_today(2)


def pool_body(slots: list[tuple[str, int]], kind: str = "logistics", region: str = "sg-north",
              date: str = SOON, total_capacity: int | None = None) -> dict[str, Any]:
    return {
        "kind": kind, "region": region, "date": date, "total_capacity": total_capacity,
        "slots": [
            {"slot_id": slot_id, "starts_at": f"{date}T{i % 24:02d}:00:00+08:00",
             "ends_at": f"{date}T{i % 24:02d}:30:00+08:00", "capacity": capacity}
            for i, (slot_id, capacity) in enumerate(slots)
        ],
    }
