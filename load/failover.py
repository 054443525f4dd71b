"""Measure failover (kill -9 of a host) and handoff (SIGTERM of a host) times of a real
three-host cluster on this machine, under load, with the production session timeout.

    .venv/bin/python -m load.failover --rounds 5

Failover time: from the kill until a reservation on every pool has been acknowledged again
(clients retry with the same Idempotency-Key). Handoff time: from SIGTERM until every shard
has a ready owner on the remaining hosts; the failed requests during handoffs are counted too
(the promise is zero). Prints a Markdown table with the median and the worst round.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import tempfile
import time
from pathlib import Path

from capsvc.testing.history import Load, check
from capsvc.testing.hosts import cluster_host, wait_balanced
from capsvc.testing.zookeeper import ZooKeeper


def _fresh_pools(host, prefix: str) -> list[str]:
    """New pools for each measurement, so that its history check sees only its own load."""
    pools = [f"{prefix}-{i}" for i in range(24)]
    for pool_id in pools:
        assert host.define_pool(pool_id, [("s", 10**6)])[0] == 201
    return pools


def _measure_crash(hosts, victim: int, prefix: str) -> float:
    survivor = hosts[(victim + 1) % len(hosts)]
    pools = _fresh_pools(survivor, prefix)
    load = Load([survivor.url], pools, clients=6, retry_s=30).start()
    time.sleep(1.0)
    killed_at = time.monotonic()
    hosts[victim].kill_all()
    deadline = time.monotonic() + 60
    while len(load.history.first_success_after(killed_at)) < len(pools):
        assert time.monotonic() < deadline, "writes did not resume"
        time.sleep(0.05)
    history = load.stop()
    check(history, survivor, pools, capacity=10**6)
    return max(history.first_success_after(killed_at).values()) - killed_at


def _measure_handoff(hosts, leaving: int, shards: int, prefix: str) -> tuple[float, int]:
    stay = [h for i, h in enumerate(hosts) if i != leaving]
    pools = _fresh_pools(stay[0], prefix)
    load = Load([h.url for h in stay], pools, clients=6, retry_s=0).start()
    time.sleep(1.0)
    host = hosts[leaving]
    started = time.monotonic()
    host.process.send_signal(signal.SIGTERM)
    workers = 2 * len(stay)
    wait_balanced(stay[0], workers=workers, shard_count=shards, timeout_s=60)
    took = time.monotonic() - started
    assert host.process.wait(60) == 0
    time.sleep(0.5)
    history = load.stop()
    check(history, stay[0], pools, capacity=10**6)
    return took, len(history.failures())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--shards", type=int, default=24)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="capsvc-failover-"))
    zk = ZooKeeper(base / "zk").start()
    settings = {"session_timeout_ms": args.session_timeout_ms,
                "owner_lease_ms": args.session_timeout_ms * 2 // 3,
                "shard_count": args.shards}
    hosts = [cluster_host(base / "shared", zk, f"host-{n}", **settings).start(ready=False)
             for n in "abc"]
    for host in hosts:
        host.wait_ready()
    wait_balanced(hosts[0], workers=6, shard_count=args.shards, timeout_s=60)
    crashes, handoffs, failed = [], [], 0
    try:
        for r in range(args.rounds):
            victim = r % 3
            crashes.append(_measure_crash(hosts, victim, f"crash{r}"))
            hosts[victim].start(ready=False)
            hosts[victim].wait_ready(60)
            wait_balanced(hosts[(victim + 1) % 3], 6, args.shards, timeout_s=60)
            took, failures = _measure_handoff(hosts, victim, args.shards, f"handoff{r}")
            handoffs.append(took)
            failed += failures
            hosts[victim].start(ready=False)
            hosts[victim].wait_ready(60)
            wait_balanced(hosts[(victim + 1) % 3], 6, args.shards, timeout_s=60)
            print(f"round {r + 1}: failover {crashes[-1]:.2f}s, handoff {took:.2f}s, "
                  f"failed requests during handoff {failures}", flush=True)
    finally:
        for host in hosts:
            host.kill_all()
        zk.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n3 hosts x 2 workers, {args.shards} shards, session timeout "
          f"{args.session_timeout_ms} ms, {args.rounds} rounds\n")
    print("| measurement | median | worst |\n|---|---|---|")
    print(f"| failover after kill -9 of a host (writes to every pool again) | "
          f"{statistics.median(crashes):.2f} s | {max(crashes):.2f} s |")
    print(f"| planned handoff (SIGTERM to every shard ready elsewhere) | "
          f"{statistics.median(handoffs):.2f} s | {max(handoffs):.2f} s |")
    print(f"| failed requests during the handoffs | {failed} in total | |")


if __name__ == "__main__":
    main()
