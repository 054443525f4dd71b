"""The SQLite event log: one WAL-mode file per shard, held exclusively by its owner.

`locking_mode=EXCLUSIVE` is set before WAL is first used, so SQLite keeps the WAL index in
process memory instead of a shared-memory file: that is what makes WAL safe on shared storage,
and it also means a second process cannot open the file while we hold it.

Fencing: the file's `meta.epoch` is the owner's epoch. A trigger refuses any event stamped with
another epoch, inside the same transaction as the append, so a stale owner can never append.

Every sqlite3 error is translated into the project's errors in one place (`_translate`).

Threads: appends go through the worker's `GroupCommitter` (one hand-off to one writer thread
for every shard file with events ready in a loop turn); everything else (open, recovery reads,
snapshots, backups) runs on the file's own thread, so a shard that recovers, snapshots or
waits for a locked file never holds up another shard. One asyncio lock per file keeps its
operations one at a time, and a read out of any open transaction. The standard `sqlite3`
module is used directly rather than aiosqlite: an aiosqlite connection owns its thread, so
64 shard files were 64 hand-offs where one does.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from capsvc.errors import (
    CapsvcError,
    Fenced,
    FileLocked,
    ShardCorrupt,
    StorageFull,
    StorageUnavailable,
)
from capsvc.storage.codec import CodecError, decode_event, encode_event
from capsvc.storage.group_commit import GroupCommitter
from capsvc.storage.log import EventLog, LogHead, StoredEvent, StoredSnapshot

log = logging.getLogger(__name__)
T = TypeVar("T")

FILE_FORMAT = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    pool_id TEXT NOT NULL,
    pool_version INTEGER NOT NULL,
    type TEXT NOT NULL,
    schema INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    actor TEXT,
    body TEXT NOT NULL,
    UNIQUE (pool_id, pool_version)
);
CREATE TABLE IF NOT EXISTS snapshots (
    pool_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    pool_version INTEGER NOT NULL,
    schema INTEGER NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS events_dense BEFORE INSERT ON events
WHEN NEW.seq IS NOT (SELECT coalesce(max(seq), 0) + 1 FROM events)
BEGIN SELECT RAISE(ABORT, 'capsvc fenced: seq does not follow on'); END;
CREATE TRIGGER IF NOT EXISTS events_fenced BEFORE INSERT ON events
WHEN NEW.epoch IS NOT (SELECT value FROM meta WHERE key = 'epoch')
BEGIN SELECT RAISE(ABORT, 'capsvc fenced: stale epoch'); END;
"""
_INSERT = (
    "INSERT INTO events (seq, pool_id, pool_version, type, schema, epoch, at_ms, actor, body)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ONE_STATEMENT_ROWS_MAX = 1000  # 9 parameters a row; SQLite allows 32766 per statement


@functools.lru_cache(maxsize=64)
def _insert_sql(rows: int) -> str:
    return _INSERT.split(" VALUES ")[0] + " VALUES " + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * rows)


_SELECT = "SELECT seq, pool_id, pool_version, type, schema, epoch, at_ms, actor, body FROM events"


def _translate(e: sqlite3.Error, path: Path) -> CapsvcError:
    name = getattr(e, "sqlite_errorname", "") or ""
    text = str(e)
    if "capsvc fenced" in text:
        return Fenced(f"{path.name}: a newer owner holds this shard")
    if name.startswith("SQLITE_FULL"):
        return StorageFull(f"{path.name}: disk full")
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return ShardCorrupt(f"{path.name}: file is damaged ({text})")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return FileLocked(f"{path.name}: locked by another process")
    if name.startswith("SQLITE_CONSTRAINT"):
        # Dense seqs and unique pool versions are ours to keep; a clash means a second writer.
        return Fenced(f"{path.name}: append conflicts with stored events ({text})")
    return StorageUnavailable(f"{path.name}: {name or type(e).__name__}: {text}")


def _row_to_event(row: tuple) -> StoredEvent:
    seq, pool_id, version, type_name, schema, epoch, at_ms, actor, body = row
    return StoredEvent(
        seq, pool_id, version, epoch, at_ms, actor, decode_event(type_name, schema, body)
    )


