"""The pool's invariants. A violation is a bug, so these are assertions.

`check_invariants` is O(slots) and runs after every evolve outside replay. `check_reservations`
sums every reservation (O(reservations)), so it runs where the cost is paid once: after
recovery, before a snapshot is written, when a snapshot's reservations are decoded, and after
every step in the property tests. `check_pool` is what recovery and checkpoints call: the full
check, except that a pool whose reservations are still undecoded (see `Pool.defer`) gets its
O(reservations) part when they are decoded, not now.
"""

from __future__ import annotations

from capsvc.domain.pool import Pool


def check_invariants(pool: Pool) -> None:
    total = 0
    for slot in pool.slots.values():
        assert 0 <= slot.reserved <= slot.capacity, (pool.pool_id, slot.slot_id)
        total += slot.reserved
    assert total == pool.total_reserved, (pool.pool_id, total, pool.total_reserved)
    if pool.total_capacity is not None:
        assert 0 <= pool.total_reserved <= pool.total_capacity, pool.pool_id


def check_reservations(pool: Pool) -> None:
    check_invariants(pool)
    per_slot = dict.fromkeys(pool.slots, 0)
    reservations = pool.reservations
    for reservation in reservations.values():
        assert reservation.units >= 1, reservation.reservation_id
        if reservation.active:
            per_slot[reservation.slot_id] += reservation.units
    for slot_id, reserved in per_slot.items():
        assert pool.slots[slot_id].reserved == reserved, (pool.pool_id, slot_id)
    assert len(reservations) == pool.reservation_count, pool.pool_id
    for key, (target, _) in pool.keys.items():
        if isinstance(target, str):
            assert reservations[target].idempotency_key == key, key
        else:  # a refusal the key is bound to
            assert target.idempotency_key == key, key


def check_pool(pool: Pool) -> None:
    if pool.deferred is None:
        check_reservations(pool)
    else:
        check_invariants(pool)
