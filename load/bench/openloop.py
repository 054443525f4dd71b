"""Open-loop load at a fixed offered rate, free of coordinated omission.

Request i is due at t0 + i / rate whatever happened to earlier ones, and its latency is
measured from that intended send time to the end of its answer: time spent waiting for a free
connection, or behind a slow answer, counts. (wrk2 does this; Debian only ships wrk, whose
closed loop waits for an answer before sending the next request on that connection, so a
stall hides the requests that would have queued behind it.)

It speaks minimal HTTP/1.1 over keep-alive connections with asyncio protocols (uvloop) and
opens up to `--connections` connections as needed. Latencies are measured with
`time.perf_counter()`; timers fire with millisecond granularity, so a request may leave up to
about a millisecond late, and that lateness is part of its latency.

    python -m load.bench.openloop --url http://127.0.0.1:8080 --rate 500 --seconds 6 \
        --workload workload.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit

import uvloop

from load.bench.workloads import RequestStream, Workload

DRAIN_S = 5.0  # wait this long after the last send; what is still open is a timeout
SLEEP_MIN_S = 0.001  # uvloop timers have millisecond resolution: shorter sleeps spin


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


def _content_length(head: bytes) -> int:
    """Content-Length from a lower-cased header block (0 when absent)."""
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        return 0
    end = head.find(b"\r\n", at + 2)
    return int(head[at + 17:end if end >= 0 else len(head)])


class _Connection(asyncio.Protocol):
    """One keep-alive connection carrying one request at a time."""

    def __init__(self, generator: OpenLoop) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.job: tuple[float, bytes] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.generator.connected(self)

    def send(self, job: tuple[float, bytes]) -> None:
        self.job = job
        self.transport.write(job[1])

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        length = _content_length(head)
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        job, self.job = self.job, None
        self.generator.answered(self, job, int(head[9:12]), body)

    def connection_lost(self, exc) -> None:
        self.generator.lost(self, self.job)


class OpenLoop:
    """Sends on schedule; a request with no idle connection waits in a backlog (its latency
    keeps counting) while up to `connections` connections are opened."""

    def __init__(self, url: str, stream: RequestStream, rate: float, seconds: float,
                 connections: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        self.stream, self.rate, self.seconds = stream, rate, seconds
        self.connections_max = connections
        self.idle: deque[_Connection] = deque()
        self.backlog: deque[tuple[float, bytes]] = deque()
        self.open = self.opening = 0
        self.latencies: list[float] = []
        self.sent = self.ok = self.non_2xx = self.errors = self.outstanding = 0
        self.max_lag = self.lag_sum = 0.0
        self.statuses: dict[str, int] = {}
        self.loop = asyncio.get_running_loop()

    def _payload(self, method: str, path: str, body: bytes, headers: dict) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 f"Content-Length: {len(body)}"]
        if body:
            lines.append("Content-Type: application/json")
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def _dispatch(self, intended: float) -> None:
        job = (intended, self._payload(*self.stream.next()))
        self.sent += 1
        self.outstanding += 1
        if self.idle:
            self.idle.pop().send(job)
            return
        self.backlog.append(job)
        self._grow()

    def _grow(self) -> None:
        if self.backlog and self.open + self.opening < self.connections_max:
            self.opening += 1
            self.loop.create_task(self._connect())

    async def _connect(self) -> None:
        try:
            await self.loop.create_connection(lambda: _Connection(self), self.host, self.port)
        except OSError:
            self.opening -= 1
            if self.backlog:
                self.backlog.popleft()
                self._failed()

    def connected(self, connection: _Connection) -> None:
        self.opening -= 1
        self.open += 1
        self._next_for(connection)

    def answered(self, connection: _Connection, job: tuple[float, bytes], status: int,
                 body: bytes) -> None:
        self.latencies.append(time.perf_counter() - job[0])
        self.outstanding -= 1
        if 200 <= status < 300:
            self.ok += 1
        else:
            self.non_2xx += 1
            self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1
        self.stream.answered(status, body)
        self._next_for(connection)

    def _next_for(self, connection: _Connection) -> None:
        if self.backlog:
            connection.send(self.backlog.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection: _Connection, job: tuple[float, bytes] | None) -> None:
        self.open -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        if job is not None:
            self._failed()
        self._grow()

    def _failed(self) -> None:
        self.errors += 1
        self.outstanding -= 1

    async def run(self) -> OpenLoopResult:
        # perf_counter, not loop.time(): uvloop's clock has millisecond resolution and is
        # cached per loop iteration, which would round every latency to whole milliseconds.
        t0 = time.perf_counter() + 0.05
        total = int(self.rate * self.seconds)
        i = 0
        while i < total:
            now = time.perf_counter()
            due = min(total, int((now - t0) * self.rate) + 1)
            while i < due:
                intended = t0 + i / self.rate
                self.max_lag = max(self.max_lag, now - intended)
                self.lag_sum += now - intended
                self._dispatch(intended)
                i += 1
            # Timers fire with millisecond granularity, so a request may leave up to ~1 ms
            # after its intended time; that lag counts in its latency (max_send_lag_ms).
            await asyncio.sleep(max(SLEEP_MIN_S, t0 + i / self.rate - time.perf_counter()))
        deadline = time.monotonic() + DRAIN_S
        while self.outstanding > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.errors += max(self.outstanding, 0)
        return self._result()

    def _result(self) -> OpenLoopResult:
        lat = sorted(self.latencies)
        counted = len(lat) + self.errors

        def pct(q: float) -> float:
            if counted == 0:
                return float("nan")
            # answers still missing count as slower than every measured one
            rank = min(int(q * counted), counted - 1)
            return 1000 * lat[rank] if rank < len(lat) else float("inf")

        return OpenLoopResult(self.rate, self.sent, self.ok, self.non_2xx, self.errors,
                              pct(0.50), pct(0.99), pct(0.999),
                              1000 * lat[-1] if lat else float("nan"), 1000 * self.max_lag,
                              1000 * self.lag_sum / max(self.sent, 1), self.statuses)


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
