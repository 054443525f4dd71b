"""The three classical ways to keep `reserved + units <= capacity` in PostgreSQL.

Every store answers the same three calls; a refused write is a `Rejected` with the same codes
capsvc uses. asyncpg prepares and caches every statement, so each costs one round trip.
"""

from __future__ import annotations

import datetime as dt

import asyncpg

OCC_ATTEMPTS = 100  # optimistic retries before answering 503


class Rejected(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail


class _Conflict(Exception):
    """The row's version moved between our read and our conditional write."""


_RULE = ("UPDATE slots SET reserved = reserved + $3 WHERE pool_id = $1 AND slot_id = $2"
         " AND open AND reserved + $3 <= capacity")
_INSERT = ("INSERT INTO reservations (pool_id, slot_id, units, idempotency_key)"
           " VALUES ($1, $2, $3, $4) RETURNING reservation_id")
_CTE_RESERVE = (f"WITH s AS ({_RULE} RETURNING pool_id, slot_id)"
                " INSERT INTO reservations (pool_id, slot_id, units, idempotency_key)"
                " SELECT pool_id, slot_id, $3, $4 FROM s RETURNING reservation_id")
_MARK_RELEASED = ("UPDATE reservations SET active = false WHERE reservation_id = $1 AND active"
                  " RETURNING pool_id, slot_id, units")
_GIVE_BACK = "UPDATE slots SET reserved = reserved - $3 WHERE pool_id = $1 AND slot_id = $2"
_CTE_RELEASE = (f"WITH r AS ({_MARK_RELEASED}) UPDATE slots s SET reserved = s.reserved -"
                " r.units FROM r WHERE s.pool_id = r.pool_id AND s.slot_id = r.slot_id"
                " RETURNING r.pool_id, r.slot_id, r.units")
_READ_SLOT = ("SELECT capacity, reserved, open, version FROM slots"
              " WHERE pool_id = $1 AND slot_id = $2")
_OCC_WRITE = ("UPDATE slots SET reserved = $3, version = version + 1"
              " WHERE pool_id = $1 AND slot_id = $2 AND version = $4 RETURNING version")
_GRID = ("SELECT coalesce(json_agg(g ORDER BY g.pool_id), '[]')::text FROM ("
         " SELECT p.pool_id, p.kind, p.region, p.date, (SELECT json_agg(json_build_object("
         "  'slot_id', s.slot_id, 'starts_at', s.starts_at, 'ends_at', s.ends_at,"
         "  'bookable', s.open AND s.reserved < s.capacity) ORDER BY s.starts_at)"
         "  FROM slots s WHERE s.pool_id = p.pool_id) AS slots"
         " FROM pools p WHERE p.region = $1 AND p.date = $2"
         " AND ($3::text IS NULL OR p.kind = $3)) g")


def reservation_view(rid: int, pool_id: str, slot_id: str, units: int, active: bool) -> dict:
    return {"reservation_id": str(rid), "pool_id": pool_id, "slot_id": slot_id,
            "units": units, "status": "active" if active else "released"}


class Store:
    """Shared parts: the grid, idempotent replays, and why a write was refused."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def availability(self, region: str, date: dt.date, kind: str | None) -> str:
        """The grid's pools as JSON text, built by PostgreSQL (json_agg) in one query."""
        return await self.pool.fetchval(_GRID, region, date, kind)

    async def reserve(self, pool_id: str, slot_id: str, units: int,
                      key: str | None) -> tuple[dict, bool]:
        """(reservation, replayed)."""
        async with self.pool.acquire() as conn:
            try:
                rid = await self._reserve(conn, pool_id, slot_id, units, key)
            except asyncpg.UniqueViolationError:  # the Idempotency-Key was used before
                return await self._replay(conn, pool_id, slot_id, units, key), True
        return reservation_view(rid, pool_id, slot_id, units, True), False

    async def _reserve(self, conn: asyncpg.Connection, pool_id: str, slot_id: str,
                       units: int, key: str | None) -> int:
        raise NotImplementedError

    async def release(self, reservation_id: int) -> dict:
        async with self.pool.acquire() as conn:
            row = await self._release(conn, reservation_id)
            if row is None:
                active = await conn.fetchval(
                    "SELECT active FROM reservations WHERE reservation_id = $1", reservation_id)
                if active is None:
                    raise Rejected(404, "reservation_not_found", f"no reservation "
                                   f"{reservation_id}")
                row = await conn.fetchrow("SELECT pool_id, slot_id, units FROM reservations"
                                          " WHERE reservation_id = $1", reservation_id)
        return reservation_view(reservation_id, row["pool_id"], row["slot_id"], row["units"],
                                False)

    async def _release(self, conn: asyncpg.Connection,
                       reservation_id: int) -> asyncpg.Record | None:
        raise NotImplementedError

    @staticmethod
    async def _replay(conn: asyncpg.Connection, pool_id: str, slot_id: str, units: int,
                      key: str | None) -> dict:
        row = await conn.fetchrow(
            "SELECT reservation_id, slot_id, units FROM reservations"
            " WHERE pool_id = $1 AND idempotency_key = $2", pool_id, key)
        if row is None or (row["slot_id"], row["units"]) != (slot_id, units):
            raise Rejected(422, "idempotency_key_reused", "key used with another request")
        return reservation_view(row["reservation_id"], pool_id, slot_id, units, True)

    @staticmethod
    async def _why_not(conn: asyncpg.Connection, pool_id: str, slot_id: str,
                       units: int) -> Rejected:
        row = await conn.fetchrow(_READ_SLOT, pool_id, slot_id)
        if row is None:
            return Rejected(404, "slot_not_found", f"no slot {slot_id} in pool {pool_id}")
        return _refusal(row, slot_id, units)


def _refusal(row: asyncpg.Record, slot_id: str, units: int) -> Rejected:
    if not row["open"]:
        return Rejected(409, "slot_closed", f"slot {slot_id} is closed")
    available = row["capacity"] - row["reserved"]
    return Rejected(409, "capacity_exhausted",
                    f"slot {slot_id} has {available} units available, {units} requested")


class TwoStatementStore(Store):
    """BEGIN; conditional UPDATE; INSERT the reservation; COMMIT."""

    async def _reserve(self, conn: asyncpg.Connection, pool_id: str, slot_id: str,
                       units: int, key: str | None) -> int:
        async with conn.transaction():
            if await conn.fetchrow(_RULE + " RETURNING reserved", pool_id, slot_id,
                                   units) is None:
                raise await self._why_not(conn, pool_id, slot_id, units)
            return await conn.fetchval(_INSERT, pool_id, slot_id, units, key)

    async def _release(self, conn: asyncpg.Connection,
                       reservation_id: int) -> asyncpg.Record | None:
        async with conn.transaction():
            row = await conn.fetchrow(_MARK_RELEASED, reservation_id)
            if row is not None:
                await conn.execute(_GIVE_BACK, row["pool_id"], row["slot_id"], row["units"])
            return row


class CteStore(Store):
    """One statement: WITH s AS (UPDATE ... RETURNING) INSERT ... (one round trip)."""

    async def _reserve(self, conn: asyncpg.Connection, pool_id: str, slot_id: str,
                       units: int, key: str | None) -> int:
        rid = await conn.fetchval(_CTE_RESERVE, pool_id, slot_id, units, key)
        if rid is None:
            raise await self._why_not(conn, pool_id, slot_id, units)
        return rid

    async def _release(self, conn: asyncpg.Connection,
                       reservation_id: int) -> asyncpg.Record | None:
        return await conn.fetchrow(_CTE_RELEASE, reservation_id)


class OptimisticStore(Store):
    """Read the slot with its version; write only if the version did not move; else retry."""

    async def _reserve(self, conn: asyncpg.Connection, pool_id: str, slot_id: str,
                       units: int, key: str | None) -> int:
        for _ in range(OCC_ATTEMPTS):
            row = await conn.fetchrow(_READ_SLOT, pool_id, slot_id)
            if row is None:
                raise Rejected(404, "slot_not_found", f"no slot {slot_id} in pool {pool_id}")
            if not row["open"] or row["reserved"] + units > row["capacity"]:
                raise _refusal(row, slot_id, units)
            try:
                async with conn.transaction():
                    if await conn.fetchval(_OCC_WRITE, pool_id, slot_id,
                                           row["reserved"] + units, row["version"]) is None:
                        raise _Conflict
                    return await conn.fetchval(_INSERT, pool_id, slot_id, units, key)
            except _Conflict:
                continue
        raise Rejected(503, "overloaded", f"gave up after {OCC_ATTEMPTS} version conflicts")

    async def _release(self, conn: asyncpg.Connection,
                       reservation_id: int) -> asyncpg.Record | None:
        async with conn.transaction():
            row = await conn.fetchrow(_MARK_RELEASED, reservation_id)
            if row is None:
                return None
            for _ in range(OCC_ATTEMPTS):
                slot = await conn.fetchrow(_READ_SLOT, row["pool_id"], row["slot_id"])
                if await conn.fetchval(_OCC_WRITE, row["pool_id"], row["slot_id"],
                                       slot["reserved"] - row["units"],
                                       slot["version"]) is not None:
                    return row
            raise Rejected(503, "overloaded", f"gave up after {OCC_ATTEMPTS} version conflicts")


STORES: dict[str, type[Store]] = {"tx": TwoStatementStore, "cte": CteStore,
                                  "occ": OptimisticStore}
