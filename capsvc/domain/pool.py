"""The pool aggregate's state: slots, reservations and remembered idempotency keys.

State is mutable on purpose: folding an event costs O(1) instead of copying a pool with many
thousands of reservations. Only `evolve` mutates it, and only after the event is durable (the
shard writer guarantees this), so nobody observes a state that the disk does not hold.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeyRetention:
    """How long and how many idempotency keys a pool remembers."""

    retention_ms: int = 86_400_000
    keys_max: int = 100_000

    def __post_init__(self) -> None:
        assert self.retention_ms > 0 and self.keys_max > 0


class Slot:
    __slots__ = ("slot_id", "starts_at", "ends_at", "capacity", "reserved", "open")

    def __init__(self, slot_id: str, starts_at: str, ends_at: str, capacity: int) -> None:
        self.slot_id = slot_id
        self.starts_at = starts_at
        self.ends_at = ends_at
        self.capacity = capacity
        self.reserved = 0
        self.open = True


class Reservation:
    __slots__ = ("reservation_id", "slot_id", "units", "order_ref", "idempotency_key", "active")

    def __init__(
        self,
        reservation_id: str,
        slot_id: str,
        units: int,
        order_ref: str | None,
        idempotency_key: str | None,
        active: bool = True,
    ) -> None:
        self.reservation_id = reservation_id
        self.slot_id = slot_id
        self.units = units
        self.order_ref = order_ref
        self.idempotency_key = idempotency_key
        self.active = active


class Pool:
    __slots__ = (
        "pool_id",
        "kind",
        "region",
        "date",
        "total_capacity",
        "total_reserved",
        "slots",
        "reservations",
        "keys",
        "version",
        "reservation_count",
        "retention",
    )

    def __init__(
        self,
        pool_id: str,
        kind: str,
        region: str,
        date: str,
        total_capacity: int | None,
        retention: KeyRetention,
    ) -> None:
        self.pool_id = pool_id
        self.kind = kind
        self.region = region
        self.date = date
        self.total_capacity = total_capacity
        self.total_reserved = 0
        self.slots: dict[str, Slot] = {}
        self.reservations: dict[str, Reservation] = {}
        # idempotency key -> (reservation id, time first seen); oldest first, for eviction
        self.keys: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self.version = 0  # number of events folded into this pool
        self.reservation_count = 0  # reservations ever made; numbers the next reservation id
        self.retention = retention

    def available(self, slot: Slot) -> int:
        """Units still bookable in `slot`, honouring the pool-wide total when there is one."""
        free = slot.capacity - slot.reserved
        if self.total_capacity is not None:
            free = min(free, self.total_capacity - self.total_reserved)
        return max(free, 0)

    def remembered_key(self, key: str, now_ms: int) -> str | None:
        """The reservation id an unexpired idempotency key produced, if any."""
        entry = self.keys.get(key)
        if entry is None or now_ms - entry[1] >= self.retention.retention_ms:
            return None
        return entry[0]
