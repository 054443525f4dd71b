"""Concurrent reservation load with a recorded history, judged by the reusable checker.

Kept for the cluster tests and `load.failover`: `Load` reserves one unit at a time, `check`
collects what the service holds and runs `capsvc.testing.checker.check` (no overbooking on
any prefix of each pool's log, every acknowledged reservation present, every idempotency key
applied at most once with identical answers, answers consistent with the log at the versions
they report, real-time order respected). The richer `capsvc.testing.recorder.Workload`
adds releases and reads.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import aiohttp

from capsvc.testing.checker import Op
from capsvc.testing.recorder import attempt, judge

__all__ = ["History", "Load", "Op", "check"]


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def by_outcome(self, outcome: str) -> list[Op]:
        return [op for op in self.ops if op.outcome == outcome]

    def failures(self) -> list[Op]:
        """Attempts the service did not answer with a success or a business refusal."""
        return [op for op in self.ops if op.outcome in ("fail", "unknown")]

    def first_success_after(self, t: float) -> dict[str, float]:
        """For each pool, when the first reservation invoked after `t` was acknowledged."""
        firsts: dict[str, float] = {}
        for op in list(self.ops):
            if op.outcome == "ok" and op.invoked >= t:
                firsts[op.pool_id] = min(firsts.get(op.pool_id, op.completed), op.completed)
        return firsts


class Load:
    """Clients reserving one unit at a time against whichever routers are listed as up.

    `retry_s` > 0: a 503/504 or a connection error is retried with the same key until then
    (what a well-behaved client does). `retry_s` == 0: every attempt counts on its own (for
    the "zero failed requests" promises).
    """

    def __init__(self, routers: list[str], pools: list[str], slot_id: str = "s",
                 clients: int = 8, retry_s: float = 0.0, pause_s: float = 0.005) -> None:
        self.routers = list(routers)
        self.pools = pools
        self.slot_id = slot_id
        self.clients = clients
        self.retry_s = retry_s
        self.pause_s = pause_s
        self.history = History()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._keys = itertools.count()

    def start(self) -> Load:
        self._thread.start()
        return self

    def wait_flowing(self, acknowledged: int = 20, timeout_s: float = 20.0) -> None:
        """Wait until `acknowledged` more reservations were acknowledged: the load runs."""
        start = len(self.history.by_outcome("ok"))
        self._wait(lambda: len(self.history.by_outcome("ok")) >= start + acknowledged,
                   timeout_s, f"{acknowledged} acknowledged reservations")

    def wait_every_client_past(self, t: float, timeout_s: float = 20.0) -> None:
        """Wait until every client finished a request it started after `t` (e.g. after
        `routers` changed, so that nothing is still in flight to a router being stopped)."""
        def moved() -> bool:
            done = {op.client for op in list(self.history.ops)
                    if op.invoked >= t and op.outcome != "pending"}
            return len(done) == self.clients
        self._wait(moved, timeout_s, "every client past the change")

    @staticmethod
    def _wait(condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"load: timed out waiting for {what}"
            time.sleep(0.02)

    def stop(self) -> History:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "load did not stop"
        return self.history

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await asyncio.gather(*(self._client(session, n) for n in range(self.clients)))

    async def _client(self, session: aiohttp.ClientSession, n: int) -> None:
        i = 0
        while not self._stop.is_set():
            i += 1
            pool_id = self.pools[(n + i) % len(self.pools)]
            op = Op(n, pool_id, f"c{n}-{next(self._keys)}", time.monotonic(),
                    slot_id=self.slot_id)
            self.history.ops.append(op)
            await self._attempt(session, op)
            await asyncio.sleep(self.pause_s)

    async def _attempt(self, session: aiohttp.ClientSession, op: Op) -> None:
        body = json.dumps({"slot_id": self.slot_id, "units": 1}).encode()
        deadline = op.invoked + self.retry_s
        while True:
            router = self.routers[(op.client + op.attempts + 1) % len(self.routers)]
            outcome = await attempt(session, op, "POST",
                                    f"{router}/v1/pools/{op.pool_id}/reservations", body,
                                    {"Idempotency-Key": op.key})
            if outcome in ("ok", "rejected") or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.1)


def check(history: History, service, pools: list[str], capacity: int, slot_id: str = "s"):
    """Judge the history against the service's state after recovery (see module docstring).
    `service` is any host's harness `Service` (its router answers for every pool)."""
    report = judge(history.ops, service.url, service.admin_token, pools).assert_ok()
    acked = history.by_outcome("ok")
    return {"acked": len(acked), "unknown": len(history.failures()), "ops": len(history.ops),
            "events": report.stats.get("events", 0)}
