"""Specifies the event codec: every event round-trips, bad records fail loudly, old ones upcast."""

from __future__ import annotations

import json

import pytest

from capsvc.domain import events as ev
from capsvc.storage import codec
from capsvc.storage.codec import CodecError, decode_event, encode_event

SLOT = ev.SlotSpec("a", "2030-01-01T08:00:00Z", "2030-01-01T10:00:00+01:00", 12)
SAMPLES: list[ev.Event] = [
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", None, (SLOT,)),
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", 40, (SLOT, ev.SlotSpec("b", "x", "y", 0))),
    ev.PoolDefined("p1", "van", "berlin", "2030-01-01", 0, ()),
    ev.SlotAdded(SLOT),
    ev.SlotCapacityChanged("a", 0),
    ev.SlotOpened("a"),
    ev.SlotClosed("a"),
    ev.TotalCapacityChanged(None),
    ev.TotalCapacityChanged(17),
    ev.CapacityReserved("p1~1.abcd", "a", 3, "order «ü» 42", "key-1", 1_900_000_000_000),
    ev.CapacityReserved("p1~2.abcd", "a", 1, None, None, 0),
    ev.ReservationReleased("p1~1.abcd", 1_900_000_000_001),
]


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
