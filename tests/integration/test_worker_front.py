"""The worker's lean front (`capsvc/worker/front.py` on `capsvc/http/lean.py`) on real
Unix sockets, with real shard files: it alone answers the customers' routes, in every shape,
hands every other request to the aiohttp app, and keeps HTTP/1.1's promises (keep-alive,
pipelined answers in order, limits answered with problem+json).

Each worker runs in this process, on its own event loop thread, built by the same start-up
code as `capsvc serve` (`ShardHost`, `make_worker_app`, `WorkerFront`). That the router's
front answers every shape as the worker's does is `test_router_front.py`'s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import threading
import time
from pathlib import Path

import httptools
import pytest
import uvloop
from aiohttp import web

from capsvc.config import Config
from capsvc.shard.shard import Shard
from capsvc.sharding import shard_for_pool
from capsvc.testing.harness import wait_for
from capsvc.worker.app import CHANGED, make_worker_app
from capsvc.worker.front import WorkerFront
from capsvc.worker.main import ShardHost
from capsvc.worker.ops_routes import METRICS

SHARDS = 4
POOL = "front-pool"
SECRET = "s3cret-between-hosts"
POOL_BODY = {
    "kind": "van",
    "region": "r1",
    "date": "2030-01-01",
    "slots": [
        {
            "slot_id": s,
            "starts_at": "2030-01-01T08:00:00Z",
            "ends_at": "2030-01-01T10:00:00Z",
            "capacity": 3,
        }
        for s in ("a", "b")
    ],
}


class InProcessWorker:
    """Worker 0 of a one-worker service, on `<dir>/worker.sock`, in a thread of this process."""

    def __init__(self, directory: Path, *, secret: str | None = None, **limits: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        base = Config()
        self.config = dataclasses.replace(
            base,
            service=dataclasses.replace(base.service, data_dir=str(directory), shard_count=SHARDS),
            limits=dataclasses.replace(base.limits, **limits),
        )
        self.socket = str(directory / "worker.sock")
        self.secret = secret
        self.loop = uvloop.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.call(self._start())

    def call(self, coro, timeout_s: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _start(self) -> None:
        (self.config.data_dir / "shards").mkdir(exist_ok=True)
        self.host = ShardHost(self.config, list(range(SHARDS)))
        await self.host.start()
        self.app = make_worker_app(self.config, self.host.shards, 0, secret=self.secret)
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        self.front = WorkerFront(
            self.config,
            self.host.shards,
            self.app[METRICS],
            self.runner.server,
            self.secret,
            changed=self.app[CHANGED],
            worker_index=0,
        )
        self.server = await asyncio.get_running_loop().create_unix_server(
            self.front.protocol, self.socket
        )

    async def _stop(self) -> None:
        self.server.close()
        await self.front.drain(1.0)
        await self.runner.cleanup()
        await self.host.drain()

    def stop(self) -> None:
        self.call(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        Shard.observer = None  # make_worker_app set it for the whole process

    def metric(self, name: str, **labels: str) -> float:
        return self.app[METRICS].registry.get_sample_value(name, labels) or 0.0

    def connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(10)
        sock.connect(self.socket)
        return sock


# -- a minimal HTTP client that sees the raw bytes ---------------------------------------------
class Answer:
    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body = b""
        self.status = 0
        self.complete = False

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)

    def json(self):
        return json.loads(self.body)


class Reader:
    """Parses the answers arriving on one connection, in order."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.answers: list[Answer] = []
        self.closed = False
        self._parser = httptools.HttpResponseParser(self)

    def on_message_begin(self) -> None:
        self.answers.append(Answer())

    def on_header(self, name: bytes, value: bytes) -> None:
        self.answers[-1].headers.append((name.decode(), value.decode()))

    def on_body(self, body: bytes) -> None:
        self.answers[-1].body += body

    def on_message_complete(self) -> None:
        self.answers[-1].status = self._parser.get_status_code()
        self.answers[-1].complete = True

    def read(self, count: int, timeout_s: float = 10) -> list[Answer]:
        """Wait (with a deadline) until `count` whole answers arrived or the peer closed."""
        deadline = time.monotonic() + timeout_s
        while sum(a.complete for a in self.answers) < count and not self.closed:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                raise AssertionError(f"only {len(self.answers)} of {count} answers") from None
            if not data:
                self.closed = True
                break
            self._parser.feed_data(data)
        return self.answers

    def wait_closed(self, timeout_s: float = 5) -> bool:
        deadline = time.monotonic() + timeout_s
        while not self.closed and time.monotonic() < deadline:
            self.sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                data = b""
            if not data:
                self.closed = True
            else:
                self._parser.feed_data(data)
        return self.closed


