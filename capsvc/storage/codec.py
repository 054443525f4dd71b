"""Event and snapshot encoding, with a schema version per event type and upcasters.

Events are stored as compact JSON objects. When an event changes shape, bump its version in
`EVENT_SCHEMA` and register an upcaster from the old version: old files keep loading, because
every event is upcast step by step on read.
"""

from __future__ import annotations

import json
import typing
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from capsvc.domain import events as ev
from capsvc.domain.invariants import check_reservations
from capsvc.domain.pool import KeyRetention, KeyTarget, Pool, Refusal, Reservation, Slot
from capsvc.domain.rejections import Rejection

if TYPE_CHECKING:
    from capsvc.storage.log import StoredEvent

EVENT_SCHEMA: dict[str, int] = {t.__name__: 1 for t in ev.EVENT_TYPES}
EVENT_SCHEMA["PoolDefined"] = 2  # v2: booking_cutoff_minutes
# 1: one JSON object (still read); 2: header and columns (still read); 3: see encode_snapshot
SNAPSHOT_SCHEMA = 3

# (event type, stored version) -> function turning that body into the next version's body
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _slot_spec_v0(spec: dict[str, Any]) -> list[Any]:
    return [spec["slot_id"], spec["starts_at"], spec["ends_at"], spec["capacity"]]


# v0, the first (pre-release) file format: slot specs were JSON objects, and a reservation had
# no order_ref. Shard files from then still load (tests/data/legacy-v0-shard.sqlite3).
UPCASTERS[("PoolDefined", 0)] = lambda d: {**d, "slots": [_slot_spec_v0(s) for s in d["slots"]]}
UPCASTERS[("SlotAdded", 0)] = lambda d: {**d, "slot": _slot_spec_v0(d["slot"])}
UPCASTERS[("CapacityReserved", 0)] = lambda d: {**d, "order_ref": None}
# v1 pools were defined before booking cut-offs: bookable until their slots start.
UPCASTERS[("PoolDefined", 1)] = lambda d: {**d, "booking_cutoff_minutes": 0}

_BY_NAME: dict[str, type] = {t.__name__: t for t in ev.EVENT_TYPES}
_FIELDS: dict[type, tuple[str, ...]] = {t: t.__slots__ for t in ev.EVENT_TYPES}
_encode = msgspec.json.Encoder().encode


def _dumps(value: Any) -> str:
    """Compact JSON, UTF-8 as is (the shape json.dumps(separators=(",", ":"),
    ensure_ascii=False) gives), at a fraction of its cost."""
    return _encode(value).decode()


_loads = json.loads
_load_part = msgspec.json.decode  # snapshots: faster than json.loads


def _strict_decoder(cls: type) -> Callable[[str], Any]:
    """A msgspec decoder straight into the event dataclass (types checked, no __init__: about
    a tenth of json.loads plus construction), and a second pass that refuses unknown fields,
    which msgspec ignores for dataclasses."""
    into_event = msgspec.json.Decoder(cls).decode
    hints = typing.get_type_hints(cls)
    shape = msgspec.defstruct(
        f"{cls.__name__}Shape",
        [(name, hints[name]) for name in _FIELDS[cls]],
        forbid_unknown_fields=True,
    )
    check_shape = msgspec.json.Decoder(shape).decode

    def decode(body: str) -> Any:
        event = into_event(body)
        check_shape(body)
        return event

    return decode


# Current-schema decoders of the events whose JSON shape is the dataclass's own (slot specs
# are stored as arrays, so PoolDefined and SlotAdded take the dict path below).
_TYPED: dict[str, Callable[[str], Any]] = {
    t.__name__: _strict_decoder(t)
    for t in ev.EVENT_TYPES
    if t not in (ev.PoolDefined, ev.SlotAdded)
}


class CodecError(ValueError):
    """A stored record cannot be decoded: unknown type, newer schema, or bad JSON."""


def _spec(spec: ev.SlotSpec) -> list[Any]:
    return [spec.slot_id, spec.starts_at, spec.ends_at, spec.capacity]


def encode_event(event: ev.Event) -> tuple[str, int, str]:
    """-> (type name, schema version, JSON body)."""
    kind = type(event)
    name = kind.__name__
    if kind is ev.PoolDefined:
        body: Any = {field: getattr(event, field) for field in _FIELDS[kind]}
        body["slots"] = [_spec(s) for s in event.slots]
    elif kind is ev.SlotAdded:
        body = {"slot": _spec(event.slot)}
    else:
        body = event  # msgspec writes a dataclass as an object of its fields, in order
    return name, EVENT_SCHEMA[name], _dumps(body)


