"""Locust users modelled on capsvc's real users.

- `Customer`: opens the availability grid for a region and date, and in some sessions picks a
  bookable slot and reserves it with an `Idempotency-Key` (retrying 503/504 with the same key,
  as the API asks). Some reservations are cancelled in the customer's next session. In the
  flash-sale profile most sessions go for the flash pool's three slots.
- `Planner`: lists the pools of a day and changes one slot's capacity.

Rates come from a profile (`load/profiles.py`) and `--multiplier`; the users' counts and pacing
are set from them when Locust initialises, so `-u` must be `UserPlan.users` (load/run_locust.py
computes it). Expected business answers (409 `capacity_exhausted` when the grid was a few
milliseconds behind, 409 `capacity_below_reserved` for a planner) are successes; every other
non-2xx answer, a retried 503 included, is a failure.

    locust -f load/locustfile.py --headless -H http://127.0.0.1:8080 \
        --load-profile default --multiplier 1 -u 101 -r 20 -t 1m
"""

from __future__ import annotations

import os
import random
import sys
import uuid
from pathlib import Path

if __package__ in (None, ""):  # loaded by path (`locust -f`): make the `load` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gevent  # noqa: E402
from locust import FastHttpUser, constant_throughput, events, task  # noqa: E402
from locust.runners import WorkerRunner  # noqa: E402

from load import fixtures, traffic  # noqa: E402
from load.profiles import DEFAULT, PROFILES, Profile, user_plan  # noqa: E402
from load.traffic import (  # noqa: E402  (what the users do, shared with load/openmix.py)
    GRID,
    LIST_POOLS,
    RELEASE,
    RESERVE,
    RESERVE_ATTEMPTS,
    UPDATE_SLOT,
    bookable_slots,
)

_settings = {"profile": DEFAULT, "admin_token": ""}


@events.init_command_line_parser.add_listener
def _options(parser) -> None:
    # Locust already owns --profile, so ours is --load-profile (run_locust.py maps it).
    parser.add_argument("--load-profile", choices=sorted(PROFILES), default="default",
                        help="traffic profile (load/profiles.py)")
    parser.add_argument("--multiplier", type=float, default=1.0,
                        help="scale of the reference peak: 10 means 10x")
    parser.add_argument("--admin-token", default=os.environ.get("CAPSVC_ADMIN_TOKEN", ""),
                        help="admin bearer token (default: $CAPSVC_ADMIN_TOKEN)")
    parser.add_argument("--skip-fixtures", action="store_true",
                        help="do not define the pools at test start")


@events.init.add_listener
def _configure_from_options(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if options is not None:
        configure(PROFILES[options.load_profile], options.multiplier, options.admin_token)


def configure(profile: Profile, multiplier: float, admin_token: str) -> None:
    """Set the user classes' counts and pacing for `profile` at `multiplier`."""
    plan = user_plan(profile, multiplier)
    _settings.update(profile=profile, admin_token=admin_token)
    Customer.fixed_count = plan.customers
    Customer.wait_time = constant_throughput(plan.customer_sessions_per_s)
    Planner.fixed_count = plan.planners
    Planner.wait_time = constant_throughput(plan.planner_edits_per_s)


@events.test_start.add_listener
def _define_pools(environment, **_kwargs) -> None:
    options = environment.parsed_options
    if isinstance(environment.runner, WorkerRunner) or (options and options.skip_fixtures):
        return
    profile: Profile = _settings["profile"]
    pools = fixtures.all_pools(flash=profile.flash_share > 0)
    fixtures.define(environment.host, _settings["admin_token"], pools)


def _problem_code(response) -> str | None:
    try:
        return response.json().get("code")
    except (ValueError, AttributeError):
        return None


class Customer(FastHttpUser):
    fixed_count = 1
    wait_time = constant_throughput(1.0)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.to_cancel: list[str] = []

    @task
    def session(self) -> None:
        profile: Profile = _settings["profile"]
        if self.to_cancel:
            self.release(self.to_cancel.pop())
        session = traffic.customer_session(self.rng, profile)
        grid = self.open_grid(session.region, session.date, parse=session.reserving)
        if grid is None or not session.reserving:
            return
        choices = bookable_slots(grid, session.pool_filter)
        if not choices:
            return  # sold out: the customer leaves
        pool_id, slot_id = self.rng.choice(choices)
        reservation_id = self.reserve(pool_id, slot_id)
        if reservation_id and traffic.cancels_later(self.rng, profile):
            self.to_cancel.append(reservation_id)

    def open_grid(self, region: str, date: str, parse: bool) -> dict | None:
        """The grid (parsed only when the customer goes on to pick a slot: parsing every
        answer would make Locust, not capsvc, the bottleneck)."""
        with self.client.get(traffic.grid_path(region, date), name=GRID,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {_problem_code(response)}")
                return None
            return response.json() if parse else {}

    def reserve(self, pool_id: str, slot_id: str) -> str | None:
        """The new reservation's id, or None when the slot was taken meanwhile."""
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        body = traffic.reserve_body(slot_id)
        for attempt in range(1, RESERVE_ATTEMPTS + 1):
            with self.client.post(traffic.reserve_path(pool_id), json=body,
                                  headers=headers, name=RESERVE,
                                  catch_response=True) as response:
                status, code = response.status_code, _problem_code(response)
                outcome = traffic.reserve_outcome(status, code)
                if outcome == traffic.RESERVED:
                    return response.json()["reservation_id"]
                if outcome == traffic.TAKEN:
                    response.success()  # the grid was a few milliseconds behind
                    return None
                response.failure(f"{status} {code}")
                if outcome != traffic.RETRY or attempt == RESERVE_ATTEMPTS:
                    return None
                delay_s = traffic.retry_delay_s(response.headers.get("Retry-After"))
            gevent.sleep(delay_s)
        return None

    def release(self, reservation_id: str) -> None:
        with self.client.delete(traffic.release_path(reservation_id), name=RELEASE,
                                catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {_problem_code(response)}")


class Planner(FastHttpUser):
    fixed_count = 1
    wait_time = constant_throughput(0.05)

    def on_start(self) -> None:
        self.rng = random.Random()
        self.auth = {"Authorization": f"Bearer {_settings['admin_token']}"}

    @task
    def change_capacity(self) -> None:
        region, date = traffic.planner_day(self.rng)
        with self.client.get(traffic.list_pools_path(region, date), name=LIST_POOLS,
                             headers=self.auth, catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"{response.status_code} {_problem_code(response)}")
                return
            change = traffic.planner_change(self.rng, response.json())
        if change is None:
            return
        pool_id, slot_id, capacity = change
        with self.client.patch(traffic.update_slot_path(pool_id, slot_id),
                               json={"capacity": capacity}, headers=self.auth,
                               name=UPDATE_SLOT, catch_response=True) as response:
            code = _problem_code(response)
            if traffic.update_succeeded(response.status_code, code):
                # 200, or 409 capacity_below_reserved: a customer reserved between our read
                # and our write
                response.success()
            else:
                response.failure(f"{response.status_code} {code}")
