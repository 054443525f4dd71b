"""The Locust profiles' traffic mix, sent open loop at a fixed offered rate.

The same users as `load/locustfile.py`, with the same choices, routes, request shapes and
rules for success (`load/traffic.py`) at the same rates (`load/profiles.py`), but paced by the
clock instead of by users waiting for answers:

- customer sessions are due at `i / grid_reads_per_s` whatever happened to earlier ones. Each
  opens a grid (a region and date, or the flash pool's day in a flash-sale session); when the
  session reserves, the grid answer is parsed and a reserve of one bookable slot is sent as soon
  as it arrives, with an Idempotency-Key, retried with the same key on 503/504 after its
  Retry-After (at most a second), up to four attempts. Sessions belong to as many virtual
  customers as Locust would run (`user_plan`), in turn, so a reservation chosen for cancelling is
  released at the start of that customer's next session, as in the locustfile;
- planner edits are due at `i / planner_edits_per_s`: list the pools of a day with the admin
  token, then change one slot's capacity by -20..+20 as soon as the list arrives.

Every latency is measured from the moment the request was due (the session's slot in the
schedule, or the answer it follows, or the end of its Retry-After), so queueing in the
generator or in capsvc counts; requests still unanswered `DRAIN_S` after the last one was due
count as failures slower than every answer. Requests due in the warm-up are sent but not
recorded.

`generator_process` runs one share of the schedule in its own process (`load/frontier.py`
starts them); `run_mix` is the asyncio part.
"""

from __future__ import annotations

import asyncio
import math
import random
import uuid
from array import array
from dataclasses import dataclass

import msgspec
import uvloop

from load import fixtures, traffic
from load.bench.openloop import (
    DRAIN_S,
    UNANSWERED,
    Connections,
    Job,
    Schedule,
    SendLag,
    drain,
    pace,
    scheduled_count,
)
from load.profiles import PROFILES, rates, user_plan

TYPES = (traffic.GRID, traffic.RESERVE, traffic.RELEASE, traffic.LIST_POOLS,
         traffic.UPDATE_SLOT)
NO_ANSWER = "no answer"  # failure reason: connection failed, or nothing came before the drain end
READY_TIMEOUT_S = 60.0

_decode = msgspec.json.decode
_encode = msgspec.json.encode


@dataclass(frozen=True)
class MixSpec:
    """One generator process's share of a run (picklable: it crosses to a child process)."""

    url: str
    admin_token: str
    profile: str
    multiplier: float
    seconds: float  # measured
    warmup_s: float  # sent first, not recorded
    part: int = 0  # this process ...
    parts: int = 1  # ... of this many
    seed: int = 1
    connections: int = 256


def problem_code(body: bytes) -> str | None:
    """The `code` of a problem+json answer (None when the body is something else)."""
    try:
        value = _decode(body)
    except msgspec.DecodeError:
        return None
    return value.get("code") if isinstance(value, dict) else None


class TypeStats:
    """What one request type saw in the measured window."""

    __slots__ = ("latencies", "requests", "failures", "reasons")

    def __init__(self) -> None:
        self.latencies = array("d")  # seconds; inf for the unanswered
        self.requests = self.failures = 0
        self.reasons: dict[str, int] = {}

    def as_dict(self) -> dict:
        return {"latencies": self.latencies.tobytes(), "requests": self.requests,
                "failures": self.failures, "reasons": self.reasons}


