"""A lean HTTP/1.1 server protocol: httptools parsing for the front routes, aiohttp for the rest.

A `LeanFront` is built with the routes it answers (the table's `front` routes of its process)
and answers them, and only it does: every request whose path is one of them, in any shape (a
bad id, a method the path does not take, HEAD, OPTIONS). A subclass serves the matched ones
(`serve`, which calls `answer(...)` now or later). Every other request is relayed to the
aiohttp app in the same process (`app_relay`: pooled in-memory connections), whose answer is
sent back unchanged but for its framing; the connection stays lean for what follows.

Answers leave in request order (pipelining), whenever each is ready; reading pauses while
`PIPELINE_MAX` wait. Limits: a request's headers and body must arrive within
`read_timeout_s`; URL, header and body sizes are bounded (414, 431, 413 as problem+json);
idle keep-alive connections close after `KEEPALIVE_S`; malformed HTTP answers 400. A request
that asks to switch protocols is answered, and its connection then closes.
"""

from __future__ import annotations

import asyncio
import collections
import http
import logging
import time
from collections.abc import Callable
from typing import Any

import httptools

from capsvc.http.app_relay import AppRelay, RelayFailed
from capsvc.http.headers import SERVER_KEEPALIVE_S
from capsvc.http.problems import problem_json
from capsvc.http.route_match import Match, RouteMatcher
from capsvc.http.routes import Route

log = logging.getLogger(__name__)
KEEPALIVE_S = SERVER_KEEPALIVE_S  # our clients close their idle connections first (headers.py)
HEADERS_MAX_BYTES = 16 * 1024
FIELD_MAX_BYTES = 8190  # aiohttp's own limit
PIPELINE_MAX = 16
LINGER_S = 2.0  # after a 413, how long the rest of the body is read and dropped, at most
LINGER_MAX_BYTES = 64 * 1024 * 1024  # and how much of it
JSON = b"application/json; charset=utf-8"  # what aiohttp sends for content_type=...json
PROBLEM_JSON = b"application/problem+json; charset=utf-8"
_STATUS_LINES = {
    s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus
}
_NOT_ANSWERED = 0


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


def header_lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


class LeanRequest:
    """One parsed request, and then its answer: `reply` fills `status`, `head`, `body`."""

    __slots__ = (
        "conn",
        "method",
        "path",
        "headers",
        "body",
        "keep_alive",
        "match",
        "route",
        "target",
        "started",
        "status",
        "head",
        "payload",
        "extra",
    )

    def __init__(
        self,
        conn: LeanProtocol | None,
        method: bytes,
        url: bytes,
        headers: dict[bytes, bytes],
        body: bytes,
        keep_alive: bool,
        match: Match | None,
    ) -> None:
        self.conn = conn
        self.method, self.path, self.headers, self.body = method, url, headers, body
        self.keep_alive, self.match = keep_alive, match
        # the matched route's name (None: relayed, or the path does not take this method)
        self.route = match.route.name if match is not None and match.route is not None else None
        self.target = match.target if match is not None else None
        self.started = time.perf_counter()
        self.status = _NOT_ANSWERED
        self.head = self.payload = b""
        self.extra: Any = None  # for the front's own bookkeeping (a timer, say)

    def reply(self, status: int, head: bytes, payload: bytes) -> None:
        """Answer: `head` is the header lines (each ending in CRLF) except Content-Length and
        Connection, which the connection adds when the answer's turn comes."""
        self.status, self.head, self.payload = status, head, payload
        if self.conn is not None:
            self.conn.flush()

    def problem(
        self, code: str, detail: str, head: bytes = b"", tail: bytes = b"", **fields: Any
    ) -> int:
        """Answer with a problem, bypassing the front (malformed HTTP, a relay that failed);
        the front's own problems go through `LeanFront.problem`."""
        status, head, payload = problem_parts(code, detail, head, tail, **fields)
        self.reply(status, head, payload)
        return status


def problem_parts(
    code: str, detail: str, head: bytes = b"", tail: bytes = b"", **fields: Any
) -> tuple[int, bytes, bytes]:
    """(status, header lines, body) of a problem answer: `head` lines go before Content-Type,
    `tail` lines after it (aiohttp's order: constructor headers, Content-Type, later ones)."""
    status, text = problem_json(code, detail, **fields)
    return status, head + b"Content-Type: " + PROBLEM_JSON + b"\r\n" + tail, text.encode()


