"""Plain-dict views of pools and reservations: the shapes the HTTP contract promises."""

from __future__ import annotations

from typing import Any

from capsvc.domain.pool import Pool, Reservation


def pool_view(pool: Pool) -> dict[str, Any]:
    return {
        "pool_id": pool.pool_id,
        "kind": pool.kind,
        "region": pool.region,
        "date": pool.date,
        "version": pool.version,
        "total_capacity": pool.total_capacity,
        "total_reserved": pool.total_reserved,
        "booking_cutoff_minutes": pool.booking_cutoff_minutes,
        "slots": [
            {
                "slot_id": s.slot_id,
                "starts_at": s.starts_at,
                "ends_at": s.ends_at,
                "capacity": s.capacity,
                "reserved": s.reserved,
                "available": pool.available(s),
                "open": s.open,
            }
            for s in pool.slots.values()
        ],
    }


def reservation_view(pool: Pool, reservation: Reservation, *, as_created: bool = False) -> dict:
    """A reservation; `as_created` renders it as the reserve call first answered (replays)."""
    return {
        "reservation_id": reservation.reservation_id,
        "pool_id": pool.pool_id,
        "slot_id": reservation.slot_id,
        "units": reservation.units,
        "status": "active" if (as_created or reservation.active) else "released",
        "order_ref": reservation.order_ref,
    }


def availability_view(pool: Pool, now_ms: int | None = None) -> dict[str, Any]:
    """What the read model needs of a pool: the planners' numbers plus, per slot, whether a
    customer can book it (at `now_ms`, before its cut-off; without a time, only whether it is
    open with units available: the reader then compares with its own clock)."""
    view = pool_view(pool)
    for slot, s in zip(view["slots"], pool.slots.values(), strict=True):
        slot["bookable"] = slot["open"] and slot["available"] > 0 and (
            now_ms is None or now_ms < pool.booking_closes_at_ms(s)
        )
    return view
