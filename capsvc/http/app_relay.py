"""The lean fronts' way to the aiohttp app in the same process: pooled keep-alive connections
over socket pairs (no file, no port), one request at a time each, answers parsed whole.

Why not hand the client's connection to aiohttp: one connection carries both kinds of
request (the router's raw pool sends hot requests and read-model feed polls on the same
connections), and a connection given to aiohttp would serve its later hot requests the slow
way. Relaying keeps every connection lean; a relayed request costs one local round trip.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable

import httptools

IDLE_CLOSE_S = 30.0  # well below aiohttp's keep-alive timeout: we close idle ones first
IDLE_MAX = 8


class RelayFailed(Exception):
    """The app closed the connection or sent something unparseable before answering whole."""


class AppAnswer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body


class _AppConnection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.head_only = False
        self.closed = False
        self.idle_since = 0.0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._finish(RelayFailed(f"the app sent a malformed answer: {e}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish(RelayFailed("the app closed the connection before answering"))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_only:  # an answer to HEAD announces a body it does not send
            self._complete(keep=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self._complete(self.parser.should_keep_alive())

    def _complete(self, keep: bool) -> None:
        answer = AppAnswer(self.parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body = [], []
        self._finish(answer)
        if not keep:
            self.close()

    def _finish(self, result: AppAnswer | BaseException) -> None:
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


class AppRelay:
    def __init__(self, app_protocol: Callable[[], asyncio.Protocol]) -> None:
        self._app_protocol = app_protocol
        self._idle: collections.deque[_AppConnection] = collections.deque()

    async def send(self, data: bytes, head_only: bool = False) -> AppAnswer:
        """Send one whole request (`data`, with Content-Length framing) and return the answer.
        Raises RelayFailed (or OSError) when the app could not answer."""
        loop = asyncio.get_running_loop()
        conn = self._take_idle(loop.time())
        if conn is None:
            conn = await self._open(loop)
        conn.waiter = loop.create_future()
        conn.head_only = head_only
        assert conn.transport is not None
        conn.transport.write(data)
        try:
            answer = await conn.waiter
        except BaseException:
            conn.close()
            raise
        if not conn.closed and len(self._idle) < IDLE_MAX:
            conn.idle_since = loop.time()
            self._idle.append(conn)
        elif not conn.closed:
            conn.close()
        return answer

    def _take_idle(self, now: float) -> _AppConnection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_CLOSE_S:
                return conn
            conn.close()
        return None

    async def _open(self, loop: asyncio.AbstractEventLoop) -> _AppConnection:
        ours, theirs = socket.socketpair()
        try:
            await loop.connect_accepted_socket(self._app_protocol, theirs)
            _, conn = await loop.create_unix_connection(_AppConnection, sock=ours)
        except BaseException:
            ours.close()
            theirs.close()
            raise
        return conn

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
