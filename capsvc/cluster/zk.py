"""kazoo from asyncio: one client per process, its calls awaited, its events handed over.

kazoo runs its own threads. Everything it calls back (state changes, watches) is handed to
the event loop with `call_soon_threadsafe`, so cluster state is only ever touched by the loop.

Connection states (kazoo's state machine, as we act on it):

    CONNECTED --(socket trouble)--> SUSPENDED --(reconnect, same session)--> CONNECTED
        SUSPENDED --(session expired, learnt on reconnect)--> LOST --(new session)--> CONNECTED
    SUSPENDED means: stop acting as owner now. LOST means: you own nothing any more.

Layout under /capsvc/<name>:
    hosts/<host_id>            ephemeral  {host_id, router_url, workers}
    workers/<worker_id>        ephemeral  {worker_id, host_id, index, url}
    leader/                    kazoo Election lock nodes
    assignment                 persistent {"shards": {"<shard>": "<worker_id>"}} (leader-written)
    shards/<NNN>/epoch         persistent fencing counter, incremented by each new owner
    shards/<NNN>/owner         ephemeral  {worker_id, host_id, index, url, epoch, ready}
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.retry import KazooRetry

from capsvc.errors import ShardUnavailable

log = logging.getLogger(__name__)
CALL_TIMEOUT_S = 5.0


def encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True).encode()


def decode(raw: bytes | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def worker_id(host_id: str, index: int) -> str:
    return f"{host_id}-w{index}"


class Zk:
    def __init__(self, hosts: str, name: str, session_timeout_ms: int) -> None:
        self.root = f"/capsvc/{name}"
        self.client = KazooClient(
            hosts=hosts,
            timeout=session_timeout_ms / 1000,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, max_delay=1.0),
            command_retry=KazooRetry(max_tries=3, delay=0.1, max_delay=1.0),
        )
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = KazooState.LOST
        self._state_listeners: list[Callable[[str], None]] = []

    # -- paths -------------------------------------------------------------------------------
    def path(self, *parts: str) -> str:
        return "/".join((self.root, *parts))

    def shard_path(self, shard_id: int, leaf: str) -> str:
        return self.path("shards", f"{shard_id:03d}", leaf)

    # -- life cycle --------------------------------------------------------------------------
    async def start(self, timeout_s: float = 30.0) -> None:
        self.loop = asyncio.get_running_loop()
        self.client.add_listener(self._kazoo_state)
        await self.loop.run_in_executor(None, self.client.start, timeout_s)
        self.state = KazooState.CONNECTED
        for leaf in ("hosts", "workers", "shards"):
            await self.loop.run_in_executor(None, self.client.ensure_path, self.path(leaf))

    async def stop(self) -> None:
        assert self.loop is not None
        await self.loop.run_in_executor(None, self.client.stop)
        await self.loop.run_in_executor(None, self.client.close)

    def on_state(self, listener: Callable[[str], None]) -> None:
        """`listener(state)` runs on the event loop for every connection state change."""
        self._state_listeners.append(listener)

    def _kazoo_state(self, state: str) -> bool:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._deliver_state, state)
        return False  # keep listening

    def _deliver_state(self, state: str) -> None:
        self.state = state
        log.warning("zookeeper connection %s", state.lower(), extra={"zk_state": state})
        for listener in self._state_listeners:
            listener(state)

    @property
    def session_id(self) -> int | None:
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    # -- calls -------------------------------------------------------------------------------
    async def call(self, result: IAsyncResult, timeout_s: float = CALL_TIMEOUT_S) -> Any:
        """Await a kazoo async result on the event loop."""
        loop = self.loop
        assert loop is not None
        future = loop.create_future()

        def done(ar: IAsyncResult) -> None:
            try:
                value = ar.get_nowait()
            except BaseException as e:  # noqa: BLE001 - handed to the awaiting coroutine
                loop.call_soon_threadsafe(_settle, future, None, e)
            else:
                loop.call_soon_threadsafe(_settle, future, value, None)

        result.rawlink(done)
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancellation that
            # races with the result, and a worker would then never finish draining.
            async with asyncio.timeout(timeout_s):
                return await future
        except (TimeoutError, KazooTimeoutError):
            raise ShardUnavailable("zookeeper did not answer in time") from None

    def watch_data(self, path: str, callback: Callable[[bytes | None, Any], None]) -> None:
        """Call `callback(data, stat)` on the loop now and on every change of `path`."""
        loop = self.loop
        assert loop is not None
        self.client.DataWatch(
            path, lambda data, stat: loop.call_soon_threadsafe(callback, data, stat)
        )

    def watch_children(self, path: str, callback: Callable[[list[str]], None]) -> None:
        loop = self.loop
        assert loop is not None
        self.client.ChildrenWatch(
            path, lambda children: loop.call_soon_threadsafe(callback, list(children))
        )


def _settle(future: asyncio.Future, value: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)
