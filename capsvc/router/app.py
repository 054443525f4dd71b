"""The router's HTTP app: authentication, proxying to owners, and the router's own routes.

Built from the one route table (`capsvc.http.routes`). A worker's answer, problem+json
included, is passed through unchanged; the router adds only its own errors (bad ids, missing
token, unreachable owner) in the same problem format.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

from capsvc.config import Config
from capsvc.domain.wording import counted
from capsvc.errors import CapsvcError, ShardUnavailable
from capsvc.http import parsing
from capsvc.http.headers import ACTOR, REQUEST_ID
from capsvc.http.json_body import json_text
from capsvc.http.openapi import openapi_document
from capsvc.http.problems import problem, problem_code, problem_middleware
from capsvc.http.routes import (
    INTERNAL_POOLS,
    INTERNAL_PROBE,
    INTERNAL_STATUS,
    ROUTES,
    Route,
    add_route,
)
from capsvc.router.auth import TokenChecker
from capsvc.router.planner import planner_handlers
from capsvc.router.read_model import ReadModel
from capsvc.router.topology import ClusterTopology, LocalTopology
from capsvc.router.upstream import (
    FORWARD_REQUEST_HEADERS,
    NotSent,
    UpstreamResponse,
    WorkerClient,
)
from capsvc.ui import add_ui_routes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class RouterState:
    """Everything the router's handlers share; owned by the router process."""

    def __init__(
        self,
        config: Config,
        topology: LocalTopology | ClusterTopology,
        model: ReadModel,
        tokens: TokenChecker,
    ) -> None:
        self.config = config
        self.topology = topology
        self.model = model
        self.tokens = tokens
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "capsvc_http_requests",
            "HTTP requests answered by the router",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.errors = Counter(
            "capsvc_http_errors",
            "Problem answers by route and code (overloaded: requests shed with 503)",
            ["route", "code"],
            registry=self.registry,
        )
        # Apart from what clients saw: requests the router sent again on its own, because the
        # owner was unreachable (not_sent) or answered that it applied nothing (not_applied).
        self.resends = Counter(
            "capsvc_router_resends",
            "Requests the router sent again to a shard's owner, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.zk_states = Counter(
            "capsvc_router_zookeeper_state_changes",
            "ZooKeeper connection state changes seen by the router",
            ["state"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "capsvc_http_request_duration_seconds",
            "Router request latency by route and outcome status",
            ["route", "status"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )


STATE = web.AppKey("state", RouterState)


def _state(request: web.Request) -> RouterState:
    return request.app[STATE]


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id in and out, and per-route metrics."""
    started = time.perf_counter()
    request_id = request.headers.get(REQUEST_ID) or uuid.uuid4().hex
    request["request_id"] = request_id
    response = await handler(request)
    response.headers[REQUEST_ID] = request_id
    resource = request.match_info.route.resource
    route = resource.canonical if resource is not None else "unmatched"
    state = _state(request)
    state.requests.labels(route, request.method, str(response.status)).inc()
    code = problem_code(response) if response.status >= 400 else None
    if code is not None:
        state.errors.labels(route, code).inc()
    state.latency.labels(route, str(response.status)).observe(time.perf_counter() - started)
    return response


ACTOR_KEY = "actor"  # request key: the admin token's name, set by `authorise`
_ROUTES_BY_NAME = {route.name: route for route in ROUTES}


def actor_of(request: web.Request) -> str | None:
    """Who an admin request comes from (None on customers' routes)."""
    return request.get(ACTOR_KEY)


@web.middleware
async def authorise(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Admin authorisation, in one place: a route the table marks `admin` needs a valid bearer
    token (checked in constant time); the token's name goes to the handler as the actor."""
    route = _ROUTES_BY_NAME.get(request.match_info.route.name or "")
    if route is not None and route.admin:
        actor = _state(request).tokens.check(request.headers.get("Authorization"))
        if actor is None:
            return problem("unauthorized", "a valid admin bearer token is required")
        request[ACTOR_KEY] = actor
    return await handler(request)


def _proxy(route: Route) -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        state = _state(request)
        actor = actor_of(request)
        if route.target == "pool":
            pool_id = parsing.path_id(request.match_info, "pool_id")
        else:
            pool_id, _ = parsing.path_reservation(request.match_info)
        body = await request.read() if request.can_read_body else None
        headers = {h: request.headers[h] for h in FORWARD_REQUEST_HEADERS if h in request.headers}
        headers[REQUEST_ID] = request["request_id"]
        if actor is not None:
            headers[ACTOR] = actor
        else:
            headers.pop(ACTOR, None)  # a customer cannot claim to be an admin
        upstream = await _forward(state, pool_id, request.method, request.path_qs, body, headers)
        return web.Response(status=upstream.status, body=upstream.body, headers=upstream.headers)

    return handler


async def _forward(
    state: RouterState,
    pool_id: str,
    method: str,
    path_qs: str,
    body: bytes | None,
    headers: dict[str, str],
) -> UpstreamResponse:
    """Send to the shard's owner. In a cluster, an owner that is missing, unreachable, or
    answers "not applied here" (handoff, failover) is looked up again until the buffer time
    runs out: those requests were never applied, so resending them is safe."""
    topology = state.topology
    shard_id = topology.shard_of(pool_id)
    deadline = time.monotonic() + topology.buffer_s
    while True:
        client = await topology.client_for(shard_id, deadline)
        try:
            upstream = await client.request(
                method, path_qs, body, headers, retry_unsent=topology.buffer_s == 0
            )
        except NotSent:
            if time.monotonic() >= deadline:
                raise
            state.resends.labels("not_sent").inc()
            await topology.wait_change(0.1)
            continue
        if upstream.not_applied and time.monotonic() < deadline:
            state.resends.labels("not_applied").inc()
            await topology.wait_change(0.05)
            continue
        return upstream


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json_text(body), content_type="application/json")


def _rfc3339(ts: float) -> str:
    return (
        dt.datetime.fromtimestamp(ts, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


async def availability(request: web.Request) -> web.Response:
    state = _state(request)
    region = parsing.query_id(request.query, "region", required=True)
    date = parsing.query_date(request.query, "date", required=True)
    kind = parsing.query_id(request.query, "kind", required=False)
    as_of = state.model.as_of([c.name for c in state.topology.clients()])
    if as_of is None:
        raise ShardUnavailable("the availability read model is still loading")
    # the same bytes as the front's hit path (`RouterFront._availability`), from the same cache
    pools = state.model.grid_json(region, date, kind)
    body = b'{"as_of": "%s", "pools": %s}' % (_rfc3339(as_of).encode(), pools)
    return web.Response(body=body, content_type="application/json")


async def _statuses(clients: list[WorkerClient]) -> list[dict[str, Any] | None]:
    """Each worker's status, None for a worker that did not answer."""

    async def one(worker: WorkerClient) -> dict[str, Any] | None:
        try:
            return await worker.get_json(INTERNAL_STATUS, timeout_s=2.0)
        except CapsvcError:
            return None

    return list(await asyncio.gather(*(one(w) for w in clients)))


def _shard_table(state: RouterState, statuses: list[dict[str, Any] | None]) -> list[dict]:
    """Every shard with its owner and, where the owner answered, its live numbers."""
    topology = state.topology
    by_shard: dict[int, dict[str, Any]] = {}
    for status in statuses:
        for shard in (status or {}).get("shards", []):
            by_shard[shard["shard"]] = shard
    table = []
    for shard_id in range(topology.shard_count):
        owner = topology.owner_of(shard_id)
        row = by_shard.get(shard_id) if owner is not None else None
        table.append({**(row or {"shard": shard_id, "state": "unowned"}), "owner": owner})
    return table


async def healthz(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def _probes(clients: list[WorkerClient]) -> dict[int, dict[str, Any]]:
    """Shard id -> its owner's probe result: a real read of the shard's file, not just "the
    process is up" (groups of entities can be down while every process looks healthy)."""

    async def one(worker: WorkerClient) -> list[dict[str, Any]]:
        try:
            response = await worker.request("GET", INTERNAL_PROBE, timeout_s=3.0)
            return json.loads(response.body).get("shards", [])
        except (CapsvcError, ValueError):
            return []

    results = await asyncio.gather(*(one(w) for w in clients))
    return {r["shard"]: r for rs in results for r in rs}


async def readyz(request: web.Request) -> web.Response:
    """Ready only when every shard is owned, recovered and answers a real read of its file,
    and the read model has loaded."""
    state = _state(request)
    clients = state.topology.clients()
    probes = await _probes(clients)
    shards = range(state.topology.shard_count)
    not_ready = [s for s in shards if not probes.get(s, {}).get("ok")]
    model_loaded = state.model.as_of([c.name for c in state.topology.clients()]) is not None
    if not_ready or not model_loaded:
        detail = f"{len(not_ready)} of {counted(len(shards), 'shard')} not ready"
        failures = {str(s): probes[s]["error"] for s in not_ready if probes.get(s, {}).get("error")}
        if failures:
            return problem("shard_unavailable", detail, retry_after_s=1,
                           shards_not_ready=not_ready, failures=failures)
        if not model_loaded:
            detail += "; read model loading"
        return problem("shard_unavailable", detail, retry_after_s=1, shards_not_ready=not_ready)
    return _json({"status": "ready", "shards": len(shards)})


async def cluster(request: web.Request) -> web.Response:
    state = _state(request)
    clients = state.topology.clients()
    statuses = await _statuses(clients)
    workers = [
        {
            "worker": c.name,
            "pid": (s or {}).get("pid"),
            "reachable": s is not None,
            "address": c.address,
        }
        for c, s in zip(clients, statuses, strict=True)
    ]
    model = state.model
    return _json(
        {
            **state.topology.describe(),
            "shard_count": state.topology.shard_count,
            "workers": workers,
            "shards": _shard_table(state, statuses),
            "read_model": {
                "pools": model.pool_count(),
                "positions": {str(k): v for k, v in model.positions.items()},
            },
        }
    )


async def list_pools(request: web.Request) -> web.Response:
    state = _state(request)
    for name in ("region", "kind"):
        parsing.query_id(request.query, name, required=False)
    parsing.query_date(request.query, "date", required=False)
    answers = await asyncio.gather(
        *(
            w.get_json(
                f"{INTERNAL_POOLS}?{request.query_string}",
                timeout_s=state.config.limits.request_timeout_ms / 1000,
            )
            for w in state.topology.clients()
        )
    )
    pools = sorted((p for a in answers for p in a["pools"]), key=lambda p: p["pool_id"])
    return _json({"pools": pools})


async def metrics(request: web.Request) -> web.Response:
    state = _state(request)
    shards = _shard_table(state, await _statuses(state.topology.clients()))
    registry = CollectorRegistry()
    registry.register(_ShardCollector(shards))
    # The whole host in one scrape: these two plus every local worker's and the supervisor's.
    from capsvc.router.metrics import host_exposition

    text = await host_exposition(
        state.config,
        state.topology.clients(),
        [generate_latest(state.registry), generate_latest(registry)],
        shards,
    )
    return web.Response(body=text, headers={"Content-Type": "text/plain; version=0.0.4"})


class _ShardCollector:
    def __init__(self, shards: list[dict[str, Any]]) -> None:
        self.shards = shards

    def collect(self):  # noqa: ANN201 - prometheus_client protocol
        families = {
            "ready": GaugeMetricFamily(
                "capsvc_shard_ready", "1 if the shard is ready", labels=["shard"]
            ),
            "epoch": GaugeMetricFamily("capsvc_shard_epoch", "Owner epoch", labels=["shard"]),
            "event_count": GaugeMetricFamily(
                "capsvc_shard_events", "Events in the shard log", labels=["shard"]
            ),
            "queue_depth": GaugeMetricFamily(
                "capsvc_shard_queue_depth", "Commands waiting", labels=["shard"]
            ),
            "pools": GaugeMetricFamily("capsvc_shard_pools", "Pools held", labels=["shard"]),
            "replay_seconds": GaugeMetricFamily(
                "capsvc_shard_replay_seconds", "Last recovery time", labels=["shard"]
            ),
        }
        for shard in self.shards:
            label = [str(shard["shard"])]
            families["ready"].add_metric(label, 1.0 if shard["state"] == "ready" else 0.0)
            for key in ("epoch", "event_count", "queue_depth", "pools", "replay_seconds"):
                if key in shard:
                    families[key].add_metric(label, float(shard[key]))
        yield from families.values()


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


_LOCAL: dict[str, Handler] = {
    "availability": availability,
    "healthz": healthz,
    "readyz": readyz,
    "cluster": cluster,
    "list_pools": list_pools,
    "metrics": metrics,
    "openapi": openapi,
    **planner_handlers(_state, actor_of, _forward),
}


def make_router_app(state: RouterState) -> web.Application:
    app = web.Application(
        client_max_size=state.config.limits.body_max_bytes,
        middlewares=[observe, problem_middleware, authorise],
    )
    app[STATE] = state
    for route in ROUTES:
        handler = _LOCAL[route.name] if route.target == "router" else _proxy(route)
        add_route(app, route, handler)
    add_ui_routes(app)
    return app
