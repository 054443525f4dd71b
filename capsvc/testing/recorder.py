"""Recording clients: concurrent load against real routers, every operation logged as invoke
then ok / rejected / fail / unknown (see `capsvc.testing.checker`), and the collection of
what the service holds afterwards, for the checker to judge.

`Workload` mixes reserves (each with its own Idempotency-Key, retried with that key after a
503/504 or a broken connection until `retry_s`), releases of the client's own reservations,
reads of pools and of the client's own reservations, in a background thread. Routers are
picked round robin from `routers`, which a test may change while the load runs.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
from collections.abc import Iterable
from typing import Any

import aiohttp

from capsvc.testing.checker import Op, PoolFacts, Report, check

NOT_APPLIED_CODES = ("shard_unavailable", "overloaded")  # the service promises: nothing applied
BUSINESS = (404, 409, 422)


def classify(status: int | None, code: str | None) -> str:
    if status is None:
        return "unknown"
    if 200 <= status < 300:
        return "ok"
    if status in BUSINESS:
        return "rejected"
    if status == 503 and code in NOT_APPLIED_CODES:
        return "fail"
    return "unknown"


def join(previous: str, latest: str) -> str:
    """An operation's outcome over its attempts (ok wins, then unknown)."""
    if "ok" in (previous, latest):
        return "ok"
    if "unknown" in (previous, latest):
        return "unknown"
    return latest


