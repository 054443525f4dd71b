"""Specifies the event codec: every event round-trips, bad records fail loudly, old ones upcast."""

from __future__ import annotations

import json

import pytest

from capsvc.domain import events as ev
from capsvc.domain.evolve import evolve
from capsvc.domain.invariants import check_reservations
from capsvc.domain.pool import DeferredStateDamaged, KeyRetention, Pool
from capsvc.storage import codec
from capsvc.storage.codec import (
    CodecError,
    decode_event,
    decode_snapshot,
    encode_event,
    encode_snapshot,
    snapshot_state,
)

SLOT = ev.SlotSpec("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00+01:00", 12)
SAMPLES: list[ev.Event] = [
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", None, (SLOT,)),
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", 40, (SLOT, ev.SlotSpec("b", "x", "y", 0))),
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", 0, ()),
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", None, (SLOT,), 90),
    ev.SlotAdded(SLOT),
    ev.SlotCapacityChanged("a", 0),
    ev.SlotOpened("a"),
    ev.SlotClosed("a"),
    ev.TotalCapacityChanged(None),
    ev.TotalCapacityChanged(17),
    ev.CapacityReserved("p1~1.abcd", "a", 3, "order «ü» 42", "key-1", 1_900_000_000_000),
    ev.CapacityReserved("p1~2.abcd", "a", 1, None, None, 0),
    ev.ReservationReleased("p1~1.abcd", 1_900_000_000_001),
    ev.ReservationRefused("key-2", "a", 4, "o «ü»", "capacity_exhausted",
                          "slot a has 2 units available, 4 requested", {"available_units": 2},
                          1_900_000_000_002),
    ev.ReservationRefused("key-3", "a", 1, None, "slot_closed", "slot a is closed", {}, 0),
]


def test_a_pool_defined_before_cut_offs_loads_with_cut_off_0():
    body = ('{"pool_id":"p1","kind":"van","region":"berlin","date":"2030-01-01",'
            '"total_capacity":null,"slots":[["a","2030-01-01T08:00:00Z","2030-01-01T10:00:00Z",'
            '12]]}')
    event = decode_event("PoolDefined", 1, body)
    assert event == ev.PoolDefined("p1", "van", "berlin", "2030-01-01", None, (
        ev.SlotSpec("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00Z", 12),), 0)
    assert encode_event(event)[1] == 2


def test_the_samples_cover_every_event_type():
    assert {type(e) for e in SAMPLES} == set(ev.EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event):
    type_name, schema, body = encode_event(event)
    assert type_name == type(event).__name__
    assert schema == codec.EVENT_SCHEMA[type_name]
    json.loads(body)  # the body is plain JSON
    decoded = decode_event(type_name, schema, body)
    assert decoded == event and type(decoded) is type(event)


@pytest.mark.parametrize(
    ("type_name", "schema", "body"),
    [
        pytest.param("SlotDeleted", 1, '{"slot_id":"a"}', id="unknown type"),
        pytest.param("slotclosed", 1, '{"slot_id":"a"}', id="type name is case-sensitive"),
        pytest.param("SlotClosed", 2, '{"slot_id":"a"}', id="newer schema"),
        pytest.param("SlotClosed", 1, '{"slot_id":', id="bad JSON"),
        pytest.param("SlotClosed", 1, "{}", id="missing field"),
        pytest.param("SlotClosed", 1, '{"slot_id":"a","extra":1}', id="unknown field"),
        pytest.param("SlotAdded", 1, '{"slot":["a","x"]}', id="short slot spec"),
        pytest.param("SlotClosed", 0, '{"slot_id":"a"}', id="older schema without upcaster"),
    ],
)
def test_an_undecodable_record_raises_codec_error(type_name, schema, body):
    with pytest.raises(CodecError):
        decode_event(type_name, schema, body)


@pytest.fixture
def slot_closed_v3(monkeypatch):
    """Pretend SlotClosed went through two shape changes:
    v1 {"slot": ...} -> v2 {"id": ...} -> v3 (today's shape) {"slot_id": ...}."""
    monkeypatch.setitem(codec.EVENT_SCHEMA, "SlotClosed", 3)
    monkeypatch.setitem(codec.UPCASTERS, ("SlotClosed", 1), lambda d: {"id": d["slot"]})
    monkeypatch.setitem(codec.UPCASTERS, ("SlotClosed", 2), lambda d: {"slot_id": d["id"]})


def test_an_old_event_is_upcast_step_by_step(slot_closed_v3):
    assert decode_event("SlotClosed", 1, '{"slot":"a"}') == ev.SlotClosed("a")
    assert decode_event("SlotClosed", 2, '{"id":"a"}') == ev.SlotClosed("a")


def test_a_current_event_is_not_upcast(slot_closed_v3):
    assert decode_event("SlotClosed", 3, '{"slot_id":"a"}') == ev.SlotClosed("a")


