"""Fold one event into a pool. Events are facts: evolving never rejects.

An event that cannot apply (unknown slot, duplicate reservation) means the log or the code is
wrong; that is a bug, so it is an assertion: the worker dies and recovery starts clean.
"""

from __future__ import annotations

from capsvc.domain import events as ev
from capsvc.domain.invariants import check_invariants
from capsvc.domain.pool import KeyRetention, Pool, Reservation, Slot


def evolve(pool: Pool | None, event: ev.Event, retention: KeyRetention) -> Pool:
    """Apply `event` to `pool` (None before the pool is defined) and return the pool."""
    if isinstance(event, ev.PoolDefined):
        assert pool is None, f"pool {event.pool_id} defined twice"
        pool = Pool(
            event.pool_id, event.kind, event.region, event.date, event.total_capacity, retention
        )
        for spec in event.slots:
            _add_slot(pool, spec)
    else:
        assert pool is not None, f"{type(event).__name__} before PoolDefined"
        _APPLY[type(event)](pool, event)
    pool.version += 1
    check_invariants(pool)
    return pool


def _add_slot(pool: Pool, spec: ev.SlotSpec) -> None:
    assert spec.slot_id not in pool.slots, spec.slot_id
    pool.slots[spec.slot_id] = Slot(spec.slot_id, spec.starts_at, spec.ends_at, spec.capacity)


def _slot_added(pool: Pool, event: ev.SlotAdded) -> None:
    _add_slot(pool, event.slot)


def _capacity_changed(pool: Pool, event: ev.SlotCapacityChanged) -> None:
    pool.slots[event.slot_id].capacity = event.capacity


def _opened(pool: Pool, event: ev.SlotOpened) -> None:
    pool.slots[event.slot_id].open = True


def _closed(pool: Pool, event: ev.SlotClosed) -> None:
    pool.slots[event.slot_id].open = False


def _total_changed(pool: Pool, event: ev.TotalCapacityChanged) -> None:
    pool.total_capacity = event.total_capacity


def _reserved(pool: Pool, event: ev.CapacityReserved) -> None:
    assert event.reservation_id not in pool.reservations, event.reservation_id
    slot = pool.slots[event.slot_id]
    slot.reserved += event.units
    pool.total_reserved += event.units
    pool.reservation_count += 1
    pool.reservations[event.reservation_id] = Reservation(
        event.reservation_id, event.slot_id, event.units, event.order_ref, event.idempotency_key
    )
    if event.idempotency_key is not None:
        pool.keys[event.idempotency_key] = (event.reservation_id, event.at_ms)
        pool.keys.move_to_end(event.idempotency_key)
        _forget_old_keys(pool, event.at_ms)


def _forget_old_keys(pool: Pool, now_ms: int) -> None:
    """Bound the remembered keys by age and by number (the oldest go first)."""
    keys, retention = pool.keys, pool.retention
    while keys:
        _, (_, seen_ms) = next(iter(keys.items()))
        if len(keys) <= retention.keys_max and now_ms - seen_ms < retention.retention_ms:
            break
        keys.popitem(last=False)


def _released(pool: Pool, event: ev.ReservationReleased) -> None:
    reservation = pool.reservations[event.reservation_id]
    assert reservation.active, f"{event.reservation_id} released twice"
    reservation.active = False
    pool.slots[reservation.slot_id].reserved -= reservation.units
    pool.total_reserved -= reservation.units


_APPLY = {
    ev.SlotAdded: _slot_added,
    ev.SlotCapacityChanged: _capacity_changed,
    ev.SlotOpened: _opened,
    ev.SlotClosed: _closed,
    ev.TotalCapacityChanged: _total_changed,
    ev.CapacityReserved: _reserved,
    ev.ReservationReleased: _released,
}
