"""Worker start-up: the only place that wires storage, shards and the HTTP app together.

A shard whose file refuses to open (damaged, locked, I/O error) fails closed on its own: the
worker keeps serving its other shards and retries the failed one with backoff, so one bad file
never takes the host down or makes it crash-loop.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from pathlib import Path

from aiohttp import web

from capsvc.cluster.ownership import WorkerInfo
from capsvc.cluster.zk import Zk, worker_id
from capsvc.config import Config
from capsvc.domain.decide import decide
from capsvc.domain.pool import KeyRetention
from capsvc.errors import CapsvcError
from capsvc.logs import install_task_dump
from capsvc.paths import shard_file, worker_socket
from capsvc.shard.shard import Shard, ShardSettings, ShardState
from capsvc.sharding import embedded_shards
from capsvc.stop_signals import ignore_further_stops, stop_on_signals
from capsvc.storage.group_commit import GroupCommitter
from capsvc.storage.sqlite_log import SqliteEventLog
from capsvc.testing import faults
from capsvc.tls import worker_server_context
from capsvc.worker.app import CHANGED, make_worker_app
from capsvc.worker.cluster_host import ClusterShardHost
from capsvc.worker.front import WorkerFront
from capsvc.worker.listen import bind_worker_port
from capsvc.worker.ops_routes import METRICS

log = logging.getLogger(__name__)
RETRY_MAX_S = 30.0
ROUTER_CATCH_UP_S = 0.5


def shard_settings(config: Config) -> ShardSettings:
    return ShardSettings(
        append_batch_max=config.storage.append_batch_max,
        queue_max=config.limits.shard_queue_max,
        queue_wait_max_s=config.limits.shard_queue_wait_max_ms / 1000,
        snapshot_every_events=config.storage.snapshot_every_events,
        slots_max=config.limits.slots_per_pool_max,
        retention=KeyRetention(
            config.limits.idempotency_retention_s * 1000, config.limits.idempotency_keys_max
        ),
    )


def new_shard(
    config: Config,
    shard_id: int,
    busy_timeout_ms: int | None = None,
    committer: GroupCommitter | None = None,
) -> Shard:
    """A shard on its file; `committer` is the worker's (its shards commit together)."""
    event_log = SqliteEventLog(
        shard_file(config, shard_id),
        synchronous=config.storage.synchronous,
        busy_timeout_ms=config.storage.busy_timeout_ms
        if busy_timeout_ms is None
        else busy_timeout_ms,
        committer=committer,
        fencing=faults.fencing(),
    )
    # Test builds swap in broken parts here, and only here (capsvc.testing.faults).
    event_log, decide_command = faults.shard_parts(shard_id, event_log, decide)
    return Shard(shard_id, event_log, shard_settings(config), decide=decide_command)


class ShardHost:
    """The shards this worker owns: starts them, retries the failed ones, drains them."""

    def __init__(
        self, config: Config, shard_ids: list[int], committer: GroupCommitter | None = None
    ) -> None:
        self.config = config
        self.committer = committer
        self.shards: dict[int, Shard] = {
            sid: new_shard(config, sid, committer=committer) for sid in shard_ids
        }
        self._retries: list[asyncio.Task] = []

    async def start(self) -> None:
        for shard_id, shard in list(self.shards.items()):
            try:
                await shard.start()
            except CapsvcError:
                self._retries.append(asyncio.create_task(self._retry(shard_id)))

    async def _retry(self, shard_id: int) -> None:
        delay = 0.5
        while True:
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
            shard = new_shard(self.config, shard_id, committer=self.committer)
            shard.on_commit = self.shards[shard_id].on_commit
            try:
                await shard.start()
            except CapsvcError as e:
                self.shards[shard_id] = shard  # keep the latest failure visible
                log.warning("shard still unavailable: %s", e, extra={"shard": shard_id})
                continue
            self.shards[shard_id] = shard
            return

    async def drain(self) -> None:
        for task in self._retries:
            task.cancel()
        await asyncio.gather(*(s.drain() for s in self.shards.values()), return_exceptions=True)

    @property
    def ready(self) -> bool:
        return all(s.state is ShardState.READY for s in self.shards.values())


async def serve_worker(config: Config, index: int) -> None:
    # Signals first: a stop that arrives while shards recover is honoured once they are up,
    # instead of killing the process with a half-opened file.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_on_signals(stop)
    tcp = bind_worker_port(config, index)  # first: a taken port exits before any shard opens
    zk = None
    committer = GroupCommitter()  # every shard of this worker commits through it
    if config.cluster.enabled:
        zk = Zk(config.cluster.zookeeper, config.cluster.name, config.cluster.session_timeout_ms)
        await zk.start()
        me = WorkerInfo(
            worker_id(config.host_id, index), config.host_id, index, config.worker_url(index)
        )
        host: ShardHost | ClusterShardHost = ClusterShardHost(
            config, index, zk, me, functools.partial(new_shard, committer=committer)
        )
        host.after_close = faults.after_close  # a no-op unless a fault test armed it
        secret = config.cluster_secret
        app = make_worker_app(config, host.shards, index, secret=secret,
                              file_waits=host.waiting_for_file)
        zk.on_state(app[METRICS].zookeeper_state)
        host.on_commit = app[CHANGED].set
    else:
        shard_ids = embedded_shards(index, config.worker_count, config.service.shard_count)
        host = ShardHost(config, shard_ids, committer)
        await host.start()
        secret = None
        app = make_worker_app(config, host.shards, index)
    drain_s = config.supervisor.drain_timeout_ms / 1000
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=drain_s)
    await runner.setup()
    # The lean front answers the hot routes and hands everything else to the app. The TCP
    # port (routers on other hosts) gets it too: their hot requests are the same requests,
    # TLS lives in the transport below it, and the front checks the cluster secret itself.
    front = WorkerFront(
        config,
        host.shards,
        app[METRICS],
        runner.server,
        secret,
        changed=app[CHANGED],
        worker_index=index,
    )
    path = worker_socket(config, index)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _remove_stale_socket(path)
    servers = [await loop.create_unix_server(front.protocol, str(path), backlog=1024)]
    os.chmod(path, 0o600)
    if tcp is not None:
        servers.append(
            await loop.create_server(
                front.protocol, sock=tcp, backlog=1024, ssl=worker_server_context(config)
            )
        )
    if zk is not None:
        await host.start()  # claim shards only once we can serve them
    log.info("worker serving", extra={"worker": index, "socket": str(path)})
    install_task_dump(signal.SIGUSR2)
    await stop.wait()
    ignore_further_stops()
    log.info("worker draining", extra={"worker": index})
    if zk is not None:
        await host.drain()  # hand every shard off while we still answer "not here, retry"
        # Let routers see the new owners before our connections close: a request sent on an
        # idle connection just as we close it would otherwise end with an unknown outcome.
        await asyncio.sleep(ROUTER_CATCH_UP_S)
        await _stop_serving(servers, front, runner, drain_s)
        await zk.stop()
    else:
        await _stop_serving(servers, front, runner, drain_s)
        await host.drain()  # finish queued commands, checkpoint, close files
    _remove_stale_socket(path)
    await loop.run_in_executor(None, committer.close)
    log.info("worker stopped", extra={"worker": index})


async def _stop_serving(
    servers: list[asyncio.Server], front: WorkerFront, runner: web.AppRunner, drain_s: float
) -> None:
    """Stop listening, let in-flight requests finish (lean ones, then the app's)."""
    for server in servers:
        server.close()
    await front.drain(drain_s)
    await runner.cleanup()


def _remove_stale_socket(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
