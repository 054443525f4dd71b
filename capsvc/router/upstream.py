"""Connections from the router to workers: pooled keep-alive HTTP, over a Unix socket for
workers on this host and over TCP for workers on other hosts.

A request that could not even be sent (the worker is restarting and refuses connections) never
reached a worker, so it may be retried: here until the deadline when `retry_unsent`, else by
raising `NotSent` so that the caller can look for the shard's new owner. A request that was
sent and then lost its connection has an unknown outcome: reads are retried, writes answer 503
and the client retries with its Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from typing import Any

import aiohttp
import yarl

from capsvc.errors import UpstreamTimeout, UpstreamUnavailable
from capsvc.http import headers
from capsvc.router.rawclient import NotSent, RawPool

log = logging.getLogger(__name__)
FORWARD_REQUEST_HEADERS = ("Content-Type", "Idempotency-Key", "X-Request-Id", "X-Capsvc-Actor")
FORWARD_RESPONSE_HEADERS = ("Content-Type", "Idempotent-Replayed", "Retry-After", "X-Request-Id",
                            "X-Capsvc-Epoch", "X-Capsvc-Version")
NOT_APPLIED_HEADER = headers.NOT_APPLIED
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError)
_SAFE_METHODS = ("GET", "HEAD")


class UpstreamResponse:
    __slots__ = ("status", "headers", "body", "not_applied")

    def __init__(self, status: int, headers: dict[str, str], body: bytes, not_applied: bool):
        self.status, self.headers, self.body = status, headers, body
        self.not_applied = not_applied


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
        self._session: aiohttp.ClientSession | None = None
        self.raw: RawPool | None = None  # the lean client the public fast path uses

    @property
    def address(self) -> str:
        return self.socket_path or self.base_url

    @property
    def header_lines(self) -> bytes:
        """The headers every request to this worker carries, for requests sent on `raw`."""
        return b"".join(f"{k}: {v}\r\n".encode() for k, v in self._headers.items())

    def start_nowait(self) -> None:
        if self.socket_path is not None:
            connector: aiohttp.BaseConnector = aiohttp.UnixConnector(
                path=self.socket_path, limit=self._connections_max
            )
        else:
            connector = aiohttp.TCPConnector(limit=self._connections_max,
                                             ssl=self._ssl if self._ssl is not None else True)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )
        if self.socket_path is not None:
            self.raw = RawPool(self.name, socket_path=self.socket_path,
                               connections_max=self._connections_max,
                               waiting_max=self._waiting_max, wait_max_s=self._wait_max_s)
        else:
            url = yarl.URL(self.base_url)
            self.raw = RawPool(self.name, host=url.host, port=url.port,
                               connections_max=self._connections_max, ssl_context=self._ssl,
                               waiting_max=self._waiting_max, wait_max_s=self._wait_max_s)

    async def start(self) -> None:
        self.start_nowait()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self.raw is not None:
            await self.raw.close()

    async def request(
        self,
        method: str,
        path_qs: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
        retry_unsent: bool = True,
    ) -> UpstreamResponse:
        assert self._session is not None
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        headers = {**self._headers, **(headers or {})}
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"worker {self.name} did not answer in {timeout_s:g}s")
            try:
                async with self._session.request(
                    method,
                    f"{self.base_url}{path_qs}",
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=remaining),
                ) as response:
                    payload = await response.read()
                    kept = {
                        h: response.headers[h]
                        for h in FORWARD_RESPONSE_HEADERS
                        if h in response.headers
                    }
                    return UpstreamResponse(
                        response.status, kept, payload, NOT_APPLIED_HEADER in response.headers
                    )
            except _CONNECT_ERRORS:
                if not retry_unsent:
                    raise NotSent(f"worker {self.name} is unreachable") from None
            except aiohttp.ServerDisconnectedError:
                if method not in _SAFE_METHODS:
                    raise UpstreamUnavailable(
                        f"worker {self.name} went away mid-request; the outcome is unknown: "
                        "retry with the same Idempotency-Key"
                    ) from None
            except TimeoutError:
                raise UpstreamTimeout(
                    f"worker {self.name} did not answer in {timeout_s:g}s; the outcome is "
                    "unknown: retry with the same Idempotency-Key"
                ) from None
            except aiohttp.ClientError as e:
                raise UpstreamUnavailable(f"worker {self.name}: {e}") from None
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.25)

    async def get_json(self, path_qs: str, timeout_s: float) -> Any:
        response = await self.request("GET", path_qs, timeout_s=timeout_s)
        if response.status != 200:
            raise UpstreamUnavailable(f"worker {self.name} answered {response.status}")
        return json.loads(response.body)