def _int_header(headers, name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


async def attempt(session: aiohttp.ClientSession, op: Op, method: str, url: str,
                  body: bytes | None = None, headers: dict[str, str] | None = None) -> str:
    """One HTTP attempt of `op`; records its answer into `op` and returns its outcome."""
    op.attempts += 1
    try:
        async with session.request(method, url, data=body, headers=headers) as r:
            text = await r.text()
            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            status, code = r.status, (payload.get("code") if isinstance(payload, dict) else None)
            outcome = classify(status, code)
            op.status, op.code, op.body = status, code, payload
            op.epoch = _int_header(r.headers, "X-Capsvc-Epoch")
            op.version = _int_header(r.headers, "X-Capsvc-Version")
            op.replayed = r.headers.get("Idempotent-Replayed") == "true"
            if op.kind == "read_pool" and outcome == "ok":
                op.version = payload["version"]
            if op.kind == "reserve" and outcome == "ok":
                op.reservation_id = payload["reservation_id"]
    except (TimeoutError, aiohttp.ClientError, ValueError):
        op.status, op.code, op.epoch, op.version, outcome = None, None, None, None, "unknown"
    op.outcome = join(op.outcome, outcome)
    op.completed = time.monotonic()
    return outcome


class Workload:
    def __init__(self, routers: list[str], pools: list[str], slots: Iterable[str] = ("s",), *,
                 clients: int = 8, retry_s: float = 15.0, pause_s: float = 0.005,
                 mix: tuple[float, float, float] = (0.6, 0.1, 0.25), units_max: int = 2,
                 tag: str = "w", seed: int = 1, request_timeout_s: float = 10.0) -> None:
        self.routers = list(routers)
        self.pools = list(pools)
        self.slots = list(slots)
        self.clients = clients
        self.retry_s = retry_s
        self.pause_s = pause_s
        self.mix = mix  # reserve, release, read pool; the rest reads an own reservation
        self.units_max = units_max
        self.tag = tag
        self.seed = seed
        self.timeout_s = request_timeout_s
        self.ops: list[Op] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    def start(self) -> Workload:
        self._thread.start()
        return self

    def stop(self) -> list[Op]:
        self._stop.set()
        self._thread.join(self.retry_s + self.timeout_s + 30)
        assert not self._thread.is_alive(), "the workload did not stop"
        return self.ops

    def run_for(self, seconds: float) -> list[Op]:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def wait_flowing(self, acknowledged: int = 20, timeout_s: float = 20.0) -> None:
        """Wait until `acknowledged` more reservations were acknowledged: the load runs (a
        fault injected before that would hit an idle service)."""
        def count() -> int:
            return sum(1 for op in list(self.ops) if op.kind == "reserve" and op.outcome == "ok")
        wanted = count() + acknowledged
        deadline = time.monotonic() + timeout_s
        while count() < wanted:
            assert self._thread.is_alive(), "the workload stopped"
            assert time.monotonic() < deadline, (
                f"fewer than {acknowledged} reservations acknowledged in {timeout_s:g}s")
            time.sleep(0.02)

    def acked_since(self, t: float) -> set[str]:
        """Pools with a reserve invoked after `t` and acknowledged."""
        return {op.pool_id for op in list(self.ops)
                if op.kind == "reserve" and op.outcome == "ok" and op.invoked >= t}

    async def _main(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            await asyncio.gather(*(self._client(session, n) for n in range(self.clients)))

    def _router(self, n: int, i: int) -> str:
        routers = self.routers
        return routers[(n + i) % len(routers)]

    async def _client(self, session: aiohttp.ClientSession, n: int) -> None:
        rng = random.Random(self.seed * 1000 + n)
        mine: list[Op] = []  # this client's acknowledged reservations, still active
        i = 0
        while not self._stop.is_set():
            i += 1
            pool_id = rng.choice(self.pools)
            roll = rng.random()
            if roll < self.mix[0] or not mine:
                op = Op(n, pool_id, f"{self.tag}-c{n}-{i}", time.monotonic(),
                        slot_id=rng.choice(self.slots), units=rng.randint(1, self.units_max))
                self.ops.append(op)
                await self._reserve(session, op)
                if op.outcome == "ok":
                    mine.append(op)
            elif roll < self.mix[0] + self.mix[1]:
                target = mine.pop(rng.randrange(len(mine)))
                op = Op(n, target.pool_id, None, time.monotonic(), kind="release",
                        reservation_id=target.reservation_id)
                self.ops.append(op)
                await self._retrying(session, op, "DELETE",
                                     f"/v1/reservations/{target.reservation_id}")
            elif roll < self.mix[0] + self.mix[1] + self.mix[2]:
                op = Op(n, pool_id, None, time.monotonic(), kind="read_pool")
                self.ops.append(op)
                await attempt(session, op, "GET", f"{self._router(n, i)}/v1/pools/{pool_id}")
            else:
                target = rng.choice(mine)
                op = Op(n, target.pool_id, None, time.monotonic(), kind="read_reservation",
                        reservation_id=target.reservation_id)
                self.ops.append(op)
                await attempt(session, op, "GET", f"{self._router(n, i)}/v1/reservations/"
                                                  f"{target.reservation_id}")
            await asyncio.sleep(self.pause_s)

    async def _reserve(self, session: aiohttp.ClientSession, op: Op) -> None:
        body = json.dumps({"slot_id": op.slot_id, "units": op.units}).encode()
        await self._retrying(session, op, "POST", f"/v1/pools/{op.pool_id}/reservations", body,
                             {"Idempotency-Key": op.key})

    async def _retrying(self, session, op: Op, method: str, path: str, body=None,
                        headers=None) -> None:
        deadline = op.invoked + self.retry_s
        while True:
            router = self._router(int(op.client), op.attempts + 1)
            outcome = await attempt(session, op, method, router + path, body, headers)
            if outcome in ("ok", "rejected") or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.1)


# -- what the service holds afterwards --------------------------------------------------------
async def _get(session, url: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    for _ in range(50):
        try:
            async with session.get(url, headers=headers) as r:
                payload = await r.json(content_type=None)
                if r.status in (503, 504):
                    await asyncio.sleep(0.2)
                    continue
                return r.status, payload
        except (TimeoutError, aiohttp.ClientError):
            await asyncio.sleep(0.2)
    raise AssertionError(f"{url} kept failing")


async def _collect(base: str, token: str, pools: list[str], ops: list[Op]) -> list[PoolFacts]:
    admin = {"Authorization": f"Bearer {token}"}
    limit = asyncio.Semaphore(16)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def events(pool_id: str) -> list[dict]:
            out, after = [], 0
            while True:
                status, page = await _get(
                    session, f"{base}/v1/admin/pools/{pool_id}/events?after={after}&limit=1000",
                    admin)
                if status == 404:
                    return out
                assert status == 200, page
                out += page["events"]
                if page["next_after"] is None:
                    return out
                after = page["next_after"]

        async def one_pool(pool_id: str) -> PoolFacts:
            async with limit:
                status, view = await _get(session, f"{base}/v1/pools/{pool_id}")
                return PoolFacts(pool_id, await events(pool_id), view if status == 200 else None)

        async def reservation(rid: str) -> tuple[str, dict | None]:
            async with limit:
                status, body = await _get(session, f"{base}/v1/reservations/{rid}")
                return rid, body if status == 200 else None

        facts = {f.pool_id: f for f in await asyncio.gather(*(one_pool(p) for p in pools))}
        acked = {op.reservation_id for op in ops
                 if op.kind == "reserve" and op.outcome == "ok" and op.pool_id in facts}
        for rid, body in await asyncio.gather(*(reservation(r) for r in sorted(acked))):
            facts[rid.split("~", 1)[0]].reservations[rid] = body
        return list(facts.values())


def collect(base: str, token: str, pools: list[str], ops: list[Op]) -> list[PoolFacts]:
    return asyncio.run(_collect(base, token, pools, ops))


def judge(ops: list[Op], base: str, token: str, pools: list[str], **kwargs: Any) -> Report:
    """Collect the facts through the router at `base` and run the checker."""
    return check(ops, collect(base, token, pools, ops), **kwargs)
