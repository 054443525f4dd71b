"""The benchmark's data and workloads, the same for every system under test.

Data: 500 pools of 12 slots (25 regions x 5 dates x 4 kinds, so a grid shows 4 pools and 48
slots), plus one fresh "hot" pool per system and round. Capacities are 1,000,000 per slot, so
no write is ever refused and every measured write is a durable reservation.

Workloads (each a stream of requests, rendered either as a wrk Lua script for closed-loop
saturation runs or as a Python generator for the open-loop fixed-rate runs):
- `uniform`: reserve 1 unit in a random slot of a random pool;
- `hot`: every reserve goes to the 12 slots of one pool;
- `grid-mix`: the read-heavy customer mix, 20 grid reads : 1 reserve : 0.2 release (releases
  cancel reservations this stream made).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from itertools import count

from capsvc.sharding import embedded_owner, shard_for_pool
from load.fixtures import days_ahead

REGIONS = tuple(f"r{i:02d}" for i in range(25))
DATES = tuple(days_ahead(d) for d in range(2, 7))  # relative: past slots are not bookable
KINDS = ("k0", "k1", "k2", "k3")
SLOT_IDS = tuple(f"{h:02d}00" for h in range(8, 20))
CAPACITY = 1_000_000
GRID_READS, RESERVES, RELEASES = 20.0, 1.0, 0.2
_RESERVATION_ID = re.compile(rb'"reservation_id":\s*"([^"]+)"')


@dataclass(frozen=True)
class BenchPool:
    pool_id: str
    kind: str
    region: str
    date: str

    def slots(self) -> list[dict]:
        return [
            {"slot_id": s, "starts_at": f"{self.date}T{8 + i:02d}:00:00+08:00",
             "ends_at": f"{self.date}T{9 + i:02d}:00:00+08:00", "capacity": CAPACITY}
            for i, s in enumerate(SLOT_IDS)
        ]

    def definition(self) -> dict:
        return {"kind": self.kind, "region": self.region, "date": self.date,
                "total_capacity": None, "slots": self.slots()}


def uniform_pools() -> list[BenchPool]:
    return [BenchPool(f"{r}:{d}:{k}", k, r, d) for r in REGIONS for d in DATES for k in KINDS]


def owned_by(pool_id: str, worker: int, shard_count: int, workers: int) -> bool:
    return embedded_owner(shard_for_pool(pool_id, shard_count), workers) == worker


def hot_pool(name: str, shard_count: int, workers: int) -> BenchPool:
    """A fresh pool named after `name`, owned by worker 0 (so router and direct runs compare
    on the same worker)."""
    for n in count():
        pool_id = f"hot-{name}-{n}"
        if owned_by(pool_id, 0, shard_count, workers):
            return BenchPool(pool_id, "hot", "hot", DATES[0])
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Workload:
    """A request stream: writes go to `pools`; `grid_share` > 0 mixes in grid reads of `days`
    and releases of reservations the stream made."""

    name: str
    pools: tuple[str, ...]
    days: tuple[tuple[str, str], ...] = ()
    with_grid: bool = False

    @property
    def shares(self) -> tuple[float, float]:
        """(reserve, release) shares of all requests; the rest are grid reads."""
        if not self.with_grid:
            return 1.0, 0.0
        total = GRID_READS + RESERVES + RELEASES
        return RESERVES / total, RELEASES / total

    def lua(self, nonce: str) -> str:
        return _LUA.substitute(self, nonce)

    def requests(self, seed: int, nonce: str) -> RequestStream:
        """The Python stream; `nonce` makes its Idempotency-Keys unique to this run."""
        return RequestStream(self, random.Random(seed), nonce)


class RequestStream:
    """The Python twin of the Lua script: next request, and ids harvested from answers."""

    def __init__(self, workload: Workload, rng: random.Random, nonce: str) -> None:
        self.workload = workload
        self.rng = rng
        self.reserve_share, self.release_share = workload.shares
        self.reservations: list[str] = []
        self.prefix = f"{nonce}-"
        self.n = 0

    def next(self) -> tuple[str, str, bytes, dict[str, str]]:
        """(method, path, body, headers)."""
        r, w = self.rng.random(), self.workload
        if r < self.release_share and self.reservations:
            rid = self.reservations.pop(self.rng.randrange(len(self.reservations)))
            return "DELETE", f"/v1/reservations/{rid}", b"", {}
        if r < self.release_share + self.reserve_share:
            self.n += 1
            body = json.dumps({"slot_id": self.rng.choice(SLOT_IDS), "units": 1}).encode()
            return ("POST", f"/v1/pools/{self.rng.choice(w.pools)}/reservations", body,
                    {"Idempotency-Key": f"{self.prefix}{self.n}"})
        region, date = self.rng.choice(w.days)
        return "GET", f"/v1/availability?region={region}&date={date}", b"", {}

    def answered(self, status: int, body: bytes) -> None:
        if status == 201 and self.workload.with_grid:
            match = _RESERVATION_ID.search(body)
            if match:
                self.reservations.append(match.group(1).decode())


def uniform(pools: list[BenchPool]) -> Workload:
    return Workload("uniform", tuple(p.pool_id for p in pools))


def hot(pool: BenchPool) -> Workload:
    return Workload("hot", (pool.pool_id,))


def grid_mix(pools: list[BenchPool]) -> Workload:
    days = tuple(sorted({(p.region, p.date) for p in pools}))
    return Workload("grid-mix", tuple(p.pool_id for p in pools), days, with_grid=True)


class _LuaTemplate:
    """Renders a workload as a wrk script. Each wrk thread has its own Lua state; `done`
    prints one JSON line (marked WRK_RESULT) with the counts and the non-2xx statuses."""

    HEAD = """
