"""The router's public HTTP front: a lean protocol for the hot routes, aiohttp for the rest.

Customers' traffic is four proxied routes and the availability grid; they are parsed with
httptools and forwarded over pooled raw connections (`rawclient`), the grid is answered from
the read model with a per-day cache. Everything else (admin, planner board, metrics, OpenAPI)
is served by the router's aiohttp app, and its behaviour is the same either way:

- a connection whose first request is not a hot route is handed to aiohttp whole (the bytes
  received so far are replayed into aiohttp's own protocol), so streaming and every aiohttp
  feature work there;
- a later non-hot request on a hot connection is relayed, byte for byte and streaming, to the
  aiohttp app's Unix socket, and that connection is then closed.

Limits: a request (headers and body) must arrive within `limits.header_timeout_ms`; the
request line and headers are bounded as in the worker's front (`capsvc.http.lean`, whose
`RequestCollector` this front shares: 414 and 431 as problems), bodies over `body_max_bytes`
answer 413, slow or endless headers close the connection, idle keep-alive connections close
after `KEEPALIVE_S`, pipelined requests are answered in order with reading paused while too
many wait.
"""

from __future__ import annotations

import asyncio
import collections
import http
import json
import logging
import os
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httptools

from capsvc.domain.ids import is_valid_id, pool_of_reservation
from capsvc.errors import CapsvcError, UpstreamUnavailable
from capsvc.http.answer_reader import Answer
from capsvc.http.lean import RequestCollector, close_connections
from capsvc.http.parsing import is_date
from capsvc.http.problems import PROBLEMS
from capsvc.router.rawclient import NotSent

log = logging.getLogger(__name__)
KEEPALIVE_S = 75.0
PIPELINE_MAX = 16
GRID_QUERIES_MAX = 4096
FORWARD_REQUEST = (b"content-type", b"idempotency-key")
FORWARD_RESPONSE = (b"content-type", b"idempotent-replayed", b"retry-after",
                    b"x-capsvc-epoch", b"x-capsvc-version")
NOT_APPLIED = b"x-capsvc-not-applied"
_REASONS = {s.value: s.phrase.encode() for s in http.HTTPStatus}


class Request:
    __slots__ = ("method", "path", "query", "headers", "body", "keep_alive", "route", "target",
                 "started")

    def __init__(self, method: bytes, url: bytes, headers: dict[bytes, bytes], body: bytes,
                 keep_alive: bool, route: str | None, target: str | None) -> None:
        path, _, query = url.partition(b"?")
        self.method, self.path, self.query = method, path, query
        self.headers, self.body, self.keep_alive = headers, body, keep_alive
        self.route, self.target = route, target
        self.started = time.perf_counter()


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


def http_response(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                  keep_alive: bool) -> bytes:
    head = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    head += [k + b": " + v + b"\r\n" for k, v in headers]
    head.append(b"Content-Length: %d\r\n" % len(body))
    head.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    return b"".join(head) + body


def problem_response(code: str, detail: str, request_id: bytes, keep_alive: bool,
                     retry_after_s: int | None = None, **fields: Any) -> tuple[int, bytes]:
    status, title = PROBLEMS[code]
    body = json.dumps({"type": f"urn:capsvc:problem:{code}", "title": title, "status": status,
                       "detail": detail, "code": code, **fields}).encode()
    headers = [(b"Content-Type", b"application/problem+json"), (b"X-Request-Id", request_id)]
    if retry_after_s is not None:
        headers.append((b"Retry-After", str(retry_after_s).encode()))
    return status, http_response(status, headers, body, keep_alive)


