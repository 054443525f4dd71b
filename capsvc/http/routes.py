"""Every public URL of capsvc, in one table.

`target` says who answers: "pool" and "reservation" routes are answered by the worker that owns
the pool's shard (the router proxies them; a reservation id carries its pool), "router" routes
by the router itself. `admin` routes need a bearer token, checked by the router. `front` routes
are the customers' hot routes: each process answers them on its lean front
(`capsvc.http.lean`), and only there; aiohttp serves the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aiohttp import web


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    name: str
    target: str  # "pool" | "reservation" | "router" | "internal"
    admin: bool = False
    front: bool = False

    def __post_init__(self) -> None:
        assert self.target in ("pool", "reservation", "router", "internal"), self.target
        assert self.admin == self.path.startswith("/v1/admin/"), self.path
        assert not (self.front and self.admin), self.path  # the fronts check no tokens


ROUTES: tuple[Route, ...] = (
    Route("PUT", "/v1/admin/pools/{pool_id}", "define_pool", "pool", admin=True),
    Route("PATCH", "/v1/admin/pools/{pool_id}", "change_total_capacity", "pool", admin=True),
    Route("POST", "/v1/admin/pools/{pool_id}/slots", "add_slot", "pool", admin=True),
    Route("PATCH", "/v1/admin/pools/{pool_id}/slots/{slot_id}", "update_slot", "pool", admin=True),
    Route("GET", "/v1/admin/pools/{pool_id}/events", "pool_events", "pool", admin=True),
    Route("GET", "/v1/admin/pools", "list_pools", "router", admin=True),
    Route("GET", "/v1/admin/cluster", "cluster", "router", admin=True),
    # planner tools (the board at /ui/ uses nothing else)
    Route("GET", "/v1/admin/pools/{pool_id}", "admin_get_pool", "pool", admin=True),
    Route("GET", "/v1/admin/pools/{pool_id}/timeline", "pool_timeline", "router", admin=True),
    Route("GET", "/v1/admin/board", "board", "router", admin=True),
    Route("POST", "/v1/admin/plans", "apply_plan", "router", admin=True),
    Route("GET", "/v1/admin/plans/export", "export_plan", "router", admin=True),
    Route("GET", "/v1/pools/{pool_id}", "get_pool", "pool", front=True),
    Route("POST", "/v1/pools/{pool_id}/reservations", "reserve", "pool", front=True),
    Route("GET", "/v1/reservations/{reservation_id}", "get_reservation", "reservation", front=True),
    Route("DELETE", "/v1/reservations/{reservation_id}", "release", "reservation", front=True),
    Route("GET", "/v1/availability", "availability", "router", front=True),
    Route("GET", "/healthz", "healthz", "router"),
    Route("GET", "/readyz", "readyz", "router"),
    Route("GET", "/metrics", "metrics", "router"),
    Route("GET", "/openapi.json", "openapi", "router"),
)

# Routes between the router and its workers only (never exposed on the public port).
INTERNAL_FEED = "/internal/feed"
FEED_ROUTE = Route("GET", INTERNAL_FEED, "feed", "internal", front=True)  # the worker's front
INTERNAL_STATUS = "/internal/status"
INTERNAL_POOLS = "/internal/pools"
INTERNAL_PROBE = "/internal/probe"



def add_route(app: web.Application, route: Route, handler: Any) -> None:
    """Register one route of the table with an aiohttp app; a GET route answers HEAD too
    (RFC 9110 9.3.2). Front routes are never the app's."""
    assert not route.front, route.name
    if route.method == "GET":
        app.router.add_get(route.path, handler, name=route.name, allow_head=True)
    else:
        app.router.add_route(route.method, route.path, handler, name=route.name)
