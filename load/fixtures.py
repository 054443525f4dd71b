"""The pools a load run works on, and how they are defined through the admin API.

Layout: 8 regions x 7 dates x 3 kinds = 168 pools of 12 one-hour slots (08:00-20:00, +08:00),
so a customer's grid (one region and date) shows 3 pools and 36 slots. The flash-sale pool is a
fourth pool on the first date of the first region with 3 slots.

Pool ids are fixed, so defining them again is harmless: 200 for the same definition, and
409 `pool_exists` (accepted here) when planners changed capacities in an earlier run.
Uses only the standard library, so it works both in plain Python and under Locust's gevent.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

REGIONS = ("sg-north", "sg-south", "sg-east", "sg-west", "my-kl", "my-jb", "id-jkt", "th-bkk")
FIRST_DATE = dt.date.today() + dt.timedelta(days=1)  # relative: past slots stop being bookable
DATES = tuple((FIRST_DATE + dt.timedelta(days=d)).isoformat() for d in range(7))


def days_ahead(days: int) -> str:
    """The date `days` from today (dates in load tools are relative, as in the tests: slots in
    the past are not bookable). Two days ahead is safe for slots in any UTC offset."""
    return (dt.date.today() + dt.timedelta(days=days)).isoformat()
KINDS = ("logistics", "grocery", "bulky")
SLOT_HOURS = tuple(range(8, 20))  # 12 slots
SLOT_CAPACITY = 1000

FLASH_REGION, FLASH_DATE, FLASH_KIND = REGIONS[0], DATES[0], "flash"
FLASH_POOL = f"{FLASH_REGION}:{FLASH_DATE}:{FLASH_KIND}"
FLASH_SLOTS = ("flash-1800", "flash-1900", "flash-2000")
FLASH_CAPACITY = 5000  # per slot: lasts about two minutes at 10x, then the sale is over


@dataclass(frozen=True)
class PoolSpec:
    pool_id: str
    body: dict


def pool_id(region: str, date: str, kind: str) -> str:
    return f"{region}:{date}:{kind}"


def slot_body(slot_id: str, date: str, hour: int, capacity: int) -> dict:
    return {
        "slot_id": slot_id,
        "starts_at": f"{date}T{hour:02d}:00:00+08:00",
        "ends_at": f"{date}T{hour + 1:02d}:00:00+08:00",
        "capacity": capacity,
    }


def regular_pools() -> list[PoolSpec]:
    pools = []
    for region in REGIONS:
        for date in DATES:
            for kind in KINDS:
                slots = [slot_body(f"{h:02d}00", date, h, SLOT_CAPACITY) for h in SLOT_HOURS]
                body = {"kind": kind, "region": region, "date": date, "total_capacity": None,
                        "slots": slots}
                pools.append(PoolSpec(pool_id(region, date, kind), body))
    return pools


def flash_pool() -> PoolSpec:
    slots = [slot_body(s, FLASH_DATE, 18 + i, FLASH_CAPACITY) for i, s in enumerate(FLASH_SLOTS)]
    body = {"kind": FLASH_KIND, "region": FLASH_REGION, "date": FLASH_DATE,
            "total_capacity": None, "slots": slots}
    return PoolSpec(FLASH_POOL, body)


def all_pools(flash: bool) -> list[PoolSpec]:
    return regular_pools() + ([flash_pool()] if flash else [])


def define(base_url: str, admin_token: str, pools: list[PoolSpec], timeout_s: float = 10,
           parallel: int = 16) -> int:
    """PUT every pool (`parallel` at a time); returns how many were new. Raises on anything
    but 200/201/409."""
    with ThreadPoolExecutor(parallel) as executor:  # greenlets under Locust's gevent
        return sum(executor.map(lambda spec: _define_one(base_url, admin_token, spec,
                                                         timeout_s), pools))


def _define_one(base_url: str, admin_token: str, spec: PoolSpec, timeout_s: float) -> bool:
    request = urllib.request.Request(
        f"{base_url}/v1/admin/pools/{spec.pool_id}",
        data=json.dumps(spec.body).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {admin_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status == 201
    except urllib.error.HTTPError as e:
        if e.code != 409:  # pool_exists: an earlier run defined it, then planners edited it
            raise RuntimeError(f"defining {spec.pool_id}: {e.code} {e.read()[:300]!r}") from e
        return False
