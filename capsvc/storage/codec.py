"""Event and snapshot encoding, with a schema version per event type and upcasters.

Events are stored as compact JSON objects. When an event changes shape, bump its version in
`EVENT_SCHEMA` and register an upcaster from the old version: old files keep loading, because
every event is upcast step by step on read.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from capsvc.domain import events as ev
from capsvc.domain.pool import KeyRetention, Pool, Reservation, Slot

if TYPE_CHECKING:
    from capsvc.storage.log import StoredEvent

EVENT_SCHEMA: dict[str, int] = {t.__name__: 1 for t in ev.EVENT_TYPES}
SNAPSHOT_SCHEMA = 1

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
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads


class CodecError(ValueError):
    """A stored record cannot be decoded: unknown type, newer schema, or bad JSON."""


def _spec(spec: ev.SlotSpec) -> list[Any]:
    return [spec.slot_id, spec.starts_at, spec.ends_at, spec.capacity]


def encode_event(event: ev.Event) -> tuple[str, int, str]:
    """-> (type name, schema version, JSON body)."""
    kind = type(event)
    body = {name: getattr(event, name) for name in _FIELDS[kind]}
    if kind is ev.PoolDefined:
        body["slots"] = [_spec(s) for s in event.slots]
    elif kind is ev.SlotAdded:
        body["slot"] = _spec(event.slot)
    name = kind.__name__
    return name, EVENT_SCHEMA[name], _dumps(body)


def decode_event(type_name: str, schema: int, body: str) -> ev.Event:
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


def encode_snapshot(pool: Pool) -> str:
    return _dumps(
        {
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
            "reservations": [
                [r.reservation_id, r.slot_id, r.units, r.order_ref, r.idempotency_key, r.active]
                for r in pool.reservations.values()
            ],
            "keys": [[k, rid, at] for k, (rid, at) in pool.keys.items()],
        }
    )


def decode_snapshot(schema: int, body: str, retention: KeyRetention) -> Pool:
    if schema != SNAPSHOT_SCHEMA:
        raise CodecError(f"snapshot schema v{schema} is not v{SNAPSHOT_SCHEMA}")
    try:
        d = _loads(body)
        pool = Pool(d["pool_id"], d["kind"], d["region"], d["date"], d["total_capacity"], retention)
        pool.version = d["version"]
        pool.reservation_count = d["reservation_count"]
        for slot_id, starts_at, ends_at, capacity, reserved, is_open in d["slots"]:
            slot = Slot(slot_id, starts_at, ends_at, capacity)
            slot.reserved, slot.open = reserved, is_open
            pool.slots[slot_id] = slot
            pool.total_reserved += reserved
        for rid, slot_id, units, order_ref, key, active in d["reservations"]:
            pool.reservations[rid] = Reservation(rid, slot_id, units, order_ref, key, active)
        pool.keys = OrderedDict((k, (rid, at)) for k, rid, at in d["keys"])
        return pool
    except (ValueError, TypeError, KeyError) as e:
        raise CodecError(f"cannot decode snapshot: {e}") from e


def stored_event_view(stored: StoredEvent) -> dict[str, Any]:
    """A stored event as the audit log serves it (GET /v1/admin/pools/{id}/events)."""
    type_name, schema, body = encode_event(stored.event)
    return {"seq": stored.seq, "version": stored.pool_version, "type": type_name,
            "schema": schema, "epoch": stored.epoch, "at_ms": stored.at_ms,
            "actor": stored.actor, "data": _loads(body)}