def http(
    method: str, path: str, body=None, headers: dict[str, str] | None = None, close: bool = False
) -> bytes:
    payload = (
        b"" if body is None else body if isinstance(body, bytes) else (json.dumps(body).encode())
    )
    lines = [f"{method} {path} HTTP/1.1", "Host: worker", f"Content-Length: {len(payload)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


def exchange(worker: InProcessWorker, *requests: bytes) -> list[Answer]:
    with worker.connect() as sock:
        sock.sendall(b"".join(requests))
        return Reader(sock).read(len(requests))


def raw_exchange(worker: InProcessWorker, request: bytes) -> bytes:
    """One request on its own connection (closed by the worker): the answer's bytes."""
    with worker.connect() as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def worker(tmp_path):
    w = InProcessWorker(tmp_path / "lean")
    assert exchange(w, http("PUT", f"/v1/admin/pools/{POOL}", POOL_BODY))[0].status == 201
    yield w
    w.stop()


# -- every shape of a front route is the front's ------------------------------------------------
ISSUED = f"{POOL}~1.0123456789ab"  # an id capsvc could issue, naming no reservation
SHAPES = [
    # (method, path, body, status, code, Allow)
    ("GET", "/v1/pools/b%20ad", None, 400, "invalid_parameter", None),
    ("GET", "/v1/pools/-bad", None, 400, "invalid_parameter", None),
    ("POST", "/v1/pools/b@d/reservations", {"slot_id": "a"}, 400, "invalid_parameter", None),
    ("GET", "/v1/pools/%66ront-pool", None, 200, None, None),  # escapes decoded, as aiohttp
    ("GET", "/v1/reservations/nope", None, 404, "reservation_not_found", None),
    ("DELETE", "/v1/reservations/nope", None, 404, "reservation_not_found", None),
    ("GET", f"/v1/reservations/{ISSUED}", None, 404, "reservation_not_found", None),
    ("PUT", f"/v1/pools/{POOL}", {}, 405, "method_not_allowed", "GET, HEAD, OPTIONS"),
    ("GET", f"/v1/pools/{POOL}/reservations", None, 405, "method_not_allowed",
     "OPTIONS, POST"),
    ("POST", "/v1/reservations/nope", {}, 405, "method_not_allowed",
     "DELETE, GET, HEAD, OPTIONS"),
    ("OPTIONS", f"/v1/pools/{POOL}/reservations", None, 204, None, "OPTIONS, POST"),
    ("POST", f"/v1/pools/{POOL}/reservations", b"{", 400, "malformed_json", None),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code", "allow"), SHAPES)
def test_every_shape_of_a_front_route_is_answered_by_the_front(
    worker, method, path, body, status, code, allow
):
    """Bad ids, escaped paths, methods a path does not take, OPTIONS: the front answers them
    all (no aiohttp `Server` header), as problems where they are refused, with the request id."""
    (answer,) = exchange(worker, http(method, path, body, {"X-Request-Id": "shape"}))
    assert answer.status == status, answer.body
    assert answer.header("Server") is None  # not relayed to aiohttp
    assert answer.header("Allow") == allow
    assert answer.header("X-Request-Id") == "shape"
    if code is None:
        return
    assert answer.header("Content-Type") == "application/problem+json; charset=utf-8"
    problem = answer.json()
    assert (problem["code"], problem["status"]) == (code, status)
    if code == "invalid_parameter":
        assert problem["field"] == "pool_id"


def test_options_and_head_follow_rfc_9110(worker):
    """OPTIONS: 204 with Allow and no Content-Length (RFC 9110 8.6); HEAD: the GET's
    Content-Length and no body."""
    options, get = exchange(worker, http("OPTIONS", f"/v1/pools/{POOL}"),
                            http("GET", f"/v1/pools/{POOL}"))
    assert options.status == 204 and options.header("Content-Length") is None
    assert options.header("Allow") == "GET, HEAD, OPTIONS"
    # a response parser cannot know an answer is to HEAD: read the bytes up to the close
    head = raw_exchange(worker, http("HEAD", f"/v1/pools/{POOL}", close=True))
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Length: %d\r\n" % len(get.body) in head
    assert head.endswith(b"\r\n\r\n")  # no body after the header block


def test_a_shard_not_owned_here_says_not_applied(tmp_path):
    w = InProcessWorker(tmp_path / "w")
    try:
        w.call(_disown(w, shard_for_pool("gone", SHARDS)))
        for request in (
            http("GET", "/v1/pools/gone", close=True),
            http(
                "POST",
                "/v1/pools/gone/reservations",
                {"slot_id": "a"},
                {"X-Request-Id": "r-9"},
                close=True,
            ),
            http("DELETE", "/v1/reservations/gone~1.0123456789ab", close=True),
        ):
            got = raw_exchange(w, request)
            assert b"X-Capsvc-Not-Applied: true\r\n" in got and got.startswith(b"HTTP/1.1 503")
            assert b'"code":"shard_unavailable"' in got
    finally:
        w.stop()


async def _disown(w: InProcessWorker, shard_id: int) -> None:
    await w.host.shards.pop(shard_id).drain()


def test_the_cluster_secret_is_checked_on_hot_routes(tmp_path):
    w = InProcessWorker(tmp_path / "w", secret=SECRET)
    try:
        token = {"X-Capsvc-Cluster-Token": SECRET}
        assert (
            exchange(w, http("PUT", f"/v1/admin/pools/{POOL}", POOL_BODY, token))[0].status == 201
        )
        refused, wrong, served = exchange(
            w,
            http("GET", f"/v1/pools/{POOL}", None, {"X-Request-Id": "r-1"}),
            http("GET", f"/v1/pools/{POOL}", None, {"X-Capsvc-Cluster-Token": "nope"}),
            http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"}, token),
        )
        for answer in (refused, wrong):
            assert answer.status == 403 and answer.json()["code"] == "forbidden"
            assert answer.header("Content-Type") == "application/problem+json; charset=utf-8"
        assert refused.header("X-Request-Id") == "r-1"
        assert served.status == 201
        assert (
            w.metric(
                "capsvc_worker_requests_total",
                route="/v1/pools/{pool_id}",
                method="GET",
                status="403",
            )
            == 2
        )
    finally:
        w.stop()


# -- handing over to aiohttp -------------------------------------------------------------------
def test_other_requests_are_answered_by_the_app_on_the_same_keep_alive_connection(worker):
    """Internal routes, ops routes and everything else keep working unchanged, mixed with hot
    requests on one connection (the router's raw pool sends both): the app answers the
    others (aiohttp's own headers show it), the front the hot ones, all in order."""
    requests = [
        http("GET", "/internal/status"),
        http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"}, {"X-Request-Id": "w"}),
        http("GET", "/internal/metrics"),
        http("GET", "/nowhere", None, {"X-Request-Id": "n"}),
        http("GET", f"/v1/pools/{POOL}"),
        http("GET", "/v1/pools/b%20ad"),  # the front's, with its odd id
    ]
    with worker.connect() as sock:
        sock.sendall(b"".join(requests))
        reader = Reader(sock)
        answers = reader.read(len(requests))
        assert [a.status for a in answers] == [200, 201, 200, 404, 200, 400]
        assert answers[0].json()["worker"] == 0
        assert b"# TYPE capsvc_worker_requests_total counter" in answers[2].body
        assert answers[3].json()["code"] == "not_found"
        assert answers[3].header("X-Request-Id") == "n"  # the app's middleware echoed it
        assert answers[4].json()["total_reserved"] == 1
        assert answers[5].json()["field"] == "pool_id"
        from_app = [a.header("Server") is not None for a in answers]
        assert from_app == [True, False, True, True, False, False]
        assert all(a.header("Connection") is None for a in answers)
        sock.sendall(http("GET", f"/v1/pools/{POOL}"))  # still open, still lean
        assert reader.read(len(requests) + 1)[-1].status == 200 and not reader.closed


def test_a_long_poll_keeps_its_place_in_the_answer_order(worker):
    """A read-model feed poll that waits (nothing changes) is answered before the hot request
    pipelined behind it, which waits for it."""
    status = exchange(worker, http("GET", "/internal/status"))[0].json()
    since = ",".join(f"{s['shard']}:{s['last_seq']}" for s in status["shards"])
    with worker.connect() as sock:
        started = time.monotonic()
        sock.sendall(
            http("GET", f"/internal/feed?wait_ms=200&since={since}")
            + http("GET", f"/v1/pools/{POOL}", None, {"X-Request-Id": "after"})
            + http("GET", f"/v1/pools/{POOL}")
        )
        reader = Reader(sock)
        feed, pool, again = reader.read(3)
        assert time.monotonic() - started >= 0.15
        assert feed.status == 200 and "worker" in feed.json()
        assert (pool.status, pool.header("X-Request-Id")) == (200, "after")
        assert again.status == 200 and not reader.closed


# -- HTTP/1.1 promises ---------------------------------------------------------------------------
def test_keep_alive_serves_many_requests_on_one_connection(worker):
    with worker.connect() as sock:
        reader = Reader(sock)
        for n in range(1, 6):
            sock.sendall(
                http(
                    "POST",
                    f"/v1/pools/{POOL}/reservations",
                    {"slot_id": "ab"[n % 2], "order_ref": f"o-{n}"},
                )
            )
            answer = reader.read(n)[-1]
            assert answer.status == 201 and answer.header("Connection") is None
            assert answer.header("X-Capsvc-Version") == str(1 + n)
        assert not reader.closed


def test_pipelined_requests_are_answered_in_order(worker):
    """More pipelined requests than the front lets wait (reading pauses and resumes): writes
    (answered after their commit) and reads (answered at once) interleaved keep their order."""
    requests = []
    for n in range(40):
        headers = {"X-Request-Id": f"r{n}", "Idempotency-Key": f"pipe-{n % 3}"}
        if n % 2:
            requests.append(http("GET", f"/v1/pools/{POOL}", None, headers))
        else:
            requests.append(
                http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"}, headers)
            )
    answers = exchange(worker, *requests)
    assert [a.header("X-Request-Id") for a in answers] == [f"r{n}" for n in range(40)]
    writes = [a for n, a in enumerate(answers) if n % 2 == 0]
    assert [a.status for a in writes[:3]] == [201, 201, 201]
    assert all(a.status == 201 and a.header("Idempotent-Replayed") == "true" for a in writes[3:])
    assert all(a.status == 200 for n, a in enumerate(answers) if n % 2)
    assert answers[-1].json()["total_reserved"] == 3


def test_malformed_http_is_answered_with_a_problem_and_closed(worker):
    for garbage in (
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        b"POST /v1/pools/p/reservations HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    ):
        with worker.connect() as sock:
            # a good request first: the problem comes after its answer, on the same connection
            sock.sendall(http("GET", f"/v1/pools/{POOL}") + garbage)
            reader = Reader(sock)
            good, bad = reader.read(2)
            assert good.status == 200
            assert bad.status == 400, garbage
            assert bad.header("Content-Type") == "application/problem+json; charset=utf-8"
            assert bad.json()["code"] == "malformed_request"
            assert reader.wait_closed()


@pytest.mark.parametrize("line", [b"GET /v1/pools/%s HTTP/2.0", b"GET /v1/pools/%s"])
def test_a_version_other_than_http_1_is_refused_with_505_on_an_http_1_1_status_line(worker, line):
    with worker.connect() as sock:
        sock.sendall(line % POOL.encode() + b"\r\nHost: w\r\n\r\n")
        reader = Reader(sock)
        (answer,) = reader.read(1)
        assert answer.status == 505
        assert answer.json()["code"] == "http_version_not_supported"
        assert reader.wait_closed()


def test_a_body_over_the_limit_answers_413_and_closes(tmp_path):
    w = InProcessWorker(tmp_path / "w", body_max_bytes=2048)
    try:
        exchange(w, http("PUT", f"/v1/admin/pools/{POOL}", POOL_BODY))
        big = json.dumps({"slot_id": "a", "order_ref": "x" * 4000}).encode()
        chunked = (
            f"POST /v1/pools/{POOL}/reservations HTTP/1.1\r\nHost: w\r\n"
            "Transfer-Encoding: chunked\r\nX-Request-Id: r-c\r\n\r\n"
        ).encode()
        chunked += b"".join(b"%x\r\n%s\r\n" % (1000, b"x" * 1000) for _ in range(3))
        for request in (
            http("POST", f"/v1/pools/{POOL}/reservations", big, {"X-Request-Id": "r-big"}),
            chunked,
        ):
            with w.connect() as sock:
                sock.sendall(request)
                reader = Reader(sock)
                (answer,) = reader.read(1)
                assert answer.status == 413
                assert answer.json()["code"] == "body_too_large"
                assert answer.header("X-Request-Id") in ("r-big", "r-c")
                assert reader.wait_closed()
        assert (
            w.metric(
                "capsvc_worker_requests_total",
                route="/v1/pools/{pool_id}/reservations",
                method="POST",
                status="413",
            )
            == 2
        )
        pool = exchange(w, http("GET", f"/v1/pools/{POOL}"))[0].json()
        assert pool["total_reserved"] == 0
    finally:
        w.stop()


def test_oversized_targets_and_headers_are_refused_with_problems(worker):
    too_long = http("GET", "/v1/pools/" + "a" * 9000)
    too_many = http("GET", f"/v1/pools/{POOL}", None, {f"X-H{n}": "v" * 1000 for n in range(20)})
    for request, status, code in (
        (too_long, 414, "uri_too_long"),
        (too_many, 431, "headers_too_large"),
    ):
        with worker.connect() as sock:
            sock.sendall(http("GET", f"/v1/pools/{POOL}") + request)
            reader = Reader(sock)
            answers = reader.read(2)
            assert [a.status for a in answers] == [200, status]
            assert answers[1].json()["code"] == code
            assert reader.wait_closed()


def test_slow_headers_and_idle_connections_are_closed(tmp_path):
    w = InProcessWorker(tmp_path / "w", request_read_timeout_ms=300)
    try:
        with w.connect() as sock:
            sock.sendall(b"GET /v1/pools/x HTTP/1.1\r\nHost: w\r\n")  # never finished
            started = time.monotonic()
            assert Reader(sock).wait_closed(5)
            assert 0.2 < time.monotonic() - started < 3
    finally:
        w.stop()


def test_a_write_not_committed_in_time_answers_504_and_is_never_applied(tmp_path):
    """The shard's writer is stopped, so the command waits in its queue: at the request
    deadline it is answered 504 `timeout` with Retry-After, and dropped."""
    w = InProcessWorker(tmp_path / "w", request_timeout_ms=300)
    try:
        exchange(w, http("PUT", f"/v1/admin/pools/{POOL}", POOL_BODY))
        shard = w.host.shards[shard_for_pool(POOL, SHARDS)]
        w.call(_stop_writer(shard))
        started = time.monotonic()
        (answer,) = exchange(w, http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"}))
        assert 0.25 < time.monotonic() - started < 3
        assert answer.status == 504 and answer.json()["code"] == "timeout"
        assert answer.header("Retry-After") == "1"
        assert (
            w.metric(
                "capsvc_worker_requests_total",
                route="/v1/pools/{pool_id}/reservations",
                method="POST",
                status="504",
            )
            == 1
        )
        w.call(_restart_writer(shard))  # it finds the timed-out command in its queue: skipped
        (answer,) = exchange(w, http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"}))
        assert answer.status == 201
        assert shard.pools[POOL].total_reserved == 1
    finally:
        w.stop()


async def _stop_writer(shard) -> None:
    shard._writer.cancel()
    await asyncio.sleep(0)


async def _restart_writer(shard) -> None:
    shard._writer = asyncio.create_task(shard._write_loop())


def test_metrics_count_hot_requests_replays_and_exhaustion(worker):
    path, reserve = f"/v1/pools/{POOL}/reservations", "/v1/pools/{pool_id}/reservations"
    exchange(
        worker,
        *[
            http("POST", path, {"slot_id": "a"}, {"Idempotency-Key": f"m{n}"}) for n in range(4)
        ],  # capacity 3: the fourth is refused
        http("POST", path, {"slot_id": "a"}, {"Idempotency-Key": "m0"}),  # a replay
        http("GET", f"/v1/pools/{POOL}"),
        http("GET", "/v1/pools/unknown-pool"),
    )
    m = worker.metric
    assert m("capsvc_worker_requests_total", route=reserve, method="POST", status="201") == 4
    assert m("capsvc_worker_requests_total", route=reserve, method="POST", status="409") == 1
    assert (
        m("capsvc_worker_requests_total", route="/v1/pools/{pool_id}", method="GET", status="200")
        == 1
    )
    assert (
        m("capsvc_worker_requests_total", route="/v1/pools/{pool_id}", method="GET", status="404")
        == 1
    )
    assert m("capsvc_worker_request_duration_seconds_count", route=reserve, status="201") == 4
    assert m("capsvc_idempotent_replays_total", kind="van") == 1
    assert m("capsvc_capacity_exhausted_total", kind="van") == 1
    # problem answers by route and code (overloaded would count commands shed)
    assert m("capsvc_worker_errors_total", route=reserve, code="capacity_exhausted") == 1
    assert m("capsvc_worker_errors_total", route="/v1/pools/{pool_id}", code="pool_not_found") == 1


def test_drain_lets_answers_finish_and_closes_idle_connections(worker):
    with worker.connect() as idle, worker.connect() as busy:
        busy.sendall(http("GET", f"/v1/pools/{POOL}"))
        reader = Reader(busy)
        assert reader.read(1)[0].status == 200
        worker.server.close()
        worker.call(worker.front.drain(2.0))
        assert Reader(idle).wait_closed() and reader.wait_closed()


def test_nothing_pipelined_after_connection_close_is_served(worker):
    """A write pipelined after a request that closes the connection is never applied."""
    with worker.connect() as sock:
        sock.sendall(
            http("GET", f"/v1/pools/{POOL}", close=True)
            + http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"})
        )
        reader = Reader(sock)
        assert reader.wait_closed()
        assert [a.status for a in reader.answers] == [200]
        assert reader.answers[0].header("Connection") == "close"
    assert exchange(worker, http("GET", f"/v1/pools/{POOL}"))[0].json()["total_reserved"] == 0


def test_a_drain_answers_every_request_received_and_closes_after_the_last(worker):
    """SIGTERM while pipelined writes wait for their commit, and a read arrives after the drain
    began: every one is answered, only the last answer says `Connection: close`, and the
    connection then ends with a FIN, not a reset."""
    shard = worker.host.shards[shard_for_pool(POOL, SHARDS)]
    worker.call(_stop_writer(shard))
    with worker.connect() as sock:
        reserve = http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"})
        sock.sendall(reserve * 3)
        wait_for(lambda: shard.queue_depth == 3, 5, "three writes queued")
        draining = asyncio.run_coroutine_threadsafe(worker.front.drain(5.0), worker.loop)
        wait_for(lambda: worker.front.draining, 5, "the drain to begin")
        sock.sendall(http("GET", f"/v1/pools/{POOL}"))
        worker.call(_restart_writer(shard))
        reader = Reader(sock)
        answers = reader.read(4)
        assert [a.status for a in answers] == [201, 201, 201, 200]
        assert [a.header("Connection") for a in answers] == [None, None, None, "close"]
        assert answers[3].json()["total_reserved"] == 3
        sock.settimeout(5)
        assert sock.recv(1) == b""  # an orderly close: no ConnectionResetError
    draining.result(10)
