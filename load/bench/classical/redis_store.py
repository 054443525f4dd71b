"""The classical service over Redis: the rule `reserved + units <= capacity` kept by a Lua
script that Redis runs atomically (one round trip, EVALSHA through redis-py's
`register_script`), with the same answers as the PostgreSQL stores (load/bench/classical/store.py).

Keys (a `/` separates the parts, since ids may contain `:` but never `/` or `,`):
- `pool/{pool_id}`: hash of the pool: `kind`, `slots` (its slot ids by `starts_at`, comma
  separated), `json` (its grid entry rendered at load time up to its slots' list), and for each
  slot `{slot_id}/capacity`, `{slot_id}/reserved`, `{slot_id}/open` (1/0) and `{slot_id}/json`
  (the slot's grid entry up to its `bookable` value);
- `day/{region}/{date}`: set of the pool ids of that day (the grid's index);
- `resv/{reservation_id}`: hash `pool_id`, `slot_id`, `units`, `active` (1/0);
  `next-reservation-id`: the counter (ids from 1, like a bigserial);
- `idem/{pool_id}`: hash idempotency key -> reservation id (unique per pool, as in PostgreSQL).

Reserve checks in PostgreSQL's order: the slot (404 `slot_not_found`, 409 `slot_closed`,
409 `capacity_exhausted`), then the idempotency key (a known key is a replay, or 422 when it
came with another slot or units), then increments and records. Release marks the reservation
released and gives its units back, once. The grid is one read-only script that concatenates
the pre-rendered JSON (as PostgreSQL builds it with json_agg in one query). Timestamps are
the strings the pools were defined with (as capsvc answers them); PostgreSQL renders the same
instants in its session time zone.

The scripts build some keys from values they read (a reservation's slot, a day's pools), which
a standalone Redis allows (Redis Cluster would not).
"""

from __future__ import annotations

import datetime as dt
import json

import redis
import redis.asyncio as aioredis

from load.bench.classical.store import Rejected, reservation_view
from load.bench.workloads import BenchPool

VARIANT = "redis-lua"
COUNTER = "next-reservation-id"

# KEYS: pool, idempotency hash, counter. ARGV: units, pool_id, slot_id, has_key (1/0), key.
# -> {0, rid} reserved | {1, rid, slot_id, units} known key | {-1} no slot | {-2} closed
#    | {-3, available} no capacity
RESERVE = """
local slot = ARGV[3]
local s = redis.call('HMGET', KEYS[1], slot .. '/capacity', slot .. '/reserved', slot .. '/open')
if not s[1] then return {-1} end
if s[3] ~= '1' then return {-2} end
local units, capacity, reserved = tonumber(ARGV[1]), tonumber(s[1]), tonumber(s[2])
if reserved + units > capacity then return {-3, capacity - reserved} end
local keyed = ARGV[4] == '1'
if keyed then
  local known = redis.call('HGET', KEYS[2], ARGV[5])
  if known then
    local r = redis.call('HMGET', 'resv/' .. known, 'slot_id', 'units')
    return {1, known, r[1], r[2]}
  end
end
redis.call('HINCRBY', KEYS[1], slot .. '/reserved', units)
local rid = redis.call('INCR', KEYS[3])
redis.call('HSET', 'resv/' .. rid, 'pool_id', ARGV[2], 'slot_id', slot, 'units', units,
           'active', '1')
if keyed then redis.call('HSET', KEYS[2], ARGV[5], rid) end
return {0, rid}
"""

# KEYS: the reservation. -> {} unknown | {pool_id, slot_id, units} (released now or before)
RELEASE = """
local r = redis.call('HMGET', KEYS[1], 'pool_id', 'slot_id', 'units', 'active')
if not r[1] then return {} end
if r[4] == '1' then
  redis.call('HSET', KEYS[1], 'active', '0')
  redis.call('HINCRBY', 'pool/' .. r[1], r[2] .. '/reserved', -tonumber(r[3]))
end
return {r[1], r[2], r[3]}
"""

