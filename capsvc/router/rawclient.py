"""A lean HTTP/1.1 client for the router's hot path: pooled keep-alive connections to one
worker (Unix socket or TCP), requests written as bytes, responses parsed by httptools.

Why not aiohttp's client: per proxied request it costs several times the worker's own CPU
(request objects, header multidicts, timers, tracing hooks). This does only what a proxy
between our own processes needs: one request at a time per connection, Content-Length
bodies, keep-alive, and an exact account of whether a failed request was ever sent.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl

import httptools

from capsvc.errors import Overloaded, UpstreamTimeout, UpstreamUnavailable

IDLE_CLOSE_S = 30.0  # below the workers' keep-alive timeout: we close idle connections first


class NotSent(UpstreamUnavailable):
    """The worker could not be reached at all: nothing was sent, nothing applied."""


class RawResponse:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: bytes) -> bytes | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.closed = False
        self.idle_since = 0.0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._received = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._finish(UpstreamUnavailable(f"worker sent a malformed response: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self._received:
                self._finish(UpstreamUnavailable("worker closed the connection mid-response"))
            else:
                self._finish(_Lost())

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        response = RawResponse(self.parser.get_status_code(), self._headers, b"".join(self._body))
        keep = self.parser.should_keep_alive()
        self._headers, self._body, self._received = [], [], False
        self._finish(response)
        if not keep:
            self.close()

    def _finish(self, result: object) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Lost(Exception):
    """The connection closed before a byte of the response arrived."""


class RawPool:
    def __init__(self, name: str, *, socket_path: str | None = None,
                 host: str | None = None, port: int | None = None,
                 connections_max: int = 64, ssl_context: ssl.SSLContext | None = None,
                 waiting_max: int = 1024, wait_max_s: float = 0.5) -> None:
        assert (socket_path is None) != (host is None)
        assert waiting_max >= 0 and wait_max_s > 0
        self.name = name
        self._ssl = ssl_context
        # The bounded queue in front of the worker: requests beyond `connections_max` wait
        # for a connection, at most `waiting_max` of them for at most `wait_max_s`; the rest
        # are shed with 503 overloaded (never sent, so never applied).
        self._waiting = 0
        self._waiting_max = waiting_max
        self._wait_max_s = wait_max_s
        self._socket_path, self._host, self._port = socket_path, host, port
        self._idle: collections.deque[_Connection] = collections.deque()
        self._slots = asyncio.Semaphore(connections_max)

    async def _open(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            if self._socket_path is not None:
                _, conn = await loop.create_unix_connection(_Connection, self._socket_path)
            else:
                _, conn = await loop.create_connection(_Connection, self._host, self._port,
                                                       ssl=self._ssl)
        except OSError as e:
            raise NotSent(f"worker {self.name} is unreachable: {e}") from None
        return conn

    def _take_idle(self) -> _Connection | None:
        now = asyncio.get_running_loop().time()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed:
                continue
            if now - conn.idle_since > IDLE_CLOSE_S:
                conn.close()
                continue
            return conn
        return None

    async def request(self, data: bytes, timeout_s: float, idempotent: bool) -> RawResponse:
        """Send one request (already serialised) and return the response.

        Raises NotSent when nothing reached the worker, UpstreamTimeout/UpstreamUnavailable
        when the outcome is unknown. A pooled connection that turns out to be closed before
        answering is retried once on a fresh one for idempotent requests only.
        """
        await self._acquire()
        try:
            return await self._request(data, timeout_s, idempotent)
        finally:
            self._slots.release()

    async def _acquire(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()
            return
        if self._waiting >= self._waiting_max:
            raise Overloaded(f"worker {self.name} has {self._waiting} requests waiting")
        self._waiting += 1
        try:
            async with asyncio.timeout(self._wait_max_s):
                await self._slots.acquire()
        except TimeoutError:
            raise Overloaded(f"worker {self.name} is saturated; try again shortly") from None
        finally:
            self._waiting -= 1

    async def _request(self, data: bytes, timeout_s: float, idempotent: bool) -> RawResponse:
        conn = self._take_idle()
        reused = conn is not None
        if conn is None:
            conn = await self._open()
        try:
            return await self._exchange(conn, data, timeout_s)
        except _Lost:
            if reused and idempotent:
                fresh = await self._open()
                try:
                    return await self._exchange(fresh, data, timeout_s)
                except _Lost:
                    pass
            raise UpstreamUnavailable(
                f"worker {self.name} closed the connection; the outcome is unknown: "
                "retry with the same Idempotency-Key") from None

    async def _exchange(self, conn: _Connection, data: bytes, timeout_s: float) -> RawResponse:
        loop = asyncio.get_running_loop()
        conn.waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(data)
        try:
            async with asyncio.timeout(timeout_s):
                response = await conn.waiter
        except TimeoutError:
            conn.close()
            raise UpstreamTimeout(f"worker {self.name} did not answer in {timeout_s:g}s; the "
                                  "outcome is unknown: retry with the same Idempotency-Key") from None
        except BaseException:
            conn.close()
            raise
        if not conn.closed:
            conn.idle_since = loop.time()
            self._idle.append(conn)
        return response

    async def close(self) -> None:
        while self._idle:
            with contextlib.suppress(Exception):
                self._idle.pop().close()