def decode_event(type_name: str, schema: int, body: str) -> ev.Event:
    typed = _TYPED.get(type_name)
    if typed is not None and schema == EVENT_SCHEMA[type_name]:
        try:
            return typed(body)
        except msgspec.DecodeError as e:
            raise CodecError(f"cannot decode {type_name} v{schema}: {e}") from e
    cls = _BY_NAME.get(type_name)
    if cls is None:
        raise CodecError(f"unknown event type {type_name!r}")
    current = EVENT_SCHEMA[type_name]
    if schema > current:
        raise CodecError(f"{type_name} v{schema} is newer than this build (v{current})")
    try:
        data = _loads(body)
        while schema < current:
            data = UPCASTERS[(type_name, schema)](data)
            schema += 1
        if cls is ev.PoolDefined:
            data["slots"] = tuple(ev.SlotSpec(*s) for s in data["slots"])
        elif cls is ev.SlotAdded:
            data["slot"] = ev.SlotSpec(*data["slot"])
        return cls(**data)
    except (ValueError, TypeError, KeyError) as e:
        raise CodecError(f"cannot decode {type_name} v{schema}: {e}") from e


def _header(pool: Pool) -> dict[str, Any]:
    """The pool and its slots: a schema 2 snapshot's first line."""
    return {
        "pool_id": pool.pool_id,
        "kind": pool.kind,
        "region": pool.region,
        "date": pool.date,
        "total_capacity": pool.total_capacity,
        "booking_cutoff_minutes": pool.booking_cutoff_minutes,
        "version": pool.version,
        "reservation_count": pool.reservation_count,
        "refusal_count": pool.refusal_count,
        "slots": [
            [s.slot_id, s.starts_at, s.ends_at, s.capacity, s.reserved, s.open]
            for s in pool.slots.values()
        ],
    }


def snapshot_state(pool: Pool) -> dict[str, Any]:
    """Everything a snapshot holds, as plain data (the shape of a schema 1 snapshot), for
    comparing two pools: `capsvc verify` compares each snapshot with the replayed pool."""
    return {
        **_header(pool),
        "reservations": [
            [r.reservation_id, r.slot_id, r.units, r.order_ref, r.idempotency_key, r.active]
            for r in pool.reservations.values()
        ],
        # a key bound to a refusal: the refusal as a list (Refusal.as_list) in place of an id
        "keys": [
            [k, target if isinstance(target, str) else target.as_list(), at]
            for k, (target, at) in pool.keys.items()
        ],
    }


def encode_snapshot(pool: Pool) -> str:
    """Snapshot schema 3: a header line (the pool and its slots, everything `pool_view` needs)
    and, if the pool ever had a reservation or a keyed refusal, a second line with its
    reservations and keys as columns. Recovery decodes the header at once and the second line
    on first use. (Schema 2 is the same without the cut-off and the refusals column.)"""
    header = _dumps(_header(pool))
    deferred = pool.deferred
    if isinstance(deferred, _Columns) and deferred.schema == SNAPSHOT_SCHEMA and not (
        pool.added_while_deferred
    ):
        return f"{header}\n{deferred.text}"  # still as the last snapshot stored them
    if pool.reservation_count == 0 and not pool.keys:
        return header
    return f"{header}\n{_encode_columns(pool)}"


def _encode_columns(pool: Pool) -> str:
    """[reservation ids, slot rows, units, order refs, keys, active flags, key rows, key
    times, refusals]. A key row is its reservation's row, or (a key bound to a refusal)
    the number of reservations plus the refusal's index in the last column."""
    reservations = list(pool.reservations.values())
    slot_row = {slot_id: i for i, slot_id in enumerate(pool.slots)}
    ids = [r.reservation_id for r in reservations]
    row_of = dict(zip(ids, range(len(ids)), strict=True))
    remembered = list(pool.keys.values())  # (reservation id or refusal, time), oldest first
    refusals = [target for target, _ in remembered if isinstance(target, Refusal)]
    refusal_rows = iter(range(len(ids), len(ids) + len(refusals)))
    return _dumps(
        [
            ids,
            [slot_row[r.slot_id] for r in reservations],
            [r.units for r in reservations],
            [r.order_ref for r in reservations],
            [r.idempotency_key for r in reservations],
            "".join(["1" if r.active else "0" for r in reservations]),
            [row_of[t] if isinstance(t, str) else next(refusal_rows) for t, _ in remembered],
            [at_ms for _, at_ms in remembered],
            [refusal.as_list() for refusal in refusals],
        ]
    )


def _refusal(pool: Pool, stored: list[Any]) -> Refusal:
    key, slot_id, units, order_ref, code, detail, fields = stored
    slot = pool.slots.get(slot_id)
    return Refusal(key, slot_id if slot is None else slot.slot_id, units, order_ref,
                   Rejection(code, detail, fields))


