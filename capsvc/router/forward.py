"""Sending a request to the owner of a pool's shard: the one forwarding loop of the router,
for the customers' routes (`front.py`) and the planners' pool routes (`app.py`, `planner.py`).

Requests that were never applied are sent again while that is safe: in a cluster, an owner
that is missing, unreachable or answers "not applied here" (a handoff, a failover) is looked
up again until the buffer time runs out; in the embedded mode a restarting worker is waited
for. A request that was sent and then lost has an unknown outcome and is never resent here.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from capsvc.errors import UpstreamUnavailable
from capsvc.http.answer_reader import Answer
from capsvc.router.rawclient import NotSent
from capsvc.router.upstream import NOT_APPLIED


async def forward(topology: Any, resends: Any, pool_id: str, data: bytes, *, idempotent: bool,
                  timeout_s: float) -> Answer:
    """`data` (one whole request) to the owner of `pool_id`'s shard, and its answer.
    `resends` counts the router's own resends by reason (a Prometheus counter)."""
    shard_id = topology.shard_of(pool_id)
    now = time.monotonic()
    buffer_deadline = now + topology.buffer_s
    deadline = now + timeout_s
    delay = 0.02
    while True:
        client = await topology.client_for(shard_id, buffer_deadline)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise UpstreamUnavailable(f"no answer for shard {shard_id} in time")
        try:
            answer = await client.raw.request(data, remaining, idempotent)
        except NotSent:
            resends.labels("not_sent").inc()
            if topology.buffer_s:
                if time.monotonic() >= buffer_deadline:
                    raise
                await topology.wait_change(0.1)
            else:
                await asyncio.sleep(delay)  # the worker is restarting
                delay = min(delay * 2, 0.25)
            continue
        if answer.header(NOT_APPLIED) and time.monotonic() < buffer_deadline:
            resends.labels("not_applied").inc()
            await topology.wait_change(0.05)
            continue
        return answer
