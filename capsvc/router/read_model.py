"""The router's eventually consistent read model of every pool, for the availability grid.

Fed per shard: each feed answer carries the shard's position (a seq in its event log) and the
current state of every pool that changed after the position we asked from. States, not
deltas, so applying one twice changes nothing, and a position that moves backwards (a restored
or replaced file) simply triggers a full reload of that shard: no gaps, no double counting
after a failover.

Memory: a pool is one `PoolEntry` (a tuple): its slot layout (ids and times) is shared by every
pool with the same slots, its counts sit in one int32 array, and a day lists its pools in one
sorted list, so 100k pools of 12 slots take about 50 MiB, not the 700 MiB their decoded JSON
views did. Grid answers are rendered from the entries once per (region, date, kind) and kept
as bytes until a pool of that day changes, or until the next instant one of its slots closes
for booking.

Booking cut-offs: a slot passes its cut-off with no write at all, so no feed row would ever
say so. Rows therefore carry each pool's cut-off (minutes), the model turns it into every
slot's closing instant once, when the row arrives (with `capsvc.domain.instants`, the
arithmetic the owner decides with), and the grid compares those instants with this router's
clock when it renders. A rendered day is kept until its next closing instant, so the grid
stays bytes-from-a-dict between closings and a slot shows not bookable as soon as it closes.
The owner's clock still decides every reserve: this clock only says what the grid shows.
"""

from __future__ import annotations

import json
import math
import sys
import time
from array import array
from bisect import bisect_left, insort
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from capsvc.domain.instants import booking_closes_at_ms

GRID_CACHE_DAYS_MAX = 4096

# per slot: slot_id, starts_at, ends_at, the first instant (ms) it takes no reservation
Shape = tuple[tuple[str, str, str, int], ...]


class PoolEntry(NamedTuple):
    pool_id: str
    shard: int
    kind: str
    region: str
    date: str
    version: int
    total_capacity: int | None
    total_reserved: int
    booking_cutoff_minutes: int
    shape: Shape
    counts: Sequence[int]  # per slot, in shape order: capacity, reserved, open (0 or 1)


def _counts(values: list[int]) -> Sequence[int]:
    """The most compact sequence that holds `values` exactly (int32 with the default limits)."""
    for code in ("i", "q"):
        try:
            return array(code, values)
        except OverflowError:
            continue
    return tuple(values)


def _now_ms() -> float:
    return time.time() * 1000


def _available(entry: PoolEntry, capacity: int, reserved: int) -> int:
    """`Pool.available` on the entry's numbers (tests hold the two equal)."""
    free = capacity - reserved
    if entry.total_capacity is not None:
        free = min(free, entry.total_capacity - entry.total_reserved)
    return max(free, 0)


