"""A backup's `manifest.json`, and the checks a backup must pass to be restored.

`capsvc restore` refuses a backup that fails them, and `capsvc verify --dir` runs the same
ones, so that a backup verify calls good is one restore accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from capsvc.config import Config
from capsvc.ops.files import OpsError, sha256_of

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
_SHARD_KEY = re.compile(r"^\d{3,}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def load_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of the backup in `directory`; OpsError if missing or malformed."""
    if not directory.is_dir():
        raise OpsError(f"{directory} is not a directory")
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise OpsError(f"{path} not found: not a capsvc backup") from None
    except ValueError as e:  # also undecodable bytes
        raise OpsError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(manifest, dict):
        raise OpsError(f"{path}: not a valid manifest: not a JSON object")
    if manifest.get("format") != MANIFEST_FORMAT:
        raise OpsError(f"{path}: unknown manifest format {manifest.get('format')!r}")
    problem = _shape_problem(manifest)
    if problem:
        raise OpsError(f"{path}: not a valid manifest: {problem}")
    return manifest


def _shape_problem(manifest: dict[str, Any]) -> str | None:
    """What the checks and the restore rely on: None when every part is there."""
    count = manifest.get("shard_count")
    if not isinstance(count, int) or isinstance(count, bool):
        return "shard_count is not a number"
    if not isinstance(manifest.get("complete"), bool):
        return "complete is not true or false"
    shards = manifest.get("shards")
    if not isinstance(shards, dict):
        return "shards is not an object"
    for key, entry in shards.items():
        if not _SHARD_KEY.match(key):
            return f"shards.{key}: not a shard number"
        if not isinstance(entry, dict):
            return f"shards.{key}: not an object"
        if entry.get("absent") is True:
            continue
        # Only NNN.sqlite3 of its own shard: restore copies this name into the data directory.
        if entry.get("file") != f"{key}.sqlite3":
            return f"shards.{key}: file {entry.get('file')!r} is not {key}.sqlite3"
        if not isinstance(entry.get("sha256"), str) or not _SHA256.match(entry["sha256"]):
            return f"shards.{key}: no valid sha256"
    return None


def check_backup(config: Config, directory: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems that forbid restoring this backup into this configuration."""
    problems = []
    count = config.service.shard_count
    if manifest["shard_count"] != count:
        problems.append(
            f"the backup has {manifest['shard_count']} shards, the configuration "
            f"{count}: pools would land on the wrong shards"
        )
    if not manifest["complete"]:
        problems.append(f"the backup is incomplete: {manifest.get('missing')}")
    elif manifest["shard_count"] == count:
        unlisted = sorted({f"{i:03d}" for i in range(count)} - set(manifest["shards"]))
        if unlisted:
            problems.append(f"the manifest lists nothing for shards {', '.join(unlisted)}")
    for _key, entry in sorted(manifest["shards"].items()):
        if entry.get("absent"):
            continue
        path = directory / entry["file"]
        if not path.exists():
            problems.append(f"{path.name} is listed but missing")
        elif sha256_of(path) != entry["sha256"]:
            problems.append(f"{path.name} does not match its checksum: damaged or altered")
    return problems
