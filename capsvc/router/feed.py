"""Keeps the read model current: one long-poll loop per worker.

Each loop asks its worker for pools changed since the model's per-shard positions; the worker
answers at once when something changed, or after `feed_wait_ms` with nothing. Requests to one
worker start at least `feed_interval_ms` apart, so under write load one answer carries the
changes of every commit since the last (it used to be one round trip, one render and one
parse per commit: a sixth of a worker's CPU under uniform writes). So the model is normally
a few milliseconds behind (`feed_interval_ms` plus a round trip), and at most `feed_wait_ms`
plus one round trip in steady state. A failed poll is retried after `feed_retry_ms`; it never
stops the loop. A worker that has never answered and cannot be reached yet (the router starts
before the workers listen) is waited for quietly for up to `grace_ms`; after that, and once it
has answered, a failure logs a warning.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from capsvc.config import ReadModelConfig
from capsvc.errors import CapsvcError, UpstreamUnavailable
from capsvc.http.json_body import decode_json
from capsvc.http.routes import INTERNAL_FEED
from capsvc.router.rawclient import NotSent
from capsvc.router.read_model import ReadModel
from capsvc.router.upstream import WorkerClient, request_bytes

log = logging.getLogger(__name__)
# Small pages keep each answer's transient objects small: with 100k pools, pages of 200 left
# the router at 185 MiB RSS and ready after 35 s, pages of 50 at 122 MiB and 20 s.
FEED_PAGE_POOLS = 50


async def follow_worker(
    worker: WorkerClient,
    model: ReadModel,
    settings: ReadModelConfig,
    timeout_ms: int,
    grace_ms: int = 0,
) -> None:
    wait_ms, retry_ms = settings.feed_wait_ms, settings.feed_retry_ms
    interval_s = settings.feed_interval_ms / 1000
    loop = asyncio.get_running_loop()
    quiet_until = loop.time() + grace_ms / 1000  # until it first answers
    failing = False
    while True:
        started = loop.time()
        # Paged: a worker with many pools sends at most FEED_PAGE_POOLS per shard an answer,
        # so the first load is many quick answers instead of one that outlives the timeout.
        # Compact rows: a fraction of a whole view's cost to render and parse; `rows=2`: with
        # each pool's booking cut-off (a worker from before cut-offs does not know `rows=2`
        # and sends whole views, which the model reads too, as cut-off 0).
        path = (f"{INTERNAL_FEED}?wait_ms={wait_ms}&limit={FEED_PAGE_POOLS}&rows=2"
                f"&since={model.since_parameter()}")
        try:
            answer = await _poll(worker, path, timeout_ms / 1000)
        except (CapsvcError, ValueError) as e:
            if isinstance(e, NotSent) and loop.time() < quiet_until:
                log.debug("read-model feed waiting for the worker: %s", e,
                          extra={"worker": worker.name})
            elif not failing:
                log.warning("read-model feed failing: %s", e, extra={"worker": worker.name})
                failing = True
            await asyncio.sleep(retry_ms / 1000)
            continue
        quiet_until = 0.0  # it has answered: from now on a failure warns
        if failing:
            log.info("read-model feed recovered", extra={"worker": worker.name})
            failing = False
        model.apply(worker.name, answer)
        rest = started + interval_s - loop.time()
        if rest > 0:  # let a few more commits gather: one answer for all of them
            await asyncio.sleep(rest)


async def _poll(worker: WorkerClient, path: str, timeout_s: float) -> dict[str, Any]:
    """One feed request, on the worker's pool for proxied requests (under write load there is
    one per commit); a worker not started yet is waited for like an unreachable one."""
    if worker.raw is None:
        raise UpstreamUnavailable(f"worker {worker.name} is not connected yet")
    data = request_bytes("GET", path, worker.header_lines)
    response = await worker.raw.request(data, timeout_s, idempotent=True)
    if response.status != 200:
        raise UpstreamUnavailable(f"worker {worker.name} answered {response.status}")
    return decode_json(response.body)


async def follow_all(
    topology, model: ReadModel, settings: ReadModelConfig, timeout_ms: int, grace_ms: int = 0
) -> None:
    """One feed loop per worker the topology knows, started and stopped as workers come and
    go (a cluster's membership changes; the embedded set never does). `grace_ms`: how long a
    new worker's loop waits quietly for it to listen."""
    loops: dict[str, asyncio.Task] = {}
    try:
        while True:
            await topology.prune()
            current = {c.name: c for c in topology.clients()}
            for name in set(loops) - set(current):
                loops.pop(name).cancel()
                model.synced_at.pop(name, None)
            for name, client in current.items():
                if name not in loops:
                    loops[name] = asyncio.create_task(
                        follow_worker(client, model, settings, timeout_ms, grace_ms),
                        name=f"feed-{name}",
                    )
            await topology.wait_change(1.0)
    finally:
        for task in loops.values():
            task.cancel()
        await asyncio.gather(*loops.values(), return_exceptions=True)