class _Columns:
    """The undecoded reservations and keys of a schema 2 or 3 snapshot (see `Pool.defer`)."""

    __slots__ = ("text", "schema")

    def __init__(self, text: str, schema: int) -> None:
        self.text = text
        self.schema = schema

    def __call__(self, pool: Pool) -> None:
        try:
            columns = _load_part(self.text)
            stored_refusals = columns.pop() if self.schema >= 3 else []
            ids, slot_rows, units, order_refs, keys, active, key_rows, key_times = columns
            if not len(ids) == len(slot_rows) == len(units) == len(order_refs) == len(keys):
                raise ValueError("columns of different lengths")
            if len(active) != len(ids) or len(key_rows) != len(key_times):
                raise ValueError("columns of different lengths")
            slot_ids = list(pool.slots)  # interned: the reservations share them
            rows = map(
                Reservation,
                ids,
                map(slot_ids.__getitem__, slot_rows),
                units,
                order_refs,
                keys,
                map("1".__eq__, active),
            )
            reservations = dict(zip(ids, rows, strict=True))
            if stored_refusals:
                remembered = _keys_with_refusals(pool, ids, keys, key_rows, key_times,
                                                 stored_refusals)
            else:  # the common case: every key made a reservation
                remembered = OrderedDict(
                    zip(
                        map(keys.__getitem__, key_rows),
                        zip(map(ids.__getitem__, key_rows), key_times, strict=True),
                        strict=True,
                    )
                )
        except (ValueError, TypeError, KeyError, IndexError, AssertionError) as e:
            raise CodecError(f"cannot decode the reservations of {pool.pool_id}: {e}") from e
        pool.restore(reservations, remembered)


def _keys_with_refusals(
    pool: Pool,
    ids: list[str],
    keys: list[str | None],
    key_rows: list[int],
    key_times: list[int],
    stored_refusals: list[list[Any]],
) -> OrderedDict[str, tuple[KeyTarget, int]]:
    refusals = [_refusal(pool, stored) for stored in stored_refusals]
    remembered: OrderedDict[str, tuple[KeyTarget, int]] = OrderedDict()
    for row, at_ms in zip(key_rows, key_times, strict=True):
        if row < len(ids):
            key = keys[row]
            assert key is not None, f"key row {row} names a reservation without a key"
            remembered[key] = (ids[row], at_ms)
        else:
            refusal = refusals[row - len(ids)]
            remembered[refusal.idempotency_key] = (refusal, at_ms)
    return remembered


def decode_snapshot(schema: int, body: str, retention: KeyRetention) -> Pool:
    """A pool from its snapshot. Schemas 2 and 3 leave the reservations and keys undecoded
    until first use (`Pool.defer`); schema 1 (one JSON object) is decoded whole. Snapshots
    from before booking cut-offs (schemas 1 and 2) have none: cut-off 0."""
    if schema not in (1, 2, SNAPSHOT_SCHEMA):
        raise CodecError(f"snapshot schema v{schema} is not v1, v2 or v{SNAPSHOT_SCHEMA}")
    header, newline, columns = body.partition("\n")
    try:
        d = _load_part(header)
        cutoff = d["booking_cutoff_minutes"] if schema == SNAPSHOT_SCHEMA else d.get(
            "booking_cutoff_minutes", 0)  # a schema 1 body written by `snapshot_state` has it
        pool = Pool(d["pool_id"], d["kind"], d["region"], d["date"], d["total_capacity"],
                    retention, cutoff)
        pool.version = d["version"]
        pool.reservation_count = d["reservation_count"]
        pool.refusal_count = d.get("refusal_count", 0)  # schema 3 (a count, for sizing only)
        slots = []
        for slot_id, starts_at, ends_at, capacity, reserved, is_open in d["slots"]:
            slot = Slot(slot_id, starts_at, ends_at, capacity)
            slot.reserved, slot.open = reserved, is_open
            slots.append(slot)
            pool.total_reserved += reserved
        pool.slots.add(*slots)
        if schema == 1:
            _restore_v1(pool, d)
        elif newline:
            pool.defer(_Columns(columns, schema), check_reservations)
        elif pool.reservation_count:
            raise CodecError(f"snapshot of {pool.pool_id} lacks its reservations")
        return pool
    except (ValueError, TypeError, KeyError, AssertionError) as e:  # (slot ids that repeat)
        raise CodecError(f"cannot decode snapshot: {e}") from e


def _restore_v1(pool: Pool, d: dict[str, Any]) -> None:
    slot_ids = {slot_id: slot_id for slot_id in pool.slots}
    reservations = {
        rid: Reservation(rid, slot_ids.get(slot_id, slot_id), units, order_ref, key, active)
        for rid, slot_id, units, order_ref, key, active in d["reservations"]
    }
    keys: OrderedDict[str, tuple[KeyTarget, int]] = OrderedDict(
        (k, (target if isinstance(target, str) else _refusal(pool, target), at))
        for k, target, at in d["keys"]
    )
    pool.restore(reservations, keys)


def stored_event_view(stored: StoredEvent) -> dict[str, Any]:
    """A stored event as the audit log serves it (GET /v1/admin/pools/{id}/events)."""
    type_name, schema, body = encode_event(stored.event)
    return {
        "seq": stored.seq,
        "version": stored.pool_version,
        "type": type_name,
        "schema": schema,
        "epoch": stored.epoch,
        "at_ms": stored.at_ms,
        "actor": stored.actor,
        "data": _loads(body),
    }
