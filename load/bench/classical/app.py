"""The classical service's HTTP side: the same routes and answers as capsvc's public API
(minus the admin routes: the benchmark loads its data with COPY).

    python -m load.bench.classical --variant cte --port 9000 --dsn postgresql://...
    python -m load.bench.classical --variant redis-lua --port 9001 --redis-url redis://...

Start several processes on the same port (SO_REUSEPORT) to use several cores; each has its own
asyncpg pool (or redis-py connection pool).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import re
import time
from typing import Protocol

import asyncpg
import uvloop
from aiohttp import web

from load.bench.classical import redis_store
from load.bench.classical.store import STORES, Rejected


class Answers(Protocol):
    """What the routes ask a store (store.Store over PostgreSQL, redis_store.RedisStore)."""

    async def reserve(self, pool_id: str, slot_id: str, units: int,
                      key: str | None) -> tuple[dict, bool]: ...

    async def release(self, reservation_id: int) -> dict: ...

    async def availability(self, region: str, date: dt.date, kind: str | None) -> str: ...


STORE = web.AppKey("store", Answers)
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


def _json(body: object, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, headers=headers,
                        content_type="application/json")


def _problem(status: int, code: str, detail: str) -> web.Response:
    return web.Response(
        text=json.dumps({"type": "about:blank", "title": code, "status": status,
                         "detail": detail, "code": code}),
        status=status, content_type="application/problem+json")


async def reserve(request: web.Request) -> web.Response:
    pool_id = request.match_info["pool_id"]
    key = request.headers.get("Idempotency-Key")
    try:
        body = await request.json()
        slot_id, units = body["slot_id"], int(body.get("units", 1))
    except (ValueError, KeyError, TypeError):
        return _problem(400, "invalid_parameter", "body must be {slot_id, units}")
    if not (_ID.match(pool_id) and isinstance(slot_id, str) and _ID.match(slot_id)
            and 1 <= units <= 100):
        return _problem(422, "invalid_field", "bad pool_id, slot_id or units")
    try:
        view, replayed = await request.app[STORE].reserve(pool_id, slot_id, units, key)
    except Rejected as e:
        return _problem(e.status, e.code, e.detail)
    return _json(view, 201, {"Idempotent-Replayed": "true"} if replayed else None)


async def release(request: web.Request) -> web.Response:
    raw = request.match_info["reservation_id"]
    if not raw.isdigit() or len(raw) > 18:
        return _problem(404, "reservation_not_found", f"no reservation {raw}")
    try:
        return _json(await request.app[STORE].release(int(raw)))
    except Rejected as e:
        return _problem(e.status, e.code, e.detail)


async def availability(request: web.Request) -> web.Response:
    region, kind = request.query.get("region", ""), request.query.get("kind")
    try:
        date = dt.date.fromisoformat(request.query.get("date", ""))
    except ValueError:
        return _problem(400, "invalid_parameter", "date must be YYYY-MM-DD")
    if not _ID.match(region):
        return _problem(400, "invalid_parameter", "region is required")
    pools = await request.app[STORE].availability(region, date, kind)
    now = dt.datetime.fromtimestamp(time.time(), dt.UTC).isoformat(timespec="milliseconds")
    as_of = now.replace("+00:00", "Z")
    return web.Response(text='{"as_of": "' + as_of + '", "pools": ' + pools + "}",
                        content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def serve(variant: str, url: str, port: int, pool_size: int) -> None:
    """`url`: the PostgreSQL DSN, or for redis-lua the Redis URL."""
    app = web.Application()
    if variant == redis_store.VARIANT:
        app[STORE] = await redis_store.RedisStore.connect(url, pool_size)
    else:
        pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)
        app[STORE] = STORES[variant](pool)
    app.router.add_post("/v1/pools/{pool_id}/reservations", reserve)
    app.router.add_delete("/v1/reservations/{reservation_id}", release)
    app.router.add_get("/v1/availability", availability)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
    await asyncio.Event().wait()  # until SIGTERM


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", choices=[*sorted(STORES), redis_store.VARIANT],
                        required=True)
    parser.add_argument("--dsn", help="PostgreSQL (the tx, cte and occ variants)")
    parser.add_argument("--redis-url", help="Redis, redis://host:port/db (the redis-lua "
                        "variant)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pool-size", type=int, default=16, help="connections per process")
    args = parser.parse_args(argv)
    redis = args.variant == redis_store.VARIANT
    url = args.redis_url if redis else args.dsn
    if not url:
        parser.error(f"--variant {args.variant} needs {'--redis-url' if redis else '--dsn'}")
    uvloop.run(serve(args.variant, url, args.port, args.pool_size))
