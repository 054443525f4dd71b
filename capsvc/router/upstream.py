"""Connections from the router to its workers: pooled keep-alive HTTP over Unix sockets.

A request that could not even be sent (the worker is restarting and its socket refuses) is
retried until the request deadline, because it never reached a worker. A request that was sent
and then lost its connection has an unknown outcome: for reads we retry, for writes we answer
503 and the client retries with its Idempotency-Key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp

from capsvc.errors import UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger(__name__)
FORWARD_REQUEST_HEADERS = ("Content-Type", "Idempotency-Key", "X-Request-Id", "X-Capsvc-Actor")
FORWARD_RESPONSE_HEADERS = ("Content-Type", "Idempotent-Replayed", "Retry-After", "X-Request-Id")
_CONNECT_ERRORS = (aiohttp.ClientConnectorError, FileNotFoundError, ConnectionRefusedError)
_SAFE_METHODS = ("GET", "HEAD")


class UpstreamResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class WorkerClient:
    def __init__(self, index: int, socket_path: str, connections_max: int, timeout_s: float):
        self.index = index
        self.socket_path = socket_path
        self.timeout_s = timeout_s
        self._connections_max = connections_max
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.UnixConnector(path=self.socket_path, limit=self._connections_max)
        self._session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, skip_auto_headers=("User-Agent",)
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path_qs: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> UpstreamResponse:
        assert self._session is not None
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        delay = 0.02
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise UpstreamTimeout(f"worker {self.index} did not answer in {timeout_s:g}s")
            try:
                async with self._session.request(
                    method,
                    f"http://worker{path_qs}",
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
                    return UpstreamResponse(response.status, kept, payload)
            except _CONNECT_ERRORS:
                pass  # nothing was sent: safe to try again until the deadline
            except aiohttp.ServerDisconnectedError:
                if method not in _SAFE_METHODS:
                    raise UpstreamUnavailable(
                        f"worker {self.index} went away mid-request; the outcome is unknown: "
                        "retry with the same Idempotency-Key"
                    ) from None
            except TimeoutError:
                raise UpstreamTimeout(
                    f"worker {self.index} did not answer in {timeout_s:g}s; the outcome is "
                    "unknown: retry with the same Idempotency-Key"
                ) from None
            except aiohttp.ClientError as e:
                raise UpstreamUnavailable(f"worker {self.index}: {e}") from None
            await asyncio.sleep(min(delay, max(deadline - time.monotonic(), 0)))
            delay = min(delay * 2, 0.25)

    async def get_json(self, path_qs: str, timeout_s: float) -> Any:
        response = await self.request("GET", path_qs, timeout_s=timeout_s)
        if response.status != 200:
            raise UpstreamUnavailable(f"worker {self.index} answered {response.status}")
        return json.loads(response.body)