class ReadModel:
    def __init__(self, shard_count: int) -> None:
        self.shard_count = shard_count
        self.positions: dict[int, int] = {}
        self.shard_states: dict[int, str] = {}
        self._pools: dict[str, PoolEntry] = {}
        self._shard_sizes: dict[int, int] = defaultdict(int)  # pools held per shard
        self._by_day: dict[tuple[str, str], list[str]] = {}  # day -> its pool ids, sorted
        self._shapes: dict[Shape, list[Any]] = {}  # layout -> [the shared tuple, users]
        # day -> kind -> (JSON, the instant it goes stale: the next slot closing after render)
        self._grids: dict[tuple[str, str], dict[str | None, tuple[bytes, float]]] = {}
        self.synced_at: dict[str, float] = {}  # worker name -> wall time of its last answer
        self.caught_up: set[int] = set()  # shards whose pools were all loaded once
        self.generation = 0  # bumped on every change to a pool

    # -- feeding -----------------------------------------------------------------------------
    def apply(self, worker: str, answer: dict[str, Any], at: float | None = None) -> None:
        """One feed answer: shards with news, and (compact answers) the ready shards that
        had nothing new since the position we asked from."""
        for key, shard in answer["shards"].items():
            shard_id = int(key)
            self.shard_states[shard_id] = shard["state"]
            if shard["full"] and self._shard_sizes[shard_id]:
                for entry in [e for e in self._pools.values() if e.shard == shard_id]:
                    self._drop(entry)
            if "rows" in shard:
                for row in shard["rows"]:
                    self._put(self._entry_from_row(shard_id, row))
            else:  # a worker from before compact rows: whole pool views
                for view in shard["pools"]:
                    self._put(self._entry_from_view(shard_id, view))
            self.positions[shard_id] = shard["position"]
            if shard["position"] >= shard.get("last_seq", shard["position"]):
                self.caught_up.add(shard_id)  # loaded completely at least once
        for shard_id in answer.get("unchanged", ()):
            self.shard_states[shard_id] = "ready"
            self.caught_up.add(shard_id)  # its position is the one we asked from: its last seq
        self.synced_at[worker] = time.time() if at is None else at

    def _entry_from_row(self, shard_id: int, row: list[Any]) -> PoolEntry:
        """A feed row: [pool_id, kind, region, date, version, total_capacity, total_reserved,
        [[slot_id, starts_at, ends_at, capacity, reserved, open], ...], booking_cutoff_minutes]
        (a worker from before cut-offs sends no cut-off: 0)."""
        pool_id, kind, region, date, version, total_capacity, total_reserved, slots, *rest = row
        cutoff = rest[0] if rest else 0
        return PoolEntry(
            pool_id,
            shard_id,
            sys.intern(kind),
            sys.intern(region),
            sys.intern(date),
            version,
            total_capacity,
            total_reserved,
            cutoff,
            tuple((s[0], s[1], s[2], booking_closes_at_ms(s[1], cutoff)) for s in slots),
            _counts([n for s in slots for n in (s[3], s[4], int(s[5]))]),
        )

    def _entry_from_view(self, shard_id: int, view: dict[str, Any]) -> PoolEntry:
        pool = ("pool_id", "kind", "region", "date", "version", "total_capacity", "total_reserved")
        slot = ("slot_id", "starts_at", "ends_at", "capacity", "reserved", "open")
        slots = [[s[f] for f in slot] for s in view["slots"]]
        cutoff = view.get("booking_cutoff_minutes", 0)
        return self._entry_from_row(shard_id, [*(view[f] for f in pool), slots, cutoff])

    def _put(self, entry: PoolEntry) -> None:
        old = self._pools.get(entry.pool_id)
        if old is not None:
            if old == entry:
                return  # sent again (a reload, a repeated page): cached grids stay valid
            if old._replace(version=entry.version) == entry:
                # Only the version moved (a keyed refusal was recorded): the grid shows no
                # version, so the day's rendered grid stays valid (a flash sale refuses a lot).
                self._pools[entry.pool_id] = entry._replace(shape=old.shape)
                self.generation += 1
                return
            self._unlink(old)
        entry = entry._replace(shape=self._share(entry.shape))
        self._pools[entry.pool_id] = entry
        self._shard_sizes[entry.shard] += 1
        day = (entry.region, entry.date)
        insort(self._by_day.setdefault(day, []), entry.pool_id)
        self._changed(day)

    def _drop(self, entry: PoolEntry) -> None:
        del self._pools[entry.pool_id]
        self._unlink(entry)

    def _unlink(self, entry: PoolEntry) -> None:
        """Take `entry` out of its day and its shard's count, and give back its layout."""
        day = (entry.region, entry.date)
        members = self._by_day[day]
        del members[bisect_left(members, entry.pool_id)]
        if not members:
            del self._by_day[day]
        self._changed(day)
        self._shard_sizes[entry.shard] -= 1
        shared = self._shapes[entry.shape]
        shared[1] -= 1
        if shared[1] == 0:
            del self._shapes[entry.shape]

    def _share(self, shape: Shape) -> Shape:
        """The one tuple every pool with this slot layout points at."""
        shared = self._shapes.get(shape)
        if shared is None:
            shared = self._shapes[shape] = [shape, 0]
        shared[1] += 1
        return shared[0]

    def _changed(self, day: tuple[str, str]) -> None:
        self.generation += 1
        self._grids.pop(day, None)  # only this day's grids are rendered again

    def since_parameter(self) -> str:
        return ",".join(f"{s}:{p}" for s, p in sorted(self.positions.items()))

    # -- reading -----------------------------------------------------------------------------
    def grid(
        self, region: str, date: str, kind: str | None, now_ms: float | None = None
    ) -> list[dict[str, Any]]:
        """The pools of one day (optionally of one kind), as `/v1/availability` lists them at
        `now_ms` (default: now). A slot is bookable while open, with units available, before
        its booking cut-off."""
        now_ms = _now_ms() if now_ms is None else now_ms
        out = []
        for entry in self._entries(region, date, kind):
            counts = entry.counts
            out.append(
                {
                    "pool_id": entry.pool_id,
                    "kind": entry.kind,
                    "region": region,
                    "date": date,
                    "slots": [
                        {
                            "slot_id": slot_id,
                            "starts_at": starts_at,
                            "ends_at": ends_at,
                            "bookable": bool(counts[3 * i + 2])
                            and now_ms < closes_at
                            and _available(entry, counts[3 * i], counts[3 * i + 1]) > 0,
                        }
                        for i, (slot_id, starts_at, ends_at, closes_at) in enumerate(entry.shape)
                    ],
                }
            )
        return out

    def grid_json(
        self, region: str, date: str, kind: str | None, now_ms: float | None = None
    ) -> bytes:
        """`json.dumps(grid(...))`, rendered once per change of the day, and again once one
        of its slots has closed for booking since: the cache is keyed on the next closing."""
        now_ms = _now_ms() if now_ms is None else now_ms
        day = (region, date)
        grids = self._grids.get(day)
        if grids is None:
            if len(self._grids) >= GRID_CACHE_DAYS_MAX:
                self._grids.clear()
            grids = self._grids[day] = {}
        cached = grids.get(kind)
        if cached is None or now_ms >= cached[1]:
            rendered = json.dumps(self.grid(region, date, kind, now_ms)).encode()
            cached = grids[kind] = (rendered, self._next_closing(region, date, kind, now_ms))
        return cached[0]

    def _next_closing(self, region: str, date: str, kind: str | None, now_ms: float) -> float:
        """The first instant after `now_ms` a slot of the day closes for booking (inf: none)."""
        return min(
            (closes_at for entry in self._entries(region, date, kind)
             for _, _, _, closes_at in entry.shape if closes_at > now_ms),
            default=math.inf,
        )

    def view(self, pool_id: str, now_ms: float | None = None) -> dict[str, Any]:
        """A pool as the worker's `availability_view` renders it at `now_ms` (default: now):
        the planner board's rows."""
        now_ms = _now_ms() if now_ms is None else now_ms
        entry = self._pools[pool_id]
        counts = entry.counts
        slots = []
        for i, (slot_id, starts_at, ends_at, closes_at) in enumerate(entry.shape):
            capacity, reserved, is_open = counts[3 * i], counts[3 * i + 1], bool(counts[3 * i + 2])
            available = _available(entry, capacity, reserved)
            slots.append(
                {
                    "slot_id": slot_id,
                    "starts_at": starts_at,
                    "ends_at": ends_at,
                    "capacity": capacity,
                    "reserved": reserved,
                    "available": available,
                    "open": is_open,
                    "bookable": is_open and available > 0 and now_ms < closes_at,
                }
            )
        return {
            "pool_id": entry.pool_id,
            "kind": entry.kind,
            "region": entry.region,
            "date": entry.date,
            "version": entry.version,
            "total_capacity": entry.total_capacity,
            "total_reserved": entry.total_reserved,
            "booking_cutoff_minutes": entry.booking_cutoff_minutes,
            "slots": slots,
        }

    def views(self, region: str, date: str, kind: str | None) -> list[dict[str, Any]]:
        now_ms = _now_ms()
        return [self.view(e.pool_id, now_ms) for e in self._entries(region, date, kind)]

    def regions(self) -> list[str]:
        return sorted({region for region, _ in self._by_day})

    def days(self, region: str) -> list[str]:
        return sorted(date for r, date in self._by_day if r == region)

    def _entries(self, region: str, date: str, kind: str | None) -> Iterable[PoolEntry]:
        for pool_id in self._by_day.get((region, date), ()):
            entry = self._pools[pool_id]
            if kind is None or entry.kind == kind:
                yield entry

    def as_of(self, workers: list[str]) -> float | None:
        """The time up to which the model is known complete: the oldest worker's last answer
        (None until every worker has answered once)."""
        if not workers or any(w not in self.synced_at for w in workers):
            return None
        if len(self.caught_up) < self.shard_count:
            return None  # still paging through the first load
        return min(self.synced_at[w] for w in workers)

    def pool_count(self) -> int:
        return len(self._pools)
