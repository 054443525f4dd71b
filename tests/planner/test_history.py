"""A pool's past: rebuilt as of a moment from its events, and summarised as a timeline."""

from __future__ import annotations

from capsvc.domain import events as ev
from capsvc.domain.pool import KeyRetention
from capsvc.planning.history import fold_until, timeline
from capsvc.storage.codec import stored_event_view
from capsvc.storage.log import StoredEvent

RETENTION = KeyRetention()
SPEC = ev.SlotSpec("a", "2026-12-01T08:00:00Z", "2026-12-01T10:00:00Z", 5)
MIN = 60_000


def stored(events: list[tuple[int, ev.Event]], actor: str | None = "admin:x") -> list[StoredEvent]:
    return [StoredEvent(v, "p", v, 1, at, actor, e) for v, (at, e) in enumerate(events, start=1)]


HISTORY = stored(
    [
        (1000, ev.PoolDefined("p", "logistics", "sg", "2026-12-01", None, (SPEC,))),
        (2000, ev.CapacityReserved("p~1.abcd", "a", 2, None, None, 2000)),
        (3000, ev.SlotCapacityChanged("a", 9)),
        (4000, ev.SlotClosed("a")),
    ]
)


def test_before_the_pool_was_defined_there_is_no_pool():
    assert fold_until(None, HISTORY, 999, RETENTION) == (None, True)


def test_each_moment_shows_the_state_after_the_events_up_to_it():
    pool, later = fold_until(None, HISTORY, 2500, RETENTION)
    assert later and pool.version == 2 and pool.slots["a"].reserved == 2
    assert pool.slots["a"].capacity == 5
    pool, later = fold_until(None, HISTORY, 3000, RETENTION)  # inclusive
    assert pool.slots["a"].capacity == 9 and pool.slots["a"].open
    pool, later = fold_until(None, HISTORY, 10**13, RETENTION)
    assert not later and pool.version == 4 and not pool.slots["a"].open


def test_the_fold_stops_at_the_first_later_stamp():
    """A clock that stepped back between two owners never yields a state that did not exist."""
    skewed = HISTORY[:2] + [
        StoredEvent(3, "p", 3, 2, 9000, "admin:x", ev.SlotClosed("a")),
        StoredEvent(4, "p", 4, 2, 2500, "admin:x", ev.SlotOpened("a")),
    ]
    pool, later = fold_until(None, skewed, 3000, RETENTION)
    assert later and pool.version == 2 and pool.slots["a"].open


def test_folding_in_pages_gives_the_same_pool():
    first, _ = fold_until(None, HISTORY[:2], 3500, RETENTION)
    pool, _ = fold_until(first, HISTORY[2:], 3500, RETENTION)
    assert pool.version == 3 and pool.slots["a"].capacity == 9


def served(events: list[StoredEvent]) -> list[dict]:
    """As GET /v1/admin/pools/{id}/events serves them."""
    return [stored_event_view(s) for s in events]


def test_bookings_are_grouped_per_minute_and_changes_kept_one_by_one():
    t0 = 100 * MIN
    events = served(
        stored([(t0, ev.PoolDefined("p", "k", "sg", "2026-12-01", 50, (SPEC,)))])
        + stored(
            [
                (t0 + 1000 + i, ev.CapacityReserved(f"p~{i + 1:x}.abcd", "a", 1, None, None, 0))
                for i in range(3)
            ],
            actor=None,
        )
    )
    events += served(
        [
            StoredEvent(5, "p", 5, 1, t0 + MIN + 5, None, ev.ReservationReleased("p~1.abcd", 0)),
            StoredEvent(6, "p", 6, 1, t0 + MIN + 6, "admin:y", ev.SlotCapacityChanged("a", 8)),
            StoredEvent(
                7,
                "p",
                7,
                1,
                t0 + MIN + 7,
                None,
                ev.CapacityReserved("p~4.abcd", "a", 2, None, None, 0),
            ),
            StoredEvent(8, "p", 8, 1, t0 + MIN + 8, "admin:y", ev.TotalCapacityChanged(None)),
        ]
    )
    for e in events[1:4]:
        e["version"] = events.index(e) + 1
    entries = timeline(events)
    assert [(e["kind"], e["summary"]) for e in entries] == [
        ("change", "pool defined: 1 slot, 5 units, total capacity 50"),
        ("bookings", "3 reservations (+3 units)"),
        ("bookings", "1 release (−1 unit)"),
        ("change", "capacity of a 5 → 8"),
        ("bookings", "1 reservation (+2 units)"),
        ("change", "total capacity 50 → none"),
    ]
    first = entries[1]
    assert (first["minute_ms"], first["first_version"], first["last_version"]) == (t0, 2, 4)
    assert first["slots"] == {"a": {"reserved_units": 3, "released_units": 0}}
    assert entries[3]["actor"] == "admin:y" and entries[3]["slot_id"] == "a"


def test_a_window_without_the_definition_says_set_to():
    events = served(
        stored([(0, ev.SlotCapacityChanged("a", 8)), (0, ev.ReservationReleased("p~9.abcd", 0))])
    )
    assert [e["summary"] for e in timeline(events)] == ["capacity of a set to 8", "1 release"]
