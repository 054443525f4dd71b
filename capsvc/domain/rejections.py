"""Business rejections: values, not exceptions, each with a stable code.

The codes are part of the public contract (clients match on them); the HTTP layer maps each to
a status. Add codes, never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POOL_EXISTS = "pool_exists"
POOL_NOT_FOUND = "pool_not_found"
SLOT_NOT_FOUND = "slot_not_found"
SLOT_EXISTS = "slot_exists"
SLOT_CLOSED = "slot_closed"
BOOKING_CLOSED = "booking_closed"
CAPACITY_EXHAUSTED = "capacity_exhausted"
CAPACITY_BELOW_RESERVED = "capacity_below_reserved"
TOTAL_CAPACITY_BELOW_RESERVED = "total_capacity_below_reserved"
TOO_MANY_SLOTS = "too_many_slots"
IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
RESERVATION_NOT_FOUND = "reservation_not_found"

ALL_CODES = (
    POOL_EXISTS,
    POOL_NOT_FOUND,
    SLOT_NOT_FOUND,
    SLOT_EXISTS,
    SLOT_CLOSED,
    CAPACITY_EXHAUSTED,
    CAPACITY_BELOW_RESERVED,
    TOTAL_CAPACITY_BELOW_RESERVED,
    TOO_MANY_SLOTS,
    IDEMPOTENCY_KEY_REUSED,
    RESERVATION_NOT_FOUND,
    BOOKING_CLOSED,
)
# Refusals of a reserve that an Idempotency-Key is bound to, so that a retry (a redelivered
# message) gets the same answer even once capacity comes free. The others (no such pool or
# slot, a key reused) say something about the request itself and bind nothing.
KEY_BINDING_CODES = frozenset((CAPACITY_EXHAUSTED, SLOT_CLOSED, BOOKING_CLOSED))


@dataclass(frozen=True)
class Rejection:
    code: str
    detail: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.code in ALL_CODES, self.code