# KEYS: the day's set. ARGV: has_kind (1/0), kind. -> the grid's pools as JSON text, two
# HMGETs a pool.
GRID = """#!lua flags=no-writes
local ids = redis.call('SMEMBERS', KEYS[1])
table.sort(ids)
local pools = {}
for _, id in ipairs(ids) do
  local key = 'pool/' .. id
  local p = redis.call('HMGET', key, 'kind', 'slots')
  if ARGV[1] == '0' or p[1] == ARGV[2] then
    local fields, n = {'json'}, 0
    for slot in string.gmatch(p[2], '[^,]+') do
      fields[#fields + 1] = slot .. '/capacity'
      fields[#fields + 1] = slot .. '/reserved'
      fields[#fields + 1] = slot .. '/open'
      fields[#fields + 1] = slot .. '/json'
      n = n + 1
    end
    local v = redis.call('HMGET', key, unpack(fields))
    local slots = {}
    for i = 0, n - 1 do
      local at = 4 * i + 1
      local bookable = v[at + 3] == '1' and tonumber(v[at + 2]) < tonumber(v[at + 1])
      slots[i + 1] = v[at + 4] .. (bookable and 'true}' or 'false}')
    end
    pools[#pools + 1] = v[1] .. table.concat(slots, ', ') .. ']}'
  end
end
return '[' .. table.concat(pools, ', ') .. ']'
"""


class RedisStore:
    """The three calls the app makes (as store.Store answers them), over one Redis."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._reserve = client.register_script(RESERVE)
        self._release = client.register_script(RELEASE)
        self._grid = client.register_script(GRID)

    @classmethod
    async def connect(cls, url: str, pool_size: int) -> RedisStore:
        """`pool_size` connections; a request waits for a free one (as asyncpg's pool)."""
        pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=pool_size,
                                                        timeout=None)
        client = aioredis.Redis(connection_pool=pool)
        await client.ping()
        return cls(client)

    async def availability(self, region: str, date: dt.date, kind: str | None) -> str:
        grid = await self._grid(keys=[f"day/{region}/{date.isoformat()}"],
                                args=["0", ""] if kind is None else ["1", kind])
        return grid.decode()

    async def reserve(self, pool_id: str, slot_id: str, units: int,
                      key: str | None) -> tuple[dict, bool]:
        """(reservation, replayed)."""
        answer = await self._reserve(
            keys=[f"pool/{pool_id}", f"idem/{pool_id}", COUNTER],
            args=[units, pool_id, slot_id, "0" if key is None else "1", key or ""])
        outcome = answer[0]
        if outcome == 0:
            return reservation_view(answer[1], pool_id, slot_id, units, True), False
        if outcome == 1:
            if (answer[2].decode(), int(answer[3])) != (slot_id, units):
                raise Rejected(422, "idempotency_key_reused", "key used with another request")
            return reservation_view(int(answer[1]), pool_id, slot_id, units, True), True
        if outcome == -1:
            raise Rejected(404, "slot_not_found", f"no slot {slot_id} in pool {pool_id}")
        if outcome == -2:
            raise Rejected(409, "slot_closed", f"slot {slot_id} is closed")
        raise Rejected(409, "capacity_exhausted",
                       f"slot {slot_id} has {answer[1]} units available, {units} requested")

    async def release(self, reservation_id: int) -> dict:
        row = await self._release(keys=[f"resv/{reservation_id}"])
        if not row:
            raise Rejected(404, "reservation_not_found", f"no reservation {reservation_id}")
        return reservation_view(reservation_id, row[0].decode(), row[1].decode(), int(row[2]),
                                False)


def _pool_json(p: BenchPool) -> str:
    """The pool's grid entry up to its slots' list (PostgreSQL's json_agg key order)."""
    head = json.dumps({"pool_id": p.pool_id, "kind": p.kind, "region": p.region,
                       "date": p.date})
    return head[:-1] + ', "slots": ['


def _slot_json(slot: dict) -> str:
    """The slot's grid entry up to its `bookable` value, which the grid script appends."""
    head = json.dumps({k: slot[k] for k in ("slot_id", "starts_at", "ends_at")})
    return head[:-1] + ', "bookable": '


def create(url: str, pools: list[BenchPool]) -> None:
    """Load `pools` (slots with nothing reserved) into an empty Redis, in one pipeline."""
    with redis.Redis.from_url(url) as client:
        if client.dbsize():
            raise RuntimeError(f"{url} is not empty")
        pipe = client.pipeline(transaction=False)
        for p in pools:
            slots = sorted(p.slots(), key=lambda s: dt.datetime.fromisoformat(s["starts_at"]))
            fields: dict[str, str | int] = {
                "kind": p.kind, "slots": ",".join(s["slot_id"] for s in slots),
                "json": _pool_json(p)}
            for s in slots:
                sid = s["slot_id"]
                fields |= {f"{sid}/capacity": s["capacity"], f"{sid}/reserved": 0,
                           f"{sid}/open": 1, f"{sid}/json": _slot_json(s)}
            pipe.hset(f"pool/{p.pool_id}", mapping=fields)
            pipe.sadd(f"day/{p.region}/{p.date}", p.pool_id)
        pipe.execute()
