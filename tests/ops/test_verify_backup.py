"""`capsvc verify --dir` refuses every backup `capsvc restore` refuses: "all good" must mean
the backup can be restored. Each refusal is one line on stderr, a non-zero exit, and leaves
the backup (and the data directory) exactly as they were.

The shard files are written by real shards in this process (as a worker would); the backup,
verify and restore run through the real command line."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from capsvc.cli import main as capsvc_main
from capsvc.config import load_config
from capsvc.domain import commands as cmd
from capsvc.domain.events import SlotSpec
from capsvc.ops.files import sha256_of
from capsvc.sharding import shard_for_pool
from capsvc.worker.main import new_shard

SHARDS = 4


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    code = capsvc_main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def _define(pool_id: str) -> cmd.DefinePool:
    date = (dt.date.today() + dt.timedelta(days=30)).isoformat()
    slot = SlotSpec("a", f"{date}T08:00:00Z", f"{date}T10:00:00Z", 5)
    return cmd.DefinePool(pool_id, "van", "north", date, None, (slot,))


async def _write_pools(config) -> None:
    """A pool on every shard, through real shards on the data directory's files."""
    pools: dict[int, str] = {}
    n = 0
    while len(pools) < SHARDS:
        pools.setdefault(shard_for_pool(f"pool-{n}", SHARDS), f"pool-{n}")
        n += 1
    for shard_id, pool_id in pools.items():
        shard = new_shard(config, shard_id)
        await shard.start()
        try:
            assert (await shard.submit(_define(pool_id))).rejection is None
        finally:
            await shard.drain()


def _state(directory: Path) -> dict[str, str]:
    return {p.name: sha256_of(p) for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def world(tmp_path, capsys):
    config_path = tmp_path / "capsvc.toml"
    config_path.write_text(
        f'[service]\ndata_dir = "{tmp_path / "data"}"\nshard_count = {SHARDS}\nworkers = 1\n'
    )
    asyncio.run(_write_pools(load_config(config_path)))
    backup = tmp_path / "backup"
    result = cli(capsys, "backup", str(backup), "--config", str(config_path))
    assert result.returncode == 0, result.stderr
    # The intact backup verifies: the refusals below are about the damage alone.
    result = cli(capsys, "verify", "--dir", str(backup), "--config", str(config_path))
    assert result.returncode == 0 and "all good" in result.stdout, result.stdout + result.stderr
    return {"config": str(config_path), "backup": backup, "data": tmp_path / "data"}


def _edit_manifest(backup: Path, change: Callable[[dict], object]) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    change(manifest)
    (backup / "manifest.json").write_text(json.dumps(manifest))


def _lose_a_shard_file(backup: Path) -> None:
    (backup / "002.sqlite3").unlink()


def _lose_the_manifest(backup: Path) -> None:
    (backup / "manifest.json").unlink()


def _empty_the_directory(backup: Path) -> None:
    shutil.rmtree(backup)
    backup.mkdir()


def _corrupt_the_manifest(backup: Path) -> None:
    (backup / "manifest.json").write_text('{"format": 1, "shards": {')


def _manifest_not_an_object(backup: Path) -> None:
    (backup / "manifest.json").write_text("[1, 2, 3]\n")


def _manifest_entry_without_checksum(backup: Path) -> None:
    _edit_manifest(backup, lambda m: m["shards"]["001"].pop("sha256"))


def _manifest_points_outside(backup: Path) -> None:
    _edit_manifest(backup, lambda m: m["shards"]["001"].update(file="../capsvc.toml"))


def _incomplete_backup(backup: Path) -> None:
    def change(manifest: dict) -> None:
        del manifest["shards"]["003"]
        manifest.update(complete=False, missing={"003": "no worker answered for it"})

    (backup / "003.sqlite3").unlink()
    _edit_manifest(backup, change)


def _shard_left_out_of_the_manifest(backup: Path) -> None:
    (backup / "003.sqlite3").unlink()
    _edit_manifest(backup, lambda m: m["shards"].pop("003"))


def _other_shard_count(backup: Path) -> None:
    _edit_manifest(backup, lambda m: m.update(shard_count=SHARDS * 2))


DAMAGES = {
    "a shard file missing": (_lose_a_shard_file, "002.sqlite3 is listed but missing"),
    "no manifest.json": (_lose_the_manifest, "not a capsvc backup"),
    "an empty directory": (_empty_the_directory, "not a capsvc backup"),
    "a manifest that is not JSON": (_corrupt_the_manifest, "not valid JSON"),
    "a manifest that is not an object": (_manifest_not_an_object, "not a valid manifest"),
    "a manifest entry without checksum": (_manifest_entry_without_checksum, "shards.001"),
    "a manifest entry naming another file": (_manifest_points_outside, "shards.001"),
    "an incomplete backup": (_incomplete_backup, "incomplete"),
    "a shard left out of the manifest": (_shard_left_out_of_the_manifest, "shards 003"),
    "another shard count": (_other_shard_count, f"the backup has {SHARDS * 2} shards"),
}


@pytest.mark.parametrize("damage", DAMAGES, ids=list(DAMAGES))
def test_verify_refuses_what_restore_refuses(world, capsys, damage):
    damage_it, reason = DAMAGES[damage]
    backup, config = world["backup"], world["config"]
    damage_it(backup)
    backup_before, data_before = _state(backup), _state(world["data"])

    restored = cli(capsys, "restore", str(backup), "--config", config)
    verified = cli(capsys, "verify", "--dir", str(backup), "--config", config)

    assert restored.returncode == 1, restored.stdout + restored.stderr
    assert verified.returncode != 0, verified.stdout + verified.stderr
    assert "all good" not in verified.stdout
    for result in (restored, verified):
        error = result.stderr.strip()
        assert reason in error, error
        assert "\n" not in error and "Traceback" not in error, error
    assert _state(backup) == backup_before
    assert _state(world["data"]) == data_before