def test_new_events_are_written_at_the_current_version(slot_closed_v3):
    type_name, schema, body = encode_event(ev.SlotClosed("a"))
    assert (type_name, schema) == ("SlotClosed", 3)
    assert decode_event(type_name, schema, body) == ev.SlotClosed("a")


def test_a_missing_upcaster_raises_codec_error(monkeypatch):
    monkeypatch.setitem(codec.EVENT_SCHEMA, "SlotOpened", 2)
    with pytest.raises(CodecError):
        decode_event("SlotOpened", 1, '{"slot_id":"a"}')


def test_an_upcaster_is_only_applied_to_its_own_type(slot_closed_v3):
    assert decode_event("SlotOpened", 1, '{"slot_id":"a"}') == ev.SlotOpened("a")


# -- snapshots ---------------------------------------------------------------------------------
RETENTION = KeyRetention(retention_ms=1_000, keys_max=10)
# A schema 1 snapshot exactly as builds before schema 2 wrote it: one JSON object with every
# reservation and key. Files holding these must keep loading.
SNAPSHOT_V1 = (
    '{"pool_id":"p1","kind":"van","region":"berlin","date":"2030-01-01","total_capacity":9,'
    '"version":5,"reservation_count":3,'
    '"slots":[["a","2030-01-01T08:00:00Z","2030-01-01T10:00:00Z",5,3,true],'
    '["b","2030-01-01T10:00:00Z","2030-01-01T12:00:00Z",2,0,false]],'
    '"reservations":[["p1~1.abcd","a",2,"o1","k1",true],["p1~2.abcd","b",1,null,null,false],'
    '["p1~3.abcd","a",1,null,"k3",true]],'
    '"keys":[["k1","p1~1.abcd",1900000000000],["k3","p1~3.abcd",1900000000002]]}'
)


def state(pool: Pool) -> tuple:
    reservations = [
        (r.reservation_id, r.slot_id, r.units, r.order_ref, r.idempotency_key, r.active)
        for r in pool.reservations.values()
    ]
    slots = [
        (s.slot_id, s.starts_at, s.ends_at, s.capacity, s.reserved, s.open)
        for s in pool.slots.values()
    ]
    return (
        pool.pool_id,
        pool.kind,
        pool.region,
        pool.date,
        pool.total_capacity,
        pool.total_reserved,
        pool.version,
        pool.reservation_count,
        slots,
        reservations,
        list(pool.keys.items()),
    )


def test_a_schema_1_snapshot_still_loads():
    pool = decode_snapshot(1, SNAPSHOT_V1, RETENTION)
    check_reservations(pool)
    assert state(pool) == (
        "p1",
        "van",
        "berlin",
        "2030-01-01",
        9,
        3,
        5,
        3,
        [
            ("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00Z", 5, 3, True),
            ("b", "2030-01-01T10:00:00Z", "2030-01-01T12:00:00Z", 2, 0, False),
        ],
        [
            ("p1~1.abcd", "a", 2, "o1", "k1", True),
            ("p1~2.abcd", "b", 1, None, None, False),
            ("p1~3.abcd", "a", 1, None, "k3", True),
        ],
        [("k1", ("p1~1.abcd", 1900000000000)), ("k3", ("p1~3.abcd", 1900000000002))],
    )
    # and it is written back at the current schema, which decodes to the same pool
    again = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
    assert state(again) == state(pool)


# A schema 2 snapshot as builds before booking cut-offs and refusals wrote it (the pool of
# SNAPSHOT_V1): no cut-off in the header, eight columns.
SNAPSHOT_V2 = (
    '{"pool_id":"p1","kind":"van","region":"berlin","date":"2030-01-01","total_capacity":9,'
    '"version":5,"reservation_count":3,'
    '"slots":[["a","2030-01-01T08:00:00Z","2030-01-01T10:00:00Z",5,3,true],'
    '["b","2030-01-01T10:00:00Z","2030-01-01T12:00:00Z",2,0,false]]}\n'
    '[["p1~1.abcd","p1~2.abcd","p1~3.abcd"],[0,1,0],[2,1,1],["o1",null,null],'
    '["k1",null,"k3"],"101",[0,2],[1900000000000,1900000000002]]'
)


def test_a_schema_2_snapshot_still_loads_with_cut_off_0():
    pool = decode_snapshot(2, SNAPSHOT_V2, RETENTION)
    assert pool.booking_cutoff_minutes == 0 and pool.deferred is not None
    assert state(pool) == state(decode_snapshot(1, SNAPSHOT_V1, RETENTION))
    check_reservations(pool)
    again = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
    assert state(again) == state(pool)


def _refused(key: str, units: int, at_ms: int) -> ev.ReservationRefused:
    return ev.ReservationRefused(key, "a", units, None, "capacity_exhausted",
                                 f"slot a has 2 units available, {units} requested",
                                 {"available_units": 2}, at_ms)