class LeanFront:
    """What every lean connection of one server shares; subclasses serve the front routes."""

    def __init__(
        self,
        aiohttp_protocol: Callable[[], asyncio.Protocol],
        routes: tuple[Route, ...],
        *,
        body_max: int,
        read_timeout_s: float,
        relay_body_max: int | None = None,
    ) -> None:
        self.matcher = RouteMatcher(routes)
        self.relay = AppRelay(aiohttp_protocol)
        self._relaying: set[asyncio.Task] = set()  # held until done (the loop holds tasks weakly)
        self.body_max = body_max  # of a hot request
        # of a request for the app: its largest route limit (the app checks each route's own)
        self.relay_body_max = body_max if relay_body_max is None else relay_body_max
        assert self.relay_body_max >= body_max
        self.read_timeout_s = read_timeout_s
        self.connections: set[LeanProtocol] = set()
        self.draining = False

    def protocol(self) -> LeanProtocol:
        """The protocol factory for `loop.create_server` / `create_unix_server`."""
        return LeanProtocol(self)

    # -- for subclasses ----------------------------------------------------------------------
    def serve(self, request: LeanRequest) -> None:
        """Answer a request of a front route, now or later, with `answer` (exactly once)."""
        raise NotImplementedError

    def answer(
        self, request: LeanRequest, status: int, head: bytes, payload: bytes, code: str | None
    ) -> None:
        """Every answer of a front route leaves here (`code`: a problem's, else None), so a
        subclass adds its own lines (a request id) and counts it. `head`: see `reply`."""
        request.reply(status, head, payload)

    def problem(
        self, request: LeanRequest, code: str, detail: str, head: bytes = b"", tail: bytes = b"",
        **fields: Any,
    ) -> None:
        """Answer with a problem (`problem_parts`), through `answer`."""
        status, head, payload = problem_parts(code, detail, head, tail, **fields)
        self.answer(request, status, head, payload, code)

    def too_large(self, request: LeanRequest) -> None:
        """A request whose body is over `body_max`: answered, then the connection closes."""
        self.problem(request, "body_too_large", "the request body is larger than the limit")

    # -- every request of a front route ----------------------------------------------------
    def handle(self, request: LeanRequest) -> None:
        """A method the path does not take is refused here, for every front route alike (as
        aiohttp's problem middleware does for the app's routes); OPTIONS lists the methods."""
        match = request.match
        assert match is not None
        if match.route is not None:
            self.serve(request)
        elif request.method == b"OPTIONS":
            self.answer(request, 204, b"Allow: " + match.allow + b"\r\n", b"", None)
        else:
            path = request.path.partition(b"?")[0].decode("latin-1")
            self.problem(request, "method_not_allowed",
                         f"{request.method.decode('latin-1')} is not allowed on {path}",
                         b"Allow: " + match.allow + b"\r\n")

    def start_relay(self, request: LeanRequest) -> None:
        task = asyncio.get_running_loop().create_task(self.relay_to_app(request))
        self._relaying.add(task)
        task.add_done_callback(self._relaying.discard)

    async def relay_to_app(self, request: LeanRequest) -> None:
        """Any other request: the aiohttp app answers it, in this process."""
        head = [request.method, b" ", request.path, b" HTTP/1.1\r\n"]
        for name, value in request.headers.items():
            if name not in _HOP_BY_HOP:
                head += [name, b": ", value, b"\r\n"]
        head.append(b"Content-Length: %d\r\n\r\n" % len(request.body))
        try:
            answer = await self.relay.send(
                b"".join(head) + request.body, head_only=request.method == b"HEAD"
            )
        except (RelayFailed, OSError) as e:
            log.error(
                "the app did not answer a relayed request: %s",
                e,
                extra={"path": request.path.decode("latin-1")},
            )
            request.keep_alive = False
            request.problem("internal_error", "an unexpected error occurred; it has been logged")
            return
        kept = [(k, v) for k, v in answer.headers if k.lower() not in _HOP_BY_HOP]
        request.reply(answer.status, header_lines(kept), answer.body)

    # -- drain -----------------------------------------------------------------------------
    async def drain(self, timeout_s: float) -> None:
        """Stop: idle connections close now, busy ones after their answers (which say
        `Connection: close`), all of them at the deadline."""
        self.draining = True
        await close_connections(self.connections, timeout_s)
        self.relay.close()


async def close_connections(connections: set, timeout_s: float) -> None:
    """A front's drain: idle connections close now, busy ones once they are idle (their
    last answer says `Connection: close`), all of them at the deadline. Each connection has
    `close_if_idle` and `close_now`, and leaves `connections` when it closes."""
    deadline = time.monotonic() + timeout_s
    while connections and time.monotonic() < deadline:
        for conn in list(connections):
            conn.close_if_idle()
        if connections:
            await asyncio.sleep(0.02)
    for conn in list(connections):
        conn.close_now()


