"""Where things live on disk, derived from the configuration in one place."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

from capsvc.config import Config

_SOCKET_PATH_MAX = 100  # sockaddr_un.sun_path is 108 bytes on Linux


def shards_dir(config: Config) -> Path:
    return config.data_dir / "shards"


def shard_file(config: Config, shard_id: int) -> Path:
    return shards_dir(config) / f"{shard_id:03d}.sqlite3"


def runtime_dir(config: Config) -> Path:
    wanted = (
        Path(config.service.runtime_dir) if config.service.runtime_dir else config.data_dir / "run"
    )
    if config.cluster.enabled:  # hosts share the data directory, not their sockets
        wanted = wanted / config.host_id
    if len(str(wanted / "worker-000.sock")) <= _SOCKET_PATH_MAX:
        return wanted
    # Deep data directories (tests, containers) would overflow sun_path: use a short path that
    # is still unique to this data directory.
    digest = hashlib.sha256(str(wanted).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"capsvc-{digest}"


def worker_socket(config: Config, index: int) -> Path:
    return runtime_dir(config) / f"worker-{index:03d}.sock"


def admin_token_file(config: Config) -> Path:
    return config.data_dir / "admin-token"


def lock_file(config: Config) -> Path:
    """One instance per data directory; in a cluster, one instance per host id on it."""
    if config.cluster.enabled:
        return config.data_dir / "hosts" / f"{config.host_id}.lock"
    return config.data_dir / "capsvc.lock"
