"""Open-loop load at a fixed offered rate, free of coordinated omission.

Request i is due at t0 + i / rate whatever happened to earlier ones, and its latency is
measured from that intended send time to the end of its answer: time spent waiting for a free
connection, or behind a slow answer, counts. (wrk2 does this; Debian only ships wrk, whose
closed loop waits for an answer before sending the next request on that connection, so a
stall hides the requests that would have queued behind it.)

It speaks minimal HTTP/1.1 over keep-alive connections with asyncio protocols (uvloop),
answers parsed by httptools, and opens up to `--connections` connections as needed. Latencies
are measured with `time.perf_counter()`; timers fire with millisecond granularity, so a request
may leave up to about a millisecond late, and that lateness is part of its latency.

    python -m load.bench.openloop --url http://127.0.0.1:8080 --rate 500 --seconds 6 \
        --workload workload.json

The machinery (`Connections`, `Job`, `Schedule`, `pace`, `percentile`) is shared with the
profile mix of `load/openmix.py`, which `python -m load.frontier` steps up to the SLA frontier.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import httptools
import uvloop

from load.bench.workloads import RequestStream, Workload

DRAIN_S = 5.0  # wait this long after the last send; what is still open is a timeout
SLEEP_MIN_S = 0.001  # uvloop timers have millisecond resolution: shorter sleeps spin
UNANSWERED = 0  # the status a job's `done` gets when its connection failed or no answer came


@dataclass
class OpenLoopResult:
    offered_rps: float
    sent: int
    ok: int  # 2xx
    non_2xx: int
    errors: int  # connection errors and answers still missing after the drain
    p50_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    max_send_lag_ms: float  # how late the generator itself was: large means it was starved
    mean_send_lag_ms: float  # timer granularity: about a millisecond
    statuses: dict[str, int]  # non-2xx answers by status


def request_bytes(host: str, method: str, path: str, body: bytes = b"",
                  headers: dict[str, str] | None = None) -> bytes:
    """One HTTP/1.1 request; `host` is the Host header's value."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    if body:
        lines.append("Content-Type: application/json")
    if headers:
        lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Job:
    """One request: due at `intended` (perf_counter seconds), its bytes, and `done(job,
    status, body, retry_after, now)` called once with its answer (status UNANSWERED when the
    connection failed or the answer never came; retry_after is the raw header or None)."""

    __slots__ = ("intended", "payload", "done", "context")

    def __init__(self, intended: float, payload: bytes,
                 done: Callable[[Job, int, bytes, bytes | None, float], None],
                 context: object = None) -> None:
        self.intended, self.payload, self.done, self.context = intended, payload, done, context


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, pool: Connections) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.parts: list[bytes] = []
        self.retry_after: bytes | None = None
        self.complete = self.keep_alive = False
        self.job: Job | None = None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if len(name) == 11 and name.lower() == b"retry-after":
            self.retry_after = value

    def on_body(self, body: bytes) -> None:
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.complete = True
        # Only valid now: once this callback returns, llhttp resets its flags for the next
        # message and should_keep_alive() would say False for every answer.
        self.keep_alive = self.parser.should_keep_alive()

    # asyncio callbacks
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.pool.connected(self)

    def send(self, job: Job) -> None:
        self.job = job
        self.transport.write(job.payload)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()  # connection_lost fails the job
            return
        if not self.complete:
            return
        parts = self.parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        job, retry_after = self.job, self.retry_after
        self.parts, self.retry_after, self.complete, self.job = [], None, False, None
        self.pool.answered(self, job, self.parser.get_status_code(), body, retry_after,
                           self.keep_alive)

    def connection_lost(self, exc) -> None:
        self.pool.lost(self, self.job)


