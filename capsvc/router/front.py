"""The router's public HTTP front, on the same connection class as the worker's
(`capsvc.http.lean.LeanProtocol`): the customers' routes here, everything else in aiohttp.

    POST   /v1/pools/{pool_id}/reservations     GET /v1/pools/{pool_id}
    DELETE /v1/reservations/{reservation_id}    GET /v1/reservations/{reservation_id}
    GET    /v1/availability

These are answered here and nowhere else in the router, in every shape (a bad id or query, a
wrong method, HEAD, OPTIONS). The four pool and reservation routes are forwarded over pooled
raw connections to the owner of the pool's shard (`rawclient`), once their ids are known to be
valid (the same checks as the worker's, from `capsvc.http.parsing`); the grid is answered
from the read model with a per-day cache. Any other request is relayed in memory to the
router's aiohttp app (`capsvc.router.app`: admin, planner, ops and metrics routes), whatever
came before it on the connection. Connection limits, pipelining, timeouts and drain are
`LeanProtocol`'s, as on the worker.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from multidict import MultiDict

from capsvc.errors import CapsvcError, ShardUnavailable
from capsvc.http import headers, parsing
from capsvc.http.json_body import decode_json
from capsvc.http.lean import JSON, LeanFront, LeanRequest
from capsvc.http.routes import ROUTES
from capsvc.planning.plan import PLAN_BODY_MAX_BYTES
from capsvc.router.forward import forward
from capsvc.router.upstream import FORWARD_REQUEST_HEADERS, FORWARD_RESPONSE_HEADERS

GRID_QUERIES_MAX = 4096
# A client's headers that go on to the owner: the request id is ours to set (it may be one we
# made up), and a customer's route carries no actor (that comes from an admin token).
FORWARD_REQUEST = tuple(headers.wire(name) for name in FORWARD_REQUEST_HEADERS
                        if name not in (headers.REQUEST_ID, headers.ACTOR))
_DEADLINE = headers.DEADLINE.encode() + b": "
FRONT_ROUTES = tuple(r for r in ROUTES if r.front)


_grid_queries: dict[bytes, tuple[str, str, str | None]] = {}


def availability_query(raw: bytes) -> tuple[str, str, str | None]:
    """(region, date, kind or None) of an availability query string, or BadRequest naming
    the parameter. Valid ones are remembered by their bytes: clients ask the same few days
    over and over."""
    parsed = _grid_queries.get(raw)
    if parsed is None:
        query = MultiDict(parse_qsl(raw.decode("utf-8", "surrogateescape"),
                                    keep_blank_values=True))
        region = parsing.query_id(query, "region", required=True)
        date = parsing.query_date(query, "date", required=True)
        kind = parsing.query_id(query, "kind", required=False)
        assert region is not None and date is not None
        parsed = (region, date, kind)
        if len(_grid_queries) >= GRID_QUERIES_MAX:
            _grid_queries.clear()
        _grid_queries[raw] = parsed
    return parsed


_GRID_HEAD = b"Content-Type: " + JSON + b"\r\n"
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
        super().__init__(aiohttp_protocol, FRONT_ROUTES, body_max=limits.body_max_bytes,
                         read_timeout_s=limits.request_read_timeout_ms / 1000,
                         relay_body_max=max(limits.body_max_bytes, PLAN_BODY_MAX_BYTES))
        self.state = state
        self.topology = state.topology
        self.model = state.model
        self.deadline_s = limits.request_timeout_ms / 1000  # the worker's, from arrival here
        self.timeout_s = state.upstream_timeout_s  # ours: the worker's answer has time to come
        self._as_of: tuple[float, bytes] = (0.0, b"")  # the last as_of and its text
        self._metrics: dict[tuple, tuple[Any, Any]] = {}  # (route, method, status) -> children
        self._errors: dict[tuple[str, str], Any] = {}  # (route, code) -> counter child
        self._ids = 0
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-".encode()
        self._proxying: set[asyncio.Task] = set()  # held until done (the loop holds tasks weakly)

    def serve(self, request: LeanRequest) -> None:
        try:
            if request.route == "availability":
                self._availability(request)
                return
            pool_id = self._pool_of(request)  # a bad id is refused here, never forwarded
        except CapsvcError as e:
            self._error(request, e)
            return
        task = asyncio.get_running_loop().create_task(self._proxy(request, pool_id))
        self._proxying.add(task)
        task.add_done_callback(self._proxying.discard)

    @staticmethod
    def _pool_of(request: LeanRequest) -> str:
        params = request.match.params  # type: ignore[union-attr]
        if "reservation_id" in params:
            return parsing.path_reservation(params)[0]
        return parsing.path_id(params, "pool_id")

    def request_id(self, request: LeanRequest) -> bytes:
        """The client's X-Request-Id, or one of ours; the same for all of a request's life."""
        if request.extra is None:
            given = request.headers.get(b"x-request-id")
            if given and len(given) <= 128:
                request.extra = given
            else:
                self._ids += 1
                request.extra = self._prefix + b"%x" % self._ids
        return request.extra

    def answer(
        self, request: LeanRequest, status: int, head: bytes, payload: bytes, code: str | None
    ) -> None:
        request.reply(status, head + b"X-Request-Id: " + self.request_id(request) + b"\r\n",
                      payload)
        self._observe(request, status, code)

    def _error(self, request: LeanRequest, error: CapsvcError) -> None:
        head = b"" if error.retry_after_s is None else b"Retry-After: %d\r\n" % error.retry_after_s
        self.problem(request, error.code, error.detail, head, **error.fields)

    def _observe(self, request: LeanRequest, status: int, code: str | None) -> None:
        route = request.match.path if request.match is not None else "unmatched"
        key = (route, request.method, status)
        metrics = self._metrics.get(key)
        if metrics is None:  # labels() costs more than a whole grid answer: look it up once
            metrics = self._metrics[key] = (
                self.state.requests.labels(route, request.method.decode(), str(status)),
                self.state.latency.labels(route, str(status)))
        metrics[0].inc()
        metrics[1].observe(time.perf_counter() - request.started)
        if code is not None:
            child = self._errors.get((route, code))
            if child is None:  # labels() costs: look each child up once
                child = self._errors[route, code] = self.state.errors.labels(route, code)
            child.inc()

    # -- proxied routes ----------------------------------------------------------------------
    def _upstream_bytes(self, request: LeanRequest) -> bytes:
        # HEAD goes upstream as GET: the body is left out here, on the way to the client
        method = b"GET" if request.method == b"HEAD" else request.method
        head = [method, b" ", request.path,
                b" HTTP/1.1\r\nHost: capsvc\r\nContent-Length: %d\r\n" % len(request.body)]
        for name in FORWARD_REQUEST:
            value = request.headers.get(name)
            if value is not None:
                head += [name, b": ", value, b"\r\n"]
        # when the client's wait ends: the worker applies nothing it reaches later
        deadline = time.time() - (time.perf_counter() - request.started) + self.deadline_s
        head += [b"X-Request-Id: ", self.request_id(request), b"\r\n", self.state.upstream_lines,
                 _DEADLINE, headers.deadline_value(deadline).encode(), b"\r\n\r\n"]
        return b"".join(head) + request.body

    async def _proxy(self, request: LeanRequest, pool_id: str) -> None:
        try:
            answer = await forward(self.topology, self.state.resends, pool_id,
                                   self._upstream_bytes(request),
                                   idempotent=request.method in (b"GET", b"HEAD"),
                                   timeout_s=self.timeout_s)
        except CapsvcError as e:
            self._error(request, e)
            return
        # the owner's problem: counted by its code here too
        code = _code_of(answer.body) if answer.status >= 400 else None
        head = []
        for name, value in answer.headers:
            if name.lower() in FORWARD_RESPONSE_HEADERS:
                head += [name, b": ", value, b"\r\n"]
        self.answer(request, answer.status, b"".join(head), answer.body, code)

    # -- the availability grid ------------------------------------------------------------
    def _availability(self, request: LeanRequest) -> None:
        """At once, never waiting: a known query is known by its bytes, the day's pools are
        JSON bytes the model keeps until one of them changes, and the answer is one join."""
        query = availability_query(request.path.partition(b"?")[2])
        as_of = self.model.as_of([c.name for c in self.topology.clients()])
        if as_of is None:
            raise ShardUnavailable("the availability read model is still loading")
        if as_of != self._as_of[0]:
            self._as_of = (as_of, rfc3339(as_of))
        pools = self.model.grid_json(*query)
        body = b"".join((_GRID_BODY[0], self._as_of[1], _GRID_BODY[1], pools, b"}"))
        self.answer(request, 200, _GRID_HEAD, body, None)
