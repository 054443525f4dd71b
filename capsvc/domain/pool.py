"""The pool aggregate's state: slots, reservations and remembered idempotency keys.

State is mutable on purpose: folding an event costs O(1) instead of copying a pool with many
thousands of reservations. Only `evolve` mutates it (and the snapshot codec, which builds it).
The shard writer folds a batch's events in as it decides them, before they are durable, so
the next command of the batch sees them; readers meanwhile get `copy_for_readers` of the
committed state (see `capsvc/shard/shard.py`), so nobody observes a state the disk does not
hold.

Memory: a worker holds every pool of its shards, most of them with few or no reservations.
Strings that repeat across pools (slot ids, slot times, kinds, regions, dates) are interned,
so a pool holds references, not copies; the reservation and key maps are made on first use.

A pool restored from a snapshot may leave its reservations and keys undecoded (`defer`): the
slot counts are exact at once, and the first use of `reservations` or `keys` decodes them and
checks them against the slots. A pool whose decoding failed stays failed: every later use
raises `DeferredStateDamaged` again, so nobody decides against a pool that lost its
reservations; its shard then rebuilds it from its events (`Shard._rebuild`).
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from capsvc.domain.instants import booking_closes_at_ms
from capsvc.domain.rejections import Rejection

_shared = sys.intern
_NONE: Mapping = MappingProxyType({})


class DeferredStateDamaged(Exception):
    """A pool's undecoded reservations and keys (from a snapshot) do not decode, or disagree
    with its slots: the snapshot is damaged. Nothing was decided against the pool."""

    def __init__(self, pool_id: str, cause: Exception) -> None:
        super().__init__(f"the snapshot of pool {pool_id} is damaged: {cause}")
        self.pool_id = pool_id


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
        self.slot_id = _shared(slot_id)
        self.starts_at = _shared(starts_at)
        self.ends_at = _shared(ends_at)
        self.capacity = capacity
        self.reserved = 0
        self.open = True

    def copy(self) -> Slot:
        copy = Slot.__new__(Slot)
        copy.slot_id, copy.starts_at, copy.ends_at = self.slot_id, self.starts_at, self.ends_at
        copy.capacity, copy.reserved, copy.open = self.capacity, self.reserved, self.open
        return copy


class SlotMap(Mapping[str, Slot]):
    """A pool's slots by id, in the order they were added: a mapping that only grows (`add`).

    Most pools share their slot ids with many others (the same day template everywhere), so
    the id -> position index is shared by every pool with the same ids in the same order, and
    a pool holds only a tuple of its Slot objects: about a third of a dict's size.
    """

    __slots__ = ("_index", "_slots")
    # Shared indexes by slot ids in order. Bounded: past the bound a new layout stays the
    # pool's own (as big as a dict of its slots), so unusual ids cannot grow it for ever.
    _layouts: dict[tuple[str, ...], dict[str, int]] = {}
    LAYOUTS_MAX = 4096

    def __init__(self) -> None:
        self._index: dict[str, int] = _NO_SLOTS
        self._slots: tuple[Slot, ...] = ()

    def add(self, *slots: Slot) -> None:
        """Add new slots, after those there are (one layout for all of them)."""
        ids = (*self._index, *(slot.slot_id for slot in slots))
        index = SlotMap._layouts.get(ids)
        if index is None:
            index = {slot_id: i for i, slot_id in enumerate(ids)}
            assert len(index) == len(ids), f"slot ids repeat: {ids}"
            if len(SlotMap._layouts) < SlotMap.LAYOUTS_MAX:
                SlotMap._layouts[ids] = index
        self._index = index
        self._slots = (*self._slots, *slots)

    def __setitem__(self, slot_id: str, slot: Slot) -> None:
        """`slots[id] = slot` as with a dict, for a new slot only."""
        assert slot_id == slot.slot_id, (slot_id, slot.slot_id)
        self.add(slot)

    def __getitem__(self, slot_id: str) -> Slot:
        return self._slots[self._index[slot_id]]

    def get(self, slot_id: str, default: Slot | None = None) -> Slot | None:  # type: ignore[override]
        i = self._index.get(slot_id)
        return default if i is None else self._slots[i]

    def __contains__(self, slot_id: object) -> bool:
        return slot_id in self._index

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._slots)

    def values(self) -> tuple[Slot, ...]:  # type: ignore[override]
        return self._slots

    def copy(self) -> SlotMap:
        """Another map with copies of these slots (the shared index stays shared)."""
        copy = SlotMap()
        copy._index = self._index
        copy._slots = tuple(slot.copy() for slot in self._slots)
        return copy

    def items(self) -> Iterator[tuple[str, Slot]]:  # type: ignore[override]
        return zip(self._index, self._slots, strict=True)


_NO_SLOTS: dict[str, int] = {}


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

    def copy(self) -> Reservation:
        return Reservation(
            self.reservation_id,
            self.slot_id,
            self.units,
            self.order_ref,
            self.idempotency_key,
            self.active,
        )


class Refusal:
    """A keyed reserve that was refused: what was asked (the fingerprint a retry must match)
    and the answer it got. Remembered under its key like a reservation."""

    __slots__ = ("idempotency_key", "slot_id", "units", "order_ref", "rejection")

    def __init__(
        self,
        idempotency_key: str,
        slot_id: str,
        units: int,
        order_ref: str | None,
        rejection: Rejection,
    ) -> None:
        self.idempotency_key = idempotency_key
        self.slot_id = slot_id
        self.units = units
        self.order_ref = order_ref
        self.rejection = rejection

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Refusal) and self.as_list() == other.as_list()

    __hash__ = None  # type: ignore[assignment]

    def as_list(self) -> list[Any]:
        """[key, slot_id, units, order_ref, code, detail, fields]: how snapshots store it."""
        r = self.rejection
        return [self.idempotency_key, self.slot_id, self.units, self.order_ref, r.code,
                r.detail, r.fields]


# What a remembered key answers: the id of the reservation it made, or the refusal it got.
KeyTarget = str | Refusal


class _Deferred:
    """A pool's reservations and keys still encoded, and what was added since."""

    __slots__ = ("decode", "check", "added")

    def __init__(self, decode: Callable[[Pool], None], check: Callable[[Pool], None]) -> None:
        self.decode = decode
        self.check = check
        # (reservation or refusal, time it was made), in order
        self.added: list[tuple[Reservation | Refusal, int]] = []


