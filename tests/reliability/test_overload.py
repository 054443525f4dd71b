"""Overload and slow clients: bounded queues shed the excess quickly with 503 and Retry-After,
accepted requests keep their latency, the service recovers by itself; a client that sends its
request slowly (slowloris) is cut off at the deadline instead of holding a connection."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time

import aiohttp
import pytest

from capsvc.testing.harness import Service, request, wait_for

pytestmark = pytest.mark.reliability


def _p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def test_overload_is_shed_quickly_and_the_service_recovers(tmp_path):
    """Fault: far more concurrent writers than one worker can commit (one shard, a tiny queue
    and a 100 ms queue deadline). Property: the excess is refused with 503 `overloaded` and
    Retry-After, never applied; accepted writes keep a bounded latency; every answer is
    201, 409 or 503 (no 5xx of another kind, no hang); afterwards queues are empty and a
    request is served at once; nothing is overbooked."""
    svc = Service(tmp_path / "data", workers=1, shard_count=1, extra_config=(
        "[limits]\nshard_queue_max = 256\nshard_queue_wait_max_ms = 100\n"
        "[storage]\nappend_batch_max = 64\n")).start()
    try:
        svc.define_pool("hot", [("s", 1_000_000)])

        async def storm():
            results = []
            connector = aiohttp.TCPConnector(limit=600)
            async with aiohttp.ClientSession(connector=connector) as session:
                async def client(n):
                    deadline = time.monotonic() + 4.0
                    while time.monotonic() < deadline:
                        started = time.monotonic()
                        status, body, headers = await request(
                            session, svc.url, "POST", "/v1/pools/hot/reservations",
                            {"slot_id": "s"}, {"Idempotency-Key": f"o{n}-{started}"})
                        results.append((status, time.monotonic() - started, body, headers))
                await asyncio.gather(*(client(n) for n in range(600)))
            return results

        results = asyncio.run(storm())
        statuses = {s for s, _, _, _ in results}
        assert statuses <= {201, 503}, statuses
        shed = [(b, h) for s, _, b, h in results if s == 503]
        accepted = [t for s, t, _, _ in results if s == 201]
        assert shed and accepted, (len(shed), len(accepted))
        assert {b["code"] for b, _ in shed} == {"overloaded"}
        assert all("Retry-After" in h for _, h in shed)
        print(f"overload: {len(accepted)} accepted (p99 {_p99(accepted) * 1000:.0f} ms), "
              f"{len(shed)} shed")
        assert _p99(accepted) < 2.0
        status, cluster = svc.admin("GET", "/v1/admin/cluster")
        assert all(s["queue_depth"] == 0 for s in cluster["shards"])
        started = time.monotonic()
        assert svc.request("POST", "/v1/pools/hot/reservations", {"slot_id": "s"})[0] == 201
        assert time.monotonic() - started < 1.0
        pool = svc.get("/v1/pools/hot")[1]
        assert pool["total_reserved"] == len(accepted) + 1  # shed requests applied nothing
    finally:
        assert svc.stop() == 0


def test_a_slow_client_is_cut_off_at_the_request_deadline(tmp_path):
    """Fault: slowloris, a client that trickles its request's headers. Property: the
    connection is closed at `limits.request_read_timeout_ms`; other clients are served meanwhile."""
    svc = Service(tmp_path / "data", workers=1, shard_count=1,
                  extra_config="[limits]\nrequest_read_timeout_ms = 1000\n").start()
    try:
        sock = socket.create_connection(("127.0.0.1", svc.port))
        sock.settimeout(5)
        started = time.monotonic()
        sock.sendall(b"GET /v1/pools/x HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - started < 4:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except OSError:
                closed = True
                break
            try:
                sock.settimeout(0.2)
                if sock.recv(1) == b"":
                    closed = True
                    break
            except TimeoutError:
                pass
            assert svc.get("/healthz")[0] == 200
        took = time.monotonic() - started
        sock.close()
        assert closed and 0.8 < took < 3.0, took
        wait_for(lambda: svc.get("/healthz")[0] == 200, 2, "the service still serving")
    finally:
        assert svc.stop() == 0
