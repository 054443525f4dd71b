"""The router's HTTP app: authentication, proxying to owners, and the router's own routes.

Built from the one route table (`capsvc.http.routes`). A worker's answer, problem+json
included, is passed through unchanged; the router adds only its own errors (bad ids, missing
token, unreachable owner) in the same problem format.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from capsvc.config import Config
from capsvc.http import parsing
from capsvc.http.answer_reader import Answer
from capsvc.http.headers import ACTOR, CLUSTER_TOKEN, DEADLINE, REQUEST_ID, deadline_value
from capsvc.http.json_body import json_text
from capsvc.http.openapi import openapi_document
from capsvc.http.problems import problem, problem_code, problem_middleware
from capsvc.http.routes import (
    INTERNAL_POOLS,
    ROUTES,
    Route,
    add_route,
)
from capsvc.router.auth import TokenChecker
from capsvc.router.forward import forward
from capsvc.router.health import (
    ShardCollector,
    ask_worker,
    current_shard_table,
    health_handlers,
)
from capsvc.router.planner import planner_handlers
from capsvc.router.read_model import ReadModel
from capsvc.router.topology import ClusterTopology, LocalTopology
from capsvc.router.upstream import (
    FORWARD_REQUEST_HEADERS,
    passed_on,
    request_bytes,
)
from capsvc.ui import add_ui_routes

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIST_WAIT_S = 2.0  # how long the pool listing waits for each worker (it never fails for one)


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
        # every request to a worker: the cluster secret (a worker checks it on any socket),
        # and how long the router waits for an owner's answer (the worker's deadline + 1 s)
        secret = config.cluster_secret if config.cluster.enabled else ""
        self.upstream_lines = f"{CLUSTER_TOKEN}: {secret}\r\n".encode() if secret else b""
        self.upstream_timeout_s = config.limits.request_timeout_ms / 1000 + 1.0
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
        timeout_s = state.config.limits.request_timeout_ms / 1000
        headers[DEADLINE] = deadline_value(time.time() + timeout_s)  # applied by then, or never
        if actor is not None:
            headers[ACTOR] = actor
        else:
            headers.pop(ACTOR, None)  # a customer cannot claim to be an admin
        upstream = await _forward(state, pool_id, request.method, request.path_qs, body, headers)
        return web.Response(status=upstream.status, body=upstream.body, headers=passed_on(upstream))

    return handler


async def _forward(
    state: RouterState,
    pool_id: str,
    method: str,
    path_qs: str,
    body: bytes | None,
    headers: dict[str, str],
) -> Answer:
    """A planner's request to the owner of `pool_id`'s shard (`forward.py`: the loop the
    customers' routes use too)."""
    data = request_bytes(method, path_qs, state.upstream_lines, body, headers)
    return await forward(state.topology, state.resends, pool_id, data,
                         idempotent=method in ("GET", "HEAD"), timeout_s=state.upstream_timeout_s)


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json_text(body), content_type="application/json")


async def list_pools(request: web.Request) -> web.Response:
    state = _state(request)
    filters = {
        "region": parsing.query_id(request.query, "region", required=False),
        "date": parsing.query_date(request.query, "date", required=False),
        "kind": parsing.query_id(request.query, "kind", required=False),
    }
    # only the checked filters go on: anything else in the query is no business of the workers
    path = f"{INTERNAL_POOLS}?" + "&".join(
        f"{name}={value}" for name, value in filters.items() if value is not None)
    workers = state.topology.clients()
    answers = await asyncio.gather(*(ask_worker(w, path, deadline_s=LIST_WAIT_S)
                                     for w in workers))
    pools = sorted((p for a in answers if a is not None for p in a.get("pools", [])),
                   key=lambda p: p["pool_id"])
    # A worker that does not answer in time (a dead or frozen host not yet out of the
    # membership) leaves its pools out, and the answer says so instead of failing or waiting.
    missing = [w.name for w, a in zip(workers, answers, strict=True) if a is None]
    return _json({"pools": pools, "complete": not missing, "workers_not_answering": missing})


async def metrics(request: web.Request) -> web.Response:
    state = _state(request)
    shards = await current_shard_table(state)
    registry = CollectorRegistry()
    registry.register(ShardCollector(shards))
    # The whole host in one scrape: these two plus every local worker's and the supervisor's.
    from capsvc.router.metrics import host_exposition

    text = await host_exposition(
        state.config,
        state.topology.clients(),
        [generate_latest(state.registry), generate_latest(registry)],
        shards,
    )
    return web.Response(body=text, headers={"Content-Type": "text/plain; version=0.0.4"})


async def openapi(request: web.Request) -> web.Response:
    return _json(openapi_document())


_LOCAL: dict[str, Handler] = {
    **health_handlers(_state),
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
        if route.front:
            continue  # the customers' routes are the front's, only (`capsvc.router.front`)
        handler = _LOCAL[route.name] if route.target == "router" else _proxy(route)
        add_route(app, route, handler)
    add_ui_routes(app)
    return app
