"""The SLA verdict of a Locust run, computed from its `<prefix>_stats.csv` (and, through
`judge`, of each step of the open-loop frontier, load/frontier.py).

A run fails when any request type's p99 is at or over 200 ms, when failures exceed 0.1 % of
all requests, or when the load generator delivered under 80 % of the planned request rate once
every user had started (then the run did not test what it claims to test). Percentiles and
failures cover the whole run, ramp-up included; the delivered rate comes from
`<prefix>_stats_history.csv` after the ramp-up.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

P99_LIMIT_MS = 200.0
FAILURE_RATIO_MAX = 0.001
DELIVERED_RATIO_MIN = 0.8


@dataclass(frozen=True)
class RequestStats:
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p99_ms: float
    p999_ms: float


@dataclass
class Verdict:
    rows: list[RequestStats]
    total: RequestStats
    planned_rps: float | None
    delivered_rps: float | None
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def render(self) -> str:
        lines = [f"{'request':<56} {'count':>8} {'fail':>6} {'req/s':>8} {'p50':>6} "
                 f"{'p99':>6} {'p99.9':>6}"]
        for r in [*self.rows, self.total]:
            lines.append(f"{r.name:<56} {r.requests:>8} {r.failures:>6} {r.rps:>8.1f} "
                         f"{r.p50_ms:>6.0f} {r.p99_ms:>6.0f} {r.p999_ms:>6.0f}")
        if self.planned_rps and self.delivered_rps is not None:
            lines.append(f"planned {self.planned_rps:.1f} req/s, delivered "
                         f"{self.delivered_rps:.1f} req/s after ramp-up")
        lines.append("SLA PASS" if self.passed else "SLA FAIL: " + "; ".join(self.problems))
        return "\n".join(lines)


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:  # "N/A" when a type saw no requests
        return 0.0


def _row(record: dict[str, str]) -> RequestStats:
    return RequestStats(
        name=f"{record['Type']} {record['Name']}".strip(),
        requests=int(record["Request Count"]),
        failures=int(record["Failure Count"]),
        rps=_number(record["Requests/s"]),
        p50_ms=_number(record["50%"]),
        p99_ms=_number(record["99%"]),
        p999_ms=_number(record["99.9%"]),
    )


def steady_rps(history_csv: Path, users: int) -> float | None:
    """Requests/s from the moment all `users` ran to the end (None if too short to tell)."""
    points = []
    with history_csv.open(newline="") as f:
        for record in csv.DictReader(f):
            if record["Name"] == "Aggregated" and int(record["User Count"]) >= users:
                points.append((int(record["Timestamp"]), int(record["Total Request Count"])))
    if len(points) < 2 or points[-1][0] <= points[0][0]:
        return None
    return (points[-1][1] - points[0][1]) / (points[-1][0] - points[0][0])


def verdict(stats_csv: Path, planned_rps: float | None = None,
            delivered_rps: float | None = None) -> Verdict:
    rows, total = [], None
    with stats_csv.open(newline="") as f:
        for record in csv.DictReader(f):
            if record["Name"] == "Aggregated":
                total = _row(record)
            else:
                rows.append(_row(record))
    if total is None:
        raise ValueError(f"{stats_csv} has no Aggregated row")
    return judge(rows, total, planned_rps, delivered_rps)


def judge(rows: list[RequestStats], total: RequestStats, planned_rps: float | None = None,
          delivered_rps: float | None = None) -> Verdict:
    """The verdict on per-type rows and their total (from Locust's CSV, or from the open-loop
    generator of load/frontier.py)."""
    result = Verdict(rows, total, planned_rps, delivered_rps)
    if total.requests == 0:
        result.problems.append("no requests were made")
    for r in rows:
        if r.requests and r.p99_ms >= P99_LIMIT_MS:
            result.problems.append(f"{r.name}: p99 {r.p99_ms:.0f} ms >= {P99_LIMIT_MS:.0f} ms")
    if total.requests and total.failures / total.requests > FAILURE_RATIO_MAX:
        result.problems.append(
            f"failures {total.failures}/{total.requests} = "
            f"{100 * total.failures / total.requests:.3f} % > {100 * FAILURE_RATIO_MAX:.1f} %"
        )
    if planned_rps and delivered_rps is not None and (
        delivered_rps < DELIVERED_RATIO_MIN * planned_rps
    ):
        result.problems.append(
            f"delivered {delivered_rps:.1f} req/s, under {100 * DELIVERED_RATIO_MIN:.0f} % "
            f"of the planned {planned_rps:.1f}"
        )
    return result
