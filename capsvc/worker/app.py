"""The worker's HTTP app: answers the planners' pool routes for the shards it owns, and the
internal routes the router uses (status, pool listing); the customers' routes and the
read-model feed are the lean front's (`front.py`).

It listens only on a Unix socket that the router reaches; authentication of admin routes is
the router's job. Every command goes through its shard's single writer.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import secrets
import time
from typing import Any

from aiohttp import web

from capsvc.config import Config
from capsvc.domain import commands as cmd
from capsvc.domain import rejections as rj
from capsvc.domain.views import pool_view
from capsvc.errors import ShardUnavailable, UpstreamTimeout
from capsvc.http import headers, parsing
from capsvc.http.json_body import json_text
from capsvc.http.problems import error_problem, problem, problem_middleware, rejection_problem
from capsvc.http.routes import INTERNAL_POOLS, INTERNAL_STATUS, ROUTES, add_route
from capsvc.planning.history import fold_until
from capsvc.shard.shard import CommandResult, Shard, ShardState
from capsvc.sharding import shard_for_pool
from capsvc.storage.codec import stored_event_view
from capsvc.worker.ops_routes import install_ops

SHARDS = web.AppKey("shards", dict)
CONFIG = web.AppKey("config", Config)
WORKER_INDEX = web.AppKey("worker_index", int)
CHANGED = web.AppKey("changed", asyncio.Event)
FILE_WAITS = web.AppKey("file_waits", dict)


_NONCES = bytearray()


def new_nonce() -> str:
    """12 hex digits from the OS's CSPRNG, read in bulk: one getrandom call per 680 ids."""
    global _NONCES
    if len(_NONCES) < 6:
        _NONCES = bytearray(secrets.token_bytes(4096))
    value = _NONCES[:6].hex()
    del _NONCES[:6]
    return value


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def input_limits(config: Config) -> parsing.InputLimits:
    lim = config.limits
    return parsing.InputLimits(lim.units_max, lim.capacity_max, lim.slots_per_pool_max)


def _shard(request: web.Request, pool_id: str) -> Shard:
    shard_id = shard_for_pool(pool_id, request.app[CONFIG].service.shard_count)
    shard = request.app[SHARDS].get(shard_id)
    if shard is None:
        raise ShardUnavailable(f"shard {shard_id} is not owned by this worker", shard=shard_id)
    return shard


async def _execute(request: web.Request, command: cmd.Command) -> CommandResult:
    shard = _shard(request, command.pool_id)
    deadline = headers.deadline_of(request.headers.get(headers.DEADLINE))  # see front.py
    future = shard.submit(command, request.headers.get(headers.ACTOR), deadline)
    timeout_s = wait_limit_s(request.app[CONFIG].limits.request_timeout_ms / 1000, deadline)
    try:
        # On timeout the future is cancelled: if the writer has not reached it, it never applies.
        async with asyncio.timeout(timeout_s):
            return await future
    except TimeoutError:
        raise UpstreamTimeout(
            f"shard {shard.shard_id} did not commit within {timeout_s:g}s; the outcome is "
            "unknown: retry with the same Idempotency-Key"
        ) from None


def wait_limit_s(timeout_s: float, deadline: float | None) -> float:
    """How long to wait for a command's commit: the request timeout, or less if the router's
    deadline (wall-clock seconds) comes first; the shard drops it undecided past that."""
    return timeout_s if deadline is None else min(timeout_s, deadline - time.time())


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json_text(body), content_type="application/json", headers=headers
    )


def _render(result: CommandResult) -> web.Response:
    if result.rejection is not None:
        response = rejection_problem(result.rejection)
        if result.replayed:  # a refusal the key is bound to
            response.headers["Idempotent-Replayed"] = "true"
    elif result.replayed:
        response = _json(result.body, 201, {"Idempotent-Replayed": "true"})
    else:
        response = _json(result.body, 201 if result.created else 200)
    return _with_order(response, result)


