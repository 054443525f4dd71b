"""What one durable append costs on this machine: a one-row commit into a shard file with the
real schema, with `synchronous=FULL` and `NORMAL` (the difference is the fsync), and the same
appends through the worker's group committer (`capsvc/storage/group_commit.py`), several shard
files per hand-off, as a worker under uniform load makes them.

    .venv/bin/python -m load.bench.commit_cost [--commits 1500] [--files 32] [--per-handoff 11]

CPU is the committing thread's own (user + system, `time.thread_time`); the fsync's share is
kernel time in that thread.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path

from capsvc.domain import events as ev
from capsvc.storage import group_commit, sqlite_log
from capsvc.storage.log import StoredEvent

BODY = ('{"reservation_id":"p1~1.abcdef012345","slot_id":"0800","units":1,"order_ref":null,'
        '"idempotency_key":"k-123456","at_ms":1795000000000}')


def direct(folder: Path, synchronous: str, commits: int) -> tuple[float, float]:
    """(CPU us, wall us) per one-row commit, sqlite3 on this thread."""
    path = folder / f"direct-{synchronous}.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA locking_mode = EXCLUSIVE")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    for statement in sqlite_log._SCHEMA.split(";\n"):
        if statement.strip():
            db.execute(statement)
    db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', 1)")
    cpu, wall = time.thread_time(), time.perf_counter()
    for seq in range(1, commits + 1):
        db.execute(sqlite_log._INSERT, (seq, f"p{seq % 20}", seq, "CapacityReserved", 1, 1,
                                        1_795_000_000_000, None, BODY))
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    db.close()
    return 1e6 * cpu / commits, 1e6 * wall / commits


async def grouped(folder: Path, files: int, per_handoff: int, commits: int) -> dict[str, float]:
    """Appends of one event each, `per_handoff` files at a time, through one committer."""
    thread_cpu = [0.0]
    run_all = group_commit._run_all

    def measured(works):  # the writer thread's own CPU
        started = time.thread_time()
        try:
            return run_all(works)
        finally:
            thread_cpu[0] += time.thread_time() - started

    group_commit._run_all = measured
    committer = group_commit.GroupCommitter()
    logs = [sqlite_log.SqliteEventLog(folder / f"s{i}.sqlite3", committer=committer)
            for i in range(files)]
    heads = [await log.open(None) for log in logs]
    seqs = [0] * files

    def event(i: int) -> StoredEvent:
        seqs[i] += 1
        body = ev.CapacityReserved(f"p{i}~{seqs[i]:x}.abcdef012345", "a", 1, None,
                                   f"key-{seqs[i]}", 0)
        return StoredEvent(seqs[i], f"p{i}", seqs[i], heads[i].epoch, 0, None, body)

    rounds = max(1, commits // per_handoff)
    loop_cpu, wall = time.process_time(), time.perf_counter()
    for r in range(rounds):
        chosen = [(r * per_handoff + k) % files for k in range(per_handoff)]
        await asyncio.gather(*(logs[i].append([event(i)]) for i in chosen))
    loop_cpu, wall = time.process_time() - loop_cpu, time.perf_counter() - wall
    for log in logs:
        await log.close()
    committer.close()
    group_commit._run_all = run_all
    appends = rounds * per_handoff
    return {"appends": appends, "handoffs": committer.handoffs,
            "thread_cpu_us": 1e6 * thread_cpu[0] / appends,
            "process_cpu_us": 1e6 * loop_cpu / appends, "wall_us": 1e6 * wall / appends}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--commits", type=int, default=1500)
    parser.add_argument("--files", type=int, default=32)
    parser.add_argument("--per-handoff", type=int, default=11)
    parser.add_argument("--dir", type=Path, help="where the files go (default: a temp dir "
                        "under the current directory: the data disk, not tmpfs)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix=".commit-cost-", dir=args.dir or Path.cwd()) as tmp:
        folder = Path(tmp)
        for synchronous in ("FULL", "NORMAL"):
            cpu, wall = direct(folder, synchronous, args.commits)
            print(f"direct, synchronous={synchronous:<6} {cpu:6.0f} us CPU, {wall:6.0f} us wall"
                  " per one-row commit")
        result = asyncio.run(grouped(folder, args.files, args.per_handoff, args.commits))
        print(f"group committer, {args.per_handoff} of {args.files} files per hand-off: "
              f"{result['thread_cpu_us']:.0f} us writer-thread CPU, "
              f"{result['process_cpu_us']:.0f} us process CPU, {result['wall_us']:.0f} us wall "
              f"per append ({result['appends']} appends, {result['handoffs']} hand-offs)")


if __name__ == "__main__":
    main()
