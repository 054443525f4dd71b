"""Where the router sends a shard's requests: the embedded table, or the cluster directory.

Both answer the same questions: which worker client serves this shard (waiting, boundedly, for
a ready owner in a cluster), which workers exist (for fan-out and the read-model feeds), which
of them run on this host, whether the owner view is confirmed, and how to describe the layout
for `/v1/admin/cluster`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from capsvc.cluster.directory import Directory, Owner
from capsvc.cluster.zk import worker_id as worker_id_of
from capsvc.config import Config
from capsvc.errors import ShardUnavailable
from capsvc.http import headers
from capsvc.paths import worker_socket
from capsvc.router.upstream import WorkerClient
from capsvc.sharding import embedded_owner, shard_for_pool
from capsvc.tls import client_context


class LocalTopology:
    """The embedded default: every shard on this host, owned by a fixed worker."""

    mode = "embedded"
    buffer_s = 0.0  # a shard not ready here will not become ready elsewhere
    owners_confirmed = True  # the owners are fixed by the configuration
    zookeeper_state = None

    def __init__(self, config: Config) -> None:
        self.shard_count = config.service.shard_count
        timeout_s = config.limits.request_timeout_ms / 1000 + 1.0
        self._clients = [
            WorkerClient(
                f"w{i}",
                socket_path=str(worker_socket(config, i)),
                connections_max=config.limits.router_connections_per_worker,
                timeout_s=timeout_s,
                waiting_max=config.limits.router_queue_max,
                wait_max_s=config.limits.shard_queue_wait_max_ms / 1000,
            )
            for i in range(config.worker_count)
        ]

    async def start(self) -> None:
        for client in self._clients:
            await client.start()

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    def shard_of(self, pool_id: str) -> int:
        return shard_for_pool(pool_id, self.shard_count)

    async def client_for(self, shard_id: int, deadline: float) -> WorkerClient:
        return self._clients[embedded_owner(shard_id, len(self._clients))]

    def clients(self) -> list[WorkerClient]:
        return list(self._clients)

    def local_clients(self) -> list[WorkerClient]:
        return list(self._clients)

    async def wait_change(self, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)

    async def prune(self) -> None:
        """Nothing to forget: the embedded workers never change."""

    def owner_of(self, shard_id: int) -> dict[str, Any]:
        return {"host": "local", "worker": embedded_owner(shard_id, len(self._clients))}

    def owner_name(self, shard_id: int) -> str:
        """The name of the owner's client."""
        return self._clients[embedded_owner(shard_id, len(self._clients))].name

    def describe(self) -> dict[str, Any]:
        return {"mode": self.mode}


class ClusterTopology:
    """Owners from ZooKeeper; local workers over Unix sockets, remote ones over HTTP."""

    mode = "cluster"

    def __init__(self, config: Config, directory: Directory) -> None:
        self.config = config
        self.directory = directory
        self.shard_count = config.service.shard_count
        self.host_id = config.host_id
        self.buffer_s = config.cluster.request_buffer_ms / 1000
        self._waiting = 0
        self._clients: dict[str, WorkerClient] = {}
        self._headers = {headers.CLUSTER_TOKEN: config.cluster_secret}
        self._ssl = client_context(config)

    async def start(self) -> None:
        await self.directory.start()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()

    def shard_of(self, pool_id: str) -> int:
        return shard_for_pool(pool_id, self.shard_count)

    def _client(self, worker_id: str, host_id: str, index: int, url: str) -> WorkerClient:
        client = self._clients.get(worker_id)
        if client is None:
            limits = self.config.limits
            local = host_id == self.host_id
            client = WorkerClient(
                worker_id,
                socket_path=str(worker_socket(self.config, index)) if local else None,
                base_url=None if local else url,
                connections_max=limits.router_connections_per_worker,
                timeout_s=limits.request_timeout_ms / 1000 + 1.0,
                headers=self._headers,
                ssl_context=None if local else self._ssl,
                waiting_max=limits.router_queue_max,
                wait_max_s=limits.shard_queue_wait_max_ms / 1000,
            )
            client.start_nowait()
            self._clients[worker_id] = client
        return client

    async def client_for(self, shard_id: int, deadline: float) -> WorkerClient:
        """The ready owner's client; waits for one until `deadline` (failover, handoff)."""
        owner = self.directory.ready_owner(shard_id)
        if owner is not None:
            return self._owner_client(owner)
        if self._waiting >= self.config.cluster.request_buffer_max:
            raise ShardUnavailable(
                f"shard {shard_id} has no owner and the buffer is full", shard=shard_id
            )
        self._waiting += 1
        try:
            while (owner := self.directory.ready_owner(shard_id)) is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ShardUnavailable(
                        f"shard {shard_id} has no ready owner yet", shard=shard_id
                    )
                await self.directory.wait_change(remaining)
        finally:
            self._waiting -= 1
        return self._owner_client(owner)

    def _owner_client(self, owner: Owner) -> WorkerClient:
        return self._client(owner.worker_id, owner.host_id, owner.index, owner.url)

    def clients(self) -> list[WorkerClient]:
        return [
            self._client(w, d["host_id"], int(d["index"]), d["url"])
            for w, d in sorted(self.directory.workers.items())
        ]

    def local_clients(self) -> list[WorkerClient]:
        """This host's workers, from the configuration: known even while ZooKeeper is away or
        a worker is out of the membership (restarting)."""
        return [
            self._client(worker_id_of(self.host_id, i), self.host_id, i, self.config.worker_url(i))
            for i in range(self.config.worker_count)
        ]

    @property
    def owners_confirmed(self) -> bool:
        return self.directory.confirmed

    @property
    def zookeeper_state(self) -> str:
        return self.directory.connection_state

    async def wait_change(self, timeout_s: float) -> None:
        await self.directory.wait_change(timeout_s)

    async def prune(self) -> None:
        """Close connections to workers that left the membership and own nothing: a pooled
        idle connection to a stopping worker could be reused just as that worker closes it,
        and a write sent that way would end with an unknown outcome."""
        owners = {o.worker_id for o in self.directory.owners.values() if o is not None}
        for worker_id in list(self._clients):
            if worker_id not in self.directory.workers and worker_id not in owners:
                await self._clients.pop(worker_id).close()

    def owner_of(self, shard_id: int) -> dict[str, Any] | None:
        owner = self.directory.owners.get(shard_id)
        if owner is None:
            return None
        return {
            "host": owner.host_id,
            "worker": owner.index,
            "worker_id": owner.worker_id,
            "url": owner.url,
            "epoch": owner.epoch,
            "ready": owner.ready,
        }

    def owner_name(self, shard_id: int) -> str | None:
        """The name of the owner's client (its worker id), None while unowned."""
        owner = self.directory.owners.get(shard_id)
        return None if owner is None else owner.worker_id

    def describe(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "host_id": self.host_id,
            "hosts": self.directory.hosts,
            "buffered_requests": self._waiting,
            "zookeeper": self.zookeeper_state,
        }
