"""Decide: turn a command into events, a rejection, or a replay of an earlier outcome.

Pure: reads the pool, never changes it. Rejections are checked in a fixed order of precedence
(existence, then state, then capacity) so the same situation always gives the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

from capsvc.domain import commands as cmd
from capsvc.domain import events as ev
from capsvc.domain import rejections as rj
from capsvc.domain.ids import make_reservation_id
from capsvc.domain.pool import Pool, Refusal
from capsvc.domain.rejections import Rejection
from capsvc.domain.wording import counted


@dataclass(frozen=True, slots=True)
class Decision:
    """What a command does: events to append (maybe none), or a rejection.

    `replayed` marks a reserve whose idempotency key was already used with the same request:
    no events, and the caller answers with the original reservation, or (with `rejection`)
    the original refusal. A keyed reserve refused for the first time has both a rejection and
    an event (`ReservationRefused`, which binds the key to the refusal).
    `reservation_id` names the reservation a reserve or release is about.
    """

    events: tuple[ev.Event, ...] = ()
    rejection: Rejection | None = None
    replayed: bool = False
    reservation_id: str | None = None


def decide(pool: Pool | None, command: cmd.Command, slots_max: int) -> Decision:
    if isinstance(command, cmd.DefinePool):
        return _define(pool, command)
    if pool is None:
        if isinstance(command, cmd.ReleaseReservation):
            return _reject(rj.RESERVATION_NOT_FOUND, f"no reservation {command.reservation_id}")
        return _reject(rj.POOL_NOT_FOUND, f"no pool {command.pool_id}")
    if isinstance(command, cmd.ReserveCapacity):
        return _reserve(pool, command)
    if isinstance(command, cmd.ReleaseReservation):
        return _release(pool, command)
    if isinstance(command, cmd.UpdateSlot):
        return _update_slot(pool, command)
    if isinstance(command, cmd.AddSlot):
        return _add_slot(pool, command, slots_max)
    if isinstance(command, cmd.ChangeTotalCapacity):
        return _change_total(pool, command)
    raise AssertionError(f"unknown command {command!r}")


def _reject(code: str, detail: str, **fields: object) -> Decision:
    return Decision(rejection=Rejection(code, detail, dict(fields)))


def definition_of(pool: Pool) -> ev.PoolDefined:
    """The pool's current definition, as a PoolDefined would state it."""
    slots = tuple(
        ev.SlotSpec(s.slot_id, s.starts_at, s.ends_at, s.capacity) for s in pool.slots.values()
    )
    return ev.PoolDefined(
        pool.pool_id, pool.kind, pool.region, pool.date, pool.total_capacity, slots,
        pool.booking_cutoff_minutes,
    )


def _define(pool: Pool | None, c: cmd.DefinePool) -> Decision:
    wanted = ev.PoolDefined(
        c.pool_id, c.kind, c.region, c.date, c.total_capacity, c.slots, c.booking_cutoff_minutes
    )
    if pool is None:
        return Decision(events=(wanted,))
    if _same_definition(definition_of(pool), wanted):
        return Decision()
    return _reject(rj.POOL_EXISTS, f"pool {c.pool_id} already exists with a different definition")


def _same_definition(current: ev.PoolDefined, wanted: ev.PoolDefined) -> bool:
    # Slot order is not part of the definition.
    return (
        current.kind == wanted.kind
        and current.region == wanted.region
        and current.date == wanted.date
        and current.total_capacity == wanted.total_capacity
        and current.booking_cutoff_minutes == wanted.booking_cutoff_minutes
        and sorted(current.slots, key=lambda s: s.slot_id)
        == sorted(wanted.slots, key=lambda s: s.slot_id)
    )


def _reserve(pool: Pool, c: cmd.ReserveCapacity) -> Decision:
    assert c.units >= 1, c  # parsing guarantees it; anything else is a bug
    if c.idempotency_key is not None:
        earlier = pool.remembered_key(c.idempotency_key, c.now_ms)
        if earlier is not None:
            r = pool.reservations[earlier] if isinstance(earlier, str) else earlier
            if (r.slot_id, r.units, r.order_ref) != (c.slot_id, c.units, c.order_ref):
                return _reject(
                    rj.IDEMPOTENCY_KEY_REUSED,
                    "this Idempotency-Key was already used with a different request",
                )
            if isinstance(earlier, Refusal):
                return Decision(rejection=earlier.rejection, replayed=True)
            return Decision(replayed=True, reservation_id=earlier)
    decision = _reserve_afresh(pool, c)
    rejection = decision.rejection
    if (
        rejection is None
        or c.idempotency_key is None
        or rejection.code not in rj.KEY_BINDING_CODES
    ):
        return decision  # a refusal without a key binds nothing and costs no event
    refused = ev.ReservationRefused(
        c.idempotency_key, c.slot_id, c.units, c.order_ref, rejection.code, rejection.detail,
        rejection.fields, c.now_ms,
    )
    return Decision(events=(refused,), rejection=rejection)


