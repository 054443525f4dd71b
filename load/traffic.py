"""What capsvc's users do, independent of the tool that sends their requests.

The Locust users (`load/locustfile.py`) and the open-loop mix (`load/openmix.py`) both follow
these definitions: the routes and their names in reports, each user's random choices, which
answers are successes, and how a reserve is retried. Imports neither Locust nor asyncio, so
both tools can use it (importing Locust monkey-patches the interpreter with gevent).
"""

from __future__ import annotations

import random
from typing import NamedTuple

from load import fixtures
from load.profiles import Profile

# Request names, as Locust reports them (the path with its parameters left as placeholders).
GRID = "/v1/availability"
RESERVE = "/v1/pools/{pool_id}/reservations"
RELEASE = "/v1/reservations/{reservation_id}"
LIST_POOLS = "/v1/admin/pools"
UPDATE_SLOT = "/v1/admin/pools/{pool_id}/slots/{slot_id}"
METHODS = {GRID: "GET", RESERVE: "POST", RELEASE: "DELETE", LIST_POOLS: "GET",
           UPDATE_SLOT: "PATCH"}

RESERVE_ATTEMPTS = 4  # the first try and three retries with the same Idempotency-Key
RETRY_AFTER_DEFAULT_S = 0.1  # when a 503/504 carries no Retry-After
RETRY_AFTER_MAX_S = 1.0
RESERVE_TAKEN_CODES = ("capacity_exhausted", "slot_closed")  # the grid was a few ms behind
UPDATE_RACED_CODES = ("capacity_below_reserved",)  # a customer reserved between read and write
CAPACITY_STEP = 20  # a planner changes a slot's capacity by -20..+20


def grid_path(region: str, date: str) -> str:
    return f"{GRID}?region={region}&date={date}"


def reserve_path(pool_id: str) -> str:
    return RESERVE.format(pool_id=pool_id)


def release_path(reservation_id: str) -> str:
    return RELEASE.format(reservation_id=reservation_id)


def list_pools_path(region: str, date: str) -> str:
    return f"{LIST_POOLS}?region={region}&date={date}"


def update_slot_path(pool_id: str, slot_id: str) -> str:
    return UPDATE_SLOT.format(pool_id=pool_id, slot_id=slot_id)


def reserve_body(slot_id: str) -> dict:
    return {"slot_id": slot_id, "units": 1}


class Session(NamedTuple):
    """One customer session's choices: the grid to open and whether to go on to reserve."""

    flash: bool
    region: str
    date: str
    reserving: bool

    @property
    def pool_filter(self) -> str | None:
        """The pool the customer reserves in (the flash pool in a flash-sale session)."""
        return fixtures.FLASH_POOL if self.flash else None


def customer_session(rng: random.Random, profile: Profile) -> Session:
    flash = rng.random() < profile.flash_share
    if flash:
        region, date = fixtures.FLASH_REGION, fixtures.FLASH_DATE
    else:
        region, date = rng.choice(fixtures.REGIONS), rng.choice(fixtures.DATES)
    return Session(flash, region, date, rng.random() < profile.reserves_per_grid_read)


def bookable_slots(grid: dict, pool_id: str | None = None) -> list[tuple[str, str]]:
    """(pool id, slot id) of every bookable slot in a grid answer, optionally of one pool."""
    return [
        (pool["pool_id"], slot["slot_id"])
        for pool in grid.get("pools", ())
        if pool_id is None or pool["pool_id"] == pool_id
        for slot in pool["slots"]
        if slot["bookable"]
    ]


def cancels_later(rng: random.Random, profile: Profile) -> bool:
    """Whether a new reservation is cancelled in the customer's next session."""
    return rng.random() < profile.releases_per_reserve


# -- answers -----------------------------------------------------------------------------------
RESERVED, TAKEN, RETRY, FAILED = "reserved", "taken", "retry", "failed"


def reserve_outcome(status: int, code: str | None) -> str:
    """RESERVED (201), TAKEN (an expected 409: a success), RETRY (a 503/504: a failure, retried
    with the same Idempotency-Key) or FAILED (any other answer, or none: status 0)."""
    if status == 201:
        return RESERVED
    if status == 409 and code in RESERVE_TAKEN_CODES:
        return TAKEN
    return RETRY if status in (503, 504) else FAILED


def retry_delay_s(retry_after: str | bytes | None) -> float:
    """How long to wait before retrying a 503/504: its Retry-After, at most a second."""
    try:
        seconds = float(retry_after or RETRY_AFTER_DEFAULT_S)
    except ValueError:  # an HTTP date: capsvc never sends one
        seconds = RETRY_AFTER_DEFAULT_S
    return min(seconds, RETRY_AFTER_MAX_S)


def update_succeeded(status: int, code: str | None) -> bool:
    return status == 200 or (status == 409 and code in UPDATE_RACED_CODES)


# -- planners ----------------------------------------------------------------------------------
def planner_day(rng: random.Random) -> tuple[str, str]:
    """The (region, date) whose pools a planner lists."""
    return rng.choice(fixtures.REGIONS), rng.choice(fixtures.DATES)


def planner_change(rng: random.Random, listing: dict) -> tuple[str, str, int] | None:
    """(pool id, slot id, new capacity) for one slot of the listed pools (the flash pool is
    left alone), or None when the day has none."""
    pools = [p for p in listing["pools"] if p["kind"] in fixtures.KINDS]
    if not pools:
        return None
    pool = rng.choice(pools)
    slot = rng.choice(pool["slots"])
    step = rng.randint(-CAPACITY_STEP, CAPACITY_STEP)
    return pool["pool_id"], slot["slot_id"], max(slot["reserved"], 1, slot["capacity"] + step)
