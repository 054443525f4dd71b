"""Router start-up: wires tokens, topology (embedded or cluster), read model, feeds and app.

The listening socket is created by the supervisor and inherited, so a restarted router picks
up the same port and connections made meanwhile wait in the backlog instead of being refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

from aiohttp import web
from kazoo.client import KazooState

from capsvc.cluster.directory import Directory
from capsvc.cluster.zk import Zk, encode
from capsvc.config import Config
from capsvc.router.app import RouterState, make_router_app
from capsvc.router.auth import TokenChecker, load_tokens
from capsvc.router.feed import follow_all
from capsvc.router.front import RouterFront
from capsvc.router.read_model import ReadModel
from capsvc.router.topology import ClusterTopology, LocalTopology
from capsvc.stop_signals import ignore_further_stops, stop_on_signals
from capsvc.tls import server_context

log = logging.getLogger(__name__)


async def _register_host(zk: Zk, config: Config, router_url: str) -> None:
    data = encode({
        "host_id": config.host_id,
        "router_url": router_url,
        "worker_count": config.worker_count,
        "worker_urls": [config.worker_url(i) for i in range(config.worker_count)],
    })
    path = zk.path("hosts", config.host_id)
    with contextlib.suppress(Exception):
        await zk.call(zk.client.delete_async(path))  # a previous router of this host
    await zk.call(zk.client.create_async(path, data, ephemeral=True))


def _keep_registered(zk: Zk, config: Config, router_url: str):
    """After a lost session our ephemeral host node is gone: register again on the new one."""
    registered = {"session": zk.session_id}
    tasks: set[asyncio.Task] = set()

    def on_state(state: str) -> None:
        if state != KazooState.CONNECTED or zk.session_id == registered["session"]:
            return
        registered["session"] = zk.session_id

        async def again() -> None:
            try:
                await _register_host(zk, config, router_url)
            except Exception as e:  # noqa: BLE001 - the next reconnect tries again
                log.warning("could not register the host again: %s", e)
                registered["session"] = None

        task = asyncio.get_running_loop().create_task(again())
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    return on_state


async def serve_router(config: Config, listen_fd: int) -> None:
    stop = asyncio.Event()
    stop_on_signals(stop)
    sock = socket.socket(fileno=listen_fd)
    host, port = sock.getsockname()[:2]
    zk = None
    if config.cluster.enabled:
        zk = Zk(config.cluster.zookeeper, config.cluster.name, config.cluster.session_timeout_ms)
        await zk.start()
        topology: LocalTopology | ClusterTopology = ClusterTopology(
            config, Directory(zk, config.service.shard_count)
        )
        advertised = config.cluster.advertise_host or host
        scheme = "https" if config.tls.enabled else "http"
        router_url = f"{scheme}://{advertised}:{port}"
        await _register_host(zk, config, router_url)
        zk.on_state(_keep_registered(zk, config, router_url))
    else:
        topology = LocalTopology(config)
    await topology.start()
    model = ReadModel(config.service.shard_count)
    state = RouterState(config, topology, model, TokenChecker(load_tokens(config)))
    if zk is not None:
        zk.on_state(lambda s: state.zk_states.labels(str(s).lower()).inc())
    rm, limits = config.read_model, config.limits
    feeds = asyncio.create_task(
        follow_all(topology, model, rm, limits.request_timeout_ms,
                   config.supervisor.start_timeout_ms),
        name="feeds",
    )
    app = make_router_app(state)
    runner = web.AppRunner(app, access_log=None,
                           shutdown_timeout=config.supervisor.drain_timeout_ms / 1000)
    await runner.setup()
    front = RouterFront(state, runner.server)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(front.protocol, sock=sock, backlog=1024,
                                      ssl=server_context(config))
    log.info("router serving", extra={"address": f"{host}:{port}", "mode": topology.mode})
    await stop.wait()
    ignore_further_stops()
    log.info("router draining")
    server.close()  # stop accepting; requests in flight on open connections finish
    await front.drain(config.supervisor.drain_timeout_ms / 1000)
    await runner.cleanup()
    feeds.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await feeds
    await topology.close()
    if zk is not None:
        await zk.stop()
    log.info("router stopped")
