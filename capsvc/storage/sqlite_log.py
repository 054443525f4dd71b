"""The SQLite event log: one WAL-mode file per shard, held exclusively by its owner.

`locking_mode=EXCLUSIVE` is set before WAL is first used, so SQLite keeps the WAL index in
process memory instead of a shared-memory file: that is what makes WAL safe on shared storage,
and it also means a second process cannot open the file while we hold it.

Fencing: the file's `meta.epoch` is the owner's epoch. A trigger refuses any event stamped with
another epoch, inside the same transaction as the append, so a stale owner can never append.

Every sqlite3 error is translated into the project's errors in one place (`_translate`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import aiosqlite

from capsvc.errors import CapsvcError, Fenced, ShardCorrupt, StorageFull, StorageUnavailable
from capsvc.storage.codec import CodecError, decode_event, encode_event
from capsvc.storage.log import EventLog, LogHead, StoredEvent, StoredSnapshot
from capsvc.testing import faults

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
        return StorageUnavailable(f"{path.name}: locked by another process")
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
    def __init__(self, path: Path, *, synchronous: str = "FULL", busy_timeout_ms: int = 5000):
        assert synchronous in ("FULL", "NORMAL", "EXTRA"), synchronous
        self.path = path
        self._synchronous = synchronous
        self._busy_timeout_ms = busy_timeout_ms
        self._db: aiosqlite.Connection | None = None
        # aiosqlite runs each statement separately; the lock keeps a read from landing inside
        # an append's open transaction (where it would see uncommitted events).
        self._lock = asyncio.Lock()
        self.epoch = 0

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            yield
        except sqlite3.Error as e:
            raise _translate(e, self.path) from e
        except CodecError as e:
            raise ShardCorrupt(f"{self.path.name}: {e}") from e

    async def _run(self, work: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        assert self._db is not None, "log is not open"
        async with self._lock, self._errors():
            return await work(self._db)

    async def open(self, epoch: int | None) -> LogHead:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        async with self._errors():
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one transaction per batch
            db = await aiosqlite.connect(str(self.path), isolation_level=None)
            try:
                head = await self._prepare(db, epoch)
            except BaseException:
                await db.close()
                raise
        self._db = db
        self.epoch = head.epoch
        return head

    async def _prepare(self, db: aiosqlite.Connection, epoch: int | None) -> LogHead:
        await db.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await db.execute("PRAGMA locking_mode = EXCLUSIVE")  # before WAL is first used
        row = await (await db.execute("PRAGMA journal_mode = WAL")).fetchone()
        if row is None or str(row[0]).lower() != "wal":
            raise StorageUnavailable(f"{self.path.name}: cannot switch to WAL mode ({row})")
        await db.execute(f"PRAGMA synchronous = {self._synchronous}")
        await db.execute("BEGIN IMMEDIATE")  # takes the exclusive lock and keeps it
        try:
            for statement in _SCHEMA.split(";\n"):
                if statement.strip():
                    await db.execute(statement)
            if faults.active("no_epoch_check"):  # a deliberately broken test build
                await db.execute("DROP TRIGGER events_fenced")
            stored = await self._meta(db, "epoch", 0)
            if epoch is None:
                epoch = stored + 1
            elif epoch <= stored and not faults.active("no_epoch_check"):
                raise Fenced(f"{self.path.name}: epoch {epoch} is not newer than {stored}")
            await db.execute("INSERT OR REPLACE INTO meta VALUES ('epoch', ?)", (epoch,))
            await db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FILE_FORMAT,))
            row = await (await db.execute("SELECT max(seq), count(*) FROM events")).fetchone()
            checkpoint = await self._meta(db, "checkpoint_seq", 0)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return LogHead(epoch, last_seq=row[0] or 0, event_count=row[1], checkpoint_seq=checkpoint)

    @staticmethod
    async def _meta(db: aiosqlite.Connection, key: str, default: int) -> int:
        row = await (await db.execute("SELECT value FROM meta WHERE key = ?", (key,))).fetchone()
        return default if row is None else int(row[0])

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

        if len(rows) <= _ONE_STATEMENT_ROWS_MAX:
            # One multi-row INSERT in autocommit mode is one atomic transaction and one
            # round trip to the connection's thread (instead of BEGIN, INSERTs, COMMIT).
            flat = [value for row in rows for value in row]
            await self._run(lambda db: db.execute(_insert_sql(len(rows)), flat))
            return

        async def work(db: aiosqlite.Connection) -> None:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(_INSERT, rows)
                await db.execute("COMMIT")
            except BaseException:
                await _rollback_quietly(db)
                raise

        await self._run(work)

    async def read_from(
        self, after_seq: int, batch: int = 5000
    ) -> AsyncIterator[list[StoredEvent]]:
        assert self._db is not None
        async with self._lock, self._errors():
            cursor = await self._db.execute(f"{_SELECT} WHERE seq > ? ORDER BY seq", (after_seq,))
            try:
                while rows := await cursor.fetchmany(batch):
                    yield [_row_to_event(r) for r in rows]
            finally:
                await cursor.close()

    async def read_encoded_from(
        self, after_seq: int, batch: int = 5000
    ) -> AsyncIterator[list[tuple[int, str, int, str, int, str]]]:
        assert self._db is not None
        async with self._lock, self._errors():
            cursor = await self._db.execute(
                "SELECT seq, pool_id, pool_version, type, schema, body FROM events"
                " WHERE seq > ? ORDER BY seq",
                (after_seq,),
            )
            # The next batch is fetched (on the connection's thread) while the caller folds
            # this one in.
            ahead = asyncio.ensure_future(cursor.fetchmany(batch))
            try:
                while rows := await ahead:
                    ahead = asyncio.ensure_future(cursor.fetchmany(batch))
                    yield rows
            finally:
                if not ahead.done():
                    await asyncio.wait([ahead])
                if not ahead.cancelled():
                    ahead.exception()  # retrieved: the caller's own error is what matters
                await cursor.close()

    async def pool_events(self, pool_id: str, after_version: int, limit: int) -> list[StoredEvent]:
        async def work(db: aiosqlite.Connection) -> list[StoredEvent]:
            rows = await db.execute_fetchall(
                f"{_SELECT} WHERE pool_id = ? AND pool_version > ? ORDER BY pool_version LIMIT ?",
                (pool_id, after_version, limit),
            )
            return [_row_to_event(r) for r in rows]

        return await self._run(work)

    async def save_checkpoint(self, snapshots: list[StoredSnapshot], checkpoint_seq: int) -> None:
        rows = [(s.pool_id, s.seq, s.pool_version, s.schema, s.body) for s in snapshots]

        async def work(db: aiosqlite.Connection) -> None:
            await db.execute("BEGIN IMMEDIATE")
            try:
                await db.executemany(
                    "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?, ?)", rows
                )
                await db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('checkpoint_seq', ?)", (checkpoint_seq,)
                )
                await db.execute("COMMIT")
            except BaseException:
                await _rollback_quietly(db)
                raise

        await self._run(work)

    async def last_seq(self) -> int:
        async def work(db: aiosqlite.Connection) -> int:
            rows = await db.execute_fetchall("SELECT max(seq) FROM events")
            return rows[0][0] or 0

        return await self._run(work)

    async def load_snapshots(self) -> list[StoredSnapshot]:
        async def work(db: aiosqlite.Connection) -> list[StoredSnapshot]:
            rows = await db.execute_fetchall(
                "SELECT pool_id, seq, pool_version, schema, body FROM snapshots"
            )
            return [StoredSnapshot(*r) for r in rows]

        return await self._run(work)

    async def load_snapshot(self, pool_id: str) -> StoredSnapshot | None:
        async def work(db: aiosqlite.Connection) -> StoredSnapshot | None:
            rows = await db.execute_fetchall(
                "SELECT pool_id, seq, pool_version, schema, body FROM snapshots WHERE pool_id = ?",
                (pool_id,),
            )
            return StoredSnapshot(*rows[0]) if rows else None

        return await self._run(work)

    async def backup_to(self, path: Path) -> LogHead:
        """Write a consistent copy of this file to `path` (which must not exist) with SQLite's
        online backup API, on the open connection and under the log's lock: between two
        appends, never inside one. Appends wait meanwhile. Returns what the copy holds."""

        async def work(db: aiosqlite.Connection) -> LogHead:
            rows = await db.execute_fetchall("SELECT max(seq), count(*) FROM events")
            checkpoint = await self._meta(db, "checkpoint_seq", 0)
            # check_same_thread=False: aiosqlite runs the copy on the connection's own thread.
            target = sqlite3.connect(str(path), check_same_thread=False)
            try:
                await db.backup(target)
            finally:
                target.close()
            return LogHead(self.epoch, rows[0][0] or 0, rows[0][1], checkpoint)

        if path.exists():
            raise FileExistsError(path)
        return await self._run(work)

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                await db.close()
            except sqlite3.Error as e:  # closing must not mask the reason we are closing
                log.warning("closing %s failed: %s", self.path.name, e)


async def _rollback_quietly(db: aiosqlite.Connection) -> None:
    try:
        if db.in_transaction:
            await db.execute("ROLLBACK")
    except sqlite3.Error as e:
        log.warning("rollback failed: %s", e)