def _with_order(response: web.Response, result: CommandResult) -> web.Response:
    """Where the command sits in its pool's history: the shard's epoch and the pool's version
    after it (for a replay or a refusal, the version it observed)."""
    if result.epoch is not None:
        response.headers[headers.EPOCH] = str(result.epoch)
    if result.version is not None:
        response.headers[headers.VERSION] = str(result.version)
    return response


# -- public routes (reached through the router) --------------------------------------------
async def define_pool(request: web.Request) -> web.Response:
    pool_id = parsing.path_id(request.match_info, "pool_id")
    body = await parsing.read_json_object(request)
    command = parsing.parse_define_pool(pool_id, body, input_limits(request.app[CONFIG]))
    return _render(await _execute(request, command))


async def change_total_capacity(request: web.Request) -> web.Response:
    pool_id = parsing.path_id(request.match_info, "pool_id")
    body = await parsing.read_json_object(request)
    command = parsing.parse_change_total(pool_id, body, input_limits(request.app[CONFIG]))
    return _render(await _execute(request, command))


async def add_slot(request: web.Request) -> web.Response:
    pool_id = parsing.path_id(request.match_info, "pool_id")
    body = await parsing.read_json_object(request)
    # A pool's date never changes once defined, so checking against it here, before the
    # command is queued, is as good as checking in the writer (no pool: 404 from decide).
    pool = _shard(request, pool_id).read_pool(pool_id)
    slot = parsing.parse_slot(
        body, "", input_limits(request.app[CONFIG]), None if pool is None else pool.date
    )
    result = await _execute(request, cmd.AddSlot(pool_id, slot))
    if result.rejection is None:
        return _with_order(_json(result.body, 201), result)
    return _render(result)


async def update_slot(request: web.Request) -> web.Response:
    pool_id = parsing.path_id(request.match_info, "pool_id")
    slot_id = parsing.path_id(request.match_info, "slot_id")
    body = await parsing.read_json_object(request)
    command = parsing.parse_update_slot(pool_id, slot_id, body, input_limits(request.app[CONFIG]))
    return _render(await _execute(request, command))


async def pool_events(request: web.Request) -> web.Response:
    """The audit log of one pool, oldest first, paged by pool version."""
    pool_id = parsing.path_id(request.match_info, "pool_id")
    page_max = request.app[CONFIG].limits.events_page_max
    after = parsing.query_int(request.query, "after", 0, 0, 2**53)
    limit = parsing.query_int(request.query, "limit", min(100, page_max), 1, page_max)
    shard = _shard(request, pool_id)
    pool = shard.read_pool(pool_id)
    if pool is None:
        return problem(rj.POOL_NOT_FOUND, f"no pool {pool_id}")
    stored = await shard.log.pool_events(pool_id, after, limit)
    events = [stored_event_view(s) for s in stored]
    next_after = events[-1]["version"] if len(events) == limit else None
    return _json(
        {"pool_id": pool_id, "version": pool.version, "events": events, "next_after": next_after}
    )


async def admin_get_pool(request: web.Request) -> web.Response:
    """The pool now, or with `as_of` the pool as it was then, rebuilt from its events."""
    pool_id = parsing.path_id(request.match_info, "pool_id")
    as_of_ms = parsing.query_time_ms(request.query, "as_of")
    shard = _shard(request, pool_id)
    pool = shard.read_pool(pool_id)
    if pool is None:
        return problem(rj.POOL_NOT_FOUND, f"no pool {pool_id}")
    if as_of_ms is None:
        return _json(pool_view(pool))
    past, version, page = None, pool.version, 5000
    while past is None or past.version < version:
        stored = await shard.log.pool_events(pool_id, past.version if past else 0, page)
        past, later = fold_until(past, stored, as_of_ms, shard.settings.retention)
        if later or len(stored) < page:
            break
    as_of = request.query["as_of"]
    if past is None:
        return problem(rj.POOL_NOT_FOUND, f"pool {pool_id} did not exist yet at {as_of}")
    return _json({**pool_view(past), "as_of": as_of})


