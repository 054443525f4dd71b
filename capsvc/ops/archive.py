"""`capsvc archive --before DATE`: move past pools out of memory and out of the hot files.

Offline only (the service must be stopped; it holds the shard files exclusively). For every
pool dated before DATE (at most today, UTC: a pool of today or later is never archived), its
events and snapshot move from its shard file into `<data_dir>/archive/<YYYY-MM>.sqlite3`
(by the pool's month), in two steps that can be repeated safely:

1. copy them into the archive file (insert-or-replace) and commit;
2. delete them from the shard file, add their count to `meta.archived_events` (so that
   `capsvc verify` accepts the gaps in the sequence numbers they leave), commit; then VACUUM
   the shard file so that it really shrinks.

A crash between the two leaves the pool in both files; running the command again finishes it.
The next start recovers only the remaining pools: archived ones answer 404 `pool_not_found`.

One exception: a pool that holds its shard's newest event stays (it is reported as kept).
The service numbers the next event after the highest seq in the file, so deleting the newest
one would make the next event reuse its number. It goes at the next archive run after the
shard has written anything else.

`capsvc archive show POOL_ID` replays an archived pool and prints it with its whole history.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from capsvc.config import Config
from capsvc.domain.evolve import evolve
from capsvc.domain.pool import Pool
from capsvc.domain.views import pool_view
from capsvc.ops.files import OpsError, offline, shard_files
from capsvc.ops.verify import retention_of
from capsvc.paths import shards_dir
from capsvc.storage.codec import decode_event, encode_event

_ARCHIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS pools (
    pool_id TEXT PRIMARY KEY, shard INTEGER NOT NULL, kind TEXT, region TEXT, date TEXT,
    events INTEGER NOT NULL, archived_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    pool_id TEXT NOT NULL, pool_version INTEGER NOT NULL, shard INTEGER NOT NULL,
    seq INTEGER NOT NULL, type TEXT NOT NULL, schema INTEGER NOT NULL, epoch INTEGER NOT NULL,
    at_ms INTEGER NOT NULL, actor TEXT, body TEXT NOT NULL,
    PRIMARY KEY (pool_id, pool_version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    pool_id TEXT PRIMARY KEY, shard INTEGER NOT NULL, seq INTEGER NOT NULL,
    pool_version INTEGER NOT NULL, schema INTEGER NOT NULL, body TEXT NOT NULL
) WITHOUT ROWID;
"""
_EVENT_COLUMNS = "seq, pool_id, pool_version, type, schema, epoch, at_ms, actor, body"


def archive_dir(config: Config) -> Path:
    return config.data_dir / "archive"


def archive(config: Config, before: dt.date, dry_run: bool = False) -> dict[str, Any]:
    today = dt.datetime.now(dt.UTC).date()
    if before > today:
        raise OpsError(f"--before {before} is in the future: pools of today and later stay")
    cutoff = before.isoformat()
    moved: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    with offline(config):
        for shard_id, path in shard_files(shards_dir(config)).items():
            db = _open_hot(path)
            try:
                _archive_shard(config, db, shard_id, cutoff, dry_run, moved, kept)
            finally:
                db.close()
    return {"before": cutoff, "dry_run": dry_run, "archived": moved, "kept": kept}


def _open_hot(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), isolation_level=None, timeout=0)
    db.execute("PRAGMA locking_mode = EXCLUSIVE")  # as the service: no -shm, nobody else
    db.execute("PRAGMA synchronous = FULL")
    return db


def _past_pools(db: sqlite3.Connection, cutoff: str) -> dict[str, Any]:
    """pool id -> its PoolDefined event, for the pools dated before `cutoff`."""
    found = {}
    rows = db.execute(
        "SELECT pool_id, type, schema, body FROM events WHERE type = 'PoolDefined'"
    ).fetchall()
    for pool_id, type_name, schema, body in rows:
        event = decode_event(type_name, schema, body)
        if event.date < cutoff:
            found[pool_id] = event
    return found