local pools = {%(pools)s}
local slots = {%(slots)s}
local days = {%(days)s}
local reserve_share, release_share = %(reserve)f, %(release)f
local threads, counter, ids, prefix = {}, 0, {}, ""
local harvest = %(harvest)s
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  prefix = "%(nonce)s-" .. tostring(tid) .. "-"
  math.randomseed(tid * 7919 + os.time())
end
function request()
  local r = math.random()
  if r < release_share and #ids > 0 then
    local rid = table.remove(ids)
    return wrk.format("DELETE", "/v1/reservations/" .. rid)
  end
  if r < release_share + reserve_share then
    counter = counter + 1
    local body = '{"slot_id":"' .. slots[math.random(#slots)] .. '","units":1}'
    return wrk.format("POST", "/v1/pools/" .. pools[math.random(#pools)] .. "/reservations",
      {["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. counter}, body)
  end
  local day = days[math.random(#days)]
  return wrk.format("GET", "/v1/availability?region=" .. day[1] .. "&date=" .. day[2])
end
"""
    RESPONSE = """
statuses = {}
function response(status, headers, body)
  if status >= 300 then statuses[status] = (statuses[status] or 0) + 1 end
  if harvest and status == 201 then
    local rid = string.match(body, '"reservation_id":%%s*"([^"]+)"')
    if rid then table.insert(ids, rid) end
  end
end
"""
    DONE = """
function done(summary, latency, requests)
  local e, bad = summary.errors, {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do table.insert(bad, code .. ":" .. n) end
  end
  io.write(string.format('WRK_RESULT {"requests":%%d,"duration_us":%%d,"connect":%%d,' ..
    '"read":%%d,"write":%%d,"status":%%d,"timeout":%%d,"statuses":"%%s"}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(bad, ",")))
end
"""

    def substitute(self, w: Workload, nonce: str) -> str:
        reserve, release = w.shares
        values = {
            "pools": ",".join(f'"{p}"' for p in w.pools),
            "slots": ",".join(f'"{s}"' for s in SLOT_IDS),
            "days": ",".join(f'{{"{r}","{d}"}}' for r, d in w.days),
            "reserve": reserve, "release": release, "nonce": nonce,
            "harvest": "true" if w.with_grid else "false",
        }
        return self.HEAD % values + self.RESPONSE % {} + self.DONE % {}


_LUA = _LuaTemplate()
