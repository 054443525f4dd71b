"""The worker's read-model feed in compact rows: the router's model built from them equals the
one built from whole views; ready shards with nothing new are only listed; paging and
`caught_up` work as before; a router that does not ask for rows gets the answer it always got."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from capsvc.config import Config
from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.http.routes import INTERNAL_FEED
from capsvc.router.read_model import ReadModel
from capsvc.shard.shard import Shard, ShardSettings
from capsvc.storage.memory_log import MemoryEventLog
from capsvc.worker.app import CHANGED, make_worker_app
from capsvc.worker.front import WorkerFront
from capsvc.worker.ops_routes import METRICS

NOW = 1_893_400_000_000  # 2029-12-31T08:26:40Z: before the 2030-01-01 slots
DAY = "2030-01-01"


def _define(pool_id: str, date: str = DAY, total: int | None = None) -> cmd.DefinePool:
    slots = (
        ev.SlotSpec("a", f"{date}T08:00:00Z", f"{date}T09:00:00Z", 1),
        ev.SlotSpec("b", f"{date}T09:00:00Z", f"{date}T10:00:00Z", 5),
    )
    return cmd.DefinePool(pool_id, "van", "berlin", date, total, slots)


def _reserve(pool_id: str, n: int) -> cmd.ReserveCapacity:
    return cmd.ReserveCapacity(pool_id, "a", 1, None, None, f"{n:08x}", NOW)


Scenario = Callable[[aiohttp.ClientSession, dict[int, Shard]], Awaitable[None]]


def _with_worker(scenario: Scenario) -> None:
    async def main() -> None:
        shards = {}
        for shard_id in (0, 1):
            shards[shard_id] = Shard(
                shard_id, MemoryEventLog(), ShardSettings(), clock_ms=lambda: NOW
            )
            await shards[shard_id].start()
        app = make_worker_app(Config(), shards, 0)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        front = WorkerFront(
            Config(), shards, app[METRICS], runner.server, changed=app[CHANGED], worker_index=0
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = f"{tmp}/worker.sock"  # the feed is the lean front's, on a real socket
            server = await asyncio.get_running_loop().create_unix_server(front.protocol, path)
            connector = aiohttp.UnixConnector(path=path)
            async with aiohttp.ClientSession("http://worker", connector=connector) as client:
                await scenario(client, shards)
            server.close()
            await front.drain(1.0)
        await runner.cleanup()
        for shard in shards.values():
            await shard.drain()

    asyncio.run(asyncio.wait_for(main(), timeout=30))


async def _feed(client: aiohttp.ClientSession, model: ReadModel | None, query: str) -> dict[str, Any]:
    since = model.since_parameter() if model is not None else ""
    response = await client.get(f"{INTERNAL_FEED}?wait_ms=0&{query}&since={since}")
    assert response.status == 200
    answer = json.loads(await response.read())
    if model is not None:
        model.apply("w0", answer)
    return answer


async def _submit(shard: Shard, command: cmd.Command) -> None:
    result = await asyncio.wait_for(shard.submit(command), 5)
    assert result.rejection is None, result


def test_rows_build_the_model_whole_views_built_and_unchanged_shards_are_only_listed():
    async def scenario(client: aiohttp.ClientSession, shards: dict[int, Shard]) -> None:
        await _submit(shards[0], _define("p1"))
        await _submit(shards[0], _define("p2", total=3))
        await _submit(shards[1], _define("q1", date="2030-01-02"))
        compact, whole = ReadModel(shard_count=2), ReadModel(shard_count=2)
        first = await _feed(client, compact, "rows=1")
        await _feed(client, whole, "")
        assert set(first["shards"]) == {"0", "1"} and first["unchanged"] == []
        assert all("rows" in s and "pools" not in s for s in first["shards"].values())

        quiet = await _feed(client, compact, "rows=1")
        assert quiet["shards"] == {} and sorted(quiet["unchanged"]) == [0, 1]
        await _submit(shards[0], _reserve("p2", 1))
        news = await _feed(client, compact, "rows=1")
        await _feed(client, whole, "")
        assert list(news["shards"]) == ["0"] and news["unchanged"] == [1]
        assert [row[0] for row in news["shards"]["0"]["rows"]] == ["p2"]

        assert compact.positions == whole.positions and compact.caught_up == {0, 1}
        for pool_id in ("p1", "p2", "q1"):
            assert compact.view(pool_id) == whole.view(pool_id)
        for date in (DAY, "2030-01-02"):
            assert compact.grid_json("berlin", date, None) == whole.grid_json("berlin", date, None)
        assert compact.view("p2")["slots"][0]["bookable"] is False

    _with_worker(scenario)


def test_a_router_that_asks_without_rows_gets_whole_views_for_every_shard():
    async def scenario(client: aiohttp.ClientSession, shards: dict[int, Shard]) -> None:
        await _submit(shards[0], _define("p1"))
        answer = await _feed(client, None, "")
        assert "unchanged" not in answer and set(answer["shards"]) == {"0", "1"}
        view = answer["shards"]["0"]["pools"][0]
        assert list(view) == [
            "pool_id",
            "kind",
            "region",
            "date",
            "version",
            "total_capacity",
            "total_reserved",
            "booking_cutoff_minutes",
            "slots",
        ]
        assert list(view["slots"][0]) == [
            "slot_id",
            "starts_at",
            "ends_at",
            "capacity",
            "reserved",
            "available",
            "open",
            "bookable",
        ]
        again = await _feed(client, None, "since=0:1,1:0")
        assert again["shards"]["0"]["pools"] == [] and again["shards"]["0"]["position"] == 1

    _with_worker(scenario)


def test_the_first_load_pages_and_the_model_is_current_only_after_the_last_page():
    async def scenario(client: aiohttp.ClientSession, shards: dict[int, Shard]) -> None:
        for i in range(5):
            await _submit(shards[0], _define(f"p{i}"))
        model = ReadModel(shard_count=2)
        pages = 0
        while model.as_of(["w0"]) is None:
            await _feed(client, model, "rows=1&limit=2")
            pages += 1
            assert pages < 10
        assert pages == 3 and model.pool_count() == 5
        assert [p["pool_id"] for p in model.grid("berlin", DAY, None)] == [
            f"p{i}" for i in range(5)
        ]

    _with_worker(scenario)
