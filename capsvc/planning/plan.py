"""Bulk plans as CSV: read a planner's spreadsheet into one definition per pool, and write the
current pools back out in the same shape (so an export, edited and applied, round-trips).

One row per slot: `pool_id, kind, region, date, slot_id, starts_at, ends_at, capacity,
total_capacity`, and optionally `booking_cutoff_minutes` (exports write it; a plan without the
column leaves existing pools' cut-offs alone, and new pools get 0). The rows of one pool must
agree on kind, region, date, total_capacity (empty: no pool-wide cap) and the cut-off. Every row is checked with the API's own validators,
and every bad row is reported (by its spreadsheet line, the header being line 1): a plan is
applied whole or not at all.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from capsvc.domain import commands as cmd
from capsvc.domain.wording import counted
from capsvc.errors import BadRequest
from capsvc.http import parsing

COLUMNS = (
    "pool_id",
    "kind",
    "region",
    "date",
    "slot_id",
    "starts_at",
    "ends_at",
    "capacity",
    "total_capacity",
)
OPTIONAL_COLUMNS = ("booking_cutoff_minutes",)
PLAN_ROWS_MAX = 10_000
PLAN_BODY_MAX_BYTES = 4 * 1024 * 1024
ERRORS_SHOWN_MAX = 200  # a plan with thousands of bad rows reports the first ones
_POOL_FIELDS = ("kind", "region", "date", "total_capacity", "booking_cutoff_minutes")


@dataclass(frozen=True, slots=True)
class RowError:
    line: int  # spreadsheet line; the header is line 1
    field: str | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class PlannedPool:
    """What the plan says a pool must be, and the lines that said it."""

    definition: cmd.DefinePool
    line: int  # first line of the pool
    slot_lines: dict[str, int]  # slot id -> its line

    @property
    def pool_id(self) -> str:
        return self.definition.pool_id


@dataclass(frozen=True, slots=True)
class Plan:
    pools: tuple[PlannedPool, ...]
    rows: int
    states_cutoff: bool = False  # the plan has a booking_cutoff_minutes column


class PlanInvalid(Exception):
    """The plan cannot be read; `errors` says where, row by row."""

    def __init__(self, errors: list[RowError], rows: int) -> None:
        super().__init__(f"{counted(len(errors), 'error')} in a plan of {counted(rows, 'row')}")
        self.errors = errors
        self.rows = rows


def read_plan(data: bytes, limits: parsing.InputLimits, rows_max: int = PLAN_ROWS_MAX) -> Plan:
    """Parse and validate a whole plan; raise PlanInvalid listing every bad row."""
    try:
        text = data.decode("utf-8-sig")  # spreadsheets often write a byte-order mark
    except UnicodeDecodeError as e:
        raise PlanInvalid([RowError(1, None, f"the file is not UTF-8 text: {e}")], 0) from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        lines = [(n, row) for n, row in enumerate(reader, start=1) if any(c.strip() for c in row)]
    except csv.Error as e:
        raise PlanInvalid([RowError(reader.line_num, None, f"not valid CSV: {e}")], 0) from None
    if not lines:
        raise PlanInvalid(
            [
                RowError(
                    1,
                    None,
                    f"the plan is empty; the first line must be the header: {','.join(COLUMNS)}",
                )
            ],
            0,
        )
    header_line, header = lines[0]
    index = _header_index(header, header_line)
    body = lines[1:]
    if len(body) > rows_max:
        raise PlanInvalid(
            [RowError(body[rows_max][0], None, f"a plan has at most {counted(rows_max, 'row')}; split it")],
            len(body),
        )
    errors: list[RowError] = []
    pools: dict[str, _Builder] = {}
    for line, cells in body:
        if len(cells) != len(header):
            errors.append(
                RowError(line, None, f"has {len(cells)} columns, the header {len(header)}")
            )
            continue
        row = {name: cells[i].strip() for name, i in index.items()}
        try:
            one = parsing.parse_plan_row(row, limits)
        except BadRequest as e:
            errors.append(RowError(line, e.fields.get("field"), e.detail))
            continue
        builder = pools.get(one.pool_id)
        if builder is None:
            pools[one.pool_id] = _Builder(one, line)
        else:
            error = builder.add(one, line, limits.slots_max)
            if error is not None:
                errors.append(error)
    if errors:
        errors.sort(key=lambda e: e.line)
        raise PlanInvalid(errors, len(body))
    if not pools:
        raise PlanInvalid([RowError(header_line, None, "the plan has a header but no rows")], 0)
    return Plan(
        tuple(b.build() for b in pools.values()), len(body), OPTIONAL_COLUMNS[0] in index
    )


def _header_index(header: list[str], line: int) -> dict[str, int]:
    names = [h.strip().lower() for h in header]
    missing = [c for c in COLUMNS if c not in names]
    unknown = [n for n in names if n not in COLUMNS and n not in OPTIONAL_COLUMNS]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    problems = []
    if missing:
        problems.append(f"missing columns: {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown columns: {', '.join(unknown)}")
    if duplicated:
        problems.append(f"repeated columns: {', '.join(duplicated)}")
    if problems:
        raise PlanInvalid(
            [
                RowError(
                    line,
                    None,
                    "bad header (" + "; ".join(problems) + "); expected " + ",".join(COLUMNS),
                )
            ],
            0,
        )
    return {name: names.index(name) for name in (*COLUMNS, *OPTIONAL_COLUMNS) if name in names}


class _Builder:
    """Collects the rows of one pool, refusing rows that contradict the earlier ones."""

    def __init__(self, first: cmd.DefinePool, line: int) -> None:
        self.first = first
        self.line = line
        self.slots = list(first.slots)
        self.slot_lines = {first.slots[0].slot_id: line}

    def add(self, row: cmd.DefinePool, line: int, slots_max: int) -> RowError | None:
        for name in _POOL_FIELDS:
            mine, theirs = getattr(self.first, name), getattr(row, name)
            if mine != theirs:
                return RowError(
                    line,
                    name,
                    f"{_show(theirs)} differs from line {self.line} "
                    f"({_show(mine)}) for the same pool {row.pool_id}",
                )
        slot = row.slots[0]
        if slot.slot_id in self.slot_lines:
            return RowError(
                line,
                "slot_id",
                f"slot {slot.slot_id} of pool {row.pool_id} is "
                f"already on line {self.slot_lines[slot.slot_id]}",
            )
        if len(self.slots) >= slots_max:
            return RowError(
                line, "slot_id", f"pool {row.pool_id} would have more than {counted(slots_max, 'slot')}"
            )
        self.slots.append(slot)
        self.slot_lines[slot.slot_id] = line
        return None

    def build(self) -> PlannedPool:
        f = self.first
        definition = cmd.DefinePool(
            f.pool_id, f.kind, f.region, f.date, f.total_capacity, tuple(self.slots),
            f.booking_cutoff_minutes,
        )
        return PlannedPool(definition, self.line, dict(self.slot_lines))


def _show(value: Any) -> str:
    return "empty" if value is None else str(value)


def export_csv(pools: Iterable[dict[str, Any]]) -> str:
    """Pools (the API's pool views) as a plan: one row per slot, header first, ordered by
    date, kind and pool id, slots in their pool's order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow((*COLUMNS, *OPTIONAL_COLUMNS))
    for pool in sorted(pools, key=lambda p: (p["date"], p["kind"], p["pool_id"])):
        total = "" if pool["total_capacity"] is None else pool["total_capacity"]
        for slot in pool["slots"]:
            writer.writerow(
                (
                    pool["pool_id"],
                    pool["kind"],
                    pool["region"],
                    pool["date"],
                    slot["slot_id"],
                    slot["starts_at"],
                    slot["ends_at"],
                    slot["capacity"],
                    total,
                    pool.get("booking_cutoff_minutes", 0),
                )
            )
    return out.getvalue()
