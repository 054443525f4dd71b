"""What one benchmark run measured, and the medians over its rounds."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

WORKLOADS = ("uniform", "hot", "grid-mix")
SYSTEMS = ("capsvc-router", "capsvc-worker", "pg-tx", "pg-cte", "pg-occ", "redis-lua")
PG_SYSTEMS = ("pg-tx", "pg-cte", "pg-occ")
CAPSVC_SYSTEMS = ("capsvc-router", "capsvc-worker")
REDIS_SYSTEM = "redis-lua"


@dataclass
class Cell:
    """One system under one workload in one round."""

    workload: str
    system: str
    round: int
    saturation_rps: float
    saturation_errors: int
    saturation_detail: dict[str, int]
    cpu_ms_per_request: float
    cpu_ms_by_role: dict[str, float]
    fixed: dict  # OpenLoopResult as a dict


def _merge(counts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            if v:
                out[k] = out.get(k, 0) + v
    return out


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]  # drop NaN
    return statistics.median(values) if values else float("nan")


@dataclass
class Results:
    cells: list[Cell] = field(default_factory=list)
    recovery: dict | None = None
    memory: dict | None = None

    def of(self, workload: str, system: str) -> list[Cell]:
        return [c for c in self.cells if c.workload == workload and c.system == system]

    def summary(self, workload: str, system: str) -> dict | None:
        cells = self.of(workload, system)
        if not cells:
            return None
        roles = sorted({r for c in cells for r in c.cpu_ms_by_role})
        return {
            "rounds": len(cells),
            "saturation_rps": median([c.saturation_rps for c in cells]),
            "saturation_all": [c.saturation_rps for c in cells],
            "saturation_errors": sum(c.saturation_errors for c in cells),
            "error_detail": _merge([c.saturation_detail for c in cells]
                                   + [c.fixed["statuses"] for c in cells]
                                   + [{"timeout": c.fixed["errors"]} for c in cells]),
            "cpu_ms": median([c.cpu_ms_per_request for c in cells]),
            "cpu_ms_by_role": {r: median([c.cpu_ms_by_role.get(r, 0.0) for c in cells])
                               for r in roles},
            "offered_rps": cells[0].fixed["offered_rps"],
            "p50_ms": median([c.fixed["p50_ms"] for c in cells]),
            "p99_ms": median([c.fixed["p99_ms"] for c in cells]),
            "p999_ms": median([c.fixed["p999_ms"] for c in cells]),
            "fixed_errors": sum(c.fixed["errors"] + c.fixed["non_2xx"] for c in cells),
            "max_send_lag_ms": max(c.fixed["max_send_lag_ms"] for c in cells),
            "mean_send_lag_ms": median([c.fixed["mean_send_lag_ms"] for c in cells]),
        }

    def best_pg(self, workload: str) -> tuple[str, dict] | None:
        candidates = [(s, self.summary(workload, s)) for s in PG_SYSTEMS]
        candidates = [(s, m) for s, m in candidates if m is not None]
        if not candidates:
            return None
        return max(candidates, key=lambda sm: sm[1]["saturation_rps"])
