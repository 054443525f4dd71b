"""The benchmark's Markdown report: machine, commands, the tables, and the targets."""

from __future__ import annotations

import math

from load.bench.results import CAPSVC_SYSTEMS, REDIS_SYSTEM, SYSTEMS, WORKLOADS, Results
from load.bench.workloads import GRID_READS, RELEASES, RESERVES

GIB = 2**30
MIB = 2**20


def _n(value: float, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "timeout"
    return f"{value:,.{digits}f}"


def _ms(value: float) -> str:
    return _n(value, 1 if value < 100 else 0)


def throughput_table(results: Results) -> list[str]:
    lines = [
        "| workload | system | saturation req/s (median; rounds) | CPU ms/req | offered req/s "
        "| p50 ms | p99 ms | p99.9 ms | errors |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for workload in WORKLOADS:
        for system in SYSTEMS:
            m = results.summary(workload, system)
            if m is None:
                if workload == "grid-mix" and system == "capsvc-worker":
                    lines.append(f"| {workload} | {system} | n/a: the grid is the router's "
                                 "read model | | | | | | |")
                continue
            rounds = ", ".join(_n(v) for v in m["saturation_all"])
            errors = m["saturation_errors"] + m["fixed_errors"]
            lines.append(
                f"| {workload} | {system} | **{_n(m['saturation_rps'])}** ({rounds}) "
                f"| {_n(m['cpu_ms'], 2)} | {_n(m['offered_rps'])} | {_ms(m['p50_ms'])} "
                f"| {_ms(m['p99_ms'])} | {_ms(m['p999_ms'])} | {errors} |")
    return lines


def error_lines(results: Results) -> list[str]:
    lines = []
    for workload in WORKLOADS:
        for system in SYSTEMS:
            m = results.summary(workload, system)
            if m and m["error_detail"]:
                detail = ", ".join(f"{k} x{v}" for k, v in sorted(m["error_detail"].items()))
                lines.append(f"- {workload} / {system}: {detail}")
    return lines or ["- none"]


def _ratios(results: Results, workload: str, against: dict) -> list[str]:
    """capsvc-router's and capsvc-worker's saturation throughput over `against`'s."""
    cells = []
    for system in CAPSVC_SYSTEMS:
        m = results.summary(workload, system)
        cells.append(f"{m['saturation_rps'] / against['saturation_rps']:.2f}x" if m else "n/a")
    return cells


def ratio_table(results: Results) -> list[str]:
    lines = ["| workload | strongest PostgreSQL variant | its req/s | capsvc-router / it "
             "| capsvc-worker / it |", "|---|---|---|---|---|"]
    for workload in WORKLOADS:
        best = results.best_pg(workload)
        if best is None:
            continue
        name, pg = best
        cells = _ratios(results, workload, pg)
        lines.append(f"| {workload} | {name} | {_n(pg['saturation_rps'])} | {cells[0]} "
                     f"| {cells[1]} |")
    return lines


def redis_ratio_table(results: Results) -> list[str]:
    lines = [f"| workload | {REDIS_SYSTEM} req/s | capsvc-router / it | capsvc-worker / it |",
             "|---|---|---|---|"]
    for workload in WORKLOADS:
        redis = results.summary(workload, REDIS_SYSTEM)
        if redis is None:
            continue
        cells = _ratios(results, workload, redis)
        lines.append(f"| {workload} | {_n(redis['saturation_rps'])} | {cells[0]} "
                     f"| {cells[1]} |")
    return lines


def cpu_table(results: Results) -> list[str]:
    lines = ["| workload | system | CPU ms per request, by process |", "|---|---|---|"]
    for workload in WORKLOADS:
        for system in SYSTEMS:
            m = results.summary(workload, system)
            if m is None:
                continue
            parts = ", ".join(f"{role} {v:.2f}" for role, v in m["cpu_ms_by_role"].items()
                              if v >= 0.005)
            lines.append(f"| {workload} | {system} | {parts} |")
    return lines


def recovery_lines(recovery: dict) -> list[str]:
    events = recovery["built"]["events"]
    lines = [f"Shard of {events:,} events (1,000 pools, file {recovery['built']['file_mb']:.0f} "
             "MB), `Shard.start()` in a fresh process, warm page cache:", "",
             "| | runs | events replayed | recovery s (snapshots + replay + invariants) "
             "| replay events/s | time to ready s | RSS after MB |",
             "|---|---|---|---|---|---|---|"]
    for kind, label in (("plain", "without snapshots"), ("snap", "with snapshots")):
        runs = recovery["runs"][kind]
        if not runs:
            continue
        rate = _median([r["replayed"] / r["replay_s"] for r in runs]) if kind == "plain" else None
        lines.append(f"| {label} | {len(runs)} | {runs[0]['replayed']:,} "
                     f"| {_median([r['replay_s'] for r in runs]):.2f} | {_n(rate)} "
                     f"| {_median([r['ready_s'] for r in runs]):.2f} "
                     f"| {_median([r['rss_mb'] for r in runs]):.0f} |")
    return lines


def memory_lines(memory: dict) -> list[str]:
    roles = list(memory["full"]["rss"])
    lines = [f"| process | empty service MiB | with {memory['pools']:,} pools MiB |",
             "|---|---|---|"]
    for role in roles:
        lines.append(f"| {role} | {memory['empty']['rss'].get(role, 0) / MIB:.0f} "
                     f"| {memory['full']['rss'][role] / MIB:.0f} |")
    lines.append(f"| **host total** | {memory['empty']['total'] / MIB:.0f} "
                 f"| **{memory['full']['total'] / MIB:.0f}** |")
    per_pool = (memory["full"]["total"] - memory["empty"]["total"]) / memory["pools"]
    lines += ["", f"About {per_pool / 1024:.1f} KiB per pool over the empty service; the "
              f"service was ready {memory['full']['ready_s']:.1f} s after start (with "
              "`limits.request_timeout_ms = 120000`: with the default 5 s the router's first "
              "read-model load of 50k pools per worker times out and restarts forever)."]
    return lines


def _lag(results: Results) -> str:
    lags = [c.fixed["mean_send_lag_ms"] for c in results.cells]
    worst = max((c.fixed["max_send_lag_ms"] for c in results.cells), default=0.0)
    if not lags:
        return "none measured"
    return f"mean {_median(lags):.2f} ms, worst {worst:.1f} ms"


def _median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def targets(results: Results) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for every target of the issue."""
    out: list[tuple[str, str, bool | None]] = []
    m = results.summary("uniform", "capsvc-router")
    if m:
        out.append(("≥ 8,000 durable reservations/s through the router, p99 < 50 ms",
                    f"{_n(m['saturation_rps'])}/s at saturation; p99 {_ms(m['p99_ms'])} ms "
                    f"at {_n(m['offered_rps'])}/s offered",
                    m["saturation_rps"] >= 8000 and m["p99_ms"] < 50))
    m = results.summary("grid-mix", "capsvc-router")
    if m:
        reads = m["saturation_rps"] * GRID_READS / (GRID_READS + RESERVES + RELEASES)
        out.append(("≥ 20,000 availability reads/s, p99 < 50 ms",
                    f"{_n(reads)} grid reads/s inside the grid mix at saturation; p99 "
                    f"{_ms(m['p99_ms'])} ms at {_n(m['offered_rps'])}/s offered",
                    reads >= 20000 and m["p99_ms"] < 50))
    m, best = results.summary("hot", "capsvc-router"), results.best_pg("hot")
    if m and best:
        ratio = m["saturation_rps"] / best[1]["saturation_rps"]
        out.append(("hot pool ≥ 3x the strongest PostgreSQL variant",
                    f"{ratio:.2f}x ({_n(m['saturation_rps'])} vs {best[0]} "
                    f"{_n(best[1]['saturation_rps'])}/s)", ratio >= 3))
    if results.recovery:
        runs = results.recovery["runs"]
        rate = _median([r["replayed"] / r["replay_s"] for r in runs["plain"]])
        ready = _median([r["ready_s"] for r in runs["snap"]])
        events = results.recovery["built"]["events"]
        out.append(("recovery ≥ 300k events/s replayed", f"{_n(rate)} events/s", rate >= 300e3))
        out.append(("a 1M-event shard ready in < 1 s with snapshots",
                    f"{ready:.2f} s ({events:,} events)",
                    ready < 1 if events >= 1_000_000 else None))
    if results.memory:
        total, pools = results.memory["full"]["total"], results.memory["pools"]
        out.append(("100k pools of 12 slots in < 1 GiB per host",
                    f"{total / GIB:.2f} GiB ({pools:,} pools, all processes)",
                    total < GIB if pools >= 100_000 else None))
    return out


def target_lines(results: Results) -> list[str]:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for target, measured, met in targets(results):
        verdict = {True: "**met**", False: "**missed**", None: "not measured at full size"}[met]
        lines.append(f"| {target} | {measured} | {verdict} |")
    return lines


def render(results: Results, header: list[str]) -> str:
    lines = [*header, "", "## Throughput and latency", "",
             "Saturation: wrk, closed loop. Latency: open loop at the offered rate, measured "
             "from each request's intended send time (which includes the generator's own "
             f"sending lag: {_lag(results)}). Medians over the rounds.", "",
             *throughput_table(results), "", "Errors (non-2xx answers by status; "
             "'timeout': no answer within 5 s of the end of the cell):", "",
             *error_lines(results), "", "## capsvc against the strongest PostgreSQL "
             "variant (saturation throughput)", "", *ratio_table(results), ""]
    redis = redis_ratio_table(results)
    if len(redis) > 2:  # some workload ran on redis-lua
        lines += [f"## capsvc against {REDIS_SYSTEM} (Redis, the rule in a Lua script; "
                  "saturation throughput)", "", *redis, ""]
    lines += ["## Where the CPU goes", "", *cpu_table(results)]
    if results.recovery:
        lines += ["", "## Recovery", "", *recovery_lines(results.recovery)]
    if results.memory:
        lines += ["", "## Memory", "", *memory_lines(results.memory)]
    lines += ["", "## Targets", "", *target_lines(results), ""]
    return "\n".join(lines)