class Connections:
    """Keep-alive connections to one host, each carrying one request at a time. A job with no
    idle connection waits in a backlog (its latency keeps counting) while up to
    `max_connections` connections are opened."""

    def __init__(self, url: str, max_connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.host_header = f"{self.host}:{self.port}"
        self.max_connections = max_connections
        self.idle: deque[_Connection] = deque()
        self.backlog: deque[Job] = deque()
        self.all: set[_Connection] = set()
        self.opening = 0
        self.outstanding = 0  # submitted, not yet done
        self.most_open = 0
        self.loop = asyncio.get_running_loop()

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> bytes:
        return request_bytes(self.host_header, method, path, body, headers)

    def submit(self, job: Job) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(job)  # the most recently used: warm, and the rest may idle
            return
        self.backlog.append(job)
        self._grow()

    def _grow(self) -> None:
        if self.backlog and len(self.all) + self.opening < self.max_connections:
            self.opening += 1
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.backlog:
                self._finish(self.backlog.popleft(), UNANSWERED, b"", None)

    def connected(self, connection: _Connection) -> None:
        self.opening -= 1
        self.all.add(connection)
        self.most_open = max(self.most_open, len(self.all))
        self._next_for(connection)

    def answered(self, connection: _Connection, job: Job, status: int, body: bytes,
                 retry_after: bytes | None, keep_alive: bool) -> None:
        if keep_alive:
            self._next_for(connection)
        else:
            connection.transport.close()
        self._finish(job, status, body, retry_after)

    def _next_for(self, connection: _Connection) -> None:
        if self.backlog:
            connection.send(self.backlog.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection: _Connection, job: Job | None) -> None:
        self.all.discard(connection)
        if connection in self.idle:
            self.idle.remove(connection)
        if job is not None:
            connection.job = None
            self._finish(job, UNANSWERED, b"", None)
        self._grow()

    def _finish(self, job: Job, status: int, body: bytes, retry_after: bytes | None) -> None:
        self.outstanding -= 1
        job.done(job, status, body, retry_after, time.perf_counter())

    def abandon(self) -> int:
        """Give up on every job still waiting or in flight (each gets UNANSWERED) and close
        the connections; returns how many there were."""
        jobs = list(self.backlog) + [c.job for c in self.all if c.job is not None]
        self.backlog.clear()
        for connection in list(self.all):
            connection.job = None
            connection.transport.close()
        for job in jobs:
            self._finish(job, UNANSWERED, b"", None)
        return len(jobs)

    def close(self) -> None:
        for connection in list(self.all):
            connection.transport.close()


def scheduled_count(rate: float, seconds: float) -> int:
    """Requests due in [0, seconds) at `rate`: i / rate < seconds."""
    return max(0, math.ceil(rate * seconds - 1e-9))


class Schedule:
    """`count` events at `start + i / rate` (perf_counter seconds); `fire(intended)` sends the
    i-th. Splitting one schedule over n processes: process k gets rate / n, start + k / rate."""

    __slots__ = ("rate", "start", "count", "fire", "i")

    def __init__(self, rate: float, start: float, count: int,
                 fire: Callable[[float], None]) -> None:
        self.rate, self.start, self.count, self.fire, self.i = rate, start, count, fire, 0

    def due_at(self, i: int) -> float:
        return self.start + i / self.rate


@dataclass
class SendLag:
    """How late the generator fired its events (timer granularity is about a millisecond;
    much more means the generator was starved of CPU)."""

    count: int = 0
    total_s: float = 0.0
    max_s: float = 0.0

    @property
    def mean_ms(self) -> float:
        return 1000 * self.total_s / max(self.count, 1)

    @property
    def max_ms(self) -> float:
        return 1000 * self.max_s


async def pace(schedules: Sequence[Schedule], lag: SendLag | None = None) -> SendLag:
    """Fire every schedule's events when they are due, whatever happened to earlier ones."""
    lag = lag or SendLag()
    active = [s for s in schedules if s.count > 0 and s.rate > 0]
    while active:
        now = time.perf_counter()
        for s in active:
            due = min(s.count, int((now - s.start) * s.rate) + 1) if now >= s.start else 0
            while s.i < due:
                intended = s.start + s.i / s.rate
                late = now - intended
                lag.count += 1
                lag.total_s += late
                if late > lag.max_s:
                    lag.max_s = late
                s.fire(intended)
                s.i += 1
        active = [s for s in active if s.i < s.count]
        if active:
            # Timers fire with millisecond granularity, so an event may leave up to ~1 ms
            # after its intended time; that lag counts in its latency.
            following = min(s.start + s.i / s.rate for s in active)
            await asyncio.sleep(max(SLEEP_MIN_S, following - time.perf_counter()))
    return lag


async def drain(outstanding: Callable[[], int], seconds: float) -> None:
    """Wait until nothing is outstanding, or `seconds`."""
    deadline = time.monotonic() + seconds
    while outstanding() > 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)