# -- internal routes (router only; the feed is the lean front's: feed.py) ----------------
def shard_status(shard: Shard) -> dict[str, Any]:
    return {
        "shard": shard.shard_id,
        "state": shard.state.value,
        "epoch": shard.epoch,
        "last_seq": shard.last_seq,
        "event_count": shard.event_count,
        "queue_depth": shard.queue_depth,
        "pools": len(shard.pools),
        "replay_seconds": round(shard.replay_seconds, 4),
        "replayed_events": shard.replayed_events,
        "failure": shard.failure,
    }


async def status(request: web.Request) -> web.Response:
    shards: dict[int, Shard] = request.app[SHARDS]
    waits = request.app[FILE_WAITS]
    rows = []
    for shard in shards.values():
        row = shard_status(shard)
        wait = waits.get(shard.shard_id)
        if wait is not None:  # who still holds the file, and since when
            row["waiting_for_file"] = {"since": wait["since"], "held_by": wait["held_by"]}
        rows.append(row)
    return _json({"worker": request.app[WORKER_INDEX], "pid": os.getpid(), "shards": rows})


async def list_pools(request: web.Request) -> web.Response:
    region = parsing.query_id(request.query, "region", required=False)
    date = parsing.query_date(request.query, "date", required=False)
    kind = parsing.query_id(request.query, "kind", required=False)
    views = []
    for shard in request.app[SHARDS].values():
        if shard.state not in (ShardState.READY, ShardState.DRAINING):
            continue
        for pool_id, pool in list(shard.pools.items()):
            if (
                (region and pool.region != region)
                or (date and pool.date != date)
                or (kind and pool.kind != kind)
            ):
                continue
            committed = shard.read_pool(pool_id)
            if committed is not None:
                views.append(pool_view(committed))
    return _json({"pools": views})




def _cluster_gate(secret: str):
    expected = secret.encode()

    @web.middleware
    async def gate(request: web.Request, handler):
        """In a cluster, workers answer only requests that carry the cluster secret."""
        offered = request.headers.get(headers.CLUSTER_TOKEN, "").encode()
        if not hmac.compare_digest(offered, expected):
            return problem("forbidden", "requests between hosts must carry the cluster secret")
        return await handler(request)

    return gate


@web.middleware
async def mark_not_applied(request: web.Request, handler):
    """A shard that is not (or no longer) served here applied nothing: say so, so that the
    router can safely send the request to the shard's new owner."""
    try:
        return await handler(request)
    except ShardUnavailable as e:
        response = error_problem(e)
        response.headers[headers.NOT_APPLIED] = "true"
        return response


def make_worker_app(
    config: Config,
    shards: dict[int, Shard],
    worker_index: int,
    secret: str | None = None,
    file_waits: dict[int, dict] | None = None,
) -> web.Application:
    """`file_waits` (cluster): shard -> the wait for a previous owner to let go of its file,
    kept by the shard host; shown by the status route and a metric."""
    middlewares = [problem_middleware, mark_not_applied]
    if secret:
        middlewares.insert(0, _cluster_gate(secret))
    app = web.Application(client_max_size=config.limits.body_max_bytes, middlewares=middlewares)
    app[CONFIG] = config
    app[SHARDS] = shards
    app[WORKER_INDEX] = worker_index
    app[FILE_WAITS] = file_waits if file_waits is not None else {}
    app[CHANGED] = changed = asyncio.Event()
    for shard in shards.values():
        shard.on_commit = changed.set
    handlers = globals()
    for route in ROUTES:
        if route.target in ("pool", "reservation") and not route.front:  # the front: front.py
            add_route(app, route, handlers[route.name])
    app.router.add_get(INTERNAL_STATUS, status)
    app.router.add_get(INTERNAL_POOLS, list_pools)
    # metrics, request ids, backup, probe
    install_ops(app, config, shards, worker_index, app[FILE_WAITS])
    return app
