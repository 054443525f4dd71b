"""Specifies the pool aggregate against a naive model: no overbooking, and the model's verdicts.

Time moves (milliseconds, and sometimes minutes, so that keys expire and slots pass their
booking cut-off); keyed refusals bind their key like reservations do.

The pool may be restarted from a snapshot at any step (schema 1, or schema 2 whose reservations
stay undecoded until a command needs them), and the machine goes on against the restored pool:
it must answer exactly as the original would have. Checks after each step look at a copy of a
pool still undecoded, so that they do not decode it themselves.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.domain import rejections as rj
from capsvc.domain.decide import Decision, decide
from capsvc.domain.evolve import evolve
from capsvc.domain.ids import pool_of_reservation
from capsvc.domain.invariants import check_reservations
from capsvc.domain.pool import KeyRetention, Pool, Refusal
from capsvc.domain.views import pool_view
from capsvc.storage.codec import (
    SNAPSHOT_SCHEMA,
    decode_snapshot,
    encode_snapshot,
    snapshot_state,
)

POOL = "p1"
SLOTS_MAX = 4
# Small limits, so that key expiry and eviction by count both happen within a run.
RETENTION = KeyRetention(retention_ms=100, keys_max=3)
SLOT_IDS = ("s0", "s1", "s2", "s3", "s4", "s5")
KEYS = (None, "k0", "k1", "k2", "k3", "k4")
ORDER_REFS = (None, "o1")
UNKNOWN_RESERVATION = "p1~ff.dead"
T0 = 1_900_000_000_000  # 2030-03-17T17:46:40Z
MINUTE = 60_000
DAY = "2030-03-17"
# Slots start this many minutes after T0 (their day stays T0's); the cut-off is drawn too.
starts = st.integers(min_value=0, max_value=30)
cutoffs = st.integers(min_value=0, max_value=10)

capacities = st.integers(min_value=0, max_value=10)
totals = st.none() | st.integers(min_value=0, max_value=25)
deltas = st.integers(min_value=-3, max_value=4)  # a new capacity, relative to what is reserved


def at_minute(minutes: int) -> str:
    """T0 (17:46:40Z) plus `minutes`, as RFC 3339."""
    total = 17 * 60 + 46 + minutes
    return f"{DAY}T{total // 60:02d}:{total % 60:02d}:40Z"


def spec(slot_id: str, capacity: int, start_minute: int = 0) -> ev.SlotSpec:
    return ev.SlotSpec(slot_id, at_minute(start_minute), at_minute(start_minute + 60), capacity)


@dataclass(frozen=True)
class Outcome:
    events: tuple[ev.Event, ...] = ()
    code: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    replayed: bool = False
    reservation_id: str | None = None


def outcome_of(decision: Decision) -> Outcome:
    if decision.rejection is not None:
        assert decision.reservation_id is None
        return Outcome(decision.events, decision.rejection.code, decision.rejection.fields,
                       decision.replayed)
    return Outcome(decision.events, None, {}, decision.replayed, decision.reservation_id)


def encode_snapshot_v1(pool: Pool) -> str:
    """A snapshot as builds before schema 2 wrote it (one JSON object)."""
    return json.dumps(snapshot_state(pool), separators=(",", ":"))


def state_of(pool: Pool | None) -> object:
    """Everything observable about a pool, for comparing two of them."""
    if pool is None:
        return None
    reservations = [
        (r.reservation_id, r.slot_id, r.units, r.order_ref, r.idempotency_key, r.active)
        for r in pool.reservations.values()
    ]
    keys = [
        (k, target.as_list() if isinstance(target, Refusal) else target, at)
        for k, (target, at) in pool.keys.items()
    ]
    return pool_view(pool), reservations, keys, pool.reservation_count, pool.total_reserved


@dataclass(frozen=True)
class ModelRefusal:
    slot_id: str
    units: int
    order_ref: str | None
    code: str
    fields: dict[str, Any]


@dataclass
class ModelReservation:
    slot_id: str
    units: int
    order_ref: str | None
    key: str | None
    active: bool = True


class Model:
    """The pool as plain dicts and sums, with no cleverness."""

    def __init__(self, slots: dict[str, int], total: int | None, closes: dict[str, int]) -> None:
        self.capacity = dict(slots)
        self.open = dict.fromkeys(slots, True)
        self.closes = dict(closes)  # slot -> the first ms it takes no reservation
        self.total = total
        self.reservations: dict[str, ModelReservation] = {}
        # key -> (reservation id, or the refused request and its answer; at; use number)
        self.key_uses: dict[str, tuple[str | ModelRefusal, int, int]] = {}
        self.uses = 0

    def reserved(self, slot_id: str) -> int:
        return sum(r.units for r in self.reservations.values() if r.active and r.slot_id == slot_id)

    def total_reserved(self) -> int:
        return sum(r.units for r in self.reservations.values() if r.active)

    def room(self, slot_id: str) -> int:
        room = self.capacity[slot_id] - self.reserved(slot_id)
        if self.total is not None:
            room = min(room, self.total - self.total_reserved())
        return max(room, 0)

    def remembered(self, key: str, now: int) -> str | ModelRefusal | None:
        """A key is remembered while it is young and among the `keys_max` most recently used."""
        if key not in self.key_uses:
            return None
        newest = sorted(self.key_uses, key=lambda k: self.key_uses[k][2])[-RETENTION.keys_max :]
        reservation_id, at, _ = self.key_uses[key]
        if key in newest and now - at < RETENTION.retention_ms:
            return reservation_id
        return None


class PoolMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pool: Pool | None = None
        self.model: Model
        self.history: list[ev.Event] = []
        self.now = T0

    def observed(self) -> Pool:
        """The pool, or a copy of it while its reservations are undecoded (looking decodes)."""
        assert self.pool is not None
        return copy.deepcopy(self.pool) if self.pool.deferred is not None else self.pool

    def run(self, command: cmd.Command, expected: Outcome | None = None) -> Decision:
        before = state_of(self.observed()) if self.pool is not None else None
        decision = decide(self.pool, command, SLOTS_MAX)
        after = state_of(self.observed()) if self.pool is not None else None
        assert after == before, "decide changed the pool"
        if expected is not None:
            assert outcome_of(decision) == expected
        for event in decision.events:
            self.pool = evolve(self.pool, event, RETENTION)
            self.history.append(event)
        return decision

    @initialize(
        capacities=st.lists(st.tuples(capacities, starts), min_size=1, max_size=3),
        total=totals,
        cutoff=cutoffs,
    )
    def define(self, capacities: list[tuple[int, int]], total: int | None, cutoff: int) -> None:
        slots = tuple(spec(SLOT_IDS[i], c, start) for i, (c, start) in enumerate(capacities))
        command = cmd.DefinePool(POOL, "van", "berlin", DAY, total, slots, cutoff)
        wanted = ev.PoolDefined(POOL, "van", "berlin", DAY, total, slots, cutoff)
        self.run(command, Outcome(events=(wanted,)))
        self.cutoff = cutoff
        closes = {s.slot_id: T0 + (start - cutoff) * MINUTE
                  for s, (_, start) in zip(slots, capacities, strict=True)}
        self.model = Model({s.slot_id: s.capacity for s in slots}, total, closes)

    @rule(ms=st.integers(min_value=0, max_value=150))
    def advance_time(self, ms: int) -> None:
        self.now += ms

    @rule(minutes=st.integers(min_value=1, max_value=8))
    def advance_time_by_minutes(self, minutes: int) -> None:
        """Far enough for slots to pass their cut-off (and every key to expire)."""
        self.now += minutes * MINUTE

    @rule(
        schema=st.sampled_from((1, SNAPSHOT_SCHEMA)),
        twice=st.booleans(),
        keyless=st.lists(st.integers(min_value=0, max_value=100), max_size=3),
    )
    def restart_from_snapshot(self, schema: int, twice: bool, keyless: list[int]) -> None:
        """A restart: the pool comes back from its snapshot (`twice`: from a snapshot of the
        restored pool, written before anything decoded it), then takes a few reserves without
        a key (which a pool still undecoded keeps aside until it decodes)."""
        assert self.pool is not None
        if schema == 1:
            body = encode_snapshot_v1(self.observed())
        else:
            body = encode_snapshot(self.pool)
        self.pool = decode_snapshot(schema, body, RETENTION)
        if twice:
            self.pool = decode_snapshot(SNAPSHOT_SCHEMA, encode_snapshot(self.pool), RETENTION)
        for slot_pick in keyless:
            self.reserve_and_check(self.slot_by(slot_pick), 1, None, None)

    def slot_by(self, pick: int) -> str:
        """Mostly an existing slot, sometimes one the pool does not have."""
        candidates = [*self.model.capacity, "nope"]
        return candidates[pick % len(candidates)]

    @rule(
        slot_pick=st.integers(min_value=0, max_value=100),
        units=st.integers(min_value=1, max_value=4),
        key=st.none() | st.sampled_from(KEYS),  # keyless reserves leave a restored pool undecoded
        order_ref=st.sampled_from(ORDER_REFS),
    )
    def reserve(self, slot_pick: int, units: int, key: str | None, order_ref: str | None) -> None:
        self.reserve_and_check(self.slot_by(slot_pick), units, key, order_ref)

    @rule(pick=st.integers(min_value=0, max_value=1_000), more_units=st.sampled_from((0, 0, 1)))
    def retry_reserve(self, pick: int, more_units: int) -> None:
        """A client retries an earlier reserve with its key (sometimes with another body),
        whether it was made or refused."""
        keyed = sorted(self.model.key_uses.items())
        if not keyed:
            return
        key, (target, _, _) = keyed[pick % len(keyed)]
        r = self.model.reservations[target] if isinstance(target, str) else target
        self.reserve_and_check(r.slot_id, r.units + more_units, key, r.order_ref)

    def reserve_and_check(
        self, slot_id: str, units: int, key: str | None, order_ref: str | None
    ) -> None:
        m = self.model
        earlier = m.remembered(key, self.now) if key is not None else None
        command = cmd.ReserveCapacity(POOL, slot_id, units, key, order_ref, "abcd", self.now)
        if earlier is not None:
            r = m.reservations[earlier] if isinstance(earlier, str) else earlier
            if (r.slot_id, r.units, r.order_ref) != (slot_id, units, order_ref):
                expected = Outcome(code=rj.IDEMPOTENCY_KEY_REUSED)
            elif isinstance(earlier, ModelRefusal):  # the same answer, however things changed
                expected = Outcome(code=earlier.code, fields=earlier.fields, replayed=True)
            else:
                expected = Outcome(replayed=True, reservation_id=earlier)
            self.run(command, expected)
            return
        refusal: tuple[str, dict[str, Any]] | None = None
        if slot_id not in m.capacity:
            self.run(command, Outcome(code=rj.SLOT_NOT_FOUND))  # binds no key
        elif not m.open[slot_id]:
            refusal = (rj.SLOT_CLOSED, {})
        elif self.now >= m.closes[slot_id]:
            refusal = (rj.BOOKING_CLOSED, {})
        elif units > m.room(slot_id):
            refusal = (rj.CAPACITY_EXHAUSTED, {"available_units": m.room(slot_id)})
        if refusal is not None:
            code, fields = refusal
            decision = self.run(command)
            assert decision.rejection is not None and not decision.replayed
            assert (decision.rejection.code, decision.rejection.fields) == (code, fields)
            if key is None:
                assert decision.events == ()  # a refusal without a key costs nothing
            else:
                assert decision.events == (
                    ev.ReservationRefused(key, slot_id, units, order_ref, code,
                                          decision.rejection.detail, fields, self.now),
                )
                m.uses += 1
                m.key_uses[key] = (ModelRefusal(slot_id, units, order_ref, code, fields),
                                   self.now, m.uses)
        elif slot_id in m.capacity:
            decision = self.run(command)
            rid = decision.reservation_id
            assert rid is not None and rid not in m.reservations
            assert pool_of_reservation(rid) == POOL
            event = ev.CapacityReserved(rid, slot_id, units, order_ref, key, self.now)
            assert outcome_of(decision) == Outcome(events=(event,), reservation_id=rid)
            m.reservations[rid] = ModelReservation(slot_id, units, order_ref, key)
            if key is not None:
                m.uses += 1
                m.key_uses[key] = (rid, self.now, m.uses)

    @rule(pick=st.integers(min_value=0, max_value=1_000))
    def release(self, pick: int) -> None:
        candidates = [*self.model.reservations, UNKNOWN_RESERVATION]
        rid = candidates[pick % len(candidates)]
        command = cmd.ReleaseReservation(POOL, rid, self.now)
        r = self.model.reservations.get(rid)
        if r is None:
            self.run(command, Outcome(code=rj.RESERVATION_NOT_FOUND))
        elif not r.active:
            self.run(command, Outcome(reservation_id=rid))
        else:
            event = ev.ReservationReleased(rid, self.now)
            self.run(command, Outcome(events=(event,), reservation_id=rid))
            r.active = False

    @rule(
        slot_pick=st.integers(min_value=0, max_value=100),
        delta=st.none() | deltas,
        is_open=st.sampled_from((None, True, False)),
    )
    def update_slot(self, slot_pick: int, delta: int | None, is_open: bool | None) -> None:
        m = self.model
        slot_id = self.slot_by(slot_pick)
        # capacities near what is reserved are the interesting ones
        capacity = None if delta is None else max(0, m.reserved(slot_id) + delta)
        command = cmd.UpdateSlot(POOL, slot_id, capacity, is_open)
        if slot_id not in m.capacity:
            self.run(command, Outcome(code=rj.SLOT_NOT_FOUND))
            return
        events: list[ev.Event] = []
        if capacity is not None and capacity != m.capacity[slot_id]:
            if capacity < m.reserved(slot_id):
                fields = {"reserved_units": m.reserved(slot_id)}
                self.run(command, Outcome(code=rj.CAPACITY_BELOW_RESERVED, fields=fields))
                return
            events.append(ev.SlotCapacityChanged(slot_id, capacity))
            m.capacity[slot_id] = capacity
        if is_open is not None and is_open != m.open[slot_id]:
            events.append(ev.SlotOpened(slot_id) if is_open else ev.SlotClosed(slot_id))
            m.open[slot_id] = is_open
        self.run(command, Outcome(events=tuple(events)))

    @rule(delta=st.none() | deltas)
    def change_total(self, delta: int | None) -> None:
        m = self.model
        total = None if delta is None else max(0, m.total_reserved() + delta)
        command = cmd.ChangeTotalCapacity(POOL, total)
        if total == m.total:
            self.run(command, Outcome())
        elif total is not None and total < m.total_reserved():
            fields = {"reserved_units": m.total_reserved()}
            self.run(command, Outcome(code=rj.TOTAL_CAPACITY_BELOW_RESERVED, fields=fields))
        else:
            self.run(command, Outcome(events=(ev.TotalCapacityChanged(total),)))
            m.total = total

    @rule(slot_id=st.sampled_from(SLOT_IDS), capacity=capacities, start=starts)
    def add_slot(self, slot_id: str, capacity: int, start: int) -> None:
        m = self.model
        command = cmd.AddSlot(POOL, spec(slot_id, capacity, start))
        if slot_id in m.capacity:
            self.run(command, Outcome(code=rj.SLOT_EXISTS))
        elif len(m.capacity) >= SLOTS_MAX:
            self.run(command, Outcome(code=rj.TOO_MANY_SLOTS))
        else:
            self.run(command, Outcome(events=(ev.SlotAdded(spec(slot_id, capacity, start)),)))
            m.capacity[slot_id] = capacity
            m.open[slot_id] = True
            m.closes[slot_id] = T0 + (start - self.cutoff) * MINUTE

    # -- checked after every step --------------------------------------------------------
    @invariant()
    def reservations_add_up(self) -> None:
        check_reservations(self.observed())

    @invariant()
    def slots_agree_with_the_model(self) -> None:
        pool, m = self.pool, self.model
        assert pool is not None
        assert set(pool.slots) == set(m.capacity)
        for slot_id, slot in pool.slots.items():
            assert slot.reserved == m.reserved(slot_id)
            assert slot.capacity == m.capacity[slot_id] and slot.open == m.open[slot_id]
            assert 0 <= slot.reserved <= slot.capacity
            assert pool.available(slot) == m.room(slot_id)

    @invariant()
    def pool_total_is_honoured(self) -> None:
        pool = self.pool
        assert pool is not None
        assert pool.total_capacity == self.model.total
        assert pool.booking_cutoff_minutes == self.cutoff
        assert pool.total_reserved == self.model.total_reserved()
        if pool.total_capacity is not None:
            assert pool.total_reserved <= pool.total_capacity

    @invariant()
    def replaying_the_events_rebuilds_the_pool(self) -> None:
        rebuilt = None
        for event in self.history:
            rebuilt = evolve(rebuilt, event, RETENTION)
        assert state_of(rebuilt) == state_of(self.observed())
        assert rebuilt is not None and rebuilt.version == len(self.history)

    @invariant()
    def the_snapshot_round_trips(self) -> None:
        pool = self.observed()
        restored = decode_snapshot(SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
        assert restored.version == pool.version
        check_reservations(restored)
        assert state_of(restored) == state_of(pool)


PoolMachine.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None, database=None
)
TestPoolAgainstModel = PoolMachine.TestCase
