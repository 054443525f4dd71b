"""What a plan changes, pool by pool: a table of (pool now, plan row, expected change)."""

from __future__ import annotations

from typing import Any

import pytest

from capsvc.http.parsing import InputLimits
from capsvc.planning.diff import diff_plan, same_instant
from capsvc.planning.plan import COLUMNS, read_plan

LIMITS = InputLimits(slots_max=3)
DAY = "2026-12-01"
A = ("a", f"{DAY}T08:00:00+08:00", f"{DAY}T10:00:00+08:00")
B = ("b", f"{DAY}T10:00:00+08:00", f"{DAY}T12:00:00+08:00")


def plan(*rows: tuple, total: int | None = None, kind: str = "logistics", pool: str = "p"):
    lines = [",".join(COLUMNS)]
    for slot_id, start, end, capacity in rows:
        lines.append(
            ",".join(
                (
                    pool,
                    kind,
                    "sg",
                    DAY,
                    slot_id,
                    start,
                    end,
                    str(capacity),
                    "" if total is None else str(total),
                )
            )
        )
    return read_plan("\n".join(lines).encode(), LIMITS)


def view(*slots: tuple, total: int | None = None, kind: str = "logistics") -> dict[str, Any]:
    """A pool view as GET /v1/pools/{id} answers; slots are (id, start, end, cap, reserved)."""
    out = [
        {
            "slot_id": s,
            "starts_at": a,
            "ends_at": b,
            "capacity": c,
            "reserved": r,
            "available": c - r,
            "open": True,
        }
        for s, a, b, c, r in slots
    ]
    return {
        "pool_id": "p",
        "kind": kind,
        "region": "sg",
        "date": DAY,
        "version": 3,
        "total_capacity": total,
        "total_reserved": sum(s[4] for s in slots),
        "slots": out,
    }


def changes(diff) -> list[tuple]:
    return [
        (c.change, c.slot_id, c.field, c.before, c.after, c.code) for c in diff.pools[0].changes
    ]


def test_a_new_pool_is_created_with_one_define():
    diff = diff_plan(plan((*A, 5), (*B, 6), total=9), {"p": None}, LIMITS.slots_max)
    (step,) = diff.pools[0].steps
    assert (step.method, step.path) == ("PUT", "/v1/admin/pools/p")
    assert step.body["total_capacity"] == 9 and [s["capacity"] for s in step.body["slots"]] == [
        5,
        6,
    ]
    assert changes(diff) == [("created", None, "pool", None, 11, None)]
    assert diff.pools[0].outcome == "created" and diff.summary["created"] == 1


TABLE = [
    # (pool now, plan, expected changes, expected steps)
    ("same numbers", view((*A, 5, 2)), plan((*A, 5)), [], []),
    (
        "raise",
        view((*A, 5, 2)),
        plan((*A, 8)),
        [("raised", "a", "capacity", 5, 8, None)],
        [("PATCH", "/v1/admin/pools/p/slots/a", {"capacity": 8})],
    ),
    (
        "lower to reserved",
        view((*A, 5, 2)),
        plan((*A, 2)),
        [("lowered", "a", "capacity", 5, 2, None)],
        [("PATCH", "/v1/admin/pools/p/slots/a", {"capacity": 2})],
    ),
    (
        "lower below reserved",
        view((*A, 5, 2)),
        plan((*A, 1)),
        [("refused", "a", "capacity", 5, 1, "capacity_below_reserved")],
        [],
    ),
    (
        "new slot",
        view((*A, 5, 0)),
        plan((*A, 5), (*B, 4)),
        [("created", "b", "slot", None, 4, None)],
        [
            (
                "POST",
                "/v1/admin/pools/p/slots",
                {"slot_id": "b", "starts_at": B[1], "ends_at": B[2], "capacity": 4},
            )
        ],
    ),
    (
        "slot moved",
        view((*A, 5, 0)),
        plan(("a", B[1], B[2], 5)),
        [("refused", "a", "starts_at", A[1], B[1], "slot_exists")],
        [],
    ),
    (
        "same instant, other text",
        view(("a", f"{DAY}T00:00:00Z", f"{DAY}T02:00:00Z", 5, 0)),
        plan(*[A + (5,)]),
        [],
        [],
    ),
    (
        "total set",
        view((*A, 5, 3)),
        plan((*A, 5), total=4),
        [("lowered", None, "total_capacity", None, 4, None)],
        [("PATCH", "/v1/admin/pools/p", {"total_capacity": 4})],
    ),
    (
        "total removed",
        view((*A, 5, 3), total=4),
        plan((*A, 5)),
        [("raised", None, "total_capacity", 4, None, None)],
        [("PATCH", "/v1/admin/pools/p", {"total_capacity": None})],
    ),
    (
        "total below reserved",
        view((*A, 5, 3), total=4),
        plan((*A, 5), total=2),
        [("refused", None, "total_capacity", 4, 2, "total_capacity_below_reserved")],
        [],
    ),
    (
        "other kind",
        view((*A, 5, 0), kind="warehouse"),
        plan((*A, 5)),
        [("refused", None, "kind", "warehouse", "logistics", "pool_exists")],
        [],
    ),
]


