"""Events: past-tense facts, each carrying everything needed to rebuild the pool.

Events are frozen. Their JSON shape is owned by `capsvc.storage.codec`, which also records a
schema version per event so that old shapes can be upcast on read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SlotSpec:
    slot_id: str
    starts_at: str
    ends_at: str
    capacity: int


@dataclass(frozen=True, slots=True)
class PoolDefined:
    pool_id: str
    kind: str
    region: str
    date: str
    total_capacity: int | None
    slots: tuple[SlotSpec, ...]
    # A slot takes reservations until its start minus this (schema 2; 0 for older pools).
    booking_cutoff_minutes: int = 0


@dataclass(frozen=True, slots=True)
class SlotAdded:
    slot: SlotSpec


@dataclass(frozen=True, slots=True)
class SlotCapacityChanged:
    slot_id: str
    capacity: int


@dataclass(frozen=True, slots=True)
class SlotOpened:
    slot_id: str


@dataclass(frozen=True, slots=True)
class SlotClosed:
    slot_id: str


@dataclass(frozen=True, slots=True)
class TotalCapacityChanged:
    total_capacity: int | None


@dataclass(frozen=True, slots=True)
class CapacityReserved:
    reservation_id: str
    slot_id: str
    units: int
    order_ref: str | None
    idempotency_key: str | None
    at_ms: int


@dataclass(frozen=True, slots=True)
class ReservationReleased:
    reservation_id: str
    at_ms: int


@dataclass(frozen=True, slots=True)
class ReservationRefused:
    """A reserve under an idempotency key was refused (capacity, closed slot, cut-off): the
    key is bound to this refusal, so a retry gets the same answer. Changes no capacity."""

    idempotency_key: str
    slot_id: str  # with units and order_ref: the request's fingerprint, as a reservation's
    units: int
    order_ref: str | None
    code: str
    detail: str
    fields: dict[str, Any]
    at_ms: int


Event = (
    PoolDefined
    | SlotAdded
    | SlotCapacityChanged
    | SlotOpened
    | SlotClosed
    | TotalCapacityChanged
    | CapacityReserved
    | ReservationReleased
    | ReservationRefused
)

EVENT_TYPES: tuple[type, ...] = (
    PoolDefined,
    SlotAdded,
    SlotCapacityChanged,
    SlotOpened,
    SlotClosed,
    TotalCapacityChanged,
    CapacityReserved,
    ReservationReleased,
    ReservationRefused,
)