def percentile(ordered: Sequence[float], unanswered: int, q: float) -> float:
    """The q-quantile (0..1) in the unit of `ordered` (sorted latencies of the answered
    requests); the `unanswered` ones count as slower than every answered one (inf)."""
    counted = len(ordered) + unanswered
    if counted == 0:
        return float("nan")
    rank = min(int(q * counted), counted - 1)
    return ordered[rank] if rank < len(ordered) else float("inf")


class OpenLoop:
    """One request stream at one fixed rate (the benchmark's workloads)."""

    def __init__(self, url: str, stream: RequestStream, rate: float, seconds: float,
                 connections: int) -> None:
        self.url, self.stream, self.rate, self.seconds = url, stream, rate, seconds
        self.connections_max = connections
        self.latencies: list[float] = []
        self.sent = self.ok = self.non_2xx = self.errors = 0
        self.statuses: dict[str, int] = {}
        self.lag = SendLag()

    def _fire(self, intended: float) -> None:
        self.sent += 1
        self.pool.submit(Job(intended, self.pool.request(*self.stream.next()), self._done))

    def _done(self, job: Job, status: int, body: bytes, _retry_after, now: float) -> None:
        if status == UNANSWERED:
            self.errors += 1
            return
        self.latencies.append(now - job.intended)
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.non_2xx += 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.stream.answered(status, body)

    async def run(self) -> OpenLoopResult:
        self.pool = Connections(self.url, self.connections_max)
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution and is
        # cached per loop iteration, which would round every latency to whole milliseconds.
        t0 = time.perf_counter() + 0.05
        total = scheduled_count(self.rate, self.seconds)
        await pace([Schedule(self.rate, t0, total, self._fire)], self.lag)
        await drain(lambda: self.pool.outstanding, DRAIN_S)
        self.pool.abandon()  # what is still open is a timeout (counted in errors by _done)
        return self._result()

    def _result(self) -> OpenLoopResult:
        lat = sorted(self.latencies)

        def pct(q: float) -> float:
            return 1000 * percentile(lat, self.errors, q)

        return OpenLoopResult(self.rate, self.sent, self.ok, self.non_2xx, self.errors,
                              pct(0.50), pct(0.99), pct(0.999),
                              1000 * lat[-1] if lat else float("nan"), self.lag.max_ms,
                              self.lag.mean_ms, self.statuses)


async def run_open_loop(url: str, workload: Workload, rate: float, seconds: float,
                        connections: int = 256, seed: int = 1) -> OpenLoopResult:
    stream = workload.requests(seed, nonce=f"ol{seed}-{time.time_ns():x}")
    generator = OpenLoop(url, stream, rate, seconds, connections)
    return await generator.run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--workload", required=True, help="JSON file of a Workload")
    parser.add_argument("--rate", type=float, required=True, help="requests per second")
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--connections", type=int, default=256)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    with open(args.workload) as f:
        spec = json.load(f)
    workload = Workload(spec["name"], tuple(spec["pools"]), tuple(map(tuple, spec["days"])),
                        spec["with_grid"])
    result = uvloop.run(run_open_loop(args.url, workload, args.rate, args.seconds,
                                      args.connections, args.seed))
    print(json.dumps(asdict(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