def _with_refusals() -> Pool:
    """SNAPSHOT_V1's pool, cut-off 45, with keys bound to refusals between its own keys."""
    pool = decode_snapshot(1, SNAPSHOT_V1, RETENTION)
    pool.booking_cutoff_minutes = 45
    for event in (_refused("r1", 3, 1900000000001), _refused("r2", 4, 1900000000003)):
        pool = evolve(pool, event, RETENTION)
    return pool


def keys_of(pool: Pool) -> list:
    return [(k, t if isinstance(t, str) else t.as_list(), at) for k, (t, at) in pool.keys.items()]


@pytest.mark.parametrize("undecoded", [False, True], ids=["decoded", "undecoded"])
def test_keys_bound_to_refusals_and_the_cut_off_survive_a_snapshot(undecoded):
    pool = _with_refusals()
    if undecoded:  # refusals recorded while the snapshot's columns are still encoded
        pool = decode_snapshot(1, SNAPSHOT_V1, RETENTION)
        pool = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
        pool.booking_cutoff_minutes = 45
        for event in (_refused("r1", 3, 1900000000001), _refused("r2", 4, 1900000000003)):
            pool = evolve(pool, event, RETENTION)
        assert pool.deferred is not None and pool.added_while_deferred == 2
    restored = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
    assert restored.booking_cutoff_minutes == 45
    assert keys_of(restored) == keys_of(pool) == keys_of(_with_refusals())
    assert [k for k in restored.keys] == ["k1", "k3", "r1", "r2"]  # oldest first, as made
    check_reservations(restored)
    refusal = restored.remembered_key("r2", 1900000000004)
    assert not isinstance(refusal, str) and refusal is not None
    assert refusal.rejection.fields == {"available_units": 2} and refusal.units == 4
    # the plain-data form (schema 1, and what `capsvc verify` compares) holds them too
    v1 = decode_snapshot(1, json.dumps(snapshot_state(pool)), RETENTION)
    assert keys_of(v1) == keys_of(pool) and v1.booking_cutoff_minutes == 45


def test_a_pool_with_only_refusals_keeps_them_in_its_snapshot():
    pool = evolve(None, SAMPLES[1], RETENTION)
    pool = evolve(pool, _refused("r1", 50, 1900000000001), RETENTION)
    assert pool.reservation_count == 0
    restored = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
    assert keys_of(restored) == keys_of(pool) and len(keys_of(pool)) == 1


def test_a_snapshot_leaves_reservations_undecoded_until_first_use():
    v1 = decode_snapshot(1, SNAPSHOT_V1, RETENTION)
    pool = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(v1), RETENTION)
    assert pool.deferred is not None
    # what the grid needs is there at once
    assert pool.total_reserved == 3 and pool.slots["a"].reserved == 3
    # a snapshot of the still undecoded pool keeps its reservations as they were
    copy = decode_snapshot(codec.SNAPSHOT_SCHEMA, encode_snapshot(pool), RETENTION)
    assert pool.deferred is not None and copy.deferred is not None
    assert pool.remembered_key("k3", 1900000000002) == "p1~3.abcd"  # first use decodes
    assert pool.deferred is None
    assert state(copy) == state(pool) == state(v1)


def test_a_pool_that_never_reserved_has_a_one_line_snapshot():
    pool = evolve(None, SAMPLES[1], RETENTION)
    body = encode_snapshot(pool)
    assert "\n" not in body
    restored = decode_snapshot(codec.SNAPSHOT_SCHEMA, body, RETENTION)
    assert restored.deferred is None and state(restored) == state(pool)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda cols: cols[:-10], id="cut short"),
        pytest.param(
            lambda cols: cols.replace('"p1~3.abcd"]', '"p1~3.abcd","x"]'), id="ids longer"
        ),
        pytest.param(lambda cols: cols.replace("[0,1,0]", "[0,1,7]"), id="no such slot"),
        pytest.param(lambda cols: cols.replace('"101"', '"111"'), id="reserved disagrees"),
    ],
)
def test_damaged_reservations_fail_on_first_use_and_keep_failing(damage):
    v1 = decode_snapshot(1, SNAPSHOT_V1, RETENTION)
    header, columns = encode_snapshot(v1).split("\n")
    assert damage(columns) != columns
    pool = decode_snapshot(codec.SNAPSHOT_SCHEMA, f"{header}\n{damage(columns)}", RETENTION)
    for _ in range(2):  # the pool never looks empty: every use fails again
        with pytest.raises(DeferredStateDamaged, match="p1"):
            pool.reservations  # noqa: B018
        with pytest.raises(DeferredStateDamaged):
            pool.remembered_key("k1", 0)


def test_a_snapshot_of_an_unknown_schema_raises_codec_error():
    with pytest.raises(CodecError):
        decode_snapshot(codec.SNAPSHOT_SCHEMA + 1, SNAPSHOT_V1, RETENTION)
    with pytest.raises(CodecError):
        decode_snapshot(codec.SNAPSHOT_SCHEMA, '{"pool_id":', RETENTION)
