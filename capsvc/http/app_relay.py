"""The lean fronts' way to the aiohttp app in the same process: pooled keep-alive connections
that never touch a socket, one request at a time each, answers parsed whole.

Why not hand the client's connection to aiohttp: one connection carries both kinds of
request (the router's raw pool sends hot requests and read-model feed polls on the same
connections), and a connection given to aiohttp would serve its later hot requests the slow
way. Why no socket pair: feed polls come once per commit under write load, and a local
round trip through the kernel cost about as much CPU as the front saves on a reservation.

The app's protocol (aiohttp's `RequestHandler`) gets a `MemoryTransport`: what it writes is
parsed straight into the waiting answer; requests are fed to its `data_received`.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

from capsvc.http.answer_reader import Answer, AnswerReader
from capsvc.http.headers import CLIENT_IDLE_CLOSE_S

IDLE_CLOSE_S = CLIENT_IDLE_CLOSE_S  # below aiohttp's keep-alive timeout (headers.py)
IDLE_MAX = 64


class RelayFailed(Exception):
    """The app closed the connection or sent something unparseable before answering whole."""


class MemoryTransport(asyncio.Transport):
    """The app's end of an in-process connection: writes go to `on_data`, nothing is sent."""

    def __init__(self, on_data: Callable[[bytes], None], on_close: Callable[[], None]) -> None:
        super().__init__()
        self._on_data, self._on_close = on_data, on_close
        self._closing = False

    def write(self, data: Any) -> None:
        if not self._closing:
            self._on_data(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._on_close()

    def abort(self) -> None:
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no socket, no peer address, no TLS

    def pause_reading(self) -> None:
        pass  # requests are fed one at a time: there is nothing to pause

    def resume_reading(self) -> None:
        pass

    def is_reading(self) -> bool:
        return not self._closing

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False


class _AppConnection(AnswerReader):
    """Our end: parses what the app writes into the answer `waiter` waits for."""

    def __init__(self, app_protocol: asyncio.Protocol) -> None:
        super().__init__()
        self.app = app_protocol
        self.transport = MemoryTransport(self._received, self._app_closed)
        app_protocol.connection_made(self.transport)

    def send(self, data: bytes) -> None:
        self.app.data_received(data)

    def _received(self, data: bytes) -> None:
        if not self.closed:
            self.feed(data)

    def _app_closed(self) -> None:
        self.closed = True
        self.finish(RelayFailed("the app closed the connection before answering"))
        # As a real transport would: tell the app's protocol after the current callback.
        asyncio.get_running_loop().call_soon(self.app.connection_lost, None)

    def malformed(self, error: Exception) -> Exception:
        return RelayFailed(f"the app sent a malformed answer: {error}")

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.transport.close()


class AppRelay:
    def __init__(self, app_protocol: Callable[[], asyncio.Protocol]) -> None:
        self._app_protocol = app_protocol
        self._idle: collections.deque[_AppConnection] = collections.deque()

    async def send(self, data: bytes, head_only: bool = False) -> Answer:
        """Send one whole request (`data`, with Content-Length framing) and return the answer.
        Raises RelayFailed when the app could not answer."""
        loop = asyncio.get_running_loop()
        conn = self._take_idle(loop.time())
        if conn is None:
            conn = _AppConnection(self._app_protocol())
        conn.waiter = waiter = loop.create_future()
        conn.head_only = head_only
        conn.send(data)
        try:
            answer = await waiter
        except BaseException:
            conn.close()
            raise
        if not conn.closed and len(self._idle) < IDLE_MAX:
            conn.idle_since = loop.time()
            self._idle.append(conn)
        else:
            conn.close()
        return answer

    def _take_idle(self, now: float) -> _AppConnection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < IDLE_CLOSE_S:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()