def _reserve_afresh(pool: Pool, c: cmd.ReserveCapacity) -> Decision:
    slot = pool.slots.get(c.slot_id)
    if slot is None:
        return _reject(rj.SLOT_NOT_FOUND, f"pool {pool.pool_id} has no slot {c.slot_id}")
    if not slot.open:
        return _reject(rj.SLOT_CLOSED, f"slot {c.slot_id} is closed")
    # The owner's clock (the command's now_ms) decides, like every other time-based answer.
    if c.now_ms >= pool.booking_closes_at_ms(slot):
        cutoff = pool.booking_cutoff_minutes
        why = (f"{counted(cutoff, 'minute')} before it starts ({slot.starts_at})" if cutoff
               else f"when it started ({slot.starts_at})")
        return _reject(rj.BOOKING_CLOSED, f"booking for slot {c.slot_id} closed {why}")
    available = pool.available(slot)
    if c.units > available:
        left = counted(available, "unit")
        if available < slot.capacity - slot.reserved:  # the pool's total is the limit
            where = (f"pool {pool.pool_id} has {left} left of its total capacity of "
                     f"{pool.total_capacity}")
        else:
            where = f"slot {c.slot_id} has {left} available"
        detail = f"{where}, {c.units} requested"
        return _reject(rj.CAPACITY_EXHAUSTED, detail, available_units=available)
    reservation_id = make_reservation_id(pool.pool_id, pool.reservation_count + 1, c.nonce)
    event = ev.CapacityReserved(
        reservation_id, c.slot_id, c.units, c.order_ref, c.idempotency_key, c.now_ms
    )
    return Decision(events=(event,), reservation_id=reservation_id)


def _release(pool: Pool, c: cmd.ReleaseReservation) -> Decision:
    reservation = pool.reservations.get(c.reservation_id)
    if reservation is None:
        return _reject(rj.RESERVATION_NOT_FOUND, f"no reservation {c.reservation_id}")
    if not reservation.active:
        return Decision(reservation_id=c.reservation_id)  # releasing twice is harmless
    event = ev.ReservationReleased(c.reservation_id, c.now_ms)
    return Decision(events=(event,), reservation_id=c.reservation_id)


def _update_slot(pool: Pool, c: cmd.UpdateSlot) -> Decision:
    slot = pool.slots.get(c.slot_id)
    if slot is None:
        return _reject(rj.SLOT_NOT_FOUND, f"pool {pool.pool_id} has no slot {c.slot_id}")
    events: list[ev.Event] = []
    if c.capacity is not None and c.capacity != slot.capacity:
        if c.capacity < slot.reserved:
            return _reject(
                rj.CAPACITY_BELOW_RESERVED,
                f"slot {c.slot_id} has {counted(slot.reserved, 'unit')} reserved; "
                f"capacity cannot go below that",
                reserved_units=slot.reserved,
            )
        events.append(ev.SlotCapacityChanged(c.slot_id, c.capacity))
    if c.open is not None and c.open != slot.open:
        events.append(ev.SlotOpened(c.slot_id) if c.open else ev.SlotClosed(c.slot_id))
    return Decision(events=tuple(events))


def _add_slot(pool: Pool, c: cmd.AddSlot, slots_max: int) -> Decision:
    if c.slot.slot_id in pool.slots:
        return _reject(rj.SLOT_EXISTS, f"pool {pool.pool_id} already has slot {c.slot.slot_id}")
    if len(pool.slots) >= slots_max:
        return _reject(rj.TOO_MANY_SLOTS, f"a pool holds at most {counted(slots_max, 'slot')}")
    return Decision(events=(ev.SlotAdded(c.slot),))


def _change_total(pool: Pool, c: cmd.ChangeTotalCapacity) -> Decision:
    if c.total_capacity == pool.total_capacity:
        return Decision()
    if c.total_capacity is not None and c.total_capacity < pool.total_reserved:
        return _reject(
            rj.TOTAL_CAPACITY_BELOW_RESERVED,
            f"pool {pool.pool_id} has {counted(pool.total_reserved, 'unit')} reserved; "
            f"total capacity cannot go below that",
            reserved_units=pool.total_reserved,
        )
    return Decision(events=(ev.TotalCapacityChanged(c.total_capacity),))
