"""Traffic profiles: what real users do, at what rates, and how many simulated users that takes.

A profile states rates at the *reference peak* (multiplier 1). `--multiplier 10` scales every
rate by ten. Customers run one session per think time (open the grid, sometimes reserve,
sometimes cancel a reservation made earlier); planners run one edit per think time (list the
pools of a day, change one slot's capacity). User counts follow from rate x think time.

Default profile at the reference peak (see load/README.md for why these numbers):

    100 grid reads/s : 5 reservations/s : 1 release/s : 0.05 planner edits/s
  = 20              : 1                 : 0.2         : 0.01
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    grid_reads_per_s: float  # at the reference peak
    reserves_per_grid_read: float  # chance that a customer session ends in a reserve
    releases_per_reserve: float  # chance that a reservation is cancelled later
    planner_edits_per_reserve: float
    flash_share: float = 0.0  # share of customer sessions that go for the flash-sale pool
    # One session per simulated customer per think time. A real customer thinks for seconds;
    # a Locust user here stands for ~10-30 of them, because Locust's own latency grows with
    # its user count (load/README.md: 1,000 users at 1 req/s gave p50 130 ms on /healthz).
    customer_think_s: float = 0.1
    planner_think_s: float = 2.0

    def __post_init__(self) -> None:
        assert self.grid_reads_per_s > 0 and 0 < self.reserves_per_grid_read <= 1
        assert 0 <= self.releases_per_reserve <= 1 and 0 <= self.flash_share <= 1


@dataclass(frozen=True)
class Rates:
    """Requests per second of each kind at one multiplier (planner edits = list + change)."""

    grid_reads: float
    reserves: float
    releases: float
    planner_edits: float

    @property
    def total(self) -> float:
        return self.grid_reads + self.reserves + self.releases + 2 * self.planner_edits


@dataclass(frozen=True)
class UserPlan:
    """How many users of each class, and the sessions per second each one runs."""

    customers: int
    customer_sessions_per_s: float
    planners: int
    planner_edits_per_s: float

    @property
    def users(self) -> int:
        return self.customers + self.planners


DEFAULT = Profile(
    name="default",
    description="everyday peak: 20 grid reads : 1 reserve : 0.2 release : 0.01 planner edit",
    grid_reads_per_s=100.0,
    reserves_per_grid_read=1 / 20,
    releases_per_reserve=0.2,
    planner_edits_per_reserve=0.01,
)

FLASH_SALE = Profile(
    name="flash-sale",
    description="a flash sale: 90% of customers go for the same 3 slots of one pool, "
    "and they reserve far more often (1 reserve per 4 grid reads)",
    grid_reads_per_s=100.0,
    reserves_per_grid_read=1 / 4,
    releases_per_reserve=0.05,
    planner_edits_per_reserve=0.002,
    flash_share=0.9,
)

PROFILES: dict[str, Profile] = {p.name: p for p in (DEFAULT, FLASH_SALE)}


def rates(profile: Profile, multiplier: float) -> Rates:
    assert multiplier > 0
    grid = profile.grid_reads_per_s * multiplier
    reserves = grid * profile.reserves_per_grid_read
    return Rates(
        grid_reads=grid,
        reserves=reserves,
        releases=reserves * profile.releases_per_reserve,
        planner_edits=reserves * profile.planner_edits_per_reserve,
    )


def user_plan(profile: Profile, multiplier: float) -> UserPlan:
    """Users needed for the profile's rates; per-user pacing makes the totals exact."""
    r = rates(profile, multiplier)
    customers = max(1, math.ceil(r.grid_reads * profile.customer_think_s))
    planners = max(1, math.ceil(r.planner_edits * profile.planner_think_s))
    return UserPlan(customers, r.grid_reads / customers, planners, r.planner_edits / planners)
