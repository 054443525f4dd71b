"""`capsvc backup DIR` and `capsvc restore DIR`.

Backup takes a consistent copy of every shard file with SQLite's online backup API:

- **service running** (it holds the data directory): the owner of each shard makes the copy,
  on its open connection, between two appends (`POST /internal/backup`); the files are
  exclusively locked, nobody else could read them. Embedded: each local worker over its Unix
  socket. Cluster: each shard's ready owner from ZooKeeper, over HTTP with the cluster secret;
  a shard that moves meanwhile is asked of its new owner. DIR is written by the service's
  workers, so it must be writable by the service user and, under the systemd unit, be inside
  its `ReadWritePaths=` (not under its private /tmp).
- **service stopped**: the tool copies the files itself, holding the data directory's lock so
  that the service cannot start meanwhile.

Each copy lands as `NNN.sqlite3` (written whole, fsynced, renamed), and `manifest.json` lists
what every copy holds (epoch, last seq, event count) with its SHA-256. Shards are copied one
after the other: the copies are each consistent, not one cluster-wide instant (there are no
transactions across shards, so nothing relies on one).

Restore needs the service stopped (on every host, in a cluster). It checks the manifest and
every file's checksum first (`capsvc.ops.manifest`: `capsvc verify --dir` runs the same
checks), then copies the files into `<data_dir>/shards.restoring/` and swaps that directory
in; the previous `shards/` (with any WAL next to its files) is kept as
`shards.before-restore-<time>/`. Fencing stays sound: the embedded mode opens each file with
its stored epoch plus one, and in a cluster ZooKeeper's epoch counters only grow.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import aiohttp

from capsvc.config import Config
from capsvc.http.headers import CLUSTER_TOKEN
from capsvc.ops.files import (
    OpsError,
    ServiceRunning,
    copy_with_backup_api,
    fsync_dir,
    offline,
    private_copy,
    publish,
    read_head,
    sha256_of,
    shard_files,
)
from capsvc.ops.manifest import MANIFEST, MANIFEST_FORMAT, check_backup, load_manifest
from capsvc.paths import shards_dir, worker_socket

INTERNAL_BACKUP = "/internal/backup"  # served by capsvc.worker.ops_routes
CLUSTER_TOKEN_HEADER = CLUSTER_TOKEN
ONLINE_ROUNDS = 5  # in a cluster, shards that moved during the backup are asked again


# -- backup ----------------------------------------------------------------------------------
def backup(config: Config, directory: Path, timeout_s: float = 600.0) -> dict[str, Any]:
    """Back every shard up into `directory` (new or empty). Returns the manifest."""
    directory = _prepare(config, directory)
    try:
        with offline(config):
            mode, results = "offline", _offline(config, directory)
    except ServiceRunning:
        mode, results = "online", asyncio.run(_online(config, directory, timeout_s))
    return _write_manifest(config, directory, mode, results)


def _prepare(config: Config, directory: Path) -> Path:
    directory = directory.resolve()
    if directory.exists() and any(directory.iterdir()):
        raise OpsError(f"{directory} is not empty; back up into a new directory")
    if directory == config.data_dir or config.data_dir in directory.parents:
        raise OpsError(f"{directory} is inside the data directory; choose another place")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.geteuid() == 0 and config.data_dir.exists():
        # The service's workers write the copies: let its user (the data directory's owner) in.
        owner = config.data_dir.stat()
        os.chown(directory, owner.st_uid, owner.st_gid)
    return directory


def _offline(config: Config, directory: Path) -> dict[int, dict[str, Any]]:
    files = shard_files(shards_dir(config))
    results: dict[int, dict[str, Any]] = {}
    for shard_id in range(config.service.shard_count):
        path = files.get(shard_id)
        if path is None:
            results[shard_id] = {"ok": True, "absent": True}
            continue
        with private_copy(path) as db:
            head = read_head(db)
            copy_with_backup_api(db, directory / path.name)
        results[shard_id] = {
            "ok": True,
            "file": path.name,
            "epoch": head.epoch,
            "last_seq": head.last_seq,
            "events": head.events,
            "checkpoint_seq": head.checkpoint_seq,
        }
    return results


async def _online(config: Config, directory: Path, timeout_s: float) -> dict[int, dict]:
    if not config.cluster.enabled:
        results: dict[int, dict] = {}
        for index in range(config.worker_count):
            socket_path = worker_socket(config, index)
            answer = await _ask(None, socket_path, directory, None, {}, timeout_s)
            results.update(answer)
        return results
    return await _online_cluster(config, directory, timeout_s)


async def _online_cluster(config: Config, directory: Path, timeout_s: float) -> dict[int, dict]:
    headers = {CLUSTER_TOKEN_HEADER: config.cluster_secret}
    wanted = set(range(config.service.shard_count))
    results: dict[int, dict] = {}
    for _ in range(ONLINE_ROUNDS):
        owners = await asyncio.to_thread(_cluster_owners, config)
        by_url: dict[str, list[int]] = {}
        for shard_id in sorted(wanted):
            owner = owners.get(shard_id)
            if owner is None:
                results[shard_id] = {"ok": False, "error": "no ready owner"}
            else:
                by_url.setdefault(owner["url"], []).append(shard_id)
        for url, shard_ids in by_url.items():
            answer = await _ask(url, None, directory, shard_ids, headers, timeout_s)
            for shard_id in shard_ids:
                results[shard_id] = answer.get(
                    shard_id, {"ok": False, "error": f"{url} no longer owns it"}
                )
        wanted = {s for s, r in results.items() if not r.get("ok")}
        if not wanted:
            break
        await asyncio.sleep(1.0)  # a handoff or failover: let the new owner get ready
    return results


def _cluster_owners(config: Config) -> dict[int, dict[str, Any]]:
    """shard id -> owner node data, for the shards whose owner is ready."""
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    zk = KazooClient(hosts=config.cluster.zookeeper, timeout=10.0)
    zk.start(timeout=15.0)
    try:
        owners = {}
        root = f"/capsvc/{config.cluster.name}/shards"
        for shard_id in range(config.service.shard_count):
            try:
                raw, _ = zk.get(f"{root}/{shard_id:03d}/owner")
            except NoNodeError:
                continue
            data = json.loads(raw) if raw else {}
            if data.get("ready") and data.get("url"):
                owners[shard_id] = data
        return owners
    finally:
        zk.stop()
        zk.close()


async def _ask(
    url: str | None,
    socket_path: Path | None,
    directory: Path,
    shard_ids: list[int] | None,
    headers: dict[str, str],
    timeout_s: float,
) -> dict[int, dict]:
    """POST /internal/backup to one worker; shard id -> its result."""
    connector = aiohttp.UnixConnector(path=str(socket_path)) if socket_path else None
    base = url or "http://worker"
    where = url or str(socket_path)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
        ) as session:
            async with session.post(
                f"{base}{INTERNAL_BACKUP}",
                json={"dir": str(directory), "shards": shard_ids},
                headers=headers,
            ) as response:
                body = await response.json(content_type=None)
                if response.status != 200:
                    detail = body.get("detail") if isinstance(body, dict) else body
                    raise OpsError(f"worker at {where} refused the backup: {detail}")
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        error = f"worker at {where} did not answer: {type(e).__name__}: {e}"
        return dict.fromkeys(shard_ids or [], {"ok": False, "error": error}) if shard_ids else {}
    return {int(k): v for k, v in body["shards"].items()}


def _write_manifest(
    config: Config, directory: Path, mode: str, results: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    shards: dict[str, dict[str, Any]] = {}
    missing: dict[str, str] = {}
    for shard_id in range(config.service.shard_count):
        result = results.get(shard_id) or {"ok": False, "error": "no worker answered for it"}
        key = f"{shard_id:03d}"
        if result.get("absent"):
            shards[key] = {"absent": True}
            continue
        path = directory / f"{key}.sqlite3"
        if result.get("ok") and not path.exists():
            result = {
                "ok": False,
                "error": f"the service wrote {path.name} where this command cannot see it "
                "(is DIR in the unit's ReadWritePaths and not under /tmp?)",
            }
        if not result.get("ok"):
            missing[key] = str(result.get("error"))
            continue
        entry = {k: result[k] for k in ("epoch", "last_seq", "events", "checkpoint_seq")}
        shards[key] = {
            "file": path.name,
            **entry,
            "bytes": path.stat().st_size,
            "sha256": sha256_of(path),
        }
    manifest = {
        "format": MANIFEST_FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": mode,
        "shard_count": config.service.shard_count,
        "cluster": config.cluster.name if config.cluster.enabled else None,
        "complete": not missing,
        "shards": shards,
        "missing": missing,
    }
    part = directory / (MANIFEST + ".part")
    part.write_text(json.dumps(manifest, indent=2) + "\n")
    publish(part, directory / MANIFEST)
    return manifest


# -- restore ---------------------------------------------------------------------------------
def restore(config: Config, directory: Path) -> dict[str, Any]:
    directory = directory.resolve()
    manifest = load_manifest(directory)
    problems = check_backup(config, directory, manifest)
    if problems:
        raise OpsError("refusing to restore: " + "; ".join(problems))
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    with offline(config):
        staging = data_dir / "shards.restoring"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        restored = 0
        for entry in manifest["shards"].values():
            if entry.get("absent"):
                continue
            part = staging / (entry["file"] + ".part")
            shutil.copyfile(directory / entry["file"], part)
            publish(part, staging / entry["file"])
            restored += 1
        _own_like(data_dir, staging)
        current = shards_dir(config)
        previous = None
        if current.exists():
            stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
            previous = data_dir / f"shards.before-restore-{stamp}"
            os.replace(current, previous)
        os.replace(staging, current)
        fsync_dir(data_dir)
    return {
        "restored_files": restored,
        "from": str(directory),
        "backup_created_at": manifest.get("created_at"),
        "previous_shards": str(previous) if previous else None,
    }


def _own_like(reference: Path, directory: Path) -> None:
    """Run as root, give the restored files to the service user (the data dir's owner)."""
    if os.geteuid() != 0:
        return
    owner = reference.stat()
    for path in [directory, *directory.iterdir()]:
        os.chown(path, owner.st_uid, owner.st_gid)
