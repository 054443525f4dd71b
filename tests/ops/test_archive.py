"""`capsvc archive`: pools dated in the past leave the hot shard files (and so the memory of
the next start) for `<data_dir>/archive/<YYYY-MM>.sqlite3`, where their history stays
readable; the shards keep working and verifying afterwards.

The shard files are written by real shards in this process (as a worker would), the commands
run through the real command line."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import subprocess

import pytest

from capsvc.cli import main as capsvc_main
from capsvc.config import load_config
from capsvc.domain import commands as cmd
from capsvc.domain.events import SlotSpec
from capsvc.domain.views import pool_view
from capsvc.ops.files import sha256_of
from capsvc.ops.verify import verify
from capsvc.paths import lock_file, shard_file
from capsvc.sharding import shard_for_pool
from capsvc.worker.main import new_shard

SHARDS = 4


def cli(capsys, *args: str) -> subprocess.CompletedProcess:
    code = capsvc_main(list(args))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, out, err)


def _define(pool_id: str, date: str) -> cmd.DefinePool:
    slot = SlotSpec("a", f"{date}T08:00:00Z", f"{date}T10:00:00Z", 5)
    return cmd.DefinePool(pool_id, "van", "north", date, None, (slot,))


def _reserve(pool_id: str, n: int) -> cmd.ReserveCapacity:
    return cmd.ReserveCapacity(pool_id, "a", 1, f"key-{n}", None, f"{n:012x}", 1_700_000_000_000)


async def _apply(config, commands: list[cmd.Command]) -> dict[str, dict]:
    """Run commands through real shards (files in the data dir); return the pools' views."""
    shards = {}
    try:
        for command in commands:
            shard_id = shard_for_pool(command.pool_id, SHARDS)
            if shard_id not in shards:
                shards[shard_id] = new_shard(config, shard_id)
                await shards[shard_id].start()
            result = await shards[shard_id].submit(command)
            assert result.rejection is None, result.rejection
        return {p: pool_view(pool) for s in shards.values() for p, pool in s.pools.items()}
    finally:
        for shard in shards.values():
            await shard.drain()


async def _all_pools(config) -> dict[str, dict]:
    views = {}
    for shard_id in range(SHARDS):
        shard = new_shard(config, shard_id)
        await shard.start()
        views.update({p: pool_view(pool) for p, pool in shard.pools.items()})
        await shard.drain()
    return views


@pytest.fixture
def data(tmp_path):
    config_path = tmp_path / "capsvc.toml"
    config_path.write_text(
        f'[service]\ndata_dir = "{tmp_path / "data"}"\nshard_count = {SHARDS}\nworkers = 1\n'
    )
    config = load_config(config_path)
    past = {f"old-{i}": f"2025-0{1 + i % 2}-1{i}" for i in range(8)}
    future: dict[str, str] = {}
    while {shard_for_pool(p, SHARDS) for p in future} != set(range(SHARDS)):
        future[f"new-{len(future)}"] = f"2099-01-{1 + len(future) % 28:02d}"
    commands = [_define(p, d) for p, d in {**past, **future}.items()]
    commands += [_reserve(p, n) for n, p in enumerate([*past, *future])]
    # Every shard's newest event is a future pool's, except on old-0's shard where it is
    # old-0's own: that one must stay in the hot file.
    commands += [_reserve(p, 200 + n) for n, p in enumerate(future)
                 if shard_for_pool(p, SHARDS) != shard_for_pool("old-0", SHARDS)]
    commands.append(_reserve("old-0", 99))
    views = asyncio.run(_apply(config, commands))
    return {"config": config, "path": str(config_path), "past": past, "future": future,
            "views": views}


def test_archive_moves_past_pools_out_and_keeps_their_history_readable(data, capsys):
    config, path = data["config"], data["path"]
    files = [shard_file(config, s) for s in range(SHARDS)]
    before = [sha256_of(f) for f in files]

    dry = json.loads(cli(capsys, "archive", "--before", "2025-06-01", "--dry-run",
                         "--config", path, "--json").stdout)
    assert [sha256_of(f) for f in files] == before  # a dry run changes nothing
    result = cli(capsys, "archive", "--before", "2025-06-01", "--config", path, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["archived"] == dry["archived"]
    archived = {p["pool_id"] for p in report["archived"]}
    assert archived == set(data["past"]) - {"old-0"}
    assert report["kept"] == [{"pool_id": "old-0", "shard": shard_for_pool("old-0", SHARDS),
                               "why": "holds the newest event"}]
    assert {p["file"] for p in report["archived"]} == {"2025-01.sqlite3", "2025-02.sqlite3"}

    # Out of the hot files: the next start holds only the others ...
    remaining = asyncio.run(_all_pools(config))
    assert set(remaining) == set(data["future"]) | {"old-0"}
    assert all(remaining[p] == data["views"][p] for p in remaining)
    # ... every shard still verifies (the gaps are the archived events) ...
    assert verify(config)["ok"]
    # ... and takes new events after the gap.
    views = asyncio.run(_apply(config, [_reserve("new-1", 100)]))
    assert views["new-1"]["total_reserved"] == data["views"]["new-1"]["total_reserved"] + 1
    assert verify(config)["ok"]

    # The history stays readable, and replays to the pool as it was.
    shown = json.loads(cli(capsys, "archive", "show", "old-3", "--config", path).stdout)
    assert shown["pool"] == data["views"]["old-3"]
    assert [e["type"] for e in shown["events"]] == ["PoolDefined", "CapacityReserved"]
    assert shown["archive_file"].endswith(f"{data['past']['old-3'][:7]}.sqlite3")

    again = json.loads(cli(capsys, "archive", "--before", "2025-06-01", "--config", path,
                           "--json").stdout)
    assert again["archived"] == []  # nothing left to move: repeating is harmless


def test_archive_refuses_while_the_service_holds_the_data_directory(data, capsys):
    config = data["config"]
    fd = os.open(lock_file(config), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running supervisor holds
    try:
        result = cli(capsys, "archive", "--before", "2025-06-01", "--config", data["path"])
    finally:
        os.close(fd)
    assert result.returncode == 1 and "stop it first" in result.stderr


def test_archive_never_takes_pools_of_today_or_later(data, capsys):
    result = cli(capsys, "archive", "--before", "2999-01-01", "--config", data["path"])
    assert result.returncode == 1 and "future" in result.stderr
    result = cli(capsys, "archive", "show", "no-such-pool", "--config", data["path"])
    assert result.returncode == 1 and "not in" in result.stderr


def test_the_report_counts_in_words(data, capsys):
    """old-0 and old-2 are dated before the 13th; old-0 stays (it holds its shard's newest
    event), so exactly one pool moves."""
    result = cli(capsys, "archive", "--before", "2025-01-13", "--dry-run", "--config", data["path"])
    lines = result.stdout.splitlines()
    assert lines[0] == "would archive 1 pool dated before 2025-01-13", result.stdout
    assert lines[1].startswith("  old-2 (shard ") and ", 2 events) -> 2025-01.sqlite3" in lines[1]
