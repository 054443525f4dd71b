"""`capsvc verify`: replay every shard from scratch and check everything, changing nothing.

Per shard file (each read through a private copy, so the original is never written to):

- SQLite's `integrity_check`, and the file format;
- sequence numbers dense from 1 (gaps only as many as `meta.archived_events` says the
  archive tool moved out);
- epochs never decrease in seq order, and none is newer than the file's epoch;
- every event decodes (old schema versions through the upcasters) and belongs to this shard;
- each pool's versions follow on one by one, and replaying them from nothing with `evolve`
  keeps every invariant (a violation is an assertion in `evolve`: reported, not raised);
- after the replay, the full reservation check of every pool;
- every snapshot equals the replayed state at its version (a snapshot that differs only in
  remembered idempotency keys is a warning: the retention settings may have changed since).

A backup (`--dir`) must first pass what `capsvc restore` checks (`capsvc.ops.manifest`: its
manifest, completeness, shard count, every listed file there with its checksum): a backup
that restore would refuse is never "all good".

It needs the data directory to itself (the running service holds the files exclusively): it
refuses while a running instance holds the lock. To check a running service, back it up and
verify the backup: `capsvc backup DIR && capsvc verify --dir DIR`.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from capsvc.config import Config
from capsvc.domain.evolve import evolve
from capsvc.domain.invariants import check_reservations
from capsvc.domain.pool import KeyRetention, Pool
from capsvc.domain.wording import counted
from capsvc.ops.files import offline, private_copy, read_head, shard_files
from capsvc.ops.manifest import check_backup, load_manifest
from capsvc.paths import shards_dir
from capsvc.sharding import shard_for_pool
from capsvc.storage.codec import CodecError, decode_event, decode_snapshot, snapshot_state
from capsvc.storage.sqlite_log import FILE_FORMAT

PROBLEMS_PER_SHARD_MAX = 100  # a badly damaged file would otherwise print millions of lines
_SELECT = (
    "SELECT seq, pool_id, pool_version, type, schema, epoch, at_ms, actor, body "
    "FROM events ORDER BY seq"
)


@dataclass
class ShardReport:
    shard: int
    file: str
    epoch: int = 0
    last_seq: int = 0
    events: int = 0
    pools: int = 0
    snapshots: int = 0
    schemas: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def problem(self, text: str) -> None:
        if len(self.problems) < PROBLEMS_PER_SHARD_MAX:
            self.problems.append(text)
        elif len(self.problems) == PROBLEMS_PER_SHARD_MAX:
            self.problems.append("... more problems not shown")

    def as_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "file": self.file,
            "epoch": self.epoch,
            "last_seq": self.last_seq,
            "events": self.events,
            "pools": self.pools,
            "snapshots": self.snapshots,
            "schemas": {f"{t}@v{v}": n for (t, v), n in sorted(self.schemas.items())},
            "problems": self.problems,
            "warnings": self.warnings,
        }


def retention_of(config: Config) -> KeyRetention:
    limits = config.limits
    return KeyRetention(limits.idempotency_retention_s * 1000, limits.idempotency_keys_max)


def verify(config: Config, directory: Path | None = None) -> dict[str, Any]:
    """Verify the data directory (service stopped) or a backup directory."""
    refused: list[str] = []
    if directory is None:
        with offline(config):
            reports = _verify_dir(config, shards_dir(config))
        source = str(shards_dir(config))
    else:
        directory = directory.resolve()
        # What restore would refuse is a problem too: "all good" must mean restorable.
        refused = check_backup(config, directory, load_manifest(directory))
        reports = _verify_dir(config, directory)
        source = str(directory)
    ok = not refused and all(not r.problems for r in reports)
    return {
        "ok": ok,
        "source": source,
        "backup_problems": refused,
        "shards": [r.as_dict() for r in reports],
    }


def _verify_dir(config: Config, directory: Path) -> list[ShardReport]:
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    reports = []
    for shard_id, path in shard_files(directory).items():
        report = ShardReport(shard_id, path.name)
        if shard_id >= config.service.shard_count:
            report.problem(f"shard {shard_id} is outside shard_count {config.service.shard_count}")
        verify_file(path, report, config.service.shard_count, retention_of(config))
        reports.append(report)
    return reports


def verify_file(path: Path, report: ShardReport, shard_count: int, retention: KeyRetention):
    try:
        with private_copy(path) as db:
            if _check_file(db, report):
                _replay(db, report, shard_count, retention)
    except sqlite3.DatabaseError as e:
        report.problem(f"cannot read the file: {e}")


def _check_file(db: sqlite3.Connection, report: ShardReport) -> bool:
    """The file-level checks; False when the file is too damaged to replay."""
    result = [r[0] for r in db.execute("PRAGMA integrity_check").fetchall()]
    if result != ["ok"]:
        for line in result:
            report.problem(f"integrity_check: {line}")
        return False
    head = read_head(db)
    report.epoch, report.last_seq, report.events = head.epoch, head.last_seq, head.events
    if head.fmt != FILE_FORMAT:
        report.problem(f"file format {head.fmt!r}, expected {FILE_FORMAT}")
    if head.checkpoint_seq > head.last_seq:
        report.problem(
            f"checkpoint_seq {head.checkpoint_seq} is after the last seq {head.last_seq}"
        )
    return True


def _replay(
    db: sqlite3.Connection, report: ShardReport, shard_count: int, retention: KeyRetention
) -> None:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    archived = int(meta.get("archived_events", 0))
    snapshots = {
        row[0]: row[1:]
        for row in db.execute("SELECT pool_id, seq, pool_version, schema, body FROM snapshots")
    }
    report.snapshots = len(snapshots)
    pools: dict[str, Pool] = {}
    broken: set[str] = set()
    checked: set[str] = set()
    expected_seq, last_epoch, gaps = 1, 0, 0
    cursor = db.execute(_SELECT)
    while rows := cursor.fetchmany(5000):
        for seq, pool_id, version, type_name, schema, epoch, _at, _actor, body in rows:
            report.schemas[(type_name, schema)] += 1
            if seq != expected_seq:
                gaps += seq - expected_seq
            expected_seq = seq + 1
            if epoch < last_epoch:
                report.problem(f"seq {seq}: epoch {epoch} is older than the previous {last_epoch}")
            if epoch > report.epoch:
                report.problem(f"seq {seq}: epoch {epoch} is newer than the file's {report.epoch}")
            last_epoch = max(last_epoch, epoch)
            if shard_for_pool(pool_id, shard_count) != report.shard:
                report.problem(f"seq {seq}: pool {pool_id} does not belong to this shard")
            if pool_id in broken:
                continue
            pool = pools.get(pool_id)
            if version != (pool.version if pool else 0) + 1:
                report.problem(f"seq {seq}: pool {pool_id} version {version} does not follow on")
                broken.add(pool_id)
                continue
            try:
                event = decode_event(type_name, schema, body)
                pools[pool_id] = evolve(pool, event, retention)
            except CodecError as e:
                report.problem(f"seq {seq}: {e}")
                broken.add(pool_id)
                continue
            except AssertionError as e:
                report.problem(f"seq {seq}: replaying {type_name} breaks an invariant ({e})")
                broken.add(pool_id)
                continue
            snap = snapshots.get(pool_id)
            if snap is not None and snap[1] == version:
                _compare_snapshot(report, pools[pool_id], seq, snap, retention)
                checked.add(pool_id)
    if gaps > archived:
        report.problem(f"{gaps} sequence numbers are missing ({archived} were archived)")
    for pool_id, pool in pools.items():
        if pool_id in broken:
            continue
        try:
            check_reservations(pool)
        except AssertionError as e:
            report.problem(f"pool {pool_id}: reservations do not add up ({e})")
    for pool_id in sorted(set(snapshots) - checked - broken):
        report.problem(
            f"snapshot of {pool_id} (version {snapshots[pool_id][1]}) matches no replayed version"
        )
    report.pools = len(pools)


def _compare_snapshot(
    report: ShardReport, pool: Pool, seq: int, snap: tuple, retention: KeyRetention
) -> None:
    snap_seq, version, schema, body = snap
    try:
        stored = snapshot_state(decode_snapshot(schema, body, retention))
    except (CodecError, AssertionError) as e:  # undecodable, or its reservations disagree
        report.problem(f"snapshot of {pool.pool_id}: {e}")
        return
    replayed = snapshot_state(pool)
    if snap_seq != seq:
        report.problem(f"snapshot of {pool.pool_id} says seq {snap_seq}, its version is at {seq}")
    if stored == replayed:
        return
    if {**stored, "keys": None} == {**replayed, "keys": None}:
        report.warnings.append(
            f"snapshot of {pool.pool_id} remembers other idempotency keys than the replay "
            "(retention settings changed?)"
        )
    else:
        report.problem(f"snapshot of {pool.pool_id} at version {version} differs from the replay")


def render_text(result: dict[str, Any]) -> str:
    lines = [f"verify {result['source']}"]
    for shard in result["shards"]:
        state = "ok" if not shard["problems"] else counted(len(shard["problems"]), "problem").upper()
        lines.append(
            f"  shard {shard['shard']:3d}  {state:12s} epoch {shard['epoch']}, "
            f"{counted(shard['events'], 'event')}, {counted(shard['pools'], 'pool')}, "
            f"{counted(shard['snapshots'], 'snapshot')}"
        )
        lines += [f"      problem: {p}" for p in shard["problems"]]
        lines += [f"      warning: {w}" for w in shard["warnings"]]
    lines += [f"  backup problem: {p}" for p in result["backup_problems"]]
    total = len(result["backup_problems"]) + sum(len(s["problems"]) for s in result["shards"])
    lines.append("all good" if result["ok"] else counted(total, "problem"))
    return "\n".join(lines)
