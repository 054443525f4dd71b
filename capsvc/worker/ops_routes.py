"""A worker's operational side: metrics, request ids, online backup and the shard probe.

Added to the worker's app by `install_ops` (one call in `make_worker_app`). Internal routes,
reached over the worker's Unix socket (or, in a cluster, with the cluster secret):

    GET  /internal/metrics   this worker's Prometheus exposition (the router merges them)
    POST /internal/backup    {"dir": "/abs/path", "shards": [ids] | null}: an online copy of
                             each owned shard, taken with SQLite's backup API between two
                             appends; answers per shard what the copy holds
    GET  /internal/probe     a real round trip to every owned shard's file: 200 when each one
                             answered in time, 503 with the details otherwise

The `observe` middleware counts requests per route and status, keeps the request id for the
log lines written while the request is served (and returns it in `X-Request-Id`), and counts
idempotent replays and `capacity_exhausted` answers per pool kind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from capsvc.config import Config
from capsvc.errors import BadRequest, CapsvcError
from capsvc.http import headers, parsing
from capsvc.http.json_body import json_text
from capsvc.http.problems import problem_code
from capsvc.http.routes import INTERNAL_PROBE
from capsvc.request_context import REQUEST_ID, install_request_id_filter
from capsvc.shard.shard import Shard, ShardState
from capsvc.sharding import shard_for_pool
from capsvc.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)

INTERNAL_METRICS = "/internal/metrics"
INTERNAL_BACKUP = "/internal/backup"
PROBE_TIMEOUT_S = 2.0
RESERVE_ROUTE = "/v1/pools/{pool_id}/reservations"

METRICS = web.AppKey("worker_metrics", WorkerMetrics)
OPS = web.AppKey("worker_ops", dict)


def install_ops(app: web.Application, config: Config, shards: dict[int, Shard], index: int,
                file_waits: dict[int, dict]):
    """Wire metrics, request ids and the internal ops routes into a worker's app.
    `file_waits`: the shards whose claim waits for a previous owner to let go of the file."""
    metrics = WorkerMetrics()
    Shard.observer = metrics  # one worker per process: every shard it opens reports here
    install_request_id_filter()
    app[METRICS] = metrics
    app[OPS] = {"config": config, "shards": shards, "index": index, "file_waits": file_waits}
    metrics.watch_file_waits(file_waits)
    # Outermost, so that it sees the final status of every answer, problems included.
    app.middlewares.insert(0, _observe(metrics, shards, config))
    app.router.add_get(INTERNAL_METRICS, metrics_route)
    app.router.add_post(INTERNAL_BACKUP, backup_route)
    app.router.add_get(INTERNAL_PROBE, probe_route)


# -- middleware ------------------------------------------------------------------------------
def _observe(metrics: WorkerMetrics, shards: dict[int, Shard], config: Config):
    shard_count = config.service.shard_count
    request_log = config.logging.request_log
    children: dict[tuple[str, str, int], tuple[Any, Any]] = {}  # labels() is slow: keep them

    def pool_kind(request: web.Request) -> str:
        pool_id = request.match_info.get("pool_id", "")
        shard = shards.get(shard_for_pool(pool_id, shard_count)) if pool_id else None
        pool = shard.pools.get(pool_id) if shard is not None else None
        return pool.kind if pool is not None else "unknown"

    def record(request: web.Request, status: int, started: float, response, request_id) -> None:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        elapsed = time.perf_counter() - started
        key = (route, request.method, status)
        pair = children.get(key)
        if pair is None:
            pair = children[key] = (
                metrics.requests.labels(route, request.method, str(status)),
                metrics.latency.labels(route, str(status)),
            )
        pair[0].inc()
        pair[1].observe(elapsed)
        code = problem_code(response) if status >= 400 and response is not None else None
        if code is not None:
            metrics.errors.labels(route, code).inc()
        if route == RESERVE_ROUTE and response is not None:
            if status == 201 and response.headers.get("Idempotent-Replayed") == "true":
                metrics.replays.labels(pool_kind(request)).inc()
            elif status == 409 and code == "capacity_exhausted":
                metrics.exhausted.labels(pool_kind(request)).inc()
        if request_log == "all" or (request_log == "errors" and status >= 500):
            log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d",
                request.method,
                route,
                status,
                extra={
                    "request_id": request_id,
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "code": code,
                    "pool": request.match_info.get("pool_id"),
                },
            )

    @web.middleware
    async def observe(request: web.Request, handler):
        if request.path.startswith("/internal/"):
            return await handler(request)  # the router's own plumbing: not client requests
        request_id = request.headers.get(headers.REQUEST_ID)
        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            response = await handler(request)
        except web.HTTPException as e:
            record(request, e.status, started, None, request_id)
            raise
        except Exception:
            record(request, 500, started, None, request_id)
            raise
        finally:
            REQUEST_ID.reset(token)
        record(request, response.status, started, response, request_id)
        if request_id is not None:
            response.headers[headers.REQUEST_ID] = request_id
        return response

    return observe


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json_text(body), content_type="application/json")


# -- routes ----------------------------------------------------------------------------------
async def metrics_route(request: web.Request) -> web.Response:
    text = generate_latest(request.app[METRICS].registry)
    return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def probe_route(request: web.Request) -> web.Response:
    """Every owned shard answers a real read of its file within PROBE_TIMEOUT_S."""
    ops = request.app[OPS]
    results = await asyncio.gather(*(probe_shard(s) for s in list(ops["shards"].values())))
    for result in results:  # said apart, so that readiness need not read error texts
        if result["shard"] in ops["file_waits"]:
            result["waiting_for_file"] = True
    ok = all(r["ok"] for r in results)
    return _json({"worker": ops["index"], "ok": ok, "shards": results}, 200 if ok else 503)


async def probe_shard(shard: Shard) -> dict[str, Any]:
    result: dict[str, Any] = {"shard": shard.shard_id, "state": shard.state.value, "ok": False}
    if shard.state is not ShardState.READY:
        result["error"] = shard.failure or f"shard is {shard.state.value}"
        return result
    started = time.perf_counter()
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            stored = await shard.log.last_seq()
    except TimeoutError:
        result["error"] = f"the shard file did not answer within {PROBE_TIMEOUT_S:g}s"
        return result
    except CapsvcError as e:
        result["error"] = f"{e.code}: {e.detail}"
        return result
    result["ms"] = round((time.perf_counter() - started) * 1000, 2)
    # The file may be ahead of memory by an append being answered right now, never behind.
    result["ok"] = stored >= shard.last_seq
    if not result["ok"]:
        result["error"] = f"the file holds seq {stored}, memory {shard.last_seq}"
    return result


async def backup_route(request: web.Request) -> web.Response:
    body = await parsing.read_json_object(request)
    directory = body.get("dir")
    if not isinstance(directory, str) or not os.path.isabs(directory):
        raise BadRequest("invalid_field", "dir: an absolute path is required", field="dir")
    if not os.path.isdir(directory):
        raise BadRequest("invalid_field", f"dir: {directory} is not a directory here", field="dir")
    wanted = body.get("shards")
    if wanted is not None and not (
        isinstance(wanted, list) and all(isinstance(s, int) for s in wanted)
    ):
        raise BadRequest("invalid_field", "shards: a list of shard ids or null", field="shards")
    ops = request.app[OPS]
    out: dict[str, Any] = {}
    for shard_id, shard in sorted(ops["shards"].items()):
        if wanted is None or shard_id in wanted:
            out[str(shard_id)] = await backup_shard(shard, Path(directory))
    return _json({"worker": ops["index"], "pid": os.getpid(), "shards": out})


async def backup_shard(shard: Shard, directory: Path) -> dict[str, Any]:
    """Copy one shard's file into `directory`/NNN.sqlite3 (written whole, then renamed)."""
    if shard.state not in (ShardState.READY, ShardState.DRAINING):
        return {"ok": False, "error": shard.failure or f"shard is {shard.state.value}"}
    backup_to = getattr(shard.log, "backup_to", None)
    if backup_to is None:
        return {"ok": False, "error": "this shard's log has no file to copy"}
    final = directory / f"{shard.shard_id:03d}.sqlite3"
    part = final.with_name(final.name + ".part")
    try:
        part.unlink(missing_ok=True)
        head = await backup_to(part)
        size = await asyncio.to_thread(_publish, part, final)
    except (CapsvcError, OSError) as e:
        part.unlink(missing_ok=True)
        log.error("backup of shard failed: %s", e, extra={"shard": shard.shard_id})
        return {"ok": False, "error": str(e)}
    log.info("shard backed up", extra={"shard": shard.shard_id, "file": str(final)})
    return {
        "ok": True,
        "file": final.name,
        "epoch": head.epoch,
        "last_seq": head.last_seq,
        "events": head.event_count,
        "checkpoint_seq": head.checkpoint_seq,
        "bytes": size,
    }


def _publish(part: Path, final: Path) -> int:
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final.stat().st_size
