"""What a plan would change, pool by pool, and the admin API calls that make it so.

Compares each planned pool with the pool as its owner holds it now (the API's pool view, or
None for a pool that does not exist yet) and classifies every difference:

- `created`: a new pool (one PUT), or a new slot in an existing pool (one POST);
- `raised` / `lowered`: a slot's capacity or the pool's total_capacity (one PATCH each);
- `refused`: what the service would refuse, with the code it would answer: capacity below
  what is reserved, a slot whose times differ (slots cannot move), a pool whose kind, region,
  date or (when the plan states it) booking cut-off differ, too many slots.

Slots the plan does not mention are left as they are (a plan never removes or closes a slot).
Applying the same plan twice changes nothing the second time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from capsvc.domain import rejections as rj
from capsvc.domain.events import SlotSpec
from capsvc.domain.wording import counted
from capsvc.planning.plan import Plan, PlannedPool

CREATED, RAISED, LOWERED, REFUSED = "created", "raised", "lowered", "refused"
CHANGE_KINDS = (CREATED, RAISED, LOWERED, REFUSED)


@dataclass(frozen=True, slots=True)
class Change:
    change: str  # one of CHANGE_KINDS
    line: int
    slot_id: str | None = None  # None: about the pool itself
    field: str | None = None  # "pool", "slot", "capacity", "total_capacity", "starts_at", ...
    before: Any = None
    after: Any = None
    code: str | None = None  # for refused: the code the service would answer
    detail: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "change": self.change,
            "line": self.line,
            "slot_id": self.slot_id,
            "field": self.field,
            "before": self.before,
            "after": self.after,
        }
        if self.code is not None:
            out["code"] = self.code
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True, slots=True)
class Step:
    """One admin API call, and the change it makes."""

    method: str
    path: str
    body: dict[str, Any]
    change: Change


@dataclass(frozen=True, slots=True)
class PoolDiff:
    pool_id: str
    line: int
    exists: bool
    changes: tuple[Change, ...]
    steps: tuple[Step, ...] = ()
    untouched_slots: tuple[str, ...] = ()  # slots of the pool that the plan does not mention

    @property
    def refused(self) -> bool:
        return any(c.change == REFUSED for c in self.changes)

    @property
    def outcome(self) -> str:
        if self.refused:
            return REFUSED
        if not self.changes:
            return "unchanged"
        return "changed" if self.exists else CREATED

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool_id": self.pool_id,
            "line": self.line,
            "outcome": self.outcome,
            "changes": [c.as_dict() for c in self.changes],
            "untouched_slots": list(self.untouched_slots),
        }


@dataclass(frozen=True, slots=True)
class PlanDiff:
    pools: tuple[PoolDiff, ...]
    rows: int
    summary: dict[str, int] = field(default_factory=dict)

    @property
    def refused(self) -> bool:
        return any(p.refused for p in self.pools)

    def first_refusal(self) -> Change | None:
        for pool in self.pools:
            for change in pool.changes:
                if change.change == REFUSED:
                    return change
        return None


def diff_plan(plan: Plan, current: Mapping[str, dict[str, Any] | None], slots_max: int) -> PlanDiff:
    """`current` maps every planned pool id to its pool view now (None: no such pool)."""
    pools = tuple(
        diff_pool(p, current.get(p.pool_id), slots_max, plan.states_cutoff) for p in plan.pools
    )
    summary = dict.fromkeys((*CHANGE_KINDS, "unchanged_pools"), 0)
    for pool in pools:
        for change in pool.changes:
            summary[change.change] += 1
        if not pool.changes:
            summary["unchanged_pools"] += 1
    return PlanDiff(pools, plan.rows, summary)


def diff_pool(
    planned: PlannedPool,
    now: dict[str, Any] | None,
    slots_max: int,
    states_cutoff: bool = True,
) -> PoolDiff:
    """`states_cutoff`: the plan has a booking_cutoff_minutes column (without one, an
    existing pool's cut-off is not compared)."""
    d = planned.definition
    path = f"/v1/admin/pools/{d.pool_id}"
    if now is None:
        body = {
            "kind": d.kind,
            "region": d.region,
            "date": d.date,
            "total_capacity": d.total_capacity,
            "booking_cutoff_minutes": d.booking_cutoff_minutes,
            "slots": [_slot_body(s) for s in d.slots],
        }
        units = sum(s.capacity for s in d.slots)
        change = Change(
            CREATED,
            planned.line,
            field="pool",
            after=units,
            detail=f"new {d.kind} pool: {counted(len(d.slots), 'slot')}, {counted(units, 'unit')}",
        )
        return PoolDiff(
            d.pool_id, planned.line, False, (change,), (Step("PUT", path, body, change),)
        )
    changes: list[Change] = []
    steps: list[Step] = []
    fixed = ("kind", "region", "date", "booking_cutoff_minutes") if states_cutoff else (
        "kind", "region", "date")
    for name in fixed:
        if now.get(name, 0) != getattr(d, name):
            changes.append(
                Change(
                    REFUSED,
                    planned.line,
                    field=name,
                    before=now[name],
                    after=getattr(d, name),
                    code=rj.POOL_EXISTS,
                    detail=f"pool {d.pool_id} exists with {name} {now[name]}; a plan cannot "
                    "change it (use another pool id)",
                )
            )
    if changes:
        return PoolDiff(d.pool_id, planned.line, True, tuple(changes))
    _diff_total(planned, now, changes, steps, path)
    existing = {s["slot_id"]: s for s in now["slots"]}
    new_slots = [s for s in d.slots if s.slot_id not in existing]
    for spec in d.slots:
        slot = existing.get(spec.slot_id)
        line = planned.slot_lines[spec.slot_id]
        if slot is None:
            change = _new_slot(spec, line, len(existing) + len(new_slots), slots_max)
            changes.append(change)
            if change.change == CREATED:
                steps.append(Step("POST", f"{path}/slots", _slot_body(spec), change))
        else:
            _diff_slot(spec, slot, line, changes, steps, path)
    planned_ids = {s.slot_id for s in d.slots}
    untouched = tuple(s for s in existing if s not in planned_ids)
    return PoolDiff(d.pool_id, planned.line, True, tuple(changes), tuple(steps), untouched)


def _diff_total(
    planned: PlannedPool, now: dict[str, Any], changes: list[Change], steps: list[Step], path: str
) -> None:
    before, after = now["total_capacity"], planned.definition.total_capacity
    if before == after:
        return
    line = planned.line
    if after is not None and after < now["total_reserved"]:
        changes.append(
            Change(
                REFUSED,
                line,
                field="total_capacity",
                before=before,
                after=after,
                code=rj.TOTAL_CAPACITY_BELOW_RESERVED,
                detail=f"pool {planned.pool_id} has {counted(now['total_reserved'], 'unit')} "
                "reserved; "
                "total capacity cannot go below that",
            )
        )
        return
    raised = after is None or (before is not None and after > before)
    change = Change(
        RAISED if raised else LOWERED, line, field="total_capacity", before=before, after=after
    )
    changes.append(change)
    steps.append(Step("PATCH", path, {"total_capacity": after}, change))


def _new_slot(spec: SlotSpec, line: int, count_after: int, slots_max: int) -> Change:
    if count_after > slots_max:
        return Change(
            REFUSED,
            line,
            spec.slot_id,
            "slot",
            after=spec.capacity,
            code=rj.TOO_MANY_SLOTS,
            detail=f"the pool would have {counted(count_after, 'slot')}; at most {slots_max}",
        )
    return Change(CREATED, line, spec.slot_id, "slot", after=spec.capacity)


def _diff_slot(
    spec: SlotSpec,
    slot: dict[str, Any],
    line: int,
    changes: list[Change],
    steps: list[Step],
    path: str,
) -> None:
    for name in ("starts_at", "ends_at"):
        if not same_instant(slot[name], getattr(spec, name)):
            changes.append(
                Change(
                    REFUSED,
                    line,
                    spec.slot_id,
                    name,
                    before=slot[name],
                    after=getattr(spec, name),
                    code=rj.SLOT_EXISTS,
                    detail=f"slot {spec.slot_id} exists with {name} {slot[name]}; a slot "
                    "cannot move (add a slot with another id)",
                )
            )
            return
    before, after = slot["capacity"], spec.capacity
    if before == after:
        return
    if after < slot["reserved"]:
        changes.append(
            Change(
                REFUSED,
                line,
                spec.slot_id,
                "capacity",
                before,
                after,
                code=rj.CAPACITY_BELOW_RESERVED,
                detail=f"slot {spec.slot_id} has {counted(slot['reserved'], 'unit')} reserved; "
                "capacity cannot go below that",
            )
        )
        return
    change = Change(
        RAISED if after > before else LOWERED, line, spec.slot_id, "capacity", before, after
    )
    changes.append(change)
    steps.append(Step("PATCH", f"{path}/slots/{spec.slot_id}", {"capacity": after}, change))


def same_instant(a: str, b: str) -> bool:
    """Two RFC 3339 timestamps name the same instant (a spreadsheet may rewrite the text)."""
    if a == b:
        return True
    try:
        return dt.datetime.fromisoformat(a.upper()) == dt.datetime.fromisoformat(b.upper())
    except ValueError:
        return False


def _slot_body(spec: SlotSpec) -> dict[str, Any]:
    return {
        "slot_id": spec.slot_id,
        "starts_at": spec.starts_at,
        "ends_at": spec.ends_at,
        "capacity": spec.capacity,
    }
