"""Fold one event into a pool. Events are facts: evolving never rejects.

An event that cannot apply (unknown slot, duplicate reservation) means the log or the code is
wrong; that is a bug, so it is an assertion: the worker dies and recovery starts clean.
"""

from __future__ import annotations

from capsvc.domain import events as ev
from capsvc.domain.invariants import check_invariants
from capsvc.domain.pool import KeyRetention, Pool, Refusal, Reservation, Slot
from capsvc.domain.rejections import Rejection


def evolve(
    pool: Pool | None, event: ev.Event, retention: KeyRetention, *, check: bool = True
) -> Pool:
    """Apply `event` to `pool` (None before the pool is defined) and return the pool.

    `check=False` skips the O(slots) invariant check; only replay passes it, because recovery
    checks every pool in full once its events are folded in."""
    if isinstance(event, ev.PoolDefined):
        assert pool is None, f"pool {event.pool_id} defined twice"
        pool = Pool(
            event.pool_id, event.kind, event.region, event.date, event.total_capacity, retention,
            event.booking_cutoff_minutes,
        )
        pool.slots.add(*map(_slot, event.slots))
    else:
        assert pool is not None, f"{type(event).__name__} before PoolDefined"
        _APPLY[type(event)](pool, event)
    pool.version += 1
    if check:
        check_invariants(pool)
    return pool


def _slot(spec: ev.SlotSpec) -> Slot:
    return Slot(spec.slot_id, spec.starts_at, spec.ends_at, spec.capacity)


def _slot_added(pool: Pool, event: ev.SlotAdded) -> None:
    pool.slots.add(_slot(event.slot))


def _capacity_changed(pool: Pool, event: ev.SlotCapacityChanged) -> None:
    pool.slots[event.slot_id].capacity = event.capacity


def _opened(pool: Pool, event: ev.SlotOpened) -> None:
    pool.slots[event.slot_id].open = True


def _closed(pool: Pool, event: ev.SlotClosed) -> None:
    pool.slots[event.slot_id].open = False


def _total_changed(pool: Pool, event: ev.TotalCapacityChanged) -> None:
    pool.total_capacity = event.total_capacity


def _reserved(pool: Pool, event: ev.CapacityReserved) -> None:
    slot = pool.slots[event.slot_id]
    # slot.slot_id, not event.slot_id: one string shared by the slot and its reservations
    reservation = Reservation(
        event.reservation_id, slot.slot_id, event.units, event.order_ref, event.idempotency_key
    )
    pool.add_reservation(reservation, event.at_ms)
    slot.reserved += event.units
    pool.total_reserved += event.units


def _released(pool: Pool, event: ev.ReservationReleased) -> None:
    reservation = pool.reservations[event.reservation_id]
    assert reservation.active, f"{event.reservation_id} released twice"
    reservation.active = False
    pool.slots[reservation.slot_id].reserved -= reservation.units
    pool.total_reserved -= reservation.units


def _refused(pool: Pool, event: ev.ReservationRefused) -> None:
    slot = pool.slots.get(event.slot_id)
    slot_id = event.slot_id if slot is None else slot.slot_id  # shared string, as above
    rejection = Rejection(event.code, event.detail, event.fields)
    refusal = Refusal(event.idempotency_key, slot_id, event.units, event.order_ref, rejection)
    pool.add_refusal(refusal, event.at_ms)


_APPLY = {
    ev.SlotAdded: _slot_added,
    ev.SlotCapacityChanged: _capacity_changed,
    ev.SlotOpened: _opened,
    ev.SlotClosed: _closed,
    ev.TotalCapacityChanged: _total_changed,
    ev.CapacityReserved: _reserved,
    ev.ReservationReleased: _released,
    ev.ReservationRefused: _refused,
}
