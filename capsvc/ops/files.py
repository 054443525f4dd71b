"""Shard files seen from outside the service: who holds them, and safe ways to read them.

- `offline(config)` holds the lock(s) a running instance holds, so the service cannot start
  while a tool works on the files, and refuses (`ServiceRunning`) when one is running.
  Embedded: `<data_dir>/capsvc.lock`. Cluster: every `hosts/*.lock` on the shared directory
  (all hosts must be stopped), plus this host's.
- `private_copy(path)` opens a copy of a shard file (and of a WAL a crash may have left) in a
  temporary directory: reading can then never write to the original, not even the WAL
  checkpoint SQLite does when it closes a file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from capsvc.config import Config
from capsvc.paths import lock_file

SHARD_FILE = re.compile(r"^(\d{3,})\.sqlite3$")


class ServiceRunning(RuntimeError):
    """A running capsvc instance holds the data directory."""


class OpsError(RuntimeError):
    """The operation cannot be done; the message says why and what to do."""


@contextlib.contextmanager
def offline(config: Config) -> Iterator[None]:
    """Hold the data directory's lock(s) for the duration; ServiceRunning if taken."""
    paths = [lock_file(config)]
    if config.cluster.enabled:
        hosts = config.data_dir / "hosts"
        paths += sorted(p for p in hosts.glob("*.lock") if p != paths[0])
    fds = []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            fds.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = path.stem if config.cluster.enabled else "capsvc"
                raise ServiceRunning(
                    f"a running capsvc ({who}) holds {path}; stop it first"
                ) from None
        yield
    finally:
        for fd in fds:
            os.close(fd)


def shard_files(directory: Path) -> dict[int, Path]:
    """shard id -> file, for every NNN.sqlite3 in `directory`."""
    found = {}
    if directory.is_dir():
        for path in directory.iterdir():
            match = SHARD_FILE.match(path.name)
            if match:
                found[int(match.group(1))] = path
    return dict(sorted(found.items()))


def companions(path: Path) -> list[Path]:
    """The WAL and shared-memory files SQLite may keep next to `path`."""
    return [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")]


@contextlib.contextmanager
def private_copy(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection to a throw-away copy of `path` (with its WAL, if a crash left one)."""
    with tempfile.TemporaryDirectory(prefix="capsvc-ops-") as tmp:
        copy = Path(tmp) / path.name
        shutil.copyfile(path, copy)
        wal = path.with_name(path.name + "-wal")
        if wal.exists():
            shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
        db = sqlite3.connect(str(copy), isolation_level=None)
        try:
            # As the service opens it: no -shm file, and nobody else could open it anyway.
            db.execute("PRAGMA locking_mode = EXCLUSIVE")
            yield db
        finally:
            db.close()


@dataclass(frozen=True)
class FileHead:
    epoch: int
    last_seq: int
    events: int
    checkpoint_seq: int
    fmt: int | None


def read_head(db: sqlite3.Connection) -> FileHead:
    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
    last, count = db.execute("SELECT max(seq), count(*) FROM events").fetchone()
    return FileHead(
        int(meta.get("epoch", 0)),
        last or 0,
        count,
        int(meta.get("checkpoint_seq", 0)),
        int(meta["format"]) if "format" in meta else None,
    )


def copy_with_backup_api(source: sqlite3.Connection, target: Path) -> None:
    """A consistent copy of `source` at `target` (written whole, fsynced, then renamed)."""
    part = target.with_name(target.name + ".part")
    part.unlink(missing_ok=True)
    dest = sqlite3.connect(str(part))
    try:
        source.backup(dest)
    finally:
        dest.close()
    publish(part, target)


def publish(part: Path, final: Path) -> None:
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, final)
    fsync_dir(final.parent)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
