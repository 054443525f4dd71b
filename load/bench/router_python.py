"""What the router's own Python costs per proxied reservation, with no I/O at all.

    .venv/bin/python -m load.bench.router_python --requests 20000

The real `RouterFront` on the real `LeanProtocol`, fed one reserve at a time through a
transport that only counts writes; the owner is a stub that answers at once with a worker's
201. What is left is the router's Python per request (parse, route match, id check, the
upstream request with its deadline, the task and the forwarding loop, the answer and metrics):
compare it with `load.bench.floor`, which measures the whole hop, sockets included.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from types import SimpleNamespace

import uvloop
from prometheus_client import CollectorRegistry, Counter, Histogram

from capsvc.config import Config
from capsvc.http.answer_reader import Answer
from capsvc.router.front import RouterFront

_ANSWER = Answer(201, [(b"Content-Type", b"application/json; charset=utf-8"),
                       (b"X-Capsvc-Epoch", b"1"), (b"X-Capsvc-Version", b"2")], b"x" * 200)
_REQUEST = (b"POST /v1/pools/pool-0001/reservations HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/json\r\nIdempotency-Key: k-1-1\r\n"
            b"Content-Length: 27\r\n\r\n" + b'{"slot_id":"s01","units":1}')


class _Owner:
    """A worker client whose raw pool answers at once."""

    name = "w0"

    def __init__(self) -> None:
        self.raw = self

    async def request(self, data: bytes, timeout_s: float, idempotent: bool) -> Answer:
        return _ANSWER


class _Topology:
    buffer_s = 0.0

    def __init__(self) -> None:
        self.owner = _Owner()

    def shard_of(self, pool_id: str) -> int:
        return 0

    async def client_for(self, shard_id: int, deadline: float) -> _Owner:
        return self.owner

    def clients(self) -> list[_Owner]:
        return [self.owner]


class _Transport:
    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _measure(requests: int) -> float:
    registry = CollectorRegistry()
    state = SimpleNamespace(
        topology=_Topology(), model=None, config=Config(), upstream_lines=b"",
        upstream_timeout_s=6.0,
        requests=Counter("r", "", ["route", "method", "status"], registry=registry),
        latency=Histogram("l", "", ["route", "status"], registry=registry),
        errors=Counter("e", "", ["route", "code"], registry=registry),
        resends=Counter("s", "", ["reason"], registry=registry))
    protocol = RouterFront(state, lambda: None).protocol()
    transport = _Transport()
    protocol.connection_made(transport)
    started = time.process_time()
    for n in range(requests):
        protocol.data_received(_REQUEST)
        while transport.writes <= n:  # the answer leaves once the task has run
            await asyncio.sleep(0)
    return (time.process_time() - started) / requests


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args(argv)
    seconds = uvloop.run(_measure(args.requests))
    print(f"{seconds * 1e6:.1f} us of the router's CPU per proxied reservation (no I/O)")


if __name__ == "__main__":
    main()
