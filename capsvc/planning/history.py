"""A pool's past: its state as of a moment, rebuilt from its events, and its events as a
timeline a person can read.

As of: the pool is folded from its first event up to the last one stamped at or before the
moment. Event times are wall-clock (for people, never for ordering), so the fold stops at the
first event stamped later: the answer is always a state the pool really went through, even if
a clock stepped back between two owners.

Timeline: planners' changes one by one (who, what, when, with the previous value when the
window shows it), customers' reservations and releases aggregated per minute, so a flash sale
reads as a few lines instead of thousands.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from capsvc.domain.evolve import evolve
from capsvc.domain.pool import KeyRetention, Pool
from capsvc.domain.wording import counted
from capsvc.storage.log import StoredEvent

MINUTE_MS = 60_000
# Customers' events, counted per minute; a keyed refusal (ReservationRefused) changes no
# capacity, so it is only counted (`refusals`): a flash sale must not flood the timeline.
_BOOKINGS = ("CapacityReserved", "ReservationReleased", "ReservationRefused")


def fold_until(
    pool: Pool | None, events: Iterable[StoredEvent], as_of_ms: int, retention: KeyRetention
) -> tuple[Pool | None, bool]:
    """Fold `events` (in version order) into `pool` while they are stamped at or before
    `as_of_ms`. Returns the pool (None if it was not defined yet) and whether a later event
    was met, after which nothing more may be folded."""
    for stored in events:
        if stored.at_ms > as_of_ms:
            return pool, True
        pool = evolve(pool, stored.event, retention)
        assert pool.version == stored.pool_version, (stored.pool_id, stored.seq)
    return pool, False


def timeline(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events as served by GET /v1/admin/pools/{id}/events (oldest first) -> entries,
    oldest first: one per planner change, one per minute of bookings."""
    builder = _Timeline()
    for event in events:
        builder.add(event)
    return builder.entries


class _Timeline:
    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.bucket: dict[str, Any] | None = None
        self.capacity: dict[str, int] = {}  # slot -> capacity, where this window shows it
        self.total: tuple[int | None] | None = None  # (total_capacity,) once known
        self.units: dict[str, tuple[str, int]] = {}  # reservation -> (slot, units)

    def add(self, event: dict[str, Any]) -> None:
        if event["type"] in _BOOKINGS:
            self._booking(event)
        else:
            self.bucket = None
            self.entries.append(self._change(event))

    def _booking(self, event: dict[str, Any]) -> None:
        minute = event["at_ms"] // MINUTE_MS * MINUTE_MS
        bucket = self.bucket
        if bucket is None or bucket["minute_ms"] != minute:
            bucket = self.bucket = {
                "kind": "bookings",
                "minute_ms": minute,
                "at_ms": event["at_ms"],
                "until_ms": event["at_ms"],
                "first_version": event["version"],
                "last_version": event["version"],
                "reservations": 0,
                "reserved_units": 0,
                "releases": 0,
                "released_units": 0,
                "refusals": 0,
                "slots": {},
                "summary": "",
            }
            self.entries.append(bucket)
        bucket["last_version"] = event["version"]
        bucket["until_ms"] = event["at_ms"]
        data = event["data"]
        if event["type"] == "CapacityReserved":
            slot, units = data["slot_id"], data["units"]
            self.units[data["reservation_id"]] = (slot, units)
            bucket["reservations"] += 1
            bucket["reserved_units"] += units
            per_slot = bucket["slots"].setdefault(slot, {"reserved_units": 0, "released_units": 0})
            per_slot["reserved_units"] += units
        elif event["type"] == "ReservationRefused":
            bucket["refusals"] += 1
        else:
            bucket["releases"] += 1
            known = self.units.get(data["reservation_id"])
            if known is not None:
                slot, units = known
                bucket["released_units"] += units
                per_slot = bucket["slots"].setdefault(
                    slot, {"reserved_units": 0, "released_units": 0}
                )
                per_slot["released_units"] += units
        bucket["summary"] = _bookings_summary(bucket)

    def _change(self, event: dict[str, Any]) -> dict[str, Any]:
        data, kind = event["data"], event["type"]
        slot_id = data.get("slot_id")
        if kind == "PoolDefined":
            for slot in data["slots"]:
                self.capacity[slot[0]] = slot[3]
            self.total = (data["total_capacity"],)
            units = sum(s[3] for s in data["slots"])
            n = len(data["slots"])
            summary = f"pool defined: {counted(n, 'slot')}, {counted(units, 'unit')}"
            if data["total_capacity"] is not None:
                summary += f", total capacity {data['total_capacity']}"
        elif kind == "SlotAdded":
            slot_id, capacity = data["slot"][0], data["slot"][3]
            self.capacity[slot_id] = capacity
            summary = f"slot {slot_id} added with capacity {capacity}"
        elif kind == "SlotCapacityChanged":
            before = self.capacity.get(slot_id)
            self.capacity[slot_id] = data["capacity"]
            summary = f"capacity of {slot_id} {_arrow(before, data['capacity'])}"
        elif kind == "SlotClosed":
            summary = f"slot {slot_id} closed"
        elif kind == "SlotOpened":
            summary = f"slot {slot_id} opened"
        elif kind == "TotalCapacityChanged":
            after = data["total_capacity"]
            summary = f"total capacity set to {_cap(after)}"
            if self.total is not None:
                summary = f"total capacity {_cap(self.total[0])} → {_cap(after)}"
            self.total = (after,)
        else:
            summary = kind
        return {
            "kind": "change",
            "type": kind,
            "version": event["version"],
            "at_ms": event["at_ms"],
            "actor": event["actor"],
            "slot_id": slot_id,
            "summary": summary,
            "data": data,
        }


def _cap(total: int | None) -> str:
    return "none" if total is None else str(total)


def _arrow(before: Any, after: Any) -> str:
    return f"set to {after}" if before is None else f"{before} → {after}"


def _bookings_summary(bucket: dict[str, Any]) -> str:
    parts = []
    if bucket["reservations"]:
        n = bucket["reservations"]
        parts.append(f"{counted(n, 'reservation')} (+{counted(bucket['reserved_units'], 'unit')})")
    if bucket["releases"]:
        n = bucket["releases"]
        text = counted(n, "release")
        if bucket["released_units"]:
            text += f" (−{counted(bucket['released_units'], 'unit')})"
        parts.append(text)
    if bucket["refusals"]:
        parts.append(f"{counted(bucket['refusals'], 'refusal')} remembered under their keys")
    return ", ".join(parts)
