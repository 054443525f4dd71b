"""Replay speed and time to ready of one shard holding 1M events, with and without snapshots.

Uses the library directly. `build` writes the shard file by appending large batches of
`StoredEvent` records through `SqliteEventLog.append` (the records the shard writer makes):
1,000 pools of 12 slots, then reservations and releases at 5 : 1 (each reservation with an
Idempotency-Key, as customers send them). The file with snapshots is the same log with a
checkpoint of every pool 500 events before its end, as a running shard would have (it
checkpoints every 1,000 events).

Built files are kept in the work directory and reused while their stamp (event count, file
format, schema versions) matches. `ready` opens a copy of a file in a fresh process and times
`Shard.start()` (open, load the snapshots, replay the events after the checkpoint, check every
invariant; a schema 2 snapshot's reservations are decoded and checked on first use, and `ready`
then times that for every pool too); the page cache is warm, as after a worker restart.

    python -m load.bench.recovery build --events 1000000 --dir /tmp/x
    python -m load.bench.recovery ready --file /tmp/x/copy.sqlite3
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from capsvc.domain import events as ev
from capsvc.domain.evolve import evolve
from capsvc.domain.ids import make_reservation_id
from capsvc.domain.pool import Pool
from capsvc.shard.shard import Shard, ShardSettings
from capsvc.storage.codec import EVENT_SCHEMA, SNAPSHOT_SCHEMA, encode_snapshot
from capsvc.storage.log import StoredEvent, StoredSnapshot
from capsvc.storage.sqlite_log import FILE_FORMAT, SqliteEventLog
from load.bench.procstat import rss_bytes
from load.fixtures import days_ahead
from load.service import REPO

POOLS = 1000
TAIL = 500  # events after the checkpoint in the file with snapshots
BATCH = 50_000
SLOTS = tuple(f"{h:02d}00" for h in range(8, 20))


def generate(total: int, seed: int = 7) -> Iterator[tuple[str, ev.Event]]:
    """(pool id, event): every pool defined, then reserve : release = 5 : 1."""
    rng = random.Random(seed)
    ids = [f"shard-pool-{i:05d}" for i in range(POOLS)]
    for pool_id in ids:
        day = days_ahead(2)
        slots = tuple(ev.SlotSpec(s, f"{day}T{8 + i:02d}:00:00+08:00",
                                  f"{day}T{9 + i:02d}:00:00+08:00", 1_000_000)
                      for i, s in enumerate(SLOTS))
        yield pool_id, ev.PoolDefined(pool_id, "logistics", "sg-north", day, None,
                                      slots)
    made = dict.fromkeys(ids, 0)
    active: dict[str, list[str]] = {p: [] for p in ids}
    at_ms = int(time.time() * 1000)
    for _ in range(total - POOLS):
        pool_id = rng.choice(ids)
        at_ms += 1
        if active[pool_id] and rng.random() < 1 / 6:
            rid = active[pool_id].pop(rng.randrange(len(active[pool_id])))
            yield pool_id, ev.ReservationReleased(rid, at_ms)
            continue
        made[pool_id] += 1
        rid = make_reservation_id(pool_id, made[pool_id], f"{rng.getrandbits(48):012x}")
        active[pool_id].append(rid)
        key = f"{rng.getrandbits(128):032x}"
        yield pool_id, ev.CapacityReserved(rid, rng.choice(SLOTS), 1, None, key, at_ms)


class _Appender:
    """Numbers events (seq, per-pool version) and appends them in big batches."""

    def __init__(self, log: SqliteEventLog) -> None:
        self.log, self.seq = log, 0
        self.versions: dict[str, int] = {}
        self.pool_seqs: dict[str, int] = {}

    async def append(self, items: list[tuple[str, ev.Event]]) -> None:
        records = []
        for pool_id, event in items:
            self.seq += 1
            self.versions[pool_id] = self.versions.get(pool_id, 0) + 1
            self.pool_seqs[pool_id] = self.seq
            records.append(StoredEvent(self.seq, pool_id, self.versions[pool_id],
                                       self.log.epoch, 0, None, event))
        await self.log.append(records)


async def build(events: int, directory: Path) -> dict:
    """plain.sqlite3: `events` events, no snapshot; snap.sqlite3: the same events with a
    checkpoint of every pool `TAIL` events before the end."""
    assert events > POOLS + TAIL
    started = time.perf_counter()
    plain, snap = directory / "plain.sqlite3", directory / "snap.sqlite3"
    for path in (plain, snap):  # files from an older stamp: start from nothing
        for leftover in (path, *(path.with_name(path.name + x) for x in ("-wal", "-shm"))):
            leftover.unlink(missing_ok=True)
    retention = ShardSettings().retention
    stream = generate(events)
    pools: dict[str, Pool] = {}
    log = SqliteEventLog(plain)
    await log.open(None)
    appender = _Appender(log)
    batch: list[tuple[str, ev.Event]] = []
    for pool_id, event in itertools.islice(stream, events - TAIL):
        pools[pool_id] = evolve(pools.get(pool_id), event, retention)  # for the snapshots
        batch.append((pool_id, event))
        if len(batch) == BATCH:
            await appender.append(batch)
            batch = []
    await appender.append(batch)
    await log.close()
    shutil.copyfile(plain, snap)
    await _checkpoint(snap, pools, appender)
    tail = list(stream)
    for path in (plain, snap):
        log = SqliteEventLog(path)
        await log.open(None)
        numbering = _Appender(log)
        numbering.seq, numbering.versions = appender.seq, dict(appender.versions)
        await numbering.append(tail)
        await log.close()
    return {"events": events, "build_s": time.perf_counter() - started,
            "file_mb": plain.stat().st_size / 2**20}


async def _checkpoint(path: Path, pools: dict[str, Pool], appender: _Appender) -> None:
    """Store every pool's snapshot and move the checkpoint to the log's end, as
    `Shard._checkpoint` does."""
    log = SqliteEventLog(path)
    await log.open(None)
    snapshots = [StoredSnapshot(p.pool_id, appender.pool_seqs[p.pool_id], p.version,
                                SNAPSHOT_SCHEMA, encode_snapshot(p)) for p in pools.values()]
    await log.save_checkpoint(snapshots, appender.seq)
    await log.close()


async def ready(path: Path) -> dict:
    """Time to ready, then (reported apart) the time to decode the reservations that schema 2
    snapshots leave undecoded until first use, as if every pool were used at once."""
    shard = Shard(0, SqliteEventLog(path), ShardSettings())
    started = time.perf_counter()
    await shard.start()
    ready_s = time.perf_counter() - started
    rss_ready = rss_bytes(os.getpid()) / 2**20
    deferred = [pool for pool in shard.pools.values() if pool.deferred is not None]
    started = time.perf_counter()
    for pool in deferred:
        pool.reservations  # noqa: B018 -- decodes and checks them
    return {"ready_s": ready_s, "replayed": shard.replayed_events,
            "replay_s": shard.replay_seconds, "pools": len(shard.pools),
            "events": shard.event_count, "rss_mb": rss_ready,
            "deferred_pools": len(deferred), "decode_all_s": time.perf_counter() - started,
            "rss_all_mb": rss_bytes(os.getpid()) / 2**20}


def run_subcommand(*args: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "load.bench.recovery", *args], cwd=REPO,
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _stamp(events: int) -> dict:
    """What a built file depends on: reuse it only while these are unchanged."""
    return {"events": events, "file_format": FILE_FORMAT, "schemas": EVENT_SCHEMA,
            "snapshot_schema": SNAPSHOT_SCHEMA, "pools": POOLS, "tail": TAIL}


def measure(events: int, rounds: dict[str, int], workdir: Path) -> dict:
    """Build the files into `workdir` (or reuse them from an earlier run), then time
    `rounds[kind]` recoveries, each of a fresh copy in a fresh process."""
    workdir.mkdir(parents=True, exist_ok=True)
    stamp_file = workdir / "built.json"
    stamp = _stamp(events)
    if stamp_file.exists() and json.loads(stamp_file.read_text()).get("stamp") == stamp:
        built = {**json.loads(stamp_file.read_text())["built"], "reused": True}
    else:
        built = run_subcommand("build", "--events", str(events), "--dir", str(workdir))
        stamp_file.write_text(json.dumps({"stamp": stamp, "built": built}))
    runs: dict[str, list[dict]] = {"plain": [], "snap": []}
    for round_index in range(max(rounds.values())):
        for kind in runs:
            if round_index >= rounds[kind]:
                continue
            copy = workdir / f"{kind}-copy.sqlite3"
            shutil.copyfile(workdir / f"{kind}.sqlite3", copy)
            runs[kind].append(run_subcommand("ready", "--file", str(copy)))
            for leftover in (copy, copy.with_name(copy.name + "-wal")):
                leftover.unlink(missing_ok=True)
    return {"built": built, "runs": runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build")
    b.add_argument("--events", type=int, default=1_000_000)
    b.add_argument("--dir", type=Path, required=True)
    r = sub.add_parser("ready")
    r.add_argument("--file", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            result = asyncio.run(build(args.events, args.dir))
        else:
            result = asyncio.run(ready(args.file))
    except Exception:  # an open log's thread would keep the process alive: exit, loudly
        traceback.print_exc()
        os._exit(1)
    print(json.dumps(result), flush=True)
    os._exit(0)  # skip the drain: the copy is thrown away


if __name__ == "__main__":
    sys.exit(main())
