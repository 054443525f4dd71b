"""Connections from the router to workers: pooled keep-alive HTTP over our raw client
(`rawclient`), over a Unix socket for workers on this host and over TCP for workers on other
hosts. Every request the router sends a worker goes this way, and every answer is an
`Answer` (`capsvc.http.answer_reader`).

Each worker has two pools: `raw` for what is proxied to a shard's owner (customers' and
planners' pool routes, through `forward.py`) and the read-model feed, and a small `ops` pool
for status, probes and metrics, so that a worker saturated by customers still answers them.

A request that could not even be sent (the worker is restarting and refuses connections) never
reached a worker, so it may be retried: here until the deadline when `retry_unsent`, else by
raising `NotSent` so that the caller can look for the shard's new owner. A request that was
sent and then lost its connection has an unknown outcome: reads are retried once, writes
answer 503 and the client retries with its Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Mapping
from typing import Any

import yarl

from capsvc.errors import UpstreamTimeout, UpstreamUnavailable
from capsvc.http import headers
from capsvc.http.answer_reader import Answer
from capsvc.http.json_body import decode_json
from capsvc.router.rawclient import NotSent, RawPool

log = logging.getLogger(__name__)
# What the router passes on, each way, between a client and a shard's owner.
FORWARD_REQUEST_HEADERS = ("Content-Type", headers.IDEMPOTENCY_KEY, headers.REQUEST_ID, headers.ACTOR)
FORWARD_RESPONSE_HEADERS = frozenset(
    (b"content-type", b"idempotent-replayed", b"retry-after", b"x-capsvc-epoch",
     b"x-capsvc-version")
)
NOT_APPLIED = headers.wire(headers.NOT_APPLIED)
OPS_CONNECTIONS = 4  # status, probes and metrics: a few at a time


def request_bytes(method: str, path_qs: str, header_lines: bytes, body: bytes | None = None,
                  extra: Mapping[str, str] | None = None) -> bytes:
    """One whole HTTP/1.1 request for a worker (always with a Content-Length)."""
    payload = body or b""
    head = [f"{method} {path_qs} HTTP/1.1\r\nHost: capsvc\r\n"
            f"Content-Length: {len(payload)}\r\n".encode(), header_lines]
    for name, value in (extra or {}).items():
        head.append(f"{name}: {value}\r\n".encode())
    head.append(b"\r\n")
    return b"".join(head) + payload


def passed_on(answer: Answer) -> dict[str, str]:
    """The headers of a worker's answer that reach the client."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in answer.headers
            if k.lower() in FORWARD_RESPONSE_HEADERS}


class WorkerClient:
    def __init__(
        self,
        name: str,
        *,
        socket_path: str | None = None,
        base_url: str | None = None,
        connections_max: int = 64,
        timeout_s: float = 6.0,
        headers: dict[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        waiting_max: int = 1024,
        wait_max_s: float = 0.5,
    ) -> None:
        assert (socket_path is None) != (base_url is None), "one of socket_path or base_url"
        self.name = name
        self._ssl = ssl_context
        self._waiting_max, self._wait_max_s = waiting_max, wait_max_s
        self.socket_path = socket_path
        self.base_url = base_url or "http://worker"
        self.timeout_s = timeout_s
        self._headers = headers or {}
        self._connections_max = connections_max
        self.raw: RawPool | None = None  # proxied requests and the feed
        self.ops: RawPool | None = None  # status, probes, metrics
        self.closed = False

    @property
    def address(self) -> str:
        return self.socket_path or self.base_url

    @property
    def header_lines(self) -> bytes:
        """The headers every request to this worker carries (the cluster secret, remotely)."""
        return b"".join(f"{k}: {v}\r\n".encode() for k, v in self._headers.items())

    def _pool(self, connections_max: int) -> RawPool:
        if self.socket_path is not None:
            return RawPool(self.name, socket_path=self.socket_path,
                           connections_max=connections_max,
                           waiting_max=self._waiting_max, wait_max_s=self._wait_max_s)
        url = yarl.URL(self.base_url)
        return RawPool(self.name, host=url.host, port=url.port, connections_max=connections_max,
                       ssl_context=self._ssl, waiting_max=self._waiting_max,
                       wait_max_s=self._wait_max_s)

    def start_nowait(self) -> None:
        self.raw = self._pool(self._connections_max)
        self.ops = self._pool(OPS_CONNECTIONS)

    async def start(self) -> None:
        self.start_nowait()

    async def close(self) -> None:
        self.closed = True
        for pool in (self.raw, self.ops):
            if pool is not None:
                await pool.close()

    async def request(
        self,
        method: str,
        path_qs: str,
        body: bytes | None = None,
        extra: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        retry_unsent: bool = True,
    ) -> Answer:
        """An operational request (status, probe, metrics, pool listings) on the `ops` pool;
        one that could not be sent is tried again until the deadline when `retry_unsent`."""
        assert self.ops is not None, "start() first"
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        data = request_bytes(method, path_qs, self.header_lines, body, extra)
        delay = 0.02
        while True:
            if self.closed:
                # closed by the topology (the worker left the cluster) while this request was
                # on its way: nothing was sent, so the caller may look for the shard's owner
                raise NotSent(f"worker {self.name} is no longer connected")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"worker {self.name} did not answer in {timeout_s:g}s")
            try:
                return await self.ops.request(data, remaining, method in ("GET", "HEAD"))
            except NotSent:
                if not retry_unsent:
                    raise
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.25)

    async def get_json(self, path_qs: str, timeout_s: float) -> Any:
        response = await self.request("GET", path_qs, timeout_s=timeout_s)
        if response.status != 200:
            raise UpstreamUnavailable(f"worker {self.name} answered {response.status}")
        return decode_json(response.body)
