"""A shard file read after it was closed (a probe or a reader racing a handoff) answers
`storage_unavailable`, never a 500 from an attribute of None (issue: /internal/probe answered
500 right after a frozen host woke)."""

from __future__ import annotations

import asyncio

import pytest

from capsvc.errors import StorageUnavailable
from capsvc.shard.shard import Shard, ShardSettings
from capsvc.storage.sqlite_log import SqliteEventLog
from capsvc.worker.ops_routes import probe_shard


def test_reading_a_closed_log_is_storage_unavailable(tmp_path):
    async def scenario() -> None:
        log = SqliteEventLog(tmp_path / "s.sqlite3")
        await log.open(None)
        assert await log.last_seq() == 0
        await log.close()
        for read in (log.last_seq(), log.load_snapshots(), log.pool_events("p", 0, 10)):
            with pytest.raises(StorageUnavailable):
                await read

    asyncio.run(scenario())


def test_a_probe_racing_a_close_reports_the_shard_not_ok(tmp_path):
    async def scenario() -> None:
        shard = Shard(0, SqliteEventLog(tmp_path / "s.sqlite3"), ShardSettings())
        await shard.start()
        assert (await probe_shard(shard))["ok"]
        await shard.log.close()  # the state still says ready: the moment of the race
        result = await probe_shard(shard)
        assert result["ok"] is False and result["error"].startswith("storage_unavailable")
        await shard.drain()

    asyncio.run(scenario())