def _archive_shard(config, db, shard_id, cutoff, dry_run, moved, kept) -> None:
    pools = _past_pools(db, cutoff)
    if not pools:
        return
    newest = db.execute("SELECT pool_id FROM events ORDER BY seq DESC LIMIT 1").fetchone()
    if newest is not None and newest[0] in pools:
        kept.append({"pool_id": newest[0], "shard": shard_id, "why": "holds the newest event"})
        del pools[newest[0]]
    by_month: dict[str, list[str]] = {}
    for pool_id, defined in pools.items():
        by_month.setdefault(defined.date[:7], []).append(pool_id)
    total = 0
    for month, pool_ids in sorted(by_month.items()):
        target = archive_dir(config) / f"{month}.sqlite3"
        for pool_id in pool_ids:
            count = db.execute("SELECT count(*) FROM events WHERE pool_id = ?", (pool_id,))
            events = count.fetchone()[0]
            moved.append(
                {"pool_id": pool_id, "shard": shard_id, "events": events, "file": target.name}
            )
            total += events
        if not dry_run:
            _copy_out(db, shard_id, pool_ids, pools, target)
    if not dry_run and total:
        _delete(db, [p for ids in by_month.values() for p in ids], total)


def _copy_out(db, shard_id: int, pool_ids: list[str], defined: dict, target: Path) -> None:
    """Step 1: the pools' events and snapshots into the archive file, committed."""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    arc = sqlite3.connect(str(target), isolation_level=None)
    try:
        arc.execute("PRAGMA synchronous = FULL")
        arc.executescript(_ARCHIVE_SCHEMA)
        arc.execute("BEGIN IMMEDIATE")
        now_ms = time.time_ns() // 1_000_000
        for pool_id in pool_ids:
            rows = db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE pool_id = ? ORDER BY seq", (pool_id,)
            ).fetchall()
            arc.executemany(
                "INSERT OR REPLACE INTO events (seq, pool_id, pool_version, type, schema, epoch,"
                " at_ms, actor, body, shard) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(*row, shard_id) for row in rows],
            )
            snap = db.execute(
                "SELECT seq, pool_version, schema, body FROM snapshots WHERE pool_id = ?",
                (pool_id,),
            ).fetchone()
            if snap is not None:
                arc.execute(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?, ?)",
                    (pool_id, shard_id, *snap),
                )
            d = defined[pool_id]
            arc.execute(
                "INSERT OR REPLACE INTO pools VALUES (?, ?, ?, ?, ?, ?, ?)",
                (pool_id, shard_id, d.kind, d.region, d.date, len(rows), now_ms),
            )
        arc.execute("COMMIT")
    finally:
        arc.close()


def _delete(db: sqlite3.Connection, pool_ids: list[str], events: int) -> None:
    """Step 2: out of the hot file, counted in meta.archived_events; then shrink the file."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for pool_id in pool_ids:
            db.execute("DELETE FROM events WHERE pool_id = ?", (pool_id,))
            db.execute("DELETE FROM snapshots WHERE pool_id = ?", (pool_id,))
        db.execute(
            "INSERT OR REPLACE INTO meta VALUES ('archived_events', "
            "coalesce((SELECT value FROM meta WHERE key = 'archived_events'), 0) + ?)",
            (events,),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("VACUUM")


def show(config: Config, pool_id: str) -> dict[str, Any]:
    """An archived pool as it ended, and its history (read-only; the service may run)."""
    for path in sorted(archive_dir(config).glob("*.sqlite3")):
        arc = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = arc.execute(
                "SELECT shard, archived_at_ms FROM pools WHERE pool_id = ?", (pool_id,)
            ).fetchone()
            if row is None:
                continue
            events = arc.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE pool_id = ? ORDER BY pool_version",
                (pool_id,),
            ).fetchall()
        finally:
            arc.close()
        return _render(config, pool_id, path, row, events)
    raise OpsError(f"pool {pool_id} is not in {archive_dir(config)}")


def _render(config, pool_id: str, path: Path, row, events) -> dict[str, Any]:
    retention = retention_of(config)
    pool: Pool | None = None
    history = []
    for seq, _pool, version, type_name, schema, epoch, at_ms, actor, body in events:
        event = decode_event(type_name, schema, body)
        pool = evolve(pool, event, retention)
        history.append(
            {
                "seq": seq,
                "version": version,
                "type": type_name,
                "schema": schema,
                "epoch": epoch,
                "at_ms": at_ms,
                "actor": actor,
                "data": _fields(event),
            }
        )
    return {
        "pool_id": pool_id,
        "archive_file": str(path),
        "shard": row[0],
        "archived_at_ms": row[1],
        "pool": pool_view(pool) if pool is not None else None,
        "events": history,
    }


def _fields(event: Any) -> dict[str, Any]:
    return json.loads(encode_event(event)[2])
