"""Specifies a pool's slot map: a mapping that only grows, whose index pools share."""

from __future__ import annotations

import pytest

from capsvc.domain.pool import Slot, SlotMap


def slot(slot_id: str, capacity: int = 5) -> Slot:
    return Slot(slot_id, "2030-01-01T08:00:00Z", "2030-01-01T09:00:00Z", capacity)


def test_it_answers_like_a_dict_in_the_order_slots_were_added():
    slots = SlotMap()
    a, b, c = slot("a"), slot("b"), slot("c")
    slots.add(b, a)
    slots["c"] = c  # as a dict would be filled
    assert list(slots) == ["b", "a", "c"] and len(slots) == 3
    assert list(slots.values()) == [b, a, c]
    assert list(slots.items()) == [("b", b), ("a", a), ("c", c)]
    assert slots["a"] is a and slots.get("c") is c
    assert slots.get("nope") is None and "nope" not in slots and "a" in slots
    with pytest.raises(KeyError):
        slots["nope"]  # noqa: B018
    assert dict(slots) == {"b": b, "a": a, "c": c}


def test_pools_with_the_same_slot_ids_share_one_index():
    first, second = SlotMap(), SlotMap()
    first.add(slot("0800"), slot("0900"))
    second.add(slot("0800"), slot("0900", capacity=7))
    assert first._index is second._index
    assert first["0900"].capacity == 5 and second["0900"].capacity == 7
    second.add(slot("1000"))  # a slot added later: a layout of its own, the first unchanged
    assert list(first) == ["0800", "0900"] and list(second) == ["0800", "0900", "1000"]


def test_a_slot_id_cannot_repeat():
    slots = SlotMap()
    slots.add(slot("a"))
    with pytest.raises(AssertionError):
        slots.add(slot("a"))
    with pytest.raises(AssertionError):
        SlotMap().add(slot("x"), slot("x"))
    assert list(slots) == ["a"]


def test_past_the_bound_new_layouts_are_not_kept(monkeypatch):
    monkeypatch.setattr(SlotMap, "_layouts", {})
    monkeypatch.setattr(SlotMap, "LAYOUTS_MAX", 2)
    for n in range(5):
        slots = SlotMap()
        slots.add(slot(f"unusual-{n}"))
        assert slots[f"unusual-{n}"].slot_id == f"unusual-{n}"
    assert len(SlotMap._layouts) == 2
