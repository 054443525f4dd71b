"""The floor of a Python proxy hop on this machine, and the router's own cost beside it.

    .venv/bin/python -m load.bench.floor --seconds 8 --delay-ms 40

Tiny uvloop servers and capsvc's real router, driven by the same wrk script as `load.bench`'s
uniform workload (64 connections, one reserve in flight on each), one after the other:
- `responder`: parses each request with httptools and answers a fixed 201 JSON body, after
  `--delay-ms` (a commit's time: at the rate capsvc's workers commit, the relay wakes up as
  often per request as the router does, which is most of what a request costs it);
- `relay`: parses each request with httptools (a router must read it to route it), writes it
  to the responder over a Unix socket (one per client connection) and relays the answer's
  bytes back unparsed;
- `router`: capsvc's router process (`serve_router`, embedded, one worker, one shard) in
  front of the same responder as its worker: its front, id checks, forwarding loop, raw
  client, metrics; its read-model feed fails quietly against the responder and retries.
Prints each process's CPU ms per request. The relay's figure is the cost of a hop that does
nothing else: a router that also checks ids, picks an owner, counts metrics and keeps
connections healthy cannot cost less (`docs/PERFORMANCE.md` compares it with the router's).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from capsvc.paths import worker_socket
from capsvc.testing.zookeeper import free_port
from load.bench import workloads
from load.bench.procstat import cpu_seconds
from load.bench.wrk import run_wrk

_BODY = (b'{"reservation_id": "pool-0001~1.0123456789ab", "pool_id": "pool-0001", "slot_id": '
         b'"s01", "units": 1, "status": "active", "order_ref": null, "created_at": '
         b'"2026-12-03T08:00:00.000Z"}')
_ANSWER = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json; charset=utf-8\r\n"
           b"X-Capsvc-Epoch: 1\r\nX-Capsvc-Version: 2\r\nContent-Length: %d\r\n\r\n"
           % len(_BODY)) + _BODY


class _Responder(asyncio.Protocol):
    def __init__(self, delay_s: float) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.delay_s = delay_s

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_message_complete(self) -> None:
        if self.delay_s:
            asyncio.get_running_loop().call_later(self.delay_s, self._answer)
        else:
            self._answer()

    def _answer(self) -> None:
        if not self.transport.is_closing():  # the relay of an earlier run has gone
            self.transport.write(_ANSWER)


class _Relay(asyncio.Protocol):
    """One client connection, and its own connection to the responder."""

    def __init__(self, upstream_path: str) -> None:
        import httptools

        self.parser = httptools.HttpRequestParser(self)
        self.upstream_path = upstream_path
        self.pending: list[bytes] = []
        self.upstream: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self.upstream, _ = await loop.create_unix_connection(
            lambda: _Back(self.transport), self.upstream_path)
        for data in self.pending:
            self.upstream.write(data)

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)  # the routing decision needs the request line
        if self.upstream is None:
            self.pending.append(data)
        else:
            self.upstream.write(data)

    def connection_lost(self, exc) -> None:
        if self.upstream is not None:
            self.upstream.close()


class _Back(asyncio.Protocol):
    def __init__(self, client: asyncio.Transport) -> None:
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)


def _router_config(data_dir: str):
    from capsvc.config import load_config

    config = load_config(None)
    return dataclasses.replace(config, service=dataclasses.replace(
        config.service, data_dir=data_dir, workers=1, shard_count=1))


def _serve(role: str, address: str, upstream: str, delay_ms: str) -> None:
    import uvloop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if role == "router":
            from capsvc.router.main import serve_router

            host, port = address.rsplit(":", 1)
            listener = socket.create_server((host, int(port)), backlog=1024)
            print("ready", flush=True)
            await serve_router(_router_config(upstream), listener.detach())
            return
        if role == "responder":
            await loop.create_unix_server(lambda: _Responder(float(delay_ms) / 1000), address)
        else:
            host, port = address.rsplit(":", 1)
            await loop.create_server(lambda: _Relay(upstream), host, int(port), backlog=1024)
        print("ready", flush=True)
        await asyncio.Event().wait()

    uvloop.run(main())


def _start(role: str, address: str, upstream: str = "", delay_ms: float = 0) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "load.bench.floor", "--serve", role, address, upstream,
         str(delay_ms)],
        stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--delay-ms", type=float, default=0,
                        help="how long the responder takes to answer (default 0)")
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(*args.serve)
        return
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = os.path.join(tmp, "data")
        sock = str(worker_socket(_router_config(data_dir), 0))  # the router's worker 0
        os.makedirs(os.path.dirname(sock), exist_ok=True)
        responder = _start("responder", sock, delay_ms=args.delay_ms)
        script = Path(tmp) / "uniform.lua"
        script.write_text(workloads.uniform(workloads.uniform_pools()).lua(str(time.time())))
        try:
            for role in ("relay", "router"):
                port = free_port()
                front = _start(role, f"127.0.0.1:{port}", sock if role == "relay" else data_dir)
                try:
                    _wait_listening(port)
                    run_wrk(f"http://127.0.0.1:{port}", script, 1, args.connections)  # warm
                    before = {p.pid: cpu_seconds(p.pid) for p in (responder, front)}
                    result = run_wrk(f"http://127.0.0.1:{port}", script, args.seconds,
                                     args.connections)
                    spent = {p.pid: cpu_seconds(p.pid) - before[p.pid]
                             for p in (responder, front)}
                finally:
                    front.kill()
                    front.wait()
                per_request = 1000 / max(result.requests, 1)
                print(f"{role:6}: {spent[front.pid] * per_request:.3f} CPU ms per request at "
                      f"{result.rps:,.0f} req/s ({result.errors} errors; responder "
                      f"{spent[responder.pid] * per_request:.3f})")
        finally:
            responder.kill()
            responder.wait()


def _wait_listening(port: int, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


if __name__ == "__main__":
    main()
