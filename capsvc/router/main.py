"""Router start-up: wires tokens, routing table, worker clients, read model and the app.

The listening socket is created by the supervisor and inherited, so a restarted router picks
up the same port and connections made meanwhile wait in the backlog instead of being refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket

from aiohttp import web

from capsvc.config import Config
from capsvc.paths import worker_socket
from capsvc.router.app import RouterState, make_router_app
from capsvc.router.auth import TokenChecker, load_tokens
from capsvc.router.feed import follow_worker
from capsvc.router.read_model import ReadModel
from capsvc.router.routing import RoutingTable
from capsvc.router.upstream import WorkerClient

log = logging.getLogger(__name__)


async def serve_router(config: Config, listen_fd: int) -> None:
    limits, read_model = config.limits, config.read_model
    workers = [
        WorkerClient(
            i,
            str(worker_socket(config, i)),
            limits.router_connections_per_worker,
            limits.request_timeout_ms / 1000 + 1.0,
        )
        for i in range(config.worker_count)
    ]
    model = ReadModel(config.service.shard_count)
    state = RouterState(
        config,
        RoutingTable.embedded(config.service.shard_count, len(workers)),
        workers,
        model,
        TokenChecker(load_tokens(config)),
    )
    for worker in workers:
        await worker.start()
    feeds = [
        asyncio.create_task(
            follow_worker(
                w,
                model,
                read_model.feed_wait_ms,
                read_model.feed_retry_ms,
                limits.request_timeout_ms,
            ),
            name=f"feed-{w.index}",
        )
        for w in workers
    ]
    runner = web.AppRunner(
        make_router_app(state),
        access_log=None,
        shutdown_timeout=config.supervisor.drain_timeout_ms / 1000,
    )
    await runner.setup()
    sock = socket.socket(fileno=listen_fd)
    await web.SockSite(runner, sock).start()
    log.info("router serving", extra={"address": "{}:{}".format(*sock.getsockname()[:2])})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("router draining")
    await runner.cleanup()  # stop accepting; in-flight requests finish
    for task in feeds:
        task.cancel()
    for task in feeds:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    for worker in workers:
        await worker.close()
    log.info("router stopped")
