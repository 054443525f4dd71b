"""Event schema evolution: a shard file written with the old v0 event shapes (checked in as
`tests/data/legacy-v0-shard.sqlite3`, made by `tests/data/make_legacy_shard.py`) still loads
with today's code, through the upcasters in `capsvc/storage/codec.py`, into exactly the state
the same history gives in today's shapes."""

from __future__ import annotations

import asyncio
import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from capsvc.domain import commands as cmd
from capsvc.domain.evolve import evolve
from capsvc.domain.pool import KeyRetention
from capsvc.errors import ShardCorrupt
from capsvc.ops.verify import ShardReport, verify_file
from capsvc.shard.shard import Shard, ShardSettings
from capsvc.storage import codec
from capsvc.storage.codec import encode_snapshot
from capsvc.storage.sqlite_log import SqliteEventLog
from tests.data.make_legacy_shard import BIKE, HISTORY, VAN

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "legacy-v0-shard.sqlite3"
RETENTION = KeyRetention(10**12, 1000)  # remember every key: the fixture is from the past


def _shard(path: Path) -> Shard:
    return Shard(0, SqliteEventLog(path), ShardSettings(retention=RETENTION))


@pytest.fixture
def legacy_file(tmp_path) -> Path:
    copy = tmp_path / "000.sqlite3"
    shutil.copyfile(FIXTURE, copy)  # opening a shard writes its epoch: never the fixture
    return copy


def test_the_fixture_really_holds_old_shapes():
    db = sqlite3.connect(f"file:{FIXTURE}?immutable=1", uri=True)
    schemas = dict(db.execute("SELECT type, min(schema) FROM events GROUP BY type").fetchall())
    body = db.execute("SELECT body FROM events WHERE type = 'PoolDefined'").fetchone()[0]
    db.close()
    assert schemas["PoolDefined"] == schemas["SlotAdded"] == schemas["CapacityReserved"] == 0
    assert isinstance(json.loads(body)["slots"][0], dict)  # v0: slots were objects
    assert codec.EVENT_SCHEMA["PoolDefined"] > 0  # today's code writes a newer version


def test_an_old_shard_file_loads_into_the_state_its_history_describes(legacy_file):
    async def scenario():
        shard = _shard(legacy_file)
        await shard.start()
        try:
            return {p: encode_snapshot(pool) for p, pool in shard.pools.items()}, shard.pools
        finally:
            await shard.drain()

    loaded, pools = asyncio.run(scenario())
    van, bike = pools[VAN], pools[BIKE]
    assert (van.version, van.total_capacity, van.total_reserved) == (8, 9, 5)
    assert {s.slot_id: (s.capacity, s.reserved, s.open) for s in van.slots.values()} == {
        "0800-1000": (6, 2, True), "1000-1200": (2, 0, False), "1200-1400": (4, 3, True)}
    assert [r.active for r in van.reservations.values()] == [True, False, True]
    assert all(r.order_ref is None for r in van.reservations.values())  # upcast default
    assert list(van.keys) == ["order-1", "order-3"]
    assert (bike.version, bike.total_capacity, bike.total_reserved) == (3, 8, 4)

    expected = {}
    for pool_id, event in HISTORY:  # the same history in today's shapes
        expected[pool_id] = evolve(expected.get(pool_id), event, RETENTION)
    assert loaded == {p: encode_snapshot(pool) for p, pool in expected.items()}


def test_an_old_file_takes_new_events_and_loads_again(legacy_file):
    """After an upgrade the file mixes v0 and current events; both keep loading."""
    async def scenario():
        shard = _shard(legacy_file)
        await shard.start()
        result = await shard.submit(cmd.ReserveCapacity(
            # the owner's clock before the legacy slot starts (2026-03-02T00:00Z)
            BIKE, "am", 2, "key-4", "order-ref-4", "eeeeeeeeeeee", 1_772_000_000_000))
        await shard.drain()
        again = _shard(legacy_file)
        await again.start()
        pool = again.pools[BIKE]
        await again.drain()
        return result, pool

    result, pool = asyncio.run(scenario())
    assert result.created and pool.total_reserved == 6 and pool.version == 4
    reservation = pool.reservations[result.body["reservation_id"]]
    assert reservation.order_ref == "order-ref-4"
    db = sqlite3.connect(legacy_file)
    rows = db.execute("SELECT type, schema FROM events ORDER BY seq").fetchall()
    db.close()
    assert rows[-1] == ("CapacityReserved", codec.EVENT_SCHEMA["CapacityReserved"])


def test_verify_accepts_the_old_file_and_reports_its_schema_versions(legacy_file):
    report = ShardReport(0, legacy_file.name)
    verify_file(legacy_file, report, shard_count=1, retention=RETENTION)
    assert report.problems == []
    assert report.schemas[("PoolDefined", 0)] == 2 and report.schemas[("SlotClosed", 1)] == 1
    assert (report.events, report.pools) == (11, 2)


def test_without_its_upcaster_the_old_file_fails_closed(legacy_file, monkeypatch):
    """The upcaster is what makes the file load: without it the shard refuses to open
    (shard_corrupt) instead of guessing."""
    monkeypatch.delitem(codec.UPCASTERS, ("PoolDefined", 0))
    shard = _shard(legacy_file)
    with pytest.raises(ShardCorrupt):
        asyncio.run(shard.start())