@pytest.mark.parametrize(
    ("now", "the_plan", "expected", "steps"), [t[1:] for t in TABLE], ids=[t[0] for t in TABLE]
)
def test_changes_of_an_existing_pool(now, the_plan, expected, steps):
    diff = diff_plan(the_plan, {"p": now}, LIMITS.slots_max)
    assert changes(diff) == expected
    assert [(s.method, s.path, s.body) for s in diff.pools[0].steps] == steps
    assert diff.refused == any(c[0] == "refused" for c in expected)
    if diff.refused:
        assert diff.pools[0].outcome == "refused" and diff.first_refusal().code == expected[-1][5]


def test_a_pool_cannot_outgrow_slots_max():
    now = view((*A, 5, 0), ("c", A[1], A[2], 1, 0), ("d", A[1], A[2], 1, 0))
    diff = diff_plan(plan((*A, 5), (*B, 4)), {"p": now}, LIMITS.slots_max)
    assert changes(diff) == [("refused", "b", "slot", None, 4, "too_many_slots")]


def test_slots_not_in_the_plan_are_left_alone_and_listed():
    diff = diff_plan(plan((*A, 6)), {"p": view((*A, 5, 0), (*B, 5, 0))}, LIMITS.slots_max)
    assert diff.pools[0].untouched_slots == ("b",)
    assert [s.path for s in diff.pools[0].steps] == ["/v1/admin/pools/p/slots/a"]


def test_changes_point_at_their_plan_lines():
    diff = diff_plan(plan((*A, 5), (*B, 1)), {"p": view((*A, 5, 0), (*B, 5, 2))}, LIMITS.slots_max)
    (refused,) = diff.pools[0].changes
    assert (refused.line, refused.change) == (3, "refused")


def test_summary_counts_every_kind_of_change():
    the_plan = plan((*A, 9), (*B, 1), total=20)
    diff = diff_plan(the_plan, {"p": view((*A, 5, 0), (*B, 5, 0))}, LIMITS.slots_max)
    assert diff.summary == {
        "created": 0,
        "raised": 1,
        "lowered": 2,
        "refused": 0,
        "unchanged_pools": 0,
    }


def test_same_instant():
    assert same_instant("2026-12-01T08:00:00+08:00", "2026-12-01T00:00:00Z")
    assert not same_instant("2026-12-01T08:00:00+08:00", "2026-12-01T08:00:00Z")
    assert not same_instant("garbage", "2026-12-01T08:00:00Z")


def test_details_count_in_words():
    created = diff_plan(plan((*A, 1)), {"p": None}, LIMITS.slots_max).pools[0].changes[0]
    assert created.detail == "new logistics pool: 1 slot, 1 unit"
    lowered = diff_plan(plan((*A, 0)), {"p": view((*A, 5, 1))}, LIMITS.slots_max)
    assert lowered.pools[0].changes[0].detail == (
        "slot a has 1 unit reserved; capacity cannot go below that"
    )
    total = diff_plan(plan((*A, 5), total=0), {"p": view((*A, 5, 1), total=5)}, LIMITS.slots_max)
    assert total.pools[0].changes[0].detail == (
        "pool p has 1 unit reserved; total capacity cannot go below that"
    )
