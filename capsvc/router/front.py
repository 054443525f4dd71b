"""The router's public HTTP front, on the same connection class as the worker's
(`capsvc.http.lean.LeanProtocol`): the customers' routes here, everything else in aiohttp.

    POST   /v1/pools/{pool_id}/reservations     GET /v1/pools/{pool_id}
    DELETE /v1/reservations/{reservation_id}    GET /v1/reservations/{reservation_id}
    GET    /v1/availability

The four pool and reservation routes are forwarded over pooled raw connections to the owner
of the pool's shard (`rawclient`); the grid is answered from the read model with a per-day
cache. Any other request, and a hot one with an id or query aiohttp must refuse, is relayed in
memory to the router's aiohttp app (`capsvc.router.app`: admin, planner, ops and metrics
routes, and its problems), whatever came before it on the connection. Connection limits,
pipelining, timeouts and drain are `LeanProtocol`'s, as on the worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from capsvc.domain.ids import is_valid_id, pool_of_reservation
from capsvc.errors import CapsvcError, ShardUnavailable, UpstreamUnavailable
from capsvc.http import headers
from capsvc.http.answer_reader import Answer
from capsvc.http.json_body import decode_json
from capsvc.http.lean import LeanFront, LeanRequest
from capsvc.http.parsing import is_date
from capsvc.planning.plan import PLAN_BODY_MAX_BYTES
from capsvc.router.rawclient import NotSent

GRID_QUERIES_MAX = 4096
FORWARD_REQUEST = (b"content-type", b"idempotency-key")
FORWARD_RESPONSE = frozenset(
    (b"content-type", b"idempotent-replayed", b"retry-after", b"x-capsvc-epoch",
     b"x-capsvc-version")
)
NOT_APPLIED = headers.wire(headers.NOT_APPLIED)


def classify(method: bytes, url: bytes) -> tuple[str | None, str | None]:
    """(route name, pool id or reservation id) for the hot routes, (None, None) otherwise."""
    path = url.partition(b"?")[0]
    if b"%" in path:
        return None, None  # let aiohttp decode and validate
    parts = path.split(b"/")
    if len(parts) < 3 or parts[1] != b"v1":
        return None, None
    if parts[2] == b"pools" and len(parts) == 4 and method == b"GET":
        return "get_pool", parts[3].decode("latin-1")
    if (parts[2] == b"pools" and len(parts) == 5 and parts[4] == b"reservations"
            and method == b"POST"):
        return "reserve", parts[3].decode("latin-1")
    if parts[2] == b"reservations" and len(parts) == 4 and method in (b"GET", b"DELETE"):
        return ("get_reservation" if method == b"GET" else "release"), parts[3].decode("latin-1")
    if parts[2] == b"availability" and len(parts) == 3 and method == b"GET":
        return "availability", None
    return None, None


def valid_target(route: str, target: str | None, url: bytes) -> bool:
    """Hot requests with anything unusual go to aiohttp, which answers with the right problem."""
    if route in ("get_pool", "reserve"):
        return is_valid_id(target)
    if route in ("get_reservation", "release"):
        return pool_of_reservation(target) is not None
    return availability_query(url.partition(b"?")[2]) is not None


_grid_queries: dict[bytes, tuple[str, str, str | None] | None] = {}


def availability_query(raw: bytes) -> tuple[str, str, str | None] | None:
    """(region, date, kind or None) of a valid availability query string, None for anything
    the aiohttp app must answer (with its problem). Remembered by the raw bytes: clients ask
    the same few days over and over."""
    parsed = _grid_queries.get(raw, False)
    if parsed is False:
        parsed = _parse_availability(raw)
        if len(_grid_queries) >= GRID_QUERIES_MAX:
            _grid_queries.clear()
        _grid_queries[raw] = parsed
    return parsed


def _parse_availability(raw: bytes) -> tuple[str, str, str | None] | None:
    query = parse_qs(raw.decode("latin-1"), keep_blank_values=True)
    if any(len(v) != 1 for v in query.values()) or set(query) - {"region", "date", "kind"}:
        return None
    region, date, kind = (query.get(k, [None])[0] for k in ("region", "date", "kind"))
    if not (is_valid_id(region) and date is not None and is_date(date)
            and (kind is None or kind == "" or is_valid_id(kind))):
        return None
    assert region is not None
    return region, date, kind or None


_CANONICAL = {"reserve": "/v1/pools/{pool_id}/reservations", "get_pool": "/v1/pools/{pool_id}",
              "get_reservation": "/v1/reservations/{reservation_id}",
              "release": "/v1/reservations/{reservation_id}", "availability": "/v1/availability"}
_GRID_HEAD = b"Content-Type: application/json\r\nX-Request-Id: "
_GRID_BODY = (b'{"as_of": "', b'", "pools": ')


def _code_of(body: bytes) -> str:
    """The `code` of a worker's problem answer ("unknown" if it is not one)."""
    try:
        code = decode_json(body).get("code")
    except (ValueError, AttributeError):
        return "unknown"
    return code if isinstance(code, str) else "unknown"


