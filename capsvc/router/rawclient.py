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

from capsvc.errors import Overloaded, UpstreamTimeout, UpstreamUnavailable
from capsvc.http.answer_reader import Answer, AnswerReader
from capsvc.http.headers import CLIENT_IDLE_CLOSE_S

IDLE_CLOSE_S = CLIENT_IDLE_CLOSE_S  # below the workers' keep-alive timeout (headers.py)


class NotSent(UpstreamUnavailable):
    """The worker could not be reached at all: nothing was sent, nothing applied."""


class _Connection(AnswerReader, asyncio.Protocol):
    def __init__(self) -> None:
        super().__init__()
        self.transport: asyncio.Transport | None = None

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.feed(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            if self.received:
                self.finish(UpstreamUnavailable("worker closed the connection mid-response"))
            else:
                self.finish(_Lost())

    def malformed(self, error: Exception) -> Exception:
        return UpstreamUnavailable(f"worker sent a malformed response: {error}")

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Lost(Exception):
    """The connection closed before a byte of the response arrived."""


class _TimedOut(Exception):
    """No answer within the request's time."""


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_exception(_TimedOut())


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

    async def request(self, data: bytes, timeout_s: float, idempotent: bool) -> Answer:
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

    async def _request(self, data: bytes, timeout_s: float, idempotent: bool) -> Answer:
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

    async def _exchange(self, conn: _Connection, data: bytes, timeout_s: float) -> Answer:
        loop = asyncio.get_running_loop()
        conn.waiter = waiter = loop.create_future()
        assert conn.transport is not None
        conn.transport.write(data)
        # a plain timer, not asyncio.timeout(): about 7 us less CPU per exchange on this VM
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            response = await waiter
        except _TimedOut:
            conn.close()
            raise UpstreamTimeout(f"worker {self.name} did not answer in {timeout_s:g}s; the "
                                  "outcome is unknown: retry with the same Idempotency-Key") from None
        except BaseException:
            conn.close()
            raise
        finally:
            timer.cancel()
        if not conn.closed:
            conn.idle_since = loop.time()
            self._idle.append(conn)
        return response

    async def close(self) -> None:
        while self._idle:
            with contextlib.suppress(Exception):
                self._idle.pop().close()
