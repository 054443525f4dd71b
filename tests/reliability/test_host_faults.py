"""Faults of one host under concurrent load, each ending with the history checker: the router
killed, wall-clock jumps, and a retry storm on the same keys after a worker failover."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import aiohttp
import pytest

from capsvc.testing.checker import Op
from capsvc.testing.harness import Service, wait_for
from capsvc.testing.recorder import Workload, attempt
from tests.reliability.common import check_run, define_pools, wait_writes_resume

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


def test_a_killed_router_is_restarted_and_clients_retries_succeed(tmp_path):
    """Fault: kill -9 of the router under load (twice). Property: the supervisor restarts it
    on the same inherited socket; clients' retries with their keys succeed; the history check
    passes (requests in flight in the router have unknown outcomes, nothing is doubled)."""
    svc = Service(tmp_path / "data", workers=2, shard_count=4).start()
    try:
        pools = [f"router-{i}" for i in range(6)]
        define_pools(svc, pools, {"s": 100_000})
        load = Workload([svc.url], pools, clients=8, retry_s=20, tag="router").start()
        for _ in range(1):
            load.wait_flowing(60)
            pid = svc.child_pids()["capsvc: router"]
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()
            wait_for(lambda p=pid: svc.child_pids().get("capsvc: router") not in (None, p), 10,
                     "the router to be restarted")
            took = wait_writes_resume(load, pools, killed_at)
            print(f"router kill -9: writes to every pool again after {took:.2f}s")
            load.wait_flowing(50)  # and the load runs on through the new router
        ops = load.stop()
        report = check_run(ops, svc, pools).assert_ok()
        assert report.stats["ok"] > 100
    finally:
        svc.kill_all()


@pytest.mark.skipif(not LIBFAKETIME.exists(), reason="libfaketime is not installed "
                    "(apt-get install -y faketime)")
def test_wall_clock_jumps_change_nothing(tmp_path):
    """Fault: the wall clock of every capsvc process jumps forward an hour, back two hours,
    forward thirty minutes (libfaketime; the monotonic clock is untouched, as with an NTP
    step), under load with retries of the same keys. Property: nothing depends on it: the
    history check passes, idempotency keys replay across the jumps."""
    clock = tmp_path / "faketime"
    clock.write_text("+0\n")
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(clock),
           "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    svc = Service(tmp_path / "data", workers=2, shard_count=4, env=env).start()
    try:
        pools = [f"clock-{i}" for i in range(4)]
        define_pools(svc, pools, {"a": 40, "b": 1000})
        load = Workload([svc.url], pools, ("a", "b"), clients=8, retry_s=20,
                        tag="clock").start()
        for offset_s in (3600, -3600, -1800):
            clock.write_text(f"{offset_s:+d}\n")
            _wait_clock_seen(svc, pools, offset_s)  # libfaketime rereads it once a second
        ops = load.stop()
        replays = _replay_every_key(svc, ops)
        report = check_run(ops + replays, svc, pools).assert_ok()
        assert report.stats["ok"] > 100
        assert all(op.replayed for op in replays if op.outcome == "ok")
        events = svc.admin("GET", f"/v1/admin/pools/{pools[0]}/events?limit=1000")[1]["events"]
        at = [e["at_ms"] for e in events]
        assert at != sorted(at), "the premise failed: the wall clock did not jump back"
    finally:
        svc.kill_all()


def _wait_clock_seen(svc: Service, pools: list[str], offset_s: int) -> None:
    """Wait until the newest event of every pool is stamped with the faked wall clock."""

    def seen() -> bool:
        for pool_id in pools:
            status, pool = svc.get(f"/v1/pools/{pool_id}")
            assert status == 200, pool
            path = f"/v1/admin/pools/{pool_id}/events?after={pool['version'] - 1}&limit=1"
            status, page = svc.admin("GET", path)
            if status != 200 or not page["events"]:
                return False
            skew_ms = page["events"][0]["at_ms"] - (time.time() + offset_s) * 1000
            if abs(skew_ms) > 30_000:  # the offsets are 30 min or more apart
                return False
        return True

    wait_for(seen, 20, f"events of every pool stamped at {offset_s:+d} s")


def _replay_every_key(svc: Service, ops: list[Op]) -> list[Op]:
    """Send every acknowledged reserve again with its key (after all the jumps)."""
    acked = [op for op in ops if op.kind == "reserve" and op.outcome == "ok"]

    async def main() -> list[Op]:
        async with aiohttp.ClientSession() as session:
            out = []
            for op in acked:
                again = Op(f"replay-{op.client}", op.pool_id, op.key, time.monotonic(),
                           slot_id=op.slot_id, units=op.units)
                body = json.dumps({"slot_id": op.slot_id, "units": op.units}).encode()
                await attempt(session, again, "POST",
                              f"{svc.url}/v1/pools/{op.pool_id}/reservations", body,
                              {"Idempotency-Key": op.key})
                out.append(again)
            return out

    return asyncio.run(main())


def test_a_retry_storm_on_the_same_keys_after_a_failover_applies_each_key_once(tmp_path):
    """Fault: the only worker stops (SIGSTOP) while 120 clients send 30 keys (4 clients per
    key) for a slot of 20 units; it is killed (kill -9) 1.5 s later and restarted, so every
    attempt in flight ends unknown (a dropped connection) and those clients retry the same
    keys at once, every 50 ms, as the worker comes back. Property: each key is applied
    at most once and answered identically to all its clients; 20 keys get the units and 10
    are refused; the history check passes."""
    svc = Service(tmp_path / "data", workers=1, shard_count=2).start()
    try:
        pool = "storm"
        define_pools(svc, [pool], {"s": 20})
        pid = svc.child_pids()["capsvc: worker 0"]
        os.kill(pid, signal.SIGSTOP)
        killer = threading.Timer(1.5, os.kill, (pid, signal.SIGKILL))
        killer.start()
        ops = asyncio.run(_storm(svc.url, pool, keys=30, per_key=4))
        killer.join()
        report = check_run(ops, svc, [pool]).assert_ok()
        answered = {op.key for op in ops if op.status in (201, 409)}
        assert len(answered) == 30, f"{30 - len(answered)} keys never got an answer"
        winners = {op.key for op in ops if op.outcome == "ok"}
        assert len(winners) == 20, sorted(winners)
        retries = sum(op.attempts for op in ops) - len(ops)
        print(f"retry storm: {len(ops)} clients, {retries} retries, {report.stats}")
        assert retries >= 30, "the premise failed: the clients hardly needed to retry"
    finally:
        svc.kill_all()


async def _storm(base: str, pool: str, keys: int, per_key: int) -> list[Op]:
    body = json.dumps({"slot_id": "s", "units": 1}).encode()
    ops = [Op(n, pool, f"storm-{n % keys}", 0.0) for n in range(keys * per_key)]
    random.Random(7).shuffle(ops)
    timeout = aiohttp.ClientTimeout(total=8)

    async def client(session: aiohttp.ClientSession, op: Op) -> None:
        op.invoked = time.monotonic()
        deadline = op.invoked + 40
        while True:
            outcome = await attempt(session, op, "POST", f"{base}/v1/pools/{pool}/reservations",
                                    body, {"Idempotency-Key": op.key})
            if outcome in ("ok", "rejected") or time.monotonic() > deadline:
                return
            await asyncio.sleep(0.05)

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(client(session, op) for op in ops))
    return ops
