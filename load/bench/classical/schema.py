"""The classical schema and the benchmark data in it (loaded with COPY, not through the API)."""

from __future__ import annotations

import datetime as dt

import asyncpg

from load.bench.workloads import BenchPool

DDL = """
CREATE TABLE pools (
    pool_id text PRIMARY KEY,
    kind text NOT NULL,
    region text NOT NULL,
    date date NOT NULL,
    total_capacity integer
);
CREATE INDEX pools_by_day ON pools (region, date);
CREATE TABLE slots (
    pool_id text NOT NULL REFERENCES pools,
    slot_id text NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    capacity integer NOT NULL,
    reserved integer NOT NULL DEFAULT 0,
    open boolean NOT NULL DEFAULT true,
    version bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (pool_id, slot_id),
    CHECK (reserved >= 0 AND reserved <= capacity)
);
CREATE TABLE reservations (
    reservation_id bigserial PRIMARY KEY,
    pool_id text NOT NULL,
    slot_id text NOT NULL,
    units integer NOT NULL CHECK (units > 0),
    idempotency_key text,
    active boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (pool_id, slot_id) REFERENCES slots,
    UNIQUE (pool_id, idempotency_key)
);
"""


async def create(dsn: str, pools: list[BenchPool]) -> None:
    """Create the tables and load `pools` (slots with nothing reserved)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(DDL)
        await conn.copy_records_to_table(
            "pools", columns=["pool_id", "kind", "region", "date"],
            records=[(p.pool_id, p.kind, p.region, dt.date.fromisoformat(p.date))
                     for p in pools])
        await conn.copy_records_to_table(
            "slots", columns=["pool_id", "slot_id", "starts_at", "ends_at", "capacity"],
            records=[(p.pool_id, s["slot_id"], dt.datetime.fromisoformat(s["starts_at"]),
                      dt.datetime.fromisoformat(s["ends_at"]), s["capacity"])
                     for p in pools for s in p.slots()])
        await conn.execute("ANALYZE")
    finally:
        await conn.close()
