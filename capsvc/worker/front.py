"""The worker's lean front: the customers' routes, answered straight from the shard, and the
router's read-model feed.

    POST   /v1/pools/{pool_id}/reservations     GET /v1/pools/{pool_id}
    DELETE /v1/reservations/{reservation_id}    GET /v1/reservations/{reservation_id}
    GET    /internal/feed

These are answered here and nowhere else in the worker, in every shape (a bad id, a wrong
method, HEAD, OPTIONS); every other request is the aiohttp app's (`app.py`). Both sides share
the parsing (`capsvc.http.parsing`), the problems (`capsvc.http.problems`), the cluster-secret
check, `X-Capsvc-Not-Applied` on shard-not-owned answers, the request id echo, the request log
and the metrics.

Why it is cheap: a write is queued on its shard from the parser callback and answered from
the future's done callback, with no aiohttp request, multidict, task or middleware chain.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from typing import Any

from capsvc.config import Config
from capsvc.domain import commands as cmd
from capsvc.domain import rejections as rj
from capsvc.domain.ids import is_valid_id, pool_of_reservation
from capsvc.domain.views import pool_view, reservation_view
from capsvc.errors import CapsvcError, ShardUnavailable, UpstreamTimeout
from capsvc.http import headers, parsing
from capsvc.http.json_body import json_bytes
from capsvc.http.lean import JSON, LeanFront, LeanRequest
from capsvc.http.routes import FEED_ROUTE, ROUTES
from capsvc.shard.shard import CommandResult, Shard
from capsvc.sharding import shard_for_pool
from capsvc.worker import feed
from capsvc.worker.app import input_limits, new_nonce, now_ms, wait_limit_s
from capsvc.worker.metrics import WorkerMetrics

log = logging.getLogger(__name__)
request_log = logging.getLogger("capsvc.worker.ops_routes")  # the request lines' logger
# the customers' routes a worker answers (the grid is the router's), and the feed
FRONT_ROUTES = (*(r for r in ROUTES if r.front and r.target != "router"), FEED_ROUTE)
_JSON_HEAD = b"Content-Type: " + JSON + b"\r\n"
_REPLAYED = b"Idempotent-Replayed: true\r\n"
_CLUSTER_TOKEN = headers.wire(headers.CLUSTER_TOKEN)
_NOT_APPLIED = headers.NOT_APPLIED.encode() + b": true\r\n"
_DEADLINE = headers.wire(headers.DEADLINE)


def _text(value: bytes | None) -> str | None:
    """A header as aiohttp decodes it."""
    return None if value is None else value.decode("utf-8", "surrogateescape")


class WorkerFront(LeanFront):
    def __init__(
        self,
        config: Config,
        shards: dict[int, Shard],
        metrics: WorkerMetrics,
        aiohttp_protocol: Any,
        secret: str | None = None,
        *,
        changed: asyncio.Event,
        worker_index: int,
    ) -> None:
        super().__init__(
            aiohttp_protocol,
            FRONT_ROUTES,
            body_max=config.limits.body_max_bytes,
            read_timeout_s=config.limits.request_read_timeout_ms / 1000,
        )
        self.shards = shards  # shared with the app and the shard host: always current
        self.shard_count = config.service.shard_count
        self.limits = input_limits(config)
        self.timeout_s = config.limits.request_timeout_ms / 1000
        self.metrics = metrics
        self.request_log = config.logging.request_log
        self.secret = secret.encode() if secret else None
        self.loop = asyncio.get_running_loop()
        self._children: dict[tuple[str, bytes, int], tuple[Any, Any]] = {}
        self._errors: dict[tuple[str, str], Any] = {}  # (route, code) -> counter child
        self._reading: set[asyncio.Task] = set()  # reads and feed polls, held until done
        self.changed = changed  # set on every commit: wakes feed polls
        self.worker_index = worker_index
        self.feed_wait_max_ms = config.read_model.feed_wait_ms
        self._handlers = {
            "reserve": self._reserve,
            "release": self._release,
            "get_pool": self._get_pool,
            "get_reservation": self._get_reservation,
            "feed": self._feed,
        }

    # -- answering -------------------------------------------------------------------------
    def handle(self, request: LeanRequest) -> None:
        if self.secret is not None and not hmac.compare_digest(
            request.headers.get(_CLUSTER_TOKEN, b""), self.secret
        ):
            self.problem(
                request, "forbidden", "requests between hosts must carry the cluster secret"
            )
            return
        super().handle(request)

    def serve(self, request: LeanRequest) -> None:
        try:
            self._handlers[request.route](request)  # type: ignore[index]
        except CapsvcError as e:
            self._error(request, e)
        except Exception as e:  # a bug: answer 500, as the app's problem middleware does
            self._failed(request, e)

    def _shard(self, pool_id: str) -> Shard:
        shard_id = shard_for_pool(pool_id, self.shard_count)
        shard = self.shards.get(shard_id)
        if shard is None:
            raise ShardUnavailable(f"shard {shard_id} is not owned by this worker", shard=shard_id)
        return shard

    def _reserve(self, request: LeanRequest) -> None:
        pool_id = parsing.path_id(request.match.params, "pool_id")  # type: ignore[union-attr]
        key = parsing.checked_idempotency_key(_text(request.headers.get(b"idempotency-key")))
        body = parsing.json_object(request.body)
        self._submit(
            request, parsing.parse_reserve(pool_id, body, key, self.limits, new_nonce(), now_ms())
        )

    def _release(self, request: LeanRequest) -> None:
        pool_id, reservation_id = parsing.path_reservation(request.match.params)  # type: ignore[union-attr]
        self._submit(request, cmd.ReleaseReservation(pool_id, reservation_id, now_ms()))

    def _submit(self, request: LeanRequest, command: cmd.Command) -> None:
        # The router's deadline travels with the request: past it, nobody waits for the
        # answer, so the command is never applied (a host that was frozen, say, wakes up).
        deadline = headers.deadline_of(request.headers.get(_DEADLINE))
        future = self._shard(command.pool_id).submit(
            command, _text(request.headers.get(b"x-capsvc-actor")), deadline)
        # On timeout the future is cancelled: if the writer has not reached it, it never
        # applies (what `asyncio.timeout` does to the aiohttp handler's await).
        request.extra = self.loop.call_later(wait_limit_s(self.timeout_s, deadline),
                                             future.cancel)
        future.add_done_callback(functools.partial(self._committed, request))

    def _committed(self, request: LeanRequest, future: asyncio.Future) -> None:
        request.extra.cancel()
        if future.cancelled():
            shard_id = shard_for_pool(request_pool(request), self.shard_count)
            self._error(
                request,
                UpstreamTimeout(
                    f"shard {shard_id} did not commit within {self.timeout_s:g}s; the outcome is "
                    "unknown: retry with the same Idempotency-Key"
                ),
            )
            return
        error = future.exception()
        if isinstance(error, CapsvcError):
            self._error(request, error)
        elif error is not None:
            self._failed(request, error)  # type: ignore[arg-type]
        else:
            try:
                self._render(request, future.result())
            except Exception as e:  # a bug: answer 500 rather than leave the request hanging
                self._failed(request, e)

    def _failed(self, request: LeanRequest, error: Exception) -> None:
        log.error("unhandled error", exc_info=error, extra={"path": request.path.decode("latin-1")})
        self.problem(request, "internal_error", "an unexpected error occurred; it has been logged")

    def _render(self, request: LeanRequest, result: CommandResult) -> None:
        order = b""
        if result.epoch is not None:
            order += headers.EPOCH.encode() + b": %d\r\n" % result.epoch
        if result.version is not None:
            order += headers.VERSION.encode() + b": %d\r\n" % result.version
        if result.rejection is not None:
            r = result.rejection
            head = _REPLAYED if result.replayed else b""  # a refusal the key is bound to
            self.problem(request, r.code, r.detail, head, order, **r.fields)
        elif result.replayed:
            self._json(request, 201, result.body, _REPLAYED, order)
        else:
            self._json(request, 201 if result.created else 200, result.body, b"", order)

    def _get_pool(self, request: LeanRequest) -> None:
        pool_id = parsing.path_id(request.match.params, "pool_id")  # type: ignore[union-attr]
        pool = self._shard(pool_id).read_pool(pool_id)
        if pool is None:
            self.problem(request, rj.POOL_NOT_FOUND, f"no pool {pool_id}")
        else:
            self._json(request, 200, pool_view(pool))

    def _get_reservation(self, request: LeanRequest) -> None:
        pool_id, reservation_id = parsing.path_reservation(request.match.params)  # type: ignore[union-attr]
        shard = self._shard(pool_id)
        # A task: the pool's snapshot may turn out damaged, and then the writer rebuilds it.
        self._hold(self.loop.create_task(self._read_reservation(request, shard, reservation_id)))

    def _hold(self, task: asyncio.Task) -> None:
        self._reading.add(task)  # held until done (the loop holds tasks weakly)
        task.add_done_callback(self._reading.discard)

    def _feed(self, request: LeanRequest) -> None:
        query = feed.parse_query(request.path.partition(b"?")[2], self.feed_wait_max_ms)
        self._hold(self.loop.create_task(self._answer_feed(request, query)))

    async def _answer_feed(self, request: LeanRequest, query: feed.FeedQuery) -> None:
        try:
            await feed.wait_for_change(self.shards, query, self.changed)
            answer = feed.feed_answer(self.shards, query, self.worker_index)
        except Exception as e:  # a bug: answer 500 rather than leave the poll hanging
            self._failed(request, e)
            return
        self._json(request, 200, answer)

    async def _read_reservation(
        self, request: LeanRequest, shard: Shard, reservation_id: str
    ) -> None:
        try:
            pool, reservation = await shard.read_reservation(
                pool_of_reservation(reservation_id), reservation_id  # type: ignore[arg-type]
            )
        except CapsvcError as e:
            self._error(request, e)
            return
        except Exception as e:
            self._failed(request, e)
            return
        if reservation is None or pool is None:
            self.problem(request, rj.RESERVATION_NOT_FOUND, f"no reservation {reservation_id}")
        else:
            self._json(request, 200, reservation_view(pool, reservation))

    # -- answers: the same headers, in the same order, as the aiohttp app's ------------------
    def _json(
        self, request: LeanRequest, status: int, body: Any, head: bytes = b"", tail: bytes = b""
    ) -> None:
        payload = json_bytes(body)
        self.answer(request, status, head + _JSON_HEAD + tail, payload, None)

    def _error(self, request: LeanRequest, error: CapsvcError) -> None:
        head = b"" if error.retry_after_s is None else b"Retry-After: %d\r\n" % error.retry_after_s
        # A shard not (or no longer) served here applied nothing: the router may resend.
        tail = _NOT_APPLIED if isinstance(error, ShardUnavailable) else b""
        self.problem(request, error.code, error.detail, head, tail, **error.fields)

    def answer(
        self, request: LeanRequest, status: int, head: bytes, payload: bytes, code: str | None
    ) -> None:
        request_id = request.headers.get(b"x-request-id")
        if request_id is not None:
            head += b"X-Request-Id: " + request_id + b"\r\n"
        request.reply(status, head, payload)
        if request.route != "feed":  # the router's own plumbing is not a client request
            self._observe(request, status, code, request_id)

    def _observe(
        self, request: LeanRequest, status: int, code: str | None, request_id: bytes | None
    ) -> None:
        """What the aiohttp app's `observe` middleware counts and logs for a request."""
        elapsed = time.perf_counter() - request.started
        route = request.match.path if request.match is not None else "unmatched"
        key = (route, request.method, status)
        pair = self._children.get(key)
        if pair is None:
            method = request.method.decode()
            pair = self._children[key] = (
                self.metrics.requests.labels(route, method, str(status)),
                self.metrics.latency.labels(route, str(status)),
            )
        pair[0].inc()
        pair[1].observe(elapsed)
        if code is not None:  # labels() costs: its children are looked up once, as above
            child = self._errors.get((route, code))
            if child is None:
                child = self._errors[route, code] = self.metrics.errors.labels(route, code)
            child.inc()
        if request.route == "reserve":
            if status == 201 and request.head.startswith(_REPLAYED):
                self.metrics.replays.labels(self._pool_kind(request)).inc()
            elif status == 409 and code == rj.CAPACITY_EXHAUSTED:
                self.metrics.exhausted.labels(self._pool_kind(request)).inc()
        if self.request_log == "all" or (self.request_log == "errors" and status >= 500):
            pool_id = request_pool(request)
            request_log.log(
                logging.WARNING if status >= 500 else logging.INFO,
                "%s %s %d",
                request.method.decode(),
                route,
                status,
                extra={
                    "request_id": _text(request_id),
                    "status": status,
                    "ms": round(elapsed * 1000, 2),
                    "code": code,
                    "pool": pool_id,
                    "shard": shard_for_pool(pool_id, self.shard_count) if pool_id else None,
                },
            )

    def _pool_kind(self, request: LeanRequest) -> str:
        pool_id = request_pool(request)
        shard = self.shards.get(shard_for_pool(pool_id, self.shard_count)) if pool_id else None
        pool = shard.pools.get(pool_id) if shard is not None else None  # type: ignore[arg-type]
        return pool.kind if pool is not None else "unknown"


def request_pool(request: LeanRequest) -> str | None:
    """The pool a request is about (a reservation id carries its pool), if its id is valid."""
    target = request.target
    if target is None:
        return None
    if request.match is not None and request.match.path.startswith("/v1/reservations/"):
        return pool_of_reservation(target)
    return target if is_valid_id(target) else None
