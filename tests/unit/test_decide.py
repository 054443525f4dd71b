"""Specifies `decide`: for each pool state and command, the events, rejection or replay it gives."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.domain import rejections as rj
from capsvc.domain.decide import Decision, decide
from capsvc.domain.evolve import evolve
from capsvc.domain.ids import make_reservation_id, pool_of_reservation
from capsvc.domain.pool import KeyRetention, Pool
from capsvc.domain.views import pool_view

POOL = "berlin-2030-01-01"
SLOTS_MAX = 3
RETENTION_MS = 60_000
RETENTION = KeyRetention(retention_ms=RETENTION_MS, keys_max=100)
T0 = 1_893_400_000_000  # 2029-12-31T08:26:40Z: the day before the pool's slots
SLOT_A_STARTS = 1_893_484_800_000  # 2030-01-01T08:00:00Z
MINUTE = 60_000
NONCE = "00c0ffee"


def slot(slot_id: str, capacity: int, hour: int = 8) -> ev.SlotSpec:
    return ev.SlotSpec(
        slot_id, f"2030-01-01T{hour:02}:00:00Z", f"2030-01-01T{hour + 2:02}:00:00Z", capacity
    )


def rid(number: int, nonce: str = NONCE) -> str:
    return make_reservation_id(POOL, number, nonce)


SLOT_A, SLOT_B, SLOT_C = slot("a", 10, 8), slot("b", 5, 10), slot("c", 3, 12)
RID1 = rid(1, "0000aaaa")


def define(total: int | None = None, slots=(SLOT_A, SLOT_B), kind="van") -> cmd.DefinePool:
    return cmd.DefinePool(POOL, kind, "berlin", "2030-01-01", total, tuple(slots))


def defined(total: int | None = None, cutoff: int = 0) -> ev.PoolDefined:
    return ev.PoolDefined(POOL, "van", "berlin", "2030-01-01", total, (SLOT_A, SLOT_B), cutoff)


def reserve(slot_id="a", units=1, key=None, order_ref=None, now=T0, nonce=NONCE):
    return cmd.ReserveCapacity(POOL, slot_id, units, key, order_ref, nonce, now)


def release(reservation_id: str, now=T0 + 5) -> cmd.ReleaseReservation:
    return cmd.ReleaseReservation(POOL, reservation_id, now)


def update(slot_id="a", capacity=None, open=None) -> cmd.UpdateSlot:
    return cmd.UpdateSlot(POOL, slot_id, capacity, open)


def total(value: int | None) -> cmd.ChangeTotalCapacity:
    return cmd.ChangeTotalCapacity(POOL, value)


# -- pool states, as the histories that lead to them ----------------------------------------
UNDEFINED: tuple[ev.Event, ...] = ()
DEFINED = (defined(),)  # a: 0/10, b: 0/5, no pool total
WITH_TOTAL = (defined(total=12),)
# a: 8/10 by RID1 (key k1, order o1)
RESERVED = (*DEFINED, ev.CapacityReserved(RID1, "a", 8, "o1", "k1", T0))
RESERVED_WITH_TOTAL = (*WITH_TOTAL, ev.CapacityReserved(RID1, "a", 8, "o1", "k1", T0))
RELEASED = (*RESERVED, ev.ReservationReleased(RID1, T0 + 1))
B_CLOSED = (*DEFINED, ev.SlotClosed("b"))
CUTOFF_30 = (defined(cutoff=30),)  # slot a closes for booking at 07:30, b at 09:30
A_CUT_OFF = SLOT_A_STARTS - 30 * MINUTE
A_FULL_KEYED = (
    *DEFINED,
    ev.ReservationRefused("k2", "a", 11, None, rj.CAPACITY_EXHAUSTED,
                          "slot a has 10 units available, 11 requested", {"available_units": 10},
                          T0),
)
FULL_OF_SLOTS = (*RESERVED, ev.SlotAdded(SLOT_C))  # SLOTS_MAX slots


def pool_after(history: tuple[ev.Event, ...]) -> Pool | None:
    pool = None
    for event in history:
        pool = evolve(pool, event, RETENTION)
    return pool


@dataclass(frozen=True)
class Outcome:
    """A decision with the human-readable detail left out."""

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


def refused(key: str, slot_id: str, units: int, code: str, detail: str, now: int = T0,
            order_ref: str | None = None, **fields: Any) -> Outcome:
    """A keyed refusal: the rejection, and the event that binds the key to it."""
    event = ev.ReservationRefused(key, slot_id, units, order_ref, code, detail, fields, now)
    return Outcome(events=(event,), code=code, fields=fields)


def rejected(code: str, **fields: Any) -> Outcome:
    return Outcome(code=code, fields=fields)


NOTHING = Outcome()

CASES = [
    # -- define pool ---------------------------------------------------------------------
    pytest.param(UNDEFINED, define(), Outcome(events=(defined(),)), id="define/new pool"),
    pytest.param(DEFINED, define(), NOTHING, id="define/same again -> nothing"),
    pytest.param(
        DEFINED, define(slots=(SLOT_B, SLOT_A)), NOTHING, id="define/slots reordered -> nothing"
    ),
    pytest.param(RESERVED, define(), NOTHING, id="define/same again after reservations -> nothing"),
    pytest.param(
        DEFINED, define(total=7), rejected(rj.POOL_EXISTS), id="define/other total -> pool_exists"
    ),
    pytest.param(
        DEFINED, define(kind="bike"), rejected(rj.POOL_EXISTS), id="define/other kind -> exists"
    ),
    pytest.param(
        DEFINED,
        define(slots=(SLOT_A, slot("b", 6, 10))),
        rejected(rj.POOL_EXISTS),
        id="define/other slot capacity -> pool_exists",
    ),
    pytest.param(
        DEFINED,
        define(slots=(SLOT_A, SLOT_B, SLOT_C)),
        rejected(rj.POOL_EXISTS),
        id="define/extra slot -> pool_exists",
    ),
    # -- reserve -------------------------------------------------------------------------
    pytest.param(
        DEFINED,
        reserve("a", 3, key="k9", order_ref="o9"),
        Outcome(
            events=(ev.CapacityReserved(rid(1), "a", 3, "o9", "k9", T0),), reservation_id=rid(1)
        ),
        id="reserve/room -> CapacityReserved",
    ),
    pytest.param(
        RESERVED,
        reserve("a", 2),
        Outcome(
            events=(ev.CapacityReserved(rid(2), "a", 2, None, None, T0),), reservation_id=rid(2)
        ),
        id="reserve/exactly the units left -> accepted",
    ),
    pytest.param(
        RESERVED,
        reserve("a", 3),
        rejected(rj.CAPACITY_EXHAUSTED, available_units=2),
        id="reserve/more than the slot has left -> capacity_exhausted",
    ),
    pytest.param(
        RESERVED_WITH_TOTAL,
        reserve("b", 5),
        rejected(rj.CAPACITY_EXHAUSTED, available_units=4),
        id="reserve/pool total tighter than slot -> capacity_exhausted",
    ),
    pytest.param(
        RESERVED_WITH_TOTAL,
        reserve("b", 4),
        Outcome(
            events=(ev.CapacityReserved(rid(2), "b", 4, None, None, T0),), reservation_id=rid(2)
        ),
        id="reserve/exactly the pool total left -> accepted",
    ),
    pytest.param(
        (*RESERVED_WITH_TOTAL, ev.CapacityReserved(rid(2), "b", 4, None, None, T0)),
        reserve("a", 1),
        rejected(rj.CAPACITY_EXHAUSTED, available_units=0),
        id="reserve/pool total used up, slot has room -> capacity_exhausted(0)",
    ),
    pytest.param(
        B_CLOSED, reserve("b", 1), rejected(rj.SLOT_CLOSED), id="reserve/closed slot -> slot_closed"
    ),
    pytest.param(
        B_CLOSED,
        reserve("b", 99),
        rejected(rj.SLOT_CLOSED),
        id="reserve/closed beats exhausted -> slot_closed",
    ),
    pytest.param(DEFINED, reserve("zz", 1), rejected(rj.SLOT_NOT_FOUND), id="reserve/unknown slot"),
    # -- booking cut-off: the command's now_ms against the slot's start minus the cut-off --
    pytest.param(
        CUTOFF_30, reserve("a", 1, now=A_CUT_OFF - 1),
        Outcome(events=(ev.CapacityReserved(rid(1), "a", 1, None, None, A_CUT_OFF - 1),),
                reservation_id=rid(1)),
        id="reserve/1 ms before the cut-off -> accepted",
    ),
    pytest.param(
        CUTOFF_30, reserve("a", 1, now=A_CUT_OFF), rejected(rj.BOOKING_CLOSED),
        id="reserve/at the cut-off -> booking_closed",
    ),
    pytest.param(
        CUTOFF_30, reserve("b", 1, now=A_CUT_OFF),
        Outcome(events=(ev.CapacityReserved(rid(1), "b", 1, None, None, A_CUT_OFF),),
                reservation_id=rid(1)),
        id="reserve/another slot of the pool still open -> accepted",
    ),
    pytest.param(
        DEFINED, reserve("a", 1, now=SLOT_A_STARTS), rejected(rj.BOOKING_CLOSED),
        id="reserve/cut-off 0, slot started -> booking_closed",
    ),
    pytest.param(
        DEFINED, reserve("a", 1, now=SLOT_A_STARTS - 1),
        Outcome(events=(ev.CapacityReserved(rid(1), "a", 1, None, None, SLOT_A_STARTS - 1),),
                reservation_id=rid(1)),
        id="reserve/cut-off 0, 1 ms before the start -> accepted",
    ),
    pytest.param(
        B_CLOSED, reserve("b", 1, now=SLOT_A_STARTS + 10 * 3_600_000), rejected(rj.SLOT_CLOSED),
        id="reserve/closed beats booking closed -> slot_closed",
    ),
    pytest.param(
        RESERVED, reserve("a", 9, now=SLOT_A_STARTS), rejected(rj.BOOKING_CLOSED),
        id="reserve/booking closed beats exhausted -> booking_closed",
    ),
    pytest.param(
        (*CUTOFF_30, ev.CapacityReserved(RID1, "a", 2, None, None, T0)),
        release(RID1, now=SLOT_A_STARTS + 1),
        Outcome(events=(ev.ReservationReleased(RID1, SLOT_A_STARTS + 1),), reservation_id=RID1),
        id="release/after the cut-off -> released",
    ),
    pytest.param(
        CUTOFF_30, update("a", capacity=20), Outcome(events=(ev.SlotCapacityChanged("a", 20),)),
        id="update/capacity of a slot past its cut-off -> changed",
    ),
    pytest.param(
        CUTOFF_30, define(), rejected(rj.POOL_EXISTS), id="define/other cut-off -> pool_exists",
    ),
    # -- refusals under a key bind it ------------------------------------------------------
    pytest.param(
        DEFINED, reserve("a", 11, key="k2"),
        refused("k2", "a", 11, rj.CAPACITY_EXHAUSTED,
                "slot a has 10 units available, 11 requested", available_units=10),
        id="reserve/keyed, exhausted -> refused and the key bound",
    ),
    pytest.param(
        B_CLOSED, reserve("b", 1, key="k2", order_ref="o2"),
        refused("k2", "b", 1, rj.SLOT_CLOSED, "slot b is closed", order_ref="o2"),
        id="reserve/keyed, slot closed -> refused and the key bound",
    ),
    pytest.param(
        CUTOFF_30, reserve("a", 1, key="k2", now=A_CUT_OFF),
        refused("k2", "a", 1, rj.BOOKING_CLOSED,
                "booking for slot a closed 30 minutes before it starts (2030-01-01T08:00:00Z)",
                now=A_CUT_OFF),
        id="reserve/keyed, booking closed -> refused and the key bound",
    ),
    pytest.param(
        DEFINED, reserve("zz", 1, key="k2"), rejected(rj.SLOT_NOT_FOUND),
        id="reserve/keyed, unknown slot -> binds nothing",
    ),
    pytest.param(
        UNDEFINED, reserve("a", 1, key="k2"), rejected(rj.POOL_NOT_FOUND),
        id="reserve/keyed, undefined pool -> binds nothing",
    ),
    pytest.param(
        A_FULL_KEYED, reserve("a", 11, key="k2", now=T0 + 10),
        Outcome(code=rj.CAPACITY_EXHAUSTED, fields={"available_units": 10}, replayed=True),
        id="reserve/refused key, same body -> the refusal replayed",
    ),
    pytest.param(
        A_FULL_KEYED, reserve("a", 1, key="k2", now=T0 + 10), rejected(rj.IDEMPOTENCY_KEY_REUSED),
        id="reserve/refused key, other body -> idempotency_key_reused",
    ),
    pytest.param(
        (*A_FULL_KEYED, ev.SlotCapacityChanged("a", 20)), reserve("a", 11, key="k2", now=T0 + 10),
        Outcome(code=rj.CAPACITY_EXHAUSTED, fields={"available_units": 10}, replayed=True),
        id="reserve/refused key, capacity freed since -> still the refusal",
    ),
    pytest.param(
        A_FULL_KEYED, reserve("a", 11, key="k2", now=T0 + RETENTION_MS),
        refused("k2", "a", 11, rj.CAPACITY_EXHAUSTED,
                "slot a has 10 units available, 11 requested", now=T0 + RETENTION_MS,
                available_units=10),
        id="reserve/refused key expired -> decided afresh",
    ),
    pytest.param(
        UNDEFINED, reserve("a", 1), rejected(rj.POOL_NOT_FOUND), id="reserve/undefined pool"
    ),
    pytest.param(
        RESERVED,
        reserve("a", 8, key="k1", order_ref="o1", now=T0 + 10),
        Outcome(replayed=True, reservation_id=RID1),
        id="reserve/same key same body -> replayed (even though slot is full)",
    ),
    pytest.param(
        RELEASED,
        reserve("a", 8, key="k1", order_ref="o1", now=T0 + 10),
        Outcome(replayed=True, reservation_id=RID1),
        id="reserve/same key same body after release -> replayed",
    ),
    pytest.param(
        RESERVED,
        reserve("a", 8, key="k1", order_ref="o1", now=T0 + RETENTION_MS - 1),
        Outcome(replayed=True, reservation_id=RID1),
        id="reserve/same key just before expiry -> replayed",
    ),
    pytest.param(
        RESERVED,
        reserve("a", 1, key="k1", order_ref="o1"),
        rejected(rj.IDEMPOTENCY_KEY_REUSED),
        id="reserve/same key other units -> idempotency_key_reused",
    ),
    pytest.param(
        RESERVED,
        reserve("b", 8, key="k1", order_ref="o1"),
        rejected(rj.IDEMPOTENCY_KEY_REUSED),
        id="reserve/same key other slot -> idempotency_key_reused",
    ),
    pytest.param(
        RESERVED,
        reserve("a", 8, key="k1", order_ref=None),
        rejected(rj.IDEMPOTENCY_KEY_REUSED),
        id="reserve/same key other order_ref -> idempotency_key_reused",
    ),
    pytest.param(
        RESERVED,
        reserve("a", 2, key="k1", order_ref="o1", now=T0 + RETENTION_MS),
        Outcome(
            events=(ev.CapacityReserved(rid(2), "a", 2, "o1", "k1", T0 + RETENTION_MS),),
            reservation_id=rid(2),
        ),
        id="reserve/expired key, other body -> treated as new",
    ),
    pytest.param(
        RELEASED,
        reserve("a", 8, key="k1", order_ref="o1", now=T0 + RETENTION_MS + 1),
        Outcome(
            events=(ev.CapacityReserved(rid(2), "a", 8, "o1", "k1", T0 + RETENTION_MS + 1),),
            reservation_id=rid(2),
        ),
        id="reserve/expired key, same body -> a new reservation",
    ),
    # -- release -------------------------------------------------------------------------
    pytest.param(
        RESERVED,
        release(RID1),
        Outcome(events=(ev.ReservationReleased(RID1, T0 + 5),), reservation_id=RID1),
        id="release/active -> ReservationReleased",
    ),
    pytest.param(
        RELEASED,
        release(RID1),
        Outcome(reservation_id=RID1),
        id="release/twice -> harmless, no events",
    ),
    pytest.param(
        RESERVED,
        release(rid(9)),
        rejected(rj.RESERVATION_NOT_FOUND),
        id="release/unknown -> reservation_not_found",
    ),
    pytest.param(
        UNDEFINED,
        release(RID1),
        rejected(rj.RESERVATION_NOT_FOUND),
        id="release/undefined pool -> reservation_not_found",
    ),
    # -- update slot ---------------------------------------------------------------------
    pytest.param(
        RESERVED,
        update("a", capacity=7),
        rejected(rj.CAPACITY_BELOW_RESERVED, reserved_units=8),
        id="update/capacity below reserved -> capacity_below_reserved",
    ),
    pytest.param(
        RESERVED,
        update("a", capacity=7, open=False),
        rejected(rj.CAPACITY_BELOW_RESERVED, reserved_units=8),
        id="update/capacity below reserved with close -> all rejected",
    ),
    pytest.param(
        RESERVED,
        update("a", capacity=8),
        Outcome(events=(ev.SlotCapacityChanged("a", 8),)),
        id="update/capacity down to reserved -> changed",
    ),
    pytest.param(
        RESERVED,
        update("a", capacity=20),
        Outcome(events=(ev.SlotCapacityChanged("a", 20),)),
        id="update/capacity up -> changed",
    ),
    pytest.param(
        DEFINED, update("a", open=False), Outcome(events=(ev.SlotClosed("a"),)), id="update/close"
    ),
    pytest.param(
        B_CLOSED, update("b", open=True), Outcome(events=(ev.SlotOpened("b"),)), id="update/open"
    ),
    pytest.param(
        DEFINED,
        update("a", capacity=4, open=False),
        Outcome(events=(ev.SlotCapacityChanged("a", 4), ev.SlotClosed("a"))),
        id="update/capacity and close together",
    ),
    pytest.param(
        RESERVED,
        update("a", capacity=10, open=True),
        NOTHING,
        id="update/unchanged values -> nothing",
    ),
    pytest.param(B_CLOSED, update("b", open=False), NOTHING, id="update/close closed -> nothing"),
    pytest.param(DEFINED, update("a"), NOTHING, id="update/no values -> nothing"),
    pytest.param(
        DEFINED, update("zz", open=False), rejected(rj.SLOT_NOT_FOUND), id="update/unknown slot"
    ),
    pytest.param(
        UNDEFINED, update("a", capacity=1), rejected(rj.POOL_NOT_FOUND), id="update/undefined pool"
    ),
    # -- add slot ------------------------------------------------------------------------
    pytest.param(
        DEFINED,
        cmd.AddSlot(POOL, SLOT_C),
        Outcome(events=(ev.SlotAdded(SLOT_C),)),
        id="add slot/new -> SlotAdded",
    ),
    pytest.param(
        DEFINED,
        cmd.AddSlot(POOL, slot("a", 1, 14)),
        rejected(rj.SLOT_EXISTS),
        id="add slot/existing id -> slot_exists",
    ),
    pytest.param(
        FULL_OF_SLOTS,
        cmd.AddSlot(POOL, slot("d", 1, 14)),
        rejected(rj.TOO_MANY_SLOTS),
        id="add slot/pool full -> too_many_slots",
    ),
    pytest.param(
        FULL_OF_SLOTS,
        cmd.AddSlot(POOL, slot("a", 1, 14)),
        rejected(rj.SLOT_EXISTS),
        id="add slot/existing id in a full pool -> slot_exists",
    ),
    pytest.param(
        UNDEFINED, cmd.AddSlot(POOL, SLOT_C), rejected(rj.POOL_NOT_FOUND), id="add slot/no pool"
    ),
    # -- change total capacity -----------------------------------------------------------
    pytest.param(
        RESERVED,
        total(7),
        rejected(rj.TOTAL_CAPACITY_BELOW_RESERVED, reserved_units=8),
        id="total/below reserved -> total_capacity_below_reserved",
    ),
    pytest.param(
        RESERVED,
        total(8),
        Outcome(events=(ev.TotalCapacityChanged(8),)),
        id="total/down to reserved -> changed",
    ),
    pytest.param(
        DEFINED, total(20), Outcome(events=(ev.TotalCapacityChanged(20),)), id="total/set"
    ),
    pytest.param(
        RESERVED_WITH_TOTAL,
        total(None),
        Outcome(events=(ev.TotalCapacityChanged(None),)),
        id="total/null removes the limit",
    ),
    pytest.param(WITH_TOTAL, total(12), NOTHING, id="total/unchanged -> nothing"),
    pytest.param(DEFINED, total(None), NOTHING, id="total/null when none -> nothing"),
    pytest.param(UNDEFINED, total(5), rejected(rj.POOL_NOT_FOUND), id="total/undefined pool"),
]


@pytest.mark.parametrize(("history", "command", "expected"), CASES)
def test_decide(history, command, expected):
    decision = decide(pool_after(history), command, SLOTS_MAX)
    assert outcome_of(decision) == expected


def test_the_table_covers_every_rejection_code():
    covered = {case.values[2].code for case in CASES} - {None}
    assert covered == set(rj.ALL_CODES)


TOTAL_USED_UP = (*RESERVED_WITH_TOTAL, ev.CapacityReserved(rid(2), "b", 4, None, None, T0))


@pytest.mark.parametrize(
    ("history", "command", "detail"),
    [
        pytest.param(RESERVED, reserve("a", 3), "slot a has 2 units available, 3 requested",
                     id="the slot is the limit"),
        pytest.param((*RESERVED, ev.CapacityReserved(rid(2), "a", 1, None, None, T0)),
                     reserve("a", 2), "slot a has 1 unit available, 2 requested",
                     id="the slot is the limit, one unit left"),
        pytest.param(RESERVED_WITH_TOTAL, reserve("b", 5),
                     f"pool {POOL} has 4 units left of its total capacity of 12, 5 requested",
                     id="the pool total is tighter than the slot"),
        pytest.param(TOTAL_USED_UP, reserve("a", 1),
                     f"pool {POOL} has 0 units left of its total capacity of 12, 1 requested",
                     id="the pool total is used up, the slot has room"),
        pytest.param(RESERVED_WITH_TOTAL, update("a", capacity=1),
                     "slot a has 8 units reserved; capacity cannot go below that",
                     id="capacity below reserved"),
        pytest.param((*WITH_TOTAL, ev.CapacityReserved(RID1, "a", 1, None, None, T0)), total(0),
                     f"pool {POOL} has 1 unit reserved; total capacity cannot go below that",
                     id="total below reserved, one unit"),
    ],
)
def test_a_refusal_names_what_is_exhausted_in_words(history, command, detail):
    """The detail blames the limit that refused (the slot, or the pool's total), with the
    count and its noun agreeing."""
    rejection = decide(pool_after(history), command, SLOTS_MAX).rejection
    assert rejection is not None and rejection.detail == detail


def fingerprint(pool: Pool | None) -> object:
    if pool is None:
        return None
    reservations = [
        (r.reservation_id, r.slot_id, r.units, r.order_ref, r.idempotency_key, r.active)
        for r in pool.reservations.values()
    ]
    return pool_view(pool), reservations, list(pool.keys.items()), pool.reservation_count


@pytest.mark.parametrize(("history", "command", "expected"), CASES)
def test_decide_never_changes_the_pool(history, command, expected):
    pool = pool_after(history)
    before = fingerprint(pool)
    decide(pool, command, SLOTS_MAX)
    assert fingerprint(pool) == before


@pytest.mark.parametrize(
    "pool_id", ["p", "berlin-2030-01-01", "Z9:vans.x-y", "x" * 128], ids=lambda p: p[:20]
)
@pytest.mark.parametrize("count", [0, 15, 4095])
def test_a_reservation_id_carries_its_pool(pool_id, count):
    define_pool = cmd.DefinePool(pool_id, "van", "berlin", "2030-01-01", None, (SLOT_A,))
    pool = evolve(None, decide(None, define_pool, SLOTS_MAX).events[0], RETENTION)
    pool.reservation_count = count  # as if `count` reservations had come before
    command = cmd.ReserveCapacity(pool_id, "a", 1, None, None, "abcdef0123", T0)
    decision = decide(pool, command, SLOTS_MAX)
    assert decision.reservation_id == decision.events[0].reservation_id
    assert pool_of_reservation(decision.reservation_id) == pool_id


@pytest.mark.parametrize(
    "value",
    [None, 42, "", "p1", "p1~", "p1~1", "p1~1.abc", "p1~1.xyzw", "a~b~1.abcd", "p1~1.abcd\n"],
)
def test_a_malformed_reservation_id_names_no_pool(value):
    assert pool_of_reservation(value) is None


def test_reservation_numbers_count_up_and_differ_by_nonce():
    pool = pool_after(RESERVED)
    first = decide(pool, reserve("b", 1, nonce="1111"), SLOTS_MAX).reservation_id
    second = decide(pool, reserve("b", 1, nonce="2222"), SLOTS_MAX).reservation_id
    assert first == rid(2, "1111") and second == rid(2, "2222") and first != second


def test_the_slot_limit_counts_in_words():
    rejection = decide(pool_after(DEFINED), cmd.AddSlot(POOL, SLOT_C), 1).rejection
    assert rejection is not None and rejection.detail == "a pool holds at most 1 slot"
