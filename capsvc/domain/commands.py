"""Commands: imperative requests to change one pool. Time and nonces come in from outside."""

from __future__ import annotations

from dataclasses import dataclass

from capsvc.domain.events import SlotSpec


@dataclass(frozen=True, slots=True)
class DefinePool:
    pool_id: str
    kind: str
    region: str
    date: str
    total_capacity: int | None
    slots: tuple[SlotSpec, ...]
    booking_cutoff_minutes: int = 0


@dataclass(frozen=True, slots=True)
class AddSlot:
    pool_id: str
    slot: SlotSpec


@dataclass(frozen=True, slots=True)
class UpdateSlot:
    """Change a slot's capacity and/or open flag atomically (one PATCH, all or nothing)."""

    pool_id: str
    slot_id: str
    capacity: int | None = None
    open: bool | None = None


@dataclass(frozen=True, slots=True)
class ChangeTotalCapacity:
    pool_id: str
    total_capacity: int | None


@dataclass(frozen=True, slots=True)
class ReserveCapacity:
    pool_id: str
    slot_id: str
    units: int
    idempotency_key: str | None
    order_ref: str | None
    nonce: str  # random, chosen by the caller: makes reservation ids unguessable
    now_ms: int


@dataclass(frozen=True, slots=True)
class ReleaseReservation:
    pool_id: str
    reservation_id: str
    now_ms: int


Command = (
    DefinePool | AddSlot | UpdateSlot | ChangeTotalCapacity | ReserveCapacity | ReleaseReservation
)
