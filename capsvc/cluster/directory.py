"""What a router knows of the cluster: hosts, workers and shard owners, fed by watches.

Read-only: the directory never changes ownership, it only mirrors ZooKeeper. Every change
wakes whoever waits in `wait_change` (the router's buffered requests, the feed manager).
While the session is suspended or lost the view is kept as it was (the owners most likely still
own their shards), and `confirmed` says it is not current.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

from kazoo.client import KazooState

from capsvc.cluster.zk import Zk, decode


@dataclass(frozen=True)
class Owner:
    worker_id: str
    host_id: str
    index: int
    url: str
    epoch: int
    ready: bool


class Directory:
    def __init__(self, zk: Zk, shard_count: int) -> None:
        self.zk = zk
        self.shard_count = shard_count
        self.owners: dict[int, Owner | None] = dict.fromkeys(range(shard_count))
        self.workers: dict[str, dict[str, Any]] = {}
        self.hosts: list[str] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        for shard_id in range(self.shard_count):
            self.zk.watch_data(
                self.zk.shard_path(shard_id, "owner"),
                lambda raw, _stat, s=shard_id: self._on_owner(s, raw),
            )
        self.zk.watch_children(self.zk.path("workers"), self._on_workers)
        self.zk.watch_children(self.zk.path("hosts"), self._on_hosts)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_change(self, timeout_s: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(timeout_s, 0.001)):
                await self._changed.wait()

    def _on_owner(self, shard_id: int, raw: bytes | None) -> None:
        data = decode(raw)
        self.owners[shard_id] = (
            None
            if data is None
            else Owner(
                data["worker_id"],
                data["host_id"],
                int(data["index"]),
                data["url"],
                int(data["epoch"]),
                bool(data.get("ready")),
            )
        )
        self._notify()

    def _on_workers(self, children: list[str]) -> None:
        asyncio.get_running_loop().create_task(self._load_workers(children))

    async def _load_workers(self, children: list[str]) -> None:
        workers = {}
        for child in sorted(children):
            with contextlib.suppress(Exception):
                raw, _ = await self.zk.call(
                    self.zk.client.get_async(self.zk.path("workers", child))
                )
                if (data := decode(raw)) is not None:
                    workers[child] = data
        self.workers = workers
        self._notify()

    def _on_hosts(self, children: list[str]) -> None:
        self.hosts = sorted(children)
        self._notify()

    @property
    def connection_state(self) -> str:
        return str(self.zk.state).lower()

    @property
    def confirmed(self) -> bool:
        """Is this view current? Only while the ZooKeeper session is connected: the watches
        then deliver every change (kazoo sets them again on a new session)."""
        return self.zk.state == KazooState.CONNECTED

    def ready_owner(self, shard_id: int) -> Owner | None:
        owner = self.owners.get(shard_id)
        return owner if owner is not None and owner.ready else None
