"""Concurrent load with a recorded history, and the checker that judges it.

The recorder logs every reservation attempt as invoke then ok / fail / unknown (a timeout or a
dropped connection is *unknown*, never *fail*). The checker then proves, against the service's
own state after recovery: (1) no slot holds more units than its capacity, and holds at least
every acknowledged unit and at most acknowledged plus unknown; (2) every acknowledged
reservation exists and is active; (3) no idempotency key was applied twice, and every replay
of a key answered the same reservation.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from dataclasses import dataclass, field

import aiohttp


@dataclass
class Op:
    client: int
    pool_id: str
    key: str
    invoked: float
    completed: float = 0.0
    outcome: str = "pending"  # ok | rejected | fail | unknown
    status: int | None = None
    code: str | None = None
    reservation_id: str | None = None
    attempts: int = 0


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
        for op in self.ops:
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
            op = Op(n, pool_id, f"c{n}-{next(self._keys)}", time.monotonic())
            self.history.ops.append(op)
            await self._attempt(session, op)
            await asyncio.sleep(self.pause_s)

    async def _attempt(self, session: aiohttp.ClientSession, op: Op) -> None:
        body = json.dumps({"slot_id": self.slot_id, "units": 1}).encode()
        deadline = op.invoked + self.retry_s
        while True:
            op.attempts += 1
            router = self.routers[(op.client + op.attempts) % len(self.routers)]
            try:
                async with session.post(f"{router}/v1/pools/{op.pool_id}/reservations",
                                        data=body, headers={"Idempotency-Key": op.key}) as r:
                    payload = await r.json(content_type=None)
                    op.status = r.status
                    op.code = payload.get("code")
                    if r.status == 201:
                        op.outcome, op.reservation_id = "ok", payload["reservation_id"]
                    elif r.status in (409, 404, 422):
                        op.outcome = "rejected"
                    elif r.status == 503 and op.code in ("shard_unavailable", "overloaded",
                                                         "storage_full"):
                        op.outcome = "fail"  # the service says: not applied
                    else:
                        op.outcome = "unknown"
            except (TimeoutError, aiohttp.ClientError, ValueError):
                op.status, op.outcome = None, "unknown"
            op.completed = time.monotonic()
            if op.outcome in ("ok", "rejected") or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.1)


def check(history: History, service, pools: list[str], capacity: int, slot_id: str = "s"):
    """Judge the history against the service's state after recovery (see module docstring).
    `service` is any host's harness `Service` (its router answers for every pool)."""
    acked = history.by_outcome("ok")
    unknown = [op for op in history.ops if op.outcome in ("unknown", "fail")]
    problems = []
    by_key: dict[str, set[str]] = {}
    for op in acked:
        by_key.setdefault(op.key, set()).add(op.reservation_id)
    problems += [f"key {k} answered {ids}" for k, ids in by_key.items() if len(ids) > 1]
    for pool_id in pools:
        status, pool = service.get(f"/v1/pools/{pool_id}")
        assert status == 200, (pool_id, pool)
        slot = next(s for s in pool["slots"] if s["slot_id"] == slot_id)
        ok_here = sum(1 for op in acked if op.pool_id == pool_id)
        unknown_here = sum(1 for op in unknown if op.pool_id == pool_id)
        if slot["reserved"] > capacity:
            problems.append(f"{pool_id}: overbooked {slot['reserved']} > {capacity}")
        if not ok_here <= slot["reserved"] <= ok_here + unknown_here:
            problems.append(f"{pool_id}: reserved {slot['reserved']} outside acked {ok_here} "
                            f"+ unknown {unknown_here}")
        keys = _applied_keys(service, pool_id)
        problems += [f"{pool_id}: key {k} applied {n} times" for k, n in keys.items() if n > 1]
    for op in acked:
        status, r = service.get(f"/v1/reservations/{op.reservation_id}")
        if status != 200 or r["status"] != "active":
            problems.append(f"acknowledged {op.reservation_id} is {status} {r}")
    assert not problems, "\n".join(problems[:20])
    return {"acked": len(acked), "unknown": len(unknown), "ops": len(history.ops)}


def _applied_keys(service, pool_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    after = 0
    while True:
        status, page = service.admin("GET", f"/v1/admin/pools/{pool_id}/events?after={after}&limit=1000")
        assert status == 200, page
        for event in page["events"]:
            key = event["data"].get("idempotency_key") if event["type"] == "CapacityReserved" else None
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
        if page["next_after"] is None:
            return counts
        after = page["next_after"]