class SqliteEventLog(EventLog):
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        busy_timeout_ms: int = 5000,
        committer: GroupCommitter | None = None,
        fencing: bool = True,
    ):
        assert synchronous in ("FULL", "NORMAL", "EXTRA"), synchronous
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        # False only in a deliberately broken test build (`capsvc.testing.faults`): no
        # `events_fenced` trigger, and a stale epoch is accepted
        self._fencing = fencing
        self._own_committer = committer is None  # tools and tests: a writer thread of its own
        self._committer = committer
        self._db: sqlite3.Connection | None = None
        # Everything but appends runs on this file's own thread, one per open: a shard that
        # recovers, snapshots or waits for a locked file holds up no other shard (the loop's
        # default executor has a handful of threads for the whole worker).
        self._executor = _new_thread(path)
        self._closed = False
        self._lock = asyncio.Lock()
        self.epoch = 0

    def _open_db(self) -> sqlite3.Connection:
        """The connection; a reader that comes after a close (a probe racing a handoff) is
        told the file is not available here, rather than failing with a bug."""
        if self._db is None:
            raise StorageUnavailable(f"{self.path.name}: not open here (closed or handed off)")
        return self._db

    def _translated(self, error: BaseException) -> BaseException:
        if isinstance(error, sqlite3.Error):
            return _translate(error, self.path)
        if isinstance(error, CodecError):
            return ShardCorrupt(f"{self.path.name}: {error}")
        return error

    async def _in_thread(self, future: asyncio.Future[T]) -> T:
        """Await work running on a thread. If our caller is cancelled we still wait for the
        thread to let go of the connection (the lock stays held), then re-raise."""
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if not future.done():
                await asyncio.wait([future])
            raise
        except (sqlite3.Error, CodecError) as e:
            raise self._translated(e) from e

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """`work(connection)` on the file's thread, one operation at a time per file."""
        db = self._open_db()
        async with self._lock:
            loop = asyncio.get_running_loop()
            return await self._in_thread(loop.run_in_executor(self._executor, work, db))

    async def open(self, epoch: int | None) -> LogHead:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self._closed:  # reopened after a close: a new thread
            self._executor, self._closed = _new_thread(self.path), False
        loop = asyncio.get_running_loop()
        db, head = await self._in_thread(loop.run_in_executor(self._executor, self._prepare, epoch))
        if self._committer is None:
            self._committer = GroupCommitter(f"capsvc-commit-{self.path.stem}")
        self._db = db
        self.epoch = head.epoch
        return head

    def _prepare(self, epoch: int | None) -> tuple[sqlite3.Connection, LogHead]:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch.
        # check_same_thread=False: the connection moves between the writer thread and the
        # executor's, never used by two at once (the log's lock).
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        try:
            return db, self._prepare_on(db, epoch)
        except BaseException:
            db.close()
            raise

    def _prepare_on(self, db: sqlite3.Connection, epoch: int | None) -> LogHead:
        db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL is first used
        row = db.execute("PRAGMA journal_mode = WAL").fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise StorageUnavailable(f"{self.path.name}: cannot switch to WAL mode ({row})")
        db.execute(f"PRAGMA synchronous = {self._synchronous}")
        db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock and keeps it
        try:
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    db.execute(statement)
            if not self._fencing:
                db.execute("DROP TRIGGER events_fenced")
            stored = _meta(db, "epoch", 0)
            if epoch is None:
                epoch = stored + 1
            elif epoch <= stored and self._fencing:
                raise Fenced(f"{self.path.name}: epoch {epoch} is not newer than {stored}")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FILE_FORMAT,))
            row = db.execute("SELECT max(seq), count(*) FROM events").fetchone()
            checkpoint = _meta(db, "checkpoint_seq", 0)
            db.execute("COMMIT")
        except BaseException:
            _rollback_quietly(db)
            raise
        return LogHead(epoch, last_seq=row[0] or 0, event_count=row[1], checkpoint_seq=checkpoint)

    async def append(self, events: list[StoredEvent]) -> None:
        rows = []
        for e in events:
            type_name, schema, body = encode_event(e.event)
            rows.append(
                (
                    e.seq,
                    e.pool_id,
                    e.pool_version,
                    type_name,
                    schema,
                    e.epoch,
                    e.at_ms,
                    e.actor,
                    body,
                )
            )
        db = self._db
        assert db is not None and self._committer is not None, "log is not open"
        if len(rows) <= _ONE_STATEMENT_ROWS_MAX:
            # One multi-row INSERT in autocommit mode is one atomic transaction.
            sql, flat = _insert_sql(len(rows)), [value for row in rows for value in row]

            def work() -> None:
                db.execute(sql, flat)

        else:

            def work() -> None:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(_INSERT, rows)
                    db.execute("COMMIT")
                except BaseException:
                    _rollback_quietly(db)
                    raise

        async with self._lock:
            await self._in_thread(self._committer.commit(work))

    async def read_from(
        self, after_seq: int, batch: int = 5000
    ) -> AsyncIterator[list[StoredEvent]]:
        async for rows in self._rows_from(_SELECT, after_seq, batch):
            try:
                yield [_row_to_event(r) for r in rows]
            except CodecError as e:
                raise ShardCorrupt(f"{self.path.name}: {e}") from e

    async def read_encoded_from(
        self, after_seq: int, batch: int = 5000
    ) -> AsyncIterator[list[tuple[int, str, int, str, int, str]]]:
        select = "SELECT seq, pool_id, pool_version, type, schema, body FROM events"
        async for rows in self._rows_from(select, after_seq, batch):
            yield rows

    async def _rows_from(self, select: str, after_seq: int, batch: int) -> AsyncIterator[list]:
        db = self._open_db()
        loop = asyncio.get_running_loop()
        async with self._lock:
            cursor = await self._in_thread(
                loop.run_in_executor(
                    self._executor, db.execute, f"{select} WHERE seq > ? ORDER BY seq", (after_seq,)
                )
            )
            # The next batch is fetched (on a thread) while the caller folds this one in.
            ahead = loop.run_in_executor(self._executor, cursor.fetchmany, batch)
            try:
                while rows := await self._in_thread(ahead):
                    ahead = loop.run_in_executor(self._executor, cursor.fetchmany, batch)
                    yield rows
            finally:
                if not ahead.done():
                    await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()  # retrieved: the caller's own error is what matters
                cursor.close()

    async def pool_events(self, pool_id: str, after_version: int, limit: int) -> list[StoredEvent]:
        def work(db: sqlite3.Connection) -> list[StoredEvent]:
            rows = db.execute(
                f"{_SELECT} WHERE pool_id = ? AND pool_version > ? ORDER BY pool_version LIMIT ?",
                (pool_id, after_version, limit),
            ).fetchall()
            return [_row_to_event(r) for r in rows]

        return await self._run(work)

    async def save_checkpoint(self, snapshots: list[StoredSnapshot], checkpoint_seq: int) -> None:
        rows = [(s.pool_id, s.seq, s.pool_version, s.schema, s.body) for s in snapshots]

        def work(db: sqlite3.Connection) -> None:
            db.execute("BEGIN IMMEDIATE")
            try:
                db.executemany("INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)", rows)
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('checkpoint_seq', ?)", (checkpoint_seq,)
                )
                db.execute("COMMIT")
            except BaseException:
                _rollback_quietly(db)
                raise

        await self._run(work)

    async def last_seq(self) -> int:
        return await self._run(
            lambda db: db.execute("SELECT max(seq) FROM events").fetchone()[0] or 0
        )

    async def load_snapshots(self) -> list[StoredSnapshot]:
        def work(db: sqlite3.Connection) -> list[StoredSnapshot]:
            rows = db.execute("SELECT pool_id, seq, pool_version, schema, body FROM snapshots")
            return [StoredSnapshot(*r) for r in rows]

        return await self._run(work)

    async def load_snapshot(self, pool_id: str) -> StoredSnapshot | None:
        def work(db: sqlite3.Connection) -> StoredSnapshot | None:
            row = db.execute(
                "SELECT pool_id, seq, pool_version, schema, body FROM snapshots WHERE pool_id = ?",
                (pool_id,),
            ).fetchone()
            return StoredSnapshot(*row) if row else None

        return await self._run(work)

    async def backup_to(self, path: Path) -> LogHead:
        """Write a consistent copy of this file to `path` (which must not exist) with SQLite's
        online backup API, on the open connection and under the log's lock: between two
        appends, never inside one. Appends wait meanwhile. Returns what the copy holds."""

        def work(db: sqlite3.Connection) -> LogHead:
            row = db.execute("SELECT max(seq), count(*) FROM events").fetchone()
            checkpoint = _meta(db, "checkpoint_seq", 0)
            target = sqlite3.connect(str(path))
            try:
                db.backup(target)
            finally:
                target.close()
            return LogHead(self.epoch, row[0] or 0, row[1], checkpoint)

        if path.exists():
            raise FileExistsError(path)
        return await self._run(work)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            # On the file's thread, after the operation in progress: closing the last
            # connection of a WAL file checkpoints it (writes and fsyncs), which must not
            # stop the event loop (it did, for tens of ms a shard, during every handoff).
            loop = asyncio.get_running_loop()
            try:
                await asyncio.shield(loop.run_in_executor(self._executor, db.close))
            except sqlite3.Error as e:  # closing must not mask the reason we are closing
                log.warning("closing %s failed: %s", self.path.name, e)
        self._executor.shutdown(wait=False)
        self._closed = True
        if self._own_committer and self._committer is not None:
            committer, self._committer = self._committer, None
            await asyncio.get_running_loop().run_in_executor(None, committer.close)


def _new_thread(path: Path) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(1, thread_name_prefix=f"capsvc-{path.stem}")


def _meta(db: sqlite3.Connection, key: str, default: int) -> int:
    row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return default if row is None else int(row[0])


def _rollback_quietly(db: sqlite3.Connection) -> None:
    try:
        if db.in_transaction:
            db.execute("ROLLBACK")
    except sqlite3.Error as e:
        log.warning("rollback failed: %s", e)
