"""Reading HTTP/1.1 answers on our own keep-alive connections, one answer at a time.

Shared by the router's pool of connections to its workers (`capsvc.router.rawclient`) and the
lean fronts' relay to the aiohttp app in the same process (`capsvc.http.app_relay`): both
write one whole request, then wait on `waiter` for the `Answer`, parsed by httptools.
"""

from __future__ import annotations

import asyncio

import httptools


class Answer:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status, self.headers, self.body = status, headers, body

    def header(self, name: bytes) -> bytes | None:
        """The first value of the header `name` (given in lower case)."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


class AnswerReader:
    """One connection's parsing side. A subclass feeds what arrives to `feed`, closes the
    connection in `close`, and makes the error a malformed answer ends the wait with."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future | None = None
        self.head_only = False  # the request was HEAD: the answer's head is all of it
        self.closed = False
        self.idle_since = 0.0
        self.received = False  # part of an answer arrived (its outcome is then unknown)
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []

    def close(self) -> None:
        raise NotImplementedError

    def malformed(self, error: Exception) -> Exception:
        raise NotImplementedError

    def feed(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as e:
            self.finish(self.malformed(e))
            self.close()

    def finish(self, result: Answer | BaseException) -> None:
        """Wake whoever waits for the answer, with it or with the error that ended it."""
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if isinstance(result, BaseException):
            waiter.set_exception(result)
        else:
            waiter.set_result(result)

    # -- httptools callbacks ---------------------------------------------------------------
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self.head_only:  # an answer to HEAD announces a body it does not send
            self._complete(keep=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self.closed:
            self._complete(self.parser.should_keep_alive())

    def _complete(self, keep: bool) -> None:
        answer = Answer(self.parser.get_status_code(), self._headers, b"".join(self._body))
        self._headers, self._body, self.received = [], [], False
        self.finish(answer)
        if not keep:
            self.close()
