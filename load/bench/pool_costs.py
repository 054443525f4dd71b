"""What a pool costs a worker: memory per live pool, and the share of a hot pool's writer time
spent in checkpoints.

`memory` builds N pools of 12 slots (no reservations) through `evolve`, from events that went
through the codec as recovery reads them, and reports tracemalloc's bytes per pool.

`hot` runs one shard writer (a real `Shard` on a real SQLite file, `synchronous=NORMAL` so the
disk does not dominate) while clients reserve in one pool until it holds `--reservations`
reservations, and reports the checkpoints' share of the CPU time (`--profile`: also their
share under cProfile, as load/bench/profile.py reports shares), the longest checkpoint (CPU time of the writer's thread, robust to a busy machine) and CPU
microseconds per reservation. The pool first gets its
reservations without profiling (`--warm`), so the profile sees a pool of the size given.

    python -m load.bench.pool_costs memory --pools 20000
    python -m load.bench.pool_costs hot --reservations 30000 --warm 20000 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.domain.evolve import evolve
from capsvc.domain.pool import KeyRetention, Pool
from capsvc.shard.shard import Shard, ShardSettings
from capsvc.storage.codec import decode_event, encode_event
from capsvc.storage.sqlite_log import SqliteEventLog
from load.fixtures import days_ahead

SLOTS = tuple(f"{h:02d}00" for h in range(8, 20))
HOT_POOL = "hot-pool"


def definition(i: int) -> ev.PoolDefined:
    """The pools of load/bench/memory.py: 28 dates, 1,000 regions, 4 kinds, 12 slots each."""
    date = days_ahead(2 + (i // 1000) % 28)
    slots = tuple(
        ev.SlotSpec(s, f"{date}T{8 + n:02d}:00:00+08:00", f"{date}T{9 + n:02d}:00:00+08:00", 100)
        for n, s in enumerate(SLOTS)
    )
    return ev.PoolDefined(f"mem-{i:06d}", f"k{i % 4}", f"m{i % 1000:03d}", date, None, slots)


def memory(pools: int) -> dict:
    retention = KeyRetention()
    # Encoded first, so the strings come from decoding as they do in recovery.
    bodies = [encode_event(definition(i)) for i in range(pools)]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held: dict[str, Pool] = {}
    for type_name, schema, body in bodies:
        pool = evolve(None, decode_event(type_name, schema, body), retention)
        held[pool.pool_id] = pool
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return {"pools": pools, "bytes_per_pool": round((after - before) / pools)}


class _Clock:
    def __init__(self) -> None:
        self.now_ms = time.time_ns() // 1_000_000  # before the pools' slots (days ahead)

    def __call__(self) -> int:
        self.now_ms += 1
        return self.now_ms


async def _reserve(shard: Shard, count: int, start: int, clients: int = 64) -> None:
    async def client(c: int) -> None:
        for n in range(start + c, start + count, clients):
            command = cmd.ReserveCapacity(
                HOT_POOL, SLOTS[n % len(SLOTS)], 1, f"key-{n:08x}", None, f"{n:08x}", 0
            )
            await shard.submit(command)

    await asyncio.gather(*(client(c) for c in range(clients)))


async def hot(reservations: int, warm: int, profile_it: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        shard = Shard(
            0,
            SqliteEventLog(Path(tmp) / "hot.sqlite3", synchronous="NORMAL"),
            ShardSettings(),
            _Clock(),
        )
        await shard.start()
        day = days_ahead(2)
        slots = tuple(ev.SlotSpec(s, f"{day}T08:00:00Z", f"{day}T09:00:00Z", 10**9) for s in SLOTS)
        await shard.submit(cmd.DefinePool(HOT_POOL, "van", "sg", day, None, slots))
        await _reserve(shard, warm, 0)
        pauses: list[float] = []  # CPU seconds of the event loop's thread per checkpoint
        checkpoint = shard._checkpoint

        async def timed_checkpoint(*args: object, **kwargs: object) -> None:
            started = time.thread_time()
            await checkpoint(*args, **kwargs)
            pauses.append(time.thread_time() - started)

        shard._checkpoint = timed_checkpoint  # type: ignore[method-assign]
        profile = cProfile.Profile()
        cpu = time.process_time()
        if profile_it:
            profile.enable()
        await _reserve(shard, reservations - warm, warm)
        profile.disable()
        cpu = time.process_time() - cpu
        shard._checkpoint = checkpoint  # type: ignore[method-assign]
        await shard.drain()
    measured = reservations - warm
    result = {"reservations": reservations, "measured": measured}
    if profile_it:
        stats = pstats.Stats(profile)
        in_checkpoint = sum(
            v[3] for k, v in stats.stats.items() if k[2] == "_checkpoint" and "shard" in k[0]
        )
        result["checkpoint_share_cprofile"] = round(in_checkpoint / stats.total_tt, 3)
    return {
        **result,
        # CPU of the writer's thread inside checkpoints / CPU of the process (both threads)
        "checkpoint_cpu_share": round(sum(pauses) / cpu, 3),
        "checkpoint_calls": len(pauses),
        "checkpoint_cpu_max_ms": round(max(pauses, default=0) * 1000, 1),
        "cpu_us_per_reservation": round(cpu / measured * 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--pools", type=int, default=20_000)
    h = sub.add_parser("hot")
    h.add_argument("--reservations", type=int, default=30_000)
    h.add_argument("--warm", type=int, default=20_000)
    h.add_argument("--profile", action="store_true", help="under cProfile (shares by function)")
    args = parser.parse_args(argv)
    if args.command == "memory":
        result = memory(args.pools)
    else:
        result = asyncio.run(hot(args.reservations, args.warm, args.profile))
    print(json.dumps(result), flush=True)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