class ProfileMix:
    def __init__(self, spec: MixSpec, pool: Connections, t0: float) -> None:
        self.spec, self.pool = spec, pool
        self.profile = profile = PROFILES[spec.profile]
        self.rng = random.Random(spec.seed * 1_000_003 + spec.part)
        self.loop = asyncio.get_running_loop()
        self.measure_from = t0 + spec.warmup_s
        self.measure_to = self.measure_from + spec.seconds
        plan = user_plan(profile, spec.multiplier)
        self.to_cancel: list[list[str]] = [
            [] for _ in range(max(1, math.ceil(plan.customers / spec.parts)))]
        self.sessions = 0
        self.pending = 0  # retries waiting for their Retry-After
        self.stats = {name: TypeStats() for name in TYPES}
        self.delivered = 0  # answers that arrived inside the measured window
        self.counts = {"sessions": 0, "reserved": 0, "taken": 0, "sold_out": 0, "retries": 0,
                       "planner_edits": 0}
        self.grid_requests = {
            (region, date): pool.request("GET", traffic.grid_path(region, date))
            for region in fixtures.REGIONS for date in fixtures.DATES}
        self.auth = {"Authorization": f"Bearer {spec.admin_token}"}
        r = rates(profile, spec.multiplier)
        total_s = spec.warmup_s + spec.seconds
        self.schedules = [self._share(r.grid_reads, t0, total_s, self._session),
                          self._share(r.planner_edits, t0, total_s, self._planner_edit)]

    def _share(self, rate: float, t0: float, total_s: float, fire) -> Schedule:
        """Events i = part, part + parts, ... of `rate` over `total_s`."""
        offset = self.spec.part / rate
        share = rate / self.spec.parts
        return Schedule(share, t0 + offset, scheduled_count(share, total_s - offset), fire)

    # -- bookkeeping -------------------------------------------------------------------------
    def _record(self, name: str, job: Job, status: int, now: float,
                failure: str | None) -> None:
        if status != UNANSWERED and self.measure_from <= now < self.measure_to:
            self.delivered += 1
        if job.intended < self.measure_from:
            return  # warm-up
        stats = self.stats[name]
        stats.requests += 1
        stats.latencies.append(now - job.intended if status != UNANSWERED else math.inf)
        if status == UNANSWERED:
            failure = NO_ANSWER
        if failure is not None:
            stats.failures += 1
            stats.reasons[failure] = stats.reasons.get(failure, 0) + 1

    def _plain(self, name: str, job: Job, status: int, body: bytes, now: float,
               expected: int) -> bool:
        """Record an answer that succeeds only with `expected`; True when it did."""
        if status == expected:
            self._record(name, job, status, now, None)
            return True
        reason = f"{status} {problem_code(body)}" if status != UNANSWERED else None
        self._record(name, job, status, now, reason)
        return False

    # -- customers ---------------------------------------------------------------------------
    def _session(self, intended: float) -> None:
        customer = self.sessions % len(self.to_cancel)
        self.sessions += 1
        self.counts["sessions"] += 1
        cancel = self.to_cancel[customer]
        if cancel:
            self.pool.submit(Job(intended, self.pool.request(
                "DELETE", traffic.release_path(cancel.pop())), self._released))
        session = traffic.customer_session(self.rng, self.profile)
        self.pool.submit(Job(intended, self.grid_requests[session.region, session.date],
                             self._grid, (customer, session)))

    def _grid(self, job: Job, status: int, body: bytes, _retry_after, now: float) -> None:
        if not self._plain(traffic.GRID, job, status, body, now, 200):
            return
        customer, session = job.context
        if not session.reserving:
            return  # most sessions only look (the locustfile does not parse their grid)
        choices = traffic.bookable_slots(_decode(body), session.pool_filter)
        if not choices:
            self.counts["sold_out"] += 1  # the customer leaves
            return
        pool_id, slot_id = self.rng.choice(choices)
        payload = self.pool.request(
            "POST", traffic.reserve_path(pool_id), _encode(traffic.reserve_body(slot_id)),
            {"Idempotency-Key": uuid.uuid4().hex})
        self.pool.submit(Job(now, payload, self._reserved, (customer, 1)))

    def _reserved(self, job: Job, status: int, body: bytes, retry_after: bytes | None,
                  now: float) -> None:
        code = problem_code(body) if status >= 400 else None
        outcome = traffic.reserve_outcome(status, code)
        failed = outcome in (traffic.RETRY, traffic.FAILED) and status != UNANSWERED
        self._record(traffic.RESERVE, job, status, now, f"{status} {code}" if failed else None)
        customer, attempt = job.context
        if outcome == traffic.RESERVED:
            self.counts["reserved"] += 1
            if traffic.cancels_later(self.rng, self.profile):
                self.to_cancel[customer].append(_decode(body)["reservation_id"])
        elif outcome == traffic.TAKEN:
            self.counts["taken"] += 1
        elif outcome == traffic.RETRY and attempt < traffic.RESERVE_ATTEMPTS:
            delay = traffic.retry_delay_s(retry_after)
            retry = Job(now + delay, job.payload, self._reserved, (customer, attempt + 1))
            self.pending += 1
            self.counts["retries"] += 1
            self.loop.call_later(delay, self._retry, retry)

    def _retry(self, job: Job) -> None:
        self.pending -= 1
        self.pool.submit(job)  # same bytes: same Idempotency-Key

    def _released(self, job: Job, status: int, body: bytes, _retry_after, now: float) -> None:
        self._plain(traffic.RELEASE, job, status, body, now, 200)

    # -- planners ----------------------------------------------------------------------------
    def _planner_edit(self, intended: float) -> None:
        self.counts["planner_edits"] += 1
        region, date = traffic.planner_day(self.rng)
        self.pool.submit(Job(intended, self.pool.request(
            "GET", traffic.list_pools_path(region, date), headers=self.auth), self._listed))

    def _listed(self, job: Job, status: int, body: bytes, _retry_after, now: float) -> None:
        if not self._plain(traffic.LIST_POOLS, job, status, body, now, 200):
            return
        change = traffic.planner_change(self.rng, _decode(body))
        if change is None:
            return
        pool_id, slot_id, capacity = change
        payload = self.pool.request("PATCH", traffic.update_slot_path(pool_id, slot_id),
                                    _encode({"capacity": capacity}), self.auth)
        self.pool.submit(Job(now, payload, self._updated))

    def _updated(self, job: Job, status: int, body: bytes, _retry_after, now: float) -> None:
        code = problem_code(body) if status >= 400 else None
        ok = status != UNANSWERED and traffic.update_succeeded(status, code)
        reason = None if ok or status == UNANSWERED else f"{status} {code}"
        self._record(traffic.UPDATE_SLOT, job, status, now, reason)

    # -- result ------------------------------------------------------------------------------
    def result(self, lag: SendLag, abandoned: int) -> dict:
        return {
            "types": {name: s.as_dict() for name, s in self.stats.items()},
            "delivered": self.delivered,
            "counts": self.counts,
            "abandoned": abandoned,
            "lag_mean_ms": lag.mean_ms,
            "lag_max_ms": lag.max_ms,
            "lag_count": lag.count,
            "connections": self.pool.most_open,
        }


async def run_mix(spec: MixSpec, t0: float) -> dict:
    """Run one share of the mix from `t0` (perf_counter seconds, the same clock in every
    process: CLOCK_MONOTONIC) and return what it recorded."""
    pool = Connections(spec.url, spec.connections)
    mix = ProfileMix(spec, pool, t0)
    lag = await pace(mix.schedules)
    await drain(lambda: pool.outstanding + mix.pending, DRAIN_S)
    abandoned = pool.abandon()  # each counts as an unanswered failure
    pool.close()
    return mix.result(lag, abandoned)


def generator_process(spec: MixSpec, channel) -> None:
    """A child process's body: say ready, wait for the common start time, run, send back the
    result (a dict; latencies as packed doubles)."""
    channel.send("ready")
    if not channel.poll(READY_TIMEOUT_S):
        return  # the parent never said go
    t0 = channel.recv()
    channel.send(uvloop.run(run_mix(spec, t0)))
    channel.close()