class Pool:
    __slots__ = (
        "pool_id",
        "kind",
        "region",
        "date",
        "total_capacity",
        "booking_cutoff_minutes",
        "total_reserved",
        "slots",
        "_reservations",
        "_keys",
        "_keys_young_until",
        "_deferred",
        "version",
        "reservation_count",
        "refusal_count",
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
        booking_cutoff_minutes: int = 0,
    ) -> None:
        self.pool_id = pool_id
        self.kind = _shared(kind)
        self.region = _shared(region)
        self.date = _shared(date)
        self.total_capacity = total_capacity
        self.booking_cutoff_minutes = booking_cutoff_minutes
        self.total_reserved = 0
        self.slots = SlotMap()
        # Made on first use (most pools never hold a reservation); see `reservations`, `keys`.
        self._reservations: dict[str, Reservation] | None = None
        # idempotency key -> (reservation id or refusal, time first seen); oldest first
        self._keys: OrderedDict[str, tuple[KeyTarget, int]] | None = None
        self._keys_young_until = 0  # no key expires before this time (0: look at the oldest)
        self._deferred: _Deferred | None = None
        self.version = 0  # number of events folded into this pool
        self.reservation_count = 0  # reservations ever made; numbers the next reservation id
        # keyed refusals ever recorded: with the reservations, what a snapshot of it weighs
        self.refusal_count = 0
        self.retention = retention

    # -- reservations and keys ---------------------------------------------------------------
    @property
    def reservations(self) -> Mapping[str, Reservation]:
        """Every reservation this pool ever made (released ones too), by id. Read-only:
        `add_reservation` is the one way in."""
        if self._deferred is not None:
            self._materialise()
        return _NONE if self._reservations is None else self._reservations

    @property
    def keys(self) -> Mapping[str, tuple[KeyTarget, int]]:
        """Remembered idempotency keys -> (reservation id or refusal, time first seen), oldest
        first."""
        if self._deferred is not None:
            self._materialise()
        return _NONE if self._keys is None else self._keys

    @property
    def deferred(self) -> Callable[[Pool], None] | None:
        """The decoder of reservations and keys not decoded yet (None once they are)."""
        return None if self._deferred is None else self._deferred.decode

    @property
    def added_while_deferred(self) -> int:
        """Reservations and refusals added since the snapshot, waiting for the decoding."""
        return 0 if self._deferred is None else len(self._deferred.added)

    def defer(self, decode: Callable[[Pool], None], check: Callable[[Pool], None]) -> None:
        """Decode reservations and keys on first use: `decode(pool)` must `restore` them; the
        reservations added meanwhile are then folded in, and `check(pool)` runs."""
        assert self._reservations is None and self._keys is None, self.pool_id
        self._deferred = _Deferred(decode, check)

    def restore(
        self, reservations: dict[str, Reservation], keys: OrderedDict[str, tuple[KeyTarget, int]]
    ) -> None:
        """Install decoded reservations and keys (the snapshot codec's way in)."""
        self._reservations = reservations or None
        self._keys = keys or None
        self._keys_young_until = 0

    def _materialise(self) -> None:
        deferred, self._deferred = self._deferred, None
        assert deferred is not None
        try:
            deferred.decode(self)
            for added, at_ms in deferred.added:
                if isinstance(added, Reservation):
                    self._insert(added, at_ms)
                else:
                    self._remember_key(added.idempotency_key, added, at_ms)
            deferred.check(self)
        except BaseException as e:
            self._deferred = deferred  # stay failed rather than look empty
            self._reservations = self._keys = None
            if isinstance(e, Exception):  # a decoding error or a failed check alike
                raise DeferredStateDamaged(self.pool_id, e) from e
            raise

    def add_reservation(self, reservation: Reservation, at_ms: int) -> None:
        """A new reservation, made at `at_ms`; its idempotency key, if any, is remembered.
        A pool whose reservations are not decoded yet keeps it aside until they are (replay
        after a snapshot then decodes only pools that release or answer something)."""
        self.reservation_count += 1
        if self._deferred is not None:
            self._deferred.added.append((reservation, at_ms))
        else:
            self._insert(reservation, at_ms)

    def _insert(self, reservation: Reservation, at_ms: int) -> None:
        if self._reservations is None:
            self._reservations = {}
        assert reservation.reservation_id not in self._reservations, reservation.reservation_id
        self._reservations[reservation.reservation_id] = reservation
        if reservation.idempotency_key is not None:
            self._remember_key(reservation.idempotency_key, reservation.reservation_id, at_ms)

    def add_refusal(self, refusal: Refusal, at_ms: int) -> None:
        """A keyed reserve refused at `at_ms`: its key is remembered, bound to the refusal."""
        self.refusal_count += 1
        if self._deferred is not None:
            self._deferred.added.append((refusal, at_ms))
        else:
            self._remember_key(refusal.idempotency_key, refusal, at_ms)

    def _remember_key(self, key: str, target: KeyTarget, at_ms: int) -> None:
        """Remember `key` as the newest, then forget keys too old or too many (oldest first)."""
        keys = self._keys
        if keys is None:
            keys = self._keys = OrderedDict()
        elif key in keys:
            del keys[key]  # a key used again after it expired: it becomes the newest
            self._keys_young_until = 0  # and the oldest may be another one now
        keys[key] = (target, at_ms)
        retention = self.retention
        if len(keys) <= retention.keys_max and at_ms < self._keys_young_until:
            return  # the common case: the oldest key is still young
        while keys:
            _, (_, seen_ms) = next(iter(keys.items()))
            if len(keys) <= retention.keys_max and at_ms - seen_ms < retention.retention_ms:
                self._keys_young_until = seen_ms + retention.retention_ms
                break
            keys.popitem(last=False)

    def copy_for_readers(self) -> Pool:
        """What readers see of this pool, apart from it: identity, totals, version and slots
        (O(slots)). Reservations and keys are not copied: the copy has none, so read them
        from the live pool (the shard keeps aside the ones a batch in flight changed)."""
        copy = Pool.__new__(Pool)
        copy.pool_id, copy.kind, copy.region, copy.date = (
            self.pool_id,
            self.kind,
            self.region,
            self.date,
        )
        copy.total_capacity, copy.total_reserved = self.total_capacity, self.total_reserved
        copy.booking_cutoff_minutes = self.booking_cutoff_minutes
        copy.slots = self.slots.copy()
        copy._reservations = copy._keys = None
        copy._keys_young_until = 0
        copy._deferred = None
        copy.version, copy.reservation_count = self.version, self.reservation_count
        copy.refusal_count = self.refusal_count
        copy.retention = self.retention
        return copy

    # -- questions -----------------------------------------------------------------------------
    def available(self, slot: Slot) -> int:
        """Units still bookable in `slot`, honouring the pool-wide total when there is one."""
        free = slot.capacity - slot.reserved
        if self.total_capacity is not None:
            free = min(free, self.total_capacity - self.total_reserved)
        return max(free, 0)

    def booking_closes_at_ms(self, slot: Slot) -> int:
        """The first instant `slot` takes no more reservations: its start minus the pool's
        cut-off (a started slot is never bookable, whatever the cut-off)."""
        return booking_closes_at_ms(slot.starts_at, self.booking_cutoff_minutes)

    def remembered_key(self, key: str, now_ms: int) -> KeyTarget | None:
        """What an unexpired idempotency key produced, if anything: a reservation id, or the
        refusal it got."""
        entry = self.keys.get(key)
        if entry is None or now_ms - entry[1] >= self.retention.retention_ms:
            return None
        return entry[0]