class FastPath:
    """What every front connection shares: routing, upstreams, the grid cache, metrics."""

    def __init__(self, state: Any, app_socket: str, aiohttp_protocol: Callable[[], Any]) -> None:
        self.state = state
        self.topology = state.topology
        self.model = state.model
        self.body_max = state.config.limits.body_max_bytes
        self.header_timeout_s = state.config.limits.header_timeout_ms / 1000
        self.timeout_s = state.config.limits.request_timeout_ms / 1000 + 1.0
        self.app_socket = app_socket
        self.aiohttp_protocol = aiohttp_protocol
        self._as_of: tuple[float, bytes] = (0.0, b"")  # the last as_of and its text
        self._metrics: dict[tuple, tuple[Any, Any]] = {}  # (route, method, status) -> children
        self._ids = 0
        self._prefix = f"{os.getpid():x}-{int(time.time()):x}-".encode()
        secret = state.config.cluster_secret if state.config.cluster.enabled else ""
        self._upstream_extra = (b"X-Capsvc-Cluster-Token: " + secret.encode() + b"\r\n"
                                if secret else b"")
        self.connections: set[FrontProtocol] = set()
        self.draining = False

    async def drain(self, timeout_s: float) -> None:
        """Stop: idle connections close now, busy ones after their current answer (which
        says `Connection: close`), all of them at the deadline."""
        self.draining = True
        await close_connections(self.connections, timeout_s)

    def request_id(self, request: Request) -> bytes:
        given = request.headers.get(b"x-request-id")
        if given and len(given) <= 128:
            return given
        self._ids += 1
        return self._prefix + b"%x" % self._ids

    async def handle(self, request: Request) -> tuple[int, bytes]:
        """-> (status, full response bytes) for a hot route."""
        request_id = self.request_id(request)
        try:
            if request.route == "availability":
                return self._availability(request, request_id)
            return await self._proxy(request, request_id)
        except CapsvcError as e:
            return problem_response(e.code, e.detail, request_id, request.keep_alive,
                                    e.retry_after_s, **e.fields)

    def observe(self, request: Request, status: int) -> None:
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
    def _upstream_bytes(self, request: Request, request_id: bytes) -> bytes:
        head = [request.method, b" ", request.path]
        if request.query:
            head += [b"?", request.query]
        head.append(b" HTTP/1.1\r\nHost: capsvc\r\nContent-Length: %d\r\n" % len(request.body))
        for name in FORWARD_REQUEST:
            value = request.headers.get(name)
            if value is not None:
                head += [name, b": ", value, b"\r\n"]
        head += [b"X-Request-Id: ", request_id, b"\r\n", self._upstream_extra, b"\r\n"]
        return b"".join(head) + request.body

    async def _proxy(self, request: Request, request_id: bytes) -> tuple[int, bytes]:
        pool_id = (request.target if request.route in ("get_pool", "reserve")
                   else pool_of_reservation(request.target))
        assert pool_id is not None and is_valid_id(pool_id)  # classify_valid checked it
        response = await self._forward(pool_id, request, self._upstream_bytes(request, request_id))
        headers = [(b"X-Request-Id", request_id)]
        for name, value in response.headers:
            if name.lower() in FORWARD_RESPONSE:
                headers.append((name, value))
        return response.status, http_response(response.status, headers, response.body,
                                              request.keep_alive)

    async def _forward(self, pool_id: str, request: Request, data: bytes) -> Answer:
        """Same promises as the aiohttp path's `_forward`: requests that were never applied
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
                response = await client.raw.request(data, remaining, idempotent)
            except NotSent:
                if topology.buffer_s:
                    if time.monotonic() >= buffer_deadline:
                        raise
                    await topology.wait_change(0.1)
                else:
                    await asyncio.sleep(delay)  # the worker is restarting
                    delay = min(delay * 2, 0.25)
                continue
            if response.header(NOT_APPLIED) and time.monotonic() < buffer_deadline:
                await topology.wait_change(0.05)
                continue
            return response

    # -- the availability grid ------------------------------------------------------------
    def grid(self, request: Request) -> tuple[int, bytes]:
        """A grid answer, at once (it never waits for anything)."""
        return self._availability(request, self.request_id(request))

    def _availability(self, request: Request, request_id: bytes) -> tuple[int, bytes]:
        """The hit path: the query is known valid (by its bytes), the day's pools are JSON
        bytes the model keeps until one of them changes, and the answer is one join."""
        query = availability_query(request.query)
        assert query is not None  # valid_target checked it
        as_of = self.model.as_of([c.name for c in self.topology.clients()])
        if as_of is None:
            return problem_response("shard_unavailable", "the availability read model is still "
                                    "loading", request_id, request.keep_alive, 1)
        if as_of != self._as_of[0]:
            self._as_of = (as_of, _rfc3339(as_of))
        as_of_text = self._as_of[1]
        pools = self.model.grid_json(*query)
        length = len(_GRID_BODY[0]) + len(as_of_text) + len(_GRID_BODY[1]) + len(pools) + 1
        return 200, b"".join((
            _GRID_HEAD, request_id, b"\r\nContent-Length: %d\r\n" % length,
            _KEEP_ALIVE if request.keep_alive else _CLOSE,
            _GRID_BODY[0], as_of_text, _GRID_BODY[1], pools, b"}",
        ))


# What `http_response` would write around a grid answer (tests hold the two equal).
_GRID_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Request-Id: "
_GRID_BODY = (b'{"as_of": "', b'", "pools": ')
_KEEP_ALIVE, _CLOSE = b"Connection: keep-alive\r\n\r\n", b"Connection: close\r\n\r\n"
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


def _rfc3339(ts: float) -> bytes:
    seconds = time.gmtime(ts)
    return (time.strftime("%Y-%m-%dT%H:%M:%S", seconds) + f".{int(ts % 1 * 1000):03d}Z").encode()


def valid_target(route: str, target: str | None, url: bytes) -> bool:
    """Hot requests with anything unusual go to aiohttp, which answers with the right problem."""
    if route in ("get_pool", "reserve"):
        return is_valid_id(target)
    if route in ("get_reservation", "release"):
        return pool_of_reservation(target) is not None
    return availability_query(url.partition(b"?")[2]) is not None


class FrontProtocol(RequestCollector, asyncio.Protocol):
    """One client connection on the public port."""

    def __init__(self, fast: FastPath) -> None:
        self.fast = fast
        self.body_max = fast.body_max
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._raw: bytearray | None = bytearray()  # until the first request completes
        self._handover = False
        self._queue: collections.deque[Request] = collections.deque()
        self._serving: asyncio.Task | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._reset()

    def _reset(self) -> None:
        super()._reset()
        self._refused = False

    def _ignoring(self) -> bool:
        return self._refused or self._handover

    def _too_large(self) -> None:
        self._refuse("body_too_large", "the request body is larger than the limit")

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.loop.call_later(seconds, self._expire)

    def _expire(self) -> None:
        if self.transport is not None and not self._queue and self._serving is None:
            self.transport.close()  # slow headers, a slow body, or an idle keep-alive

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.fast.connections.add(self)
        self._arm(self.fast.header_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fast.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
        if self._serving is not None:
            self._serving.cancel()
        self.transport = None

    def close_if_idle(self) -> None:
        if self.transport is not None and not self._queue and self._serving is None:
            self.transport.close()

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        if self._raw is not None:
            self._raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._handover = True
        except httptools.HttpParserError:
            if not self._handover:
                self._refuse("malformed_json", "the request is not valid HTTP/1.1")
                return
        if self._handover:
            self._hand_to_aiohttp()

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self._arm(self.fast.header_timeout_s)

    def on_headers_complete(self) -> None:
        if self._ignoring():
            return
        method = self.parser.get_method()
        route, target = classify(method, self._url)
        if route is not None and not valid_target(route, target, self._url):
            route = None
        self._route, self._target = route, target
        if route is None and self._raw is not None:
            self._handover = True  # first request is not hot: aiohttp takes the connection
            return
        length = self._headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.body_max:
            self._too_large()
            return
        if self._headers.get(b"expect", b"").lower() == b"100-continue" and self.transport:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_message_complete(self) -> None:
        if self._ignoring():
            return
        self._raw = None
        keep_alive = self.parser.should_keep_alive() and not self.fast.draining
        request = Request(self.parser.get_method(), self._url, self._headers,
                          b"".join(self._body), keep_alive, self._route, self._target)
        if (request.route == "availability" and keep_alive and self._serving is None
                and not self._queue and self.transport is not None):
            # The grid's hit path: nothing waits before it, so answer now, with no task.
            status, response = self.fast.grid(request)
            self.fast.observe(request, status)
            self.transport.write(response)
            self._arm(KEEPALIVE_S)
            return
        self._queue.append(request)
        if len(self._queue) >= PIPELINE_MAX and self.transport is not None:
            self.transport.pause_reading()
        if self._serving is None:
            self._serving = self.loop.create_task(self._serve())
        self._arm(KEEPALIVE_S)

    # -- serving ---------------------------------------------------------------------------
    async def _serve(self) -> None:
        try:
            while self._queue and self.transport is not None:
                request = self._queue.popleft()
                if request.route is None:
                    await self._relay_to_app(request)
                    return
                status, response = await self.fast.handle(request)
                self.fast.observe(request, status)
                if self.transport is None:
                    return
                self.transport.write(response)
                if not request.keep_alive:
                    self.transport.close()
                    return
                if len(self._queue) < PIPELINE_MAX // 2:
                    self.transport.resume_reading()
        finally:
            self._serving = None

    def _refuse(self, code: str, detail: str) -> None:
        self._refused = True
        if self.transport is None:
            return
        _, data = problem_response(code, detail, b"-", keep_alive=False)
        self.transport.write(data)
        self.transport.close()

    def _hand_to_aiohttp(self) -> None:
        """Give this connection, and every byte received on it so far, to aiohttp."""
        transport, raw = self.transport, bytes(self._raw or b"")
        if transport is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        protocol = self.fast.aiohttp_protocol()
        self.transport = None
        self.fast.connections.discard(self)
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if raw:
            protocol.data_received(raw)

    async def _relay_to_app(self, request: Request) -> None:
        """A non-hot request on a hot connection: stream it through the aiohttp app's socket,
        then close this connection (its framing is now the app's)."""
        transport = self.transport
        assert transport is not None
        try:
            reader, writer = await asyncio.open_unix_connection(self.fast.app_socket)
        except OSError:
            _, data = problem_response("upstream_unavailable", "the router is restarting",
                                       b"-", keep_alive=False, retry_after_s=1)
            transport.write(data)
            transport.close()
            return
        head = [request.method, b" ", request.path]
        if request.query:
            head += [b"?", request.query]
        head.append(b" HTTP/1.1\r\n")
        for name, value in self._forwardable(request.headers):
            head += [name, b": ", value, b"\r\n"]
        head.append(b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(request.body))
        writer.write(b"".join(head) + request.body)
        try:
            while chunk := await reader.read(65536):
                if self.transport is None:
                    break
                transport.write(chunk)
        finally:
            writer.close()
            transport.close()

    @staticmethod
    def _forwardable(headers: dict[bytes, bytes]):
        for name, value in headers.items():
            if name not in (b"content-length", b"connection", b"transfer-encoding",
                            b"keep-alive", b"expect"):
                yield name, value
