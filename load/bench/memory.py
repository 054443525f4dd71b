"""Resident memory of a whole capsvc host holding N pools of 12 slots (no reservations).

The pools are written straight into the shard files as `PoolDefined` events, the records a
worker appends when a pool is defined through the API (defining 100k pools through the router
would take minutes here). Then a real `capsvc serve` (2 workers, 64 shards) recovers them, its
router's read model loads every pool, and VmRSS of each process is read from
/proc/<pid>/status. An empty service is measured the same way for the baseline. Both run with
the default configuration; `--request-timeout-ms` sets `limits.request_timeout_ms` (runs
before the feed paged its first load needed 120000). The run fails (exit 1) if the router's
read model does not hold every pool within 300 s.

    nice -n 19 .venv/bin/python -m load.bench.memory --pools 100000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

from capsvc.config import Config, ServiceConfig
from capsvc.domain import events as ev
from capsvc.paths import shard_file
from capsvc.sharding import shard_for_pool
from capsvc.storage.log import StoredEvent
from capsvc.storage.sqlite_log import SqliteEventLog
from load.bench.procstat import rss_bytes
from load.fixtures import days_ahead
from load.service import CapsvcProcess

SHARDS, WORKERS = 64, 2
SLOTS = tuple(f"{h:02d}00" for h in range(8, 20))


def _definition(i: int) -> ev.PoolDefined:
    date = days_ahead(2 + (i // 1000) % 28)
    slots = tuple(ev.SlotSpec(s, f"{date}T{8 + n:02d}:00:00+08:00",
                              f"{date}T{9 + n:02d}:00:00+08:00", 100)
                  for n, s in enumerate(SLOTS))
    return ev.PoolDefined(f"mem-{i:06d}", f"k{i % 4}", f"m{i % 1000:03d}", date, None, slots)


async def write_shards(data_dir: Path, pools: int) -> None:
    config = Config(service=ServiceConfig(data_dir=str(data_dir), shard_count=SHARDS))
    by_shard: dict[int, list[ev.PoolDefined]] = defaultdict(list)
    for i in range(pools):
        event = _definition(i)
        by_shard[shard_for_pool(event.pool_id, SHARDS)].append(event)
    for shard_id in range(SHARDS):
        log = SqliteEventLog(shard_file(config, shard_id))
        await log.open(None)
        await log.append([StoredEvent(seq, e.pool_id, 1, log.epoch, 0, None, e)
                          for seq, e in enumerate(by_shard[shard_id], start=1)])
        await log.close()


def _model_pools(service: CapsvcProcess) -> int:
    request = urllib.request.Request(f"{service.url}/v1/admin/cluster",
                                     headers={"Authorization": f"Bearer {service.admin_token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["read_model"]["pools"]


def _host_rss(data_dir: Path, pools: int, extra_config: str) -> dict:
    started = time.perf_counter()
    service = CapsvcProcess(data_dir, workers=WORKERS, shard_count=SHARDS, worker_ports=False,
                            extra_config=extra_config)
    service.start(timeout_s=600)
    try:
        ready_s = time.perf_counter() - started
        deadline = time.monotonic() + 300
        while (loaded := _model_pools(service)) < pools and time.monotonic() < deadline:
            time.sleep(0.5)
        loaded_s = time.perf_counter() - started
        time.sleep(1.0)  # let the last feed answer be freed
        rss = {role: rss_bytes(pid) for role, pid in service.pids().items()}
    finally:
        service.stop()
    return {"ready_s": ready_s, "model_pools": loaded, "model_loaded_s": loaded_s, "rss": rss,
            "total": sum(rss.values())}


def measure(pools: int, workdir: Path, extra_config: str = "") -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    empty = _host_rss(workdir / "empty", 0, extra_config)
    started = time.perf_counter()
    asyncio.run(write_shards(workdir / "full", pools))
    written_s = time.perf_counter() - started
    full = _host_rss(workdir / "full", pools, extra_config)
    return {"pools": pools, "write_s": written_s, "empty": empty, "full": full}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=int, default=100_000)
    parser.add_argument("--request-timeout-ms", type=int, default=None,
                        help="set limits.request_timeout_ms (default: the service's default)")
    args = parser.parse_args(argv)
    extra = ("" if args.request_timeout_ms is None
             else f"[limits]\nrequest_timeout_ms = {args.request_timeout_ms}\n")
    with tempfile.TemporaryDirectory(prefix="capsvc-memory-") as tmp:
        result = measure(args.pools, Path(tmp), extra)
    mib = 2**20
    for name in ("empty", "full"):
        r = result[name]
        rss = {role: round(b / mib) for role, b in r["rss"].items()}
        print(f"{name}: host {r['total'] / mib:.0f} MiB {rss} (ready after {r['ready_s']:.1f} s, "
              f"read model {r['model_pools']} pools after {r['model_loaded_s']:.1f} s)")
    print(json.dumps(result))
    if result["full"]["model_pools"] < args.pools:
        print(f"FAILED: the router's read model holds {result['full']['model_pools']} of "
              f"{args.pools} pools after 300 s")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
