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
from capsvc.domain.pool import KeyRetention, Pool, Reservation, Slot

if TYPE_CHECKING:
    from capsvc.storage.log import StoredEvent

EVENT_SCHEMA: dict[str, int] = {t.__name__: 1 for t in ev.EVENT_TYPES}
SNAPSHOT_SCHEMA = 2  # 1: one JSON object (still read); 2: see encode_snapshot

# (event type, stored version) -> function turning that body into the next version's body
UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def _slot_spec_v0(spec: dict[str, Any]) -> list[Any]:
    return [spec["slot_id"], spec["starts_at"], spec["ends_at"], spec["capacity"]]


# v0, the first (pre-release) file format: slot specs were JSON objects, and a reservation had
# no order_ref. Shard files from then still load (tests/data/legacy-v0-shard.sqlite3).
UPCASTERS[("PoolDefined", 0)] = lambda d: {**d, "slots": [_slot_spec_v0(s) for s in d["slots"]]}
UPCASTERS[("SlotAdded", 0)] = lambda d: {**d, "slot": _slot_spec_v0(d["slot"])}
UPCASTERS[("CapacityReserved", 0)] = lambda d: {**d, "order_ref": None}

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
        "version": pool.version,
        "reservation_count": pool.reservation_count,
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
        "keys": [[k, rid, at] for k, (rid, at) in pool.keys.items()],
    }


def encode_snapshot(pool: Pool) -> str:
    """Snapshot schema 2: a header line (the pool and its slots, everything `pool_view` needs)
    and, if the pool ever had a reservation, a second line with its reservations and keys as
    columns. Recovery decodes the header at once and the second line on first use."""
    header = _dumps(_header(pool))
    deferred = pool.deferred
    if isinstance(deferred, _Columns) and not pool.added_while_deferred:
        return f"{header}\n{deferred.text}"  # still as the last snapshot stored them
    if pool.reservation_count == 0:
        return header
    return f"{header}\n{_encode_columns(pool)}"


def _encode_columns(pool: Pool) -> str:
    reservations = list(pool.reservations.values())
    slot_row = {slot_id: i for i, slot_id in enumerate(pool.slots)}
    ids = [r.reservation_id for r in reservations]
    row_of = dict(zip(ids, range(len(ids)), strict=True))
    remembered = list(pool.keys.values())  # (reservation id, time), oldest first
    return _dumps(
        [
            ids,
            [slot_row[r.slot_id] for r in reservations],
            [r.units for r in reservations],
            [r.order_ref for r in reservations],
            [r.idempotency_key for r in reservations],
            "".join(["1" if r.active else "0" for r in reservations]),
            [row_of[rid] for rid, _ in remembered],
            [at_ms for _, at_ms in remembered],
        ]
    )


class _Columns:
    """The undecoded reservations and keys of a schema 2 snapshot (see `Pool.defer`)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __call__(self, pool: Pool) -> None:
        try:
            ids, slot_rows, units, order_refs, keys, active, key_rows, key_times = _load_part(
                self.text
            )
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
            remembered = OrderedDict(
                zip(
                    map(keys.__getitem__, key_rows),
                    zip(map(ids.__getitem__, key_rows), key_times, strict=True),
                    strict=True,
                )
            )
        except (ValueError, TypeError, KeyError, IndexError) as e:
            raise CodecError(f"cannot decode the reservations of {pool.pool_id}: {e}") from e
        pool.restore(reservations, remembered)


def decode_snapshot(schema: int, body: str, retention: KeyRetention) -> Pool:
    """A pool from its snapshot. Schema 2 leaves the reservations and keys undecoded until
    first use (`Pool.defer`); schema 1 (one JSON object) is decoded whole."""
    if schema not in (1, SNAPSHOT_SCHEMA):
        raise CodecError(f"snapshot schema v{schema} is not v1 or v{SNAPSHOT_SCHEMA}")
    header, newline, columns = body.partition("\n")
    try:
        d = _load_part(header)
        pool = Pool(d["pool_id"], d["kind"], d["region"], d["date"], d["total_capacity"], retention)
        pool.version = d["version"]
        pool.reservation_count = d["reservation_count"]
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
            pool.defer(_Columns(columns), check_reservations)
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
    pool.restore(reservations, OrderedDict((k, (rid, at)) for k, rid, at in d["keys"]))


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