def rfc3339(ts: float) -> bytes:
    seconds = time.gmtime(ts)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(ts % 1 * 1000):03d}Z").encode()


class RouterFront(LeanFront):
    """What every public connection shares: routing, upstreams, the grid cache, metrics."""

    def __init__(self, state: Any, aiohttp_protocol: Callable[[], Any]) -> None:
        limits = state.config.limits
        super().__init__(aiohttp_protocol, body_max=limits.body_max_bytes,
                         header_timeout_s=limits.header_timeout_ms / 1000,
                         relay_body_max=max(limits.body_max_bytes, PLAN_BODY_MAX_BYTES))
        self.state = state
        self.topology = state.topology
        self.model = state.model
        self.timeout_s = limits.request_timeout_ms / 1000 + 1.0
        self._as_of: tuple[float, bytes] = (0.0, b"")  # the last as_of and its text
        self._metrics: dict[tuple, tuple[Any, Any]] = {}  # (route, method, status) -> children
        self._errors: dict[tuple[str, str], Any] = {}  # (route, code) -> counter child
        self._ids = 0
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-".encode()
        secret = state.config.cluster_secret if state.config.cluster.enabled else ""
        self._upstream_extra = (headers.CLUSTER_TOKEN.encode() + b": " + secret.encode() + b"\r\n"
                                if secret else b"")
        self._proxying: set[asyncio.Task] = set()  # held until done (the loop holds tasks weakly)

    def classify(self, method: bytes, url: bytes) -> tuple[str | None, str | None]:
        route, target = classify(method, url)
        if route is not None and not valid_target(route, target, url):
            return None, None
        return route, target

    def handle(self, request: LeanRequest) -> None:
        request_id = self.request_id(request)
        if request.route == "availability":
            self._availability(request, request_id)
            return
        task = asyncio.get_running_loop().create_task(self._proxy(request, request_id))
        self._proxying.add(task)
        task.add_done_callback(self._proxying.discard)

    def request_id(self, request: LeanRequest) -> bytes:
        given = request.headers.get(b"x-request-id")
        if given and len(given) <= 128:
            return given
        self._ids += 1
        return self._prefix + b"%x" % self._ids

    def _reply(self, request: LeanRequest, status: int, head: bytes, payload: bytes) -> None:
        request.reply(status, head, payload)
        self.observe(request, status)

    def _problem(self, request: LeanRequest, error: CapsvcError, request_id: bytes) -> None:
        head = b"" if error.retry_after_s is None else b"Retry-After: %d\r\n" % error.retry_after_s
        status = request.problem(error.code, error.detail, head,
                                 b"X-Request-Id: " + request_id + b"\r\n", **error.fields)
        self.observe(request, status)
        self._count_error(request, error.code)

    def _count_error(self, request: LeanRequest, code: str) -> None:
        route = _CANONICAL.get(request.route or "", "unmatched")
        child = self._errors.get((route, code))
        if child is None:  # labels() costs: look each child up once
            child = self._errors[route, code] = self.state.errors.labels(route, code)
        child.inc()

    def observe(self, request: LeanRequest, status: int) -> None:
        key = (request.route, request.method, status)
        metrics = self._metrics.get(key)
        if metrics is None:  # labels() costs more than a whole grid answer: look it up once
            route = _CANONICAL.get(request.route or "", "unmatched")
            metrics = self._metrics[key] = (
                self.state.requests.labels(route, request.method.decode(), str(status)),
                self.state.latency.labels(route, str(status)))
        metrics[0].inc()
        metrics[1].observe(time.perf_counter() - request.started)

    # -- proxied routes ----------------------------------------------------------------------
    def _upstream_bytes(self, request: LeanRequest, request_id: bytes) -> bytes:
        head = [request.method, b" ", request.path,
                b" HTTP/1.1\r\nHost: capsvc\r\nContent-Length: %d\r\n" % len(request.body)]
        for name in FORWARD_REQUEST:
            value = request.headers.get(name)
            if value is not None:
                head += [name, b": ", value, b"\r\n"]
        head += [b"X-Request-Id: ", request_id, b"\r\n", self._upstream_extra, b"\r\n"]
        return b"".join(head) + request.body

    async def _proxy(self, request: LeanRequest, request_id: bytes) -> None:
        pool_id = (request.target if request.route in ("get_pool", "reserve")
                   else pool_of_reservation(request.target))
        assert pool_id is not None and is_valid_id(pool_id)  # classify checked it
        try:
            answer = await self._forward(pool_id, request,
                                         self._upstream_bytes(request, request_id))
        except CapsvcError as e:
            self._problem(request, e, request_id)
            return
        if answer.status >= 400:  # the owner's problem: counted by its code here too
            self._count_error(request, _code_of(answer.body))
        head = [b"X-Request-Id: ", request_id, b"\r\n"]
        for name, value in answer.headers:
            if name.lower() in FORWARD_RESPONSE:
                head += [name, b": ", value, b"\r\n"]
        self._reply(request, answer.status, b"".join(head), answer.body)

    async def _forward(self, pool_id: str, request: LeanRequest, data: bytes) -> Answer:
        """Same promises as the aiohttp app's `_forward`: requests that were never applied
        (owner missing, unreachable, or answering "not applied") are resent within the
        buffer time in a cluster; in the embedded mode a restarting worker is waited for."""
        topology = self.topology
        shard_id = topology.shard_of(pool_id)
        now = time.monotonic()
        buffer_deadline = now + topology.buffer_s
        deadline = now + self.timeout_s
        delay = 0.02
        idempotent = request.method == b"GET"
        while True:
            client = await topology.client_for(shard_id, buffer_deadline)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamUnavailable(f"no answer for shard {shard_id} in time")
            try:
                answer = await client.raw.request(data, remaining, idempotent)
            except NotSent:
                self.state.resends.labels("not_sent").inc()
                if topology.buffer_s:
                    if time.monotonic() >= buffer_deadline:
                        raise
                    await topology.wait_change(0.1)
                else:
                    await asyncio.sleep(delay)  # the worker is restarting
                    delay = min(delay * 2, 0.25)
                continue
            if answer.header(NOT_APPLIED) and time.monotonic() < buffer_deadline:
                self.state.resends.labels("not_applied").inc()
                await topology.wait_change(0.05)
                continue
            return answer

    # -- the availability grid ------------------------------------------------------------
    def _availability(self, request: LeanRequest, request_id: bytes) -> None:
        """At once, never waiting: the query is known valid (by its bytes), the day's pools
        are JSON bytes the model keeps until one of them changes, and the answer is one join."""
        query = availability_query(request.path.partition(b"?")[2])
        assert query is not None  # classify checked it
        as_of = self.model.as_of([c.name for c in self.topology.clients()])
        if as_of is None:
            error = ShardUnavailable("the availability read model is still loading")
            self._problem(request, error, request_id)
            return
        if as_of != self._as_of[0]:
            self._as_of = (as_of, rfc3339(as_of))
        pools = self.model.grid_json(*query)
        body = b"".join((_GRID_BODY[0], self._as_of[1], _GRID_BODY[1], pools, b"}"))
        self._reply(request, 200, _GRID_HEAD + request_id + b"\r\n", body)
