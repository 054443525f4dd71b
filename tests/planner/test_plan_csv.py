"""Reading a plan CSV: every bad line is reported with its column, and an export reads back
as the same plan."""

from __future__ import annotations

import pytest

from capsvc.http.parsing import InputLimits
from capsvc.planning.plan import COLUMNS, PlanInvalid, export_csv, read_plan

LIMITS = InputLimits(slots_max=3)
HEADER = ",".join(COLUMNS)


def row(
    pool="p1",
    kind="logistics",
    region="sg",
    date="2026-12-01",
    slot="0800-1000",
    start="2026-12-01T08:00:00+08:00",
    end="2026-12-01T10:00:00+08:00",
    capacity="40",
    total="",
):
    return ",".join((pool, kind, region, date, slot, start, end, capacity, total))


def csv(*rows: str, header: str = HEADER) -> bytes:
    return "\r\n".join((header, *rows)).encode()


def errors(data: bytes) -> list[tuple[int, str | None]]:
    with pytest.raises(PlanInvalid) as caught:
        read_plan(data, LIMITS)
    return [(e.line, e.field) for e in caught.value.errors]


def test_rows_of_a_pool_become_one_definition():
    plan = read_plan(
        csv(
            row(),
            row(
                slot="1000-1200",
                start="2026-12-01T10:00:00+08:00",
                end="2026-12-01T12:00:00+08:00",
                capacity="30",
            ),
            row(pool="p2", kind="warehouse", total="100"),
        ),
        LIMITS,
    )
    assert plan.rows == 3
    p1, p2 = plan.pools
    assert [s.slot_id for s in p1.definition.slots] == ["0800-1000", "1000-1200"]
    assert p1.slot_lines == {"0800-1000": 2, "1000-1200": 3}
    assert (p2.definition.kind, p2.definition.total_capacity, p2.line) == ("warehouse", 100, 4)


def test_spreadsheet_habits_are_accepted():
    """A byte-order mark, column order, padding, blank lines, an all-comma blank row."""
    header = ",".join(reversed(COLUMNS))
    cells = reversed(row(capacity=" 40 ").split(","))
    data = b"\xef\xbb\xbf" + csv(",".join(cells), "", ",,,,,,,,", header=header)
    plan = read_plan(data, LIMITS)
    assert plan.pools[0].definition.slots[0].capacity == 40


@pytest.mark.parametrize(
    ("bad_row", "field"),
    [
        (row(pool="bad id"), "pool_id"),
        (row(kind=""), "kind"),
        (row(region="sg north"), "region"),
        (row(date="2026-02-30"), "date"),
        (row(slot="-x"), "slot_id"),
        (row(start="2026-12-01 08:00"), "starts_at"),
        (row(end="2026-12-01T07:00:00+08:00"), "ends_at"),
        (row(capacity="-1"), "capacity"),
        (row(capacity="4.5"), "capacity"),
        (row(capacity="1000001"), "capacity"),
        (row(total="x"), "total_capacity"),
    ],
)
def test_a_bad_value_names_its_line_and_column(bad_row, field):
    assert errors(csv(row(pool="ok"), bad_row)) == [(3, field)]


def test_every_bad_line_is_reported_not_only_the_first():
    data = csv(row(capacity="x"), row(pool="p2"), row(pool="p3", date="no"), "a,b")
    assert errors(data) == [(2, "capacity"), (4, "date"), (5, None)]


def test_rows_of_one_pool_must_agree():
    data = csv(
        row(total="10"),
        row(slot="s2", total="20"),
        row(slot="s3", kind="warehouse"),
        row(slot="0800-1000", total="10"),
    )
    assert errors(data) == [(3, "total_capacity"), (4, "kind"), (5, "slot_id")]


def test_a_pool_has_at_most_slots_max_slots():
    data = csv(*(row(slot=f"s{i}", total="") for i in range(4)))
    assert errors(data) == [(5, "slot_id")]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n\n",
        csv(header="pool_id,kind"),
        csv(row(), header=HEADER + ",extra"),
        csv(header=HEADER),
        b"\xff\xfe",
        csv('"unterminated') + b'\n"',
    ],
)
def test_unreadable_plans_are_refused_as_a_whole(data):
    with pytest.raises(PlanInvalid) as caught:
        read_plan(data, LIMITS)
    assert caught.value.errors and caught.value.errors[0].detail


def test_the_number_of_rows_is_bounded():
    data = csv(*(row(pool=f"p{i}") for i in range(6)))
    with pytest.raises(PlanInvalid) as caught:
        read_plan(data, LIMITS, rows_max=5)
    assert caught.value.errors[0].line == 7


def test_an_export_reads_back_as_the_same_plan():
    views = [
        {
            "pool_id": "p2",
            "kind": "warehouse",
            "region": "sg",
            "date": "2026-12-02",
            "total_capacity": 90,
            "booking_cutoff_minutes": 45,
            "slots": [
                {
                    "slot_id": "a",
                    "starts_at": "2026-12-02T08:00:00Z",
                    "ends_at": "2026-12-02T09:00:00Z",
                    "capacity": 50,
                }
            ],
        },
        {
            "pool_id": "p1",
            "kind": "logistics",
            "region": "sg",
            "date": "2026-12-01",
            "total_capacity": None,
            "slots": [
                {
                    "slot_id": "b",
                    "starts_at": "2026-12-01T10:00:00+08:00",
                    "ends_at": "2026-12-01T12:00:00+08:00",
                    "capacity": 7,
                },
                {
                    "slot_id": "a",
                    "starts_at": "2026-12-01T08:00:00+08:00",
                    "ends_at": "2026-12-01T10:00:00+08:00",
                    "capacity": 3,
                },
            ],
        },
    ]
    text = export_csv(views)
    assert text.splitlines()[0] == HEADER + ",booking_cutoff_minutes"
    plan = read_plan(text.encode(), LIMITS)
    assert plan.states_cutoff
    assert [p.pool_id for p in plan.pools] == ["p1", "p2"]  # by date
    p1 = plan.pools[0].definition
    assert [(s.slot_id, s.capacity) for s in p1.slots] == [("b", 7), ("a", 3)]
    assert p1.total_capacity is None and plan.pools[1].definition.total_capacity == 90
    assert (p1.booking_cutoff_minutes, plan.pools[1].definition.booking_cutoff_minutes) == (0, 45)


def test_a_plan_without_the_cut_off_column_states_none_and_new_pools_get_0():
    plan = read_plan(csv(row()), LIMITS)
    assert not plan.states_cutoff and plan.pools[0].definition.booking_cutoff_minutes == 0


def test_a_slot_off_its_pools_date_or_a_bad_cut_off_is_a_bad_row():
    other_day = row(start="2030-01-01T08:00:00+08:00", end="2030-01-01T10:00:00+08:00")
    with pytest.raises(PlanInvalid) as caught:
        read_plan(csv(other_day), LIMITS)
    assert caught.value.errors[0].field == "starts_at"
    with pytest.raises(PlanInvalid) as caught:
        read_plan(csv(row() + ",-5", header=HEADER + ",booking_cutoff_minutes"), LIMITS)
    assert caught.value.errors[0].field == "booking_cutoff_minutes"


def test_the_plan_error_counts_in_words():
    with pytest.raises(PlanInvalid) as caught:
        read_plan(csv(row(capacity="x")), LIMITS)
    assert str(caught.value) == "1 error in a plan of 1 row"