class RequestCollector:
    """The httptools callbacks that collect one request (URL, headers, body) within the size
    limits; shared by the worker's `LeanProtocol` and the router's front protocol. A subclass
    says when input is ignored (`_ignoring`: after a refusal, say) and answers a request over
    a limit (`_refuse`, `_too_large`)."""

    body_max: int

    def _reset(self) -> None:
        self._url = b""
        self._headers: dict[bytes, bytes] = {}
        self._header_bytes = 0
        self._body: list[bytes] = []
        self._body_bytes = 0
        self._match: Match | None = None

    def _ignoring(self) -> bool:
        raise NotImplementedError

    def _refuse(self, code: str, detail: str) -> None:
        """Answer a problem (malformed or oversized HTTP) and stop reading."""
        raise NotImplementedError

    def _too_large(self) -> None:
        raise NotImplementedError

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > FIELD_MAX_BYTES and not self._ignoring():
            self._refuse("uri_too_long", f"the request target is over {FIELD_MAX_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._ignoring():
            return
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > HEADERS_MAX_BYTES or len(value) > FIELD_MAX_BYTES:
            self._refuse(
                "headers_too_large",
                f"a header is over {FIELD_MAX_BYTES} bytes or all of them over {HEADERS_MAX_BYTES}",
            )
            return
        name = name.lower()
        seen = self._headers.get(name)
        # Repeated lines are one comma-separated list (RFC 9110 5.3): nothing is dropped, and
        # a header that must be single (Idempotency-Key) is refused where it is read.
        self._headers[name] = value if seen is None else seen + b", " + value

    def on_body(self, body: bytes) -> None:
        if self._ignoring():
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.body_max:
            self._too_large()
            return
        self._body.append(body)


class LeanProtocol(RequestCollector, asyncio.Protocol):
    """One client connection."""

    def __init__(self, front: LeanFront) -> None:
        self.front = front
        self.body_max = front.body_max
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self._done = False  # no more requests: refused, relayed or closing after an answer
        self._paused = False
        self._pending: collections.deque[LeanRequest] = collections.deque()  # answer order
        # requests received but not started: they wait for earlier writes' answers, in order
        self._held: collections.deque[LeanRequest] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0
        self._in_message = False
        self._linger_bytes = 0  # how much of a refused body we still read and drop
        self._timer_close: asyncio.TimerHandle | None = None
        self._reset()

    def _ignoring(self) -> bool:
        return self._done

    # -- timers: one handle per connection, moved lazily ----------------------------------
    def _arm(self, seconds: float) -> None:
        self._deadline = self.loop.time() + seconds
        if self._timer is None:
            self._timer = self.loop.call_at(self._deadline, self._expire)

    def _expire(self) -> None:
        self._timer = None
        if self.transport is None:
            return
        if self.loop.time() < self._deadline:
            self._timer = self.loop.call_at(self._deadline, self._expire)
        elif self._pending and not self._in_message:
            self._arm(KEEPALIVE_S)  # busy answering: idle time starts after the answers
        else:
            self.close_now()  # slow headers or body, or an idle keep-alive

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.front.connections.add(self)
        self._arm(self.front.read_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self.front.connections.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._timer_close is not None:
            self._timer_close.cancel()
        self.transport = None

    def close_if_idle(self) -> None:
        if not self._pending and not self._in_message and self._timer_close is None:
            self.close_now()

    def close_now(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
            self.front.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self._done:
            self._linger_bytes -= len(data)  # a refused body still arriving: dropped
            if self._linger_bytes < 0:
                self.close_now()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish_after_answers()  # no protocol switches here
        except httptools.HttpParserError:
            if not self._done:
                self._refuse("malformed_request", "the request is not valid HTTP/1.1")

    # -- httptools callbacks ---------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._reset()
        self._in_message = True
        self._arm(self.front.read_timeout_s)

    def on_headers_complete(self) -> None:
        if self._done:
            return
        if self.parser.get_http_version() not in ("1.1", "1.0"):
            self._refuse(
                "http_version_not_supported",
                f"HTTP/{self.parser.get_http_version()} is not spoken here: use HTTP/1.1",
            )
            return
        self._match = self.front.matcher.match(self.parser.get_method(), self._url)
        length = self._headers.get(b"content-length")
        # Front routes take `body_max`; a relayed request is bounded by the app's largest
        # limit here, and by its own route's limit in the app.
        self.body_max = self.front.relay_body_max if self._match is None else self.front.body_max
        if length is not None and length.isdigit() and int(length) > self.body_max:
            self._too_large()
            return
        if (
            self._headers.get(b"expect", b"").lower() == b"100-continue"
            and not self._pending
            and self.transport is not None
        ):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_message_complete(self) -> None:
        self._in_message = False
        if self._done or self.transport is None:
            return
        body = self._body[0] if len(self._body) == 1 else b"".join(self._body)
        request = LeanRequest(
            self,
            self.parser.get_method(),
            self._url,
            self._headers,
            body,
            self.parser.should_keep_alive() and not self.front.draining,
            self._match,
        )
        self._pending.append(request)
        self._arm(KEEPALIVE_S)
        if not request.keep_alive:
            self._stop_reading()  # nothing after `Connection: close` is served
        if len(self._pending) >= PIPELINE_MAX and not self._paused:
            self._paused = True
            self.transport.pause_reading()
        if self._held or (request.method in _SAFE and self._unsafe_unanswered(request)):
            self._held.append(request)
            return
        self._start(request)

    def _unsafe_unanswered(self, request: LeanRequest) -> bool:
        """Whether a request before `request` on this connection changes state and is not
        answered yet. A read pipelined behind a write is handled once the write is answered
        (RFC 9112 9.3.2: only safe requests may be processed in parallel), so it sees it."""
        for earlier in self._pending:
            if earlier is request:
                return False
            if earlier.status == _NOT_ANSWERED and earlier.method not in _SAFE:
                return True
        return False

    def _start(self, request: LeanRequest) -> None:
        if request.match is None:
            self.front.start_relay(request)
            return
        try:
            self.front.handle(request)
        except Exception:  # a bug: answer 500 rather than leave the connection hanging
            log.exception("unhandled error", extra={"path": request.path.decode("latin-1")})
            if request.status == _NOT_ANSWERED:
                request.problem(
                    "internal_error", "an unexpected error occurred; it has been logged"
                )

    # -- answers ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Write every answer that is ready and has its turn."""
        pending = self._pending
        while pending and self.transport is not None:
            request = pending[0]
            if request.status == _NOT_ANSWERED:
                break
            pending.popleft()
            # Draining: every request already received is answered; the last answer closes.
            close = not request.keep_alive or (self.front.draining and not pending)
            status = request.status
            self.transport.write(
                b"".join(
                    (
                        status_line(status),
                        request.head,
                        # none on 204 and 304 (RFC 9110 8.6); HEAD: the GET's, without it
                        b"" if status in _NO_LENGTH else b"Content-Length: %d\r\n"
                        % len(request.payload),
                        b"Connection: close\r\n\r\n" if close else b"\r\n",
                        b"" if request.method == b"HEAD" else request.payload,
                    )
                )
            )
            if close:
                if self._linger_bytes > 0 or self.front.draining:
                    self._linger()  # the client may have sent more: no reset for it
                else:
                    self.close_now()
                return
        held = self._held
        while held and self.transport is not None:
            if held[0].method in _SAFE and self._unsafe_unanswered(held[0]):
                break
            self._start(held.popleft())
        if (
            self._paused
            and not self._done
            and len(pending) < PIPELINE_MAX // 2
            and self.transport is not None
        ):
            self._paused = False
            self.transport.resume_reading()

    def _stop_reading(self) -> None:
        self._done = True
        if self.transport is not None and not self._paused:
            self._paused = True
            self.transport.pause_reading()

    def _finish_after_answers(self) -> None:
        self._stop_reading()
        if self._pending:
            self._pending[-1].keep_alive = False
        else:
            self.close_now()

    def _answer_and_close(self, request: LeanRequest) -> None:
        request.keep_alive = False
        self._pending.append(request)
        self._stop_reading()

    def _refuse(self, code: str, detail: str) -> None:
        """Malformed or oversized HTTP: answered after the answers before it, then closed."""
        request = LeanRequest(self, b"", b"", {}, b"", False, None)
        self._answer_and_close(request)
        request.problem(code, detail)

    def _linger(self) -> None:
        """After refusing a body that is still arriving, read and drop it for a while before
        closing (as aiohttp's lingering close does): closing with unread input resets the
        connection, and the client would see a broken pipe instead of our 413."""
        assert self.transport is not None
        if self.transport.can_write_eof():
            self.transport.write_eof()
        if self._paused:
            self._paused = False
            self.transport.resume_reading()
        self._timer_close = self.loop.call_later(LINGER_S, self.close_now)

    def _too_large(self) -> None:
        self._linger_bytes = LINGER_MAX_BYTES
        request = LeanRequest(
            self,
            self.parser.get_method(),
            self._url,
            self._headers,
            b"",
            False,
            self._match,
        )
        self._answer_and_close(request)
        if request.match is None:
            request.problem("body_too_large", "the request body is larger than the limit")
        else:
            self.front.too_large(request)


_SAFE = frozenset((b"GET", b"HEAD", b"OPTIONS"))
_NO_LENGTH = frozenset((204, 304))
_HOP_BY_HOP = frozenset(
    (b"content-length", b"connection", b"transfer-encoding", b"keep-alive", b"expect", b"upgrade")
)
