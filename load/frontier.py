"""The SLA frontier: the Locust profiles' mix sent open loop at rising multipliers of the
reference peak, until capsvc misses the SLA.

    .venv/bin/python -m load.frontier --profile default --multipliers 10,20,30,40,60 --seconds 30
    .venv/bin/python -m load.frontier --profile flash-sale --multipliers 10,20 --seconds 20
    CAPSVC_ADMIN_TOKEN=... .venv/bin/python -m load.frontier --host http://127.0.0.1:8080 ...

Without `--host`, every multiplier gets a fresh throwaway capsvc (2 workers, 64 shards, temp
data directory, as run_locust.py starts) with the fixtures defined, so each step starts from the
same state (in flash-sale, the same unsold flash pool). With `--host` the fixtures are defined
once (harmless if they exist) and every step runs against that service.

Each step sends the mix of `load/openmix.py` for `--warmup` seconds (not recorded) and then
`--seconds` seconds (measured), from `--processes` generator processes (default: one per
REQUESTS_PER_PROCESS offered requests/s) sharing one schedule. It reports per request type
p50 / p99 / p99.9 and counts, failures as the locustfile counts them, offered (the profile's
planned rate), sent and delivered (answered within the window) request rates, the generator's
CPU and capsvc's (every process of it), both from /proc over the measured window, and how busy
the whole machine was; and the SLA verdict of `load/sla.py`. Stepping stops at the first
multiplier that misses the SLA (`--all` runs every one). The headline is the frontier: the
highest multiplier that met the SLA with every lower one meeting it too.

Reports: load/results/frontier-<profile>-<date>-<time>.md and .json. Exit codes: 0 when some
multiplier met the SLA, 1 when none did, 2 when the run itself failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from array import array
from pathlib import Path

from load import fixtures, openmix, traffic
from load.bench.openloop import DRAIN_S, percentile
from load.bench.procstat import cpu_seconds, cpu_snapshot, cpu_used, tree
from load.profiles import PROFILES, Profile, rates
from load.service import CapsvcProcess
from load.sla import (
    DELIVERED_RATIO_MIN,
    FAILURE_RATIO_MAX,
    P99_LIMIT_MS,
    RequestStats,
    judge,
)

RESULTS = Path(__file__).resolve().parent / "results"
REQUESTS_PER_PROCESS = 10000  # offered req/s per generator process (~0.05 ms of CPU each: half a core)
START_MARGIN_S = 0.25  # between telling the generators the start time and that time
GENERATOR_LAG_WARN_MS = 5.0  # mean send lag above this: the generator was starved
GENERATOR_CORE_WARN_PCT = 85.0  # one generator process near a full core: use more of them
_TICKS = os.sysconf("SC_CLK_TCK")


# -- measurement ---------------------------------------------------------------------------
def machine_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    total = sum(values[:8])  # guest time is already inside user
    return total - idle, total


class Window:
    """CPU of the generators, capsvc and the machine between `start()` and `stop()`."""

    def __init__(self, generator_pids: list[int], capsvc_pids: list[int] | None) -> None:
        self.generator_pids, self.capsvc_pids = generator_pids, capsvc_pids

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.generators0 = {pid: cpu_seconds(pid) for pid in self.generator_pids}
        self.capsvc0 = cpu_snapshot(tree(self.capsvc_pids)) if self.capsvc_pids else None
        self.machine0 = machine_jiffies()

    def stop(self) -> dict:
        elapsed = time.perf_counter() - self.t0
        generators = sum(cpu_seconds(pid) - before for pid, before in self.generators0.items())
        capsvc = None
        if self.capsvc0 is not None:
            capsvc = cpu_used(self.capsvc0, cpu_snapshot(tree(self.capsvc_pids)))
        busy1, total1 = machine_jiffies()
        busy0, total0 = self.machine0
        cpus = os.cpu_count() or 1
        machine_pct = 100 * cpus * (busy1 - busy0) / max(total1 - total0, 1)
        return {"elapsed_s": elapsed, "generator_cpu_s": generators, "capsvc_cpu_s": capsvc,
                "machine_busy_pct": machine_pct, "cpus": cpus}


# -- generator processes ---------------------------------------------------------------------
def auto_processes(offered_rps: float) -> int:
    return max(1, math.ceil(offered_rps / REQUESTS_PER_PROCESS))


def run_generators(specs: list[openmix.MixSpec], capsvc_pids: list[int] | None,
                   warmup_s: float, seconds: float) -> tuple[list[dict], dict]:
    """Start one process per spec, start them together, measure CPU over the measured window,
    and return their results and the window's CPU figures."""
    context = multiprocessing.get_context("spawn")
    processes, channels = [], []
    try:
        for spec in specs:
            parent_end, child_end = context.Pipe()
            process = context.Process(target=openmix.generator_process, args=(spec, child_end),
                                      name=f"frontier-generator-{spec.part}", daemon=True)
            process.start()
            child_end.close()
            processes.append(process)
            channels.append(parent_end)
        ready_by = time.monotonic() + openmix.READY_TIMEOUT_S
        for channel, process in zip(channels, processes, strict=True):
            if _receive(channel, process, ready_by, "start") != "ready":
                raise RuntimeError(f"{process.name} did not say it was ready")
        t0 = time.perf_counter() + START_MARGIN_S  # CLOCK_MONOTONIC: the same in every process
        for channel in channels:
            channel.send(t0)
        window = Window([p.pid for p in processes], capsvc_pids)
        _sleep_until(t0 + warmup_s)
        window.start()
        _sleep_until(t0 + warmup_s + seconds)
        cpu = window.stop()
        deadline = time.monotonic() + DRAIN_S + 60  # the drain, and room for a starved machine
        results = [_receive(channel, process, deadline, "result")
                   for channel, process in zip(channels, processes, strict=True)]
        return results, cpu
    finally:
        for process in processes:
            process.join(5)
            if process.is_alive():
                process.terminate()  # one of ours that failed to finish
                process.join(5)
        for channel in channels:
            channel.close()


def _receive(channel, process, deadline: float, what: str):
    """The next message from a generator process; fails fast if the process died."""
    while not channel.poll(0.1):
        if not process.is_alive():
            if channel.poll(0):  # it sent, then exited
                break
            raise RuntimeError(f"{process.name} exited ({process.exitcode}) before its {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} sent no {what} in time")
    return channel.recv()


def _sleep_until(moment: float) -> None:
    delay = moment - time.perf_counter()
    if delay > 0:
        time.sleep(delay)


# -- one step ----------------------------------------------------------------------------------
def _row_name(name: str) -> str:
    return f"{traffic.METHODS[name]} {name}"


def _type_row(name: str, latencies: array, requests: int, failures: int, seconds: float,
              reasons: dict[str, int]) -> dict:
    ordered = sorted(latencies)
    unanswered = sum(1 for v in ordered if v == math.inf)
    answered = ordered[:len(ordered) - unanswered]

    def ms(q: float) -> float:
        return 1000 * percentile(answered, unanswered, q)

    return {"name": name, "requests": requests, "failures": failures,
            "rps": requests / seconds, "p50_ms": ms(0.50), "p99_ms": ms(0.99),
            "p999_ms": ms(0.999), "max_ms": 1000 * ordered[-1] if ordered else math.nan,
            "unanswered": unanswered, "reasons": reasons}


def summarize(profile: Profile, multiplier: float, seconds: float, warmup_s: float,
              results: list[dict], cpu: dict) -> dict:
    """One step's report: per-type rows, totals, rates, CPU and the SLA verdict."""
    rows, everything = [], array("d")
    for name in openmix.TYPES:
        latencies, requests, failures, reasons = array("d"), 0, 0, {}
        for result in results:
            part = result["types"][name]
            latencies.frombytes(part["latencies"])
            requests += part["requests"]
            failures += part["failures"]
            for reason, n in part["reasons"].items():
                reasons[reason] = reasons.get(reason, 0) + n
        everything.extend(latencies)
        rows.append(_type_row(_row_name(name), latencies, requests, failures, seconds,
                              reasons))
    requests = sum(r["requests"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    total = _type_row("Aggregated", everything, requests, failures, seconds, {})
    offered = rates(profile, multiplier).total
    answers = sum(r["delivered"] for r in results)  # answers that arrived inside the window
    delivered = answers / seconds
    verdict = judge([_stats(r) for r in rows if r["requests"]], _stats(total), offered,
                    delivered)
    counts: dict[str, int] = {}
    for result in results:
        for key, n in result["counts"].items():
            counts[key] = counts.get(key, 0) + n
    elapsed = cpu["elapsed_s"]
    generator = {
        "processes": len(results),
        "cpu_s": cpu["generator_cpu_s"],
        "ms_per_request": 1000 * cpu["generator_cpu_s"] / max(requests, 1),
        "core_pct": 100 * cpu["generator_cpu_s"] / elapsed,
        "lag_mean_ms": sum(r["lag_mean_ms"] * r["lag_count"] for r in results)
        / max(sum(r["lag_count"] for r in results), 1),
        "lag_max_ms": max(r["lag_max_ms"] for r in results),
        "connections": sum(r["connections"] for r in results),
    }
    capsvc = None
    if cpu["capsvc_cpu_s"] is not None:
        capsvc = {"cpu_s": cpu["capsvc_cpu_s"],  # per answer: it may fall behind the sends
                  "ms_per_request": 1000 * cpu["capsvc_cpu_s"] / max(answers, 1),
                  "core_pct": 100 * cpu["capsvc_cpu_s"] / elapsed}
    machine = {"cpus": cpu["cpus"], "busy_pct": cpu["machine_busy_pct"],
               "other_pct": max(0.0, cpu["machine_busy_pct"] - generator["core_pct"]
                                - (capsvc["core_pct"] if capsvc else 0.0))}
    warnings = []
    if generator["lag_mean_ms"] > GENERATOR_LAG_WARN_MS:
        warnings.append(f"the generator sent {generator['lag_mean_ms']:.1f} ms late on average "
                        f"(worst {generator['lag_max_ms']:.0f} ms): it was short of CPU, and "
                        "that lateness is inside the latencies")
    if generator["core_pct"] / generator["processes"] > GENERATOR_CORE_WARN_PCT:
        warnings.append(f"each generator process used {generator['core_pct'] / len(results):.0f}"
                        " % of a core: try more --processes")
    if machine["busy_pct"] > 90 * machine["cpus"]:
        warnings.append(f"the machine was {machine['busy_pct']:.0f} % busy of "
                        f"{100 * machine['cpus']} %: capsvc shared the CPUs with "
                        f"{machine['other_pct']:.0f} % of other work")
    return {
        "multiplier": multiplier, "seconds": seconds, "warmup_s": warmup_s,
        "offered_rps": offered, "sent_rps": requests / seconds, "delivered_rps": delivered,
        "requests": requests, "failures": failures,
        "failure_pct": 100 * failures / max(requests, 1),
        "types": rows, "total": total, "counts": counts,
        "abandoned": sum(r["abandoned"] for r in results),
        "generator": generator, "capsvc": capsvc, "machine": machine,
        "sla": {"passed": verdict.passed, "problems": verdict.problems},
        "warnings": warnings,
    }


def _stats(row: dict) -> RequestStats:
    return RequestStats(row["name"], row["requests"], row["failures"], row["rps"],
                        row["p50_ms"], row["p99_ms"], row["p999_ms"])


def run_step(url: str, admin_token: str, profile: Profile, multiplier: float,
             args: argparse.Namespace, capsvc_pids: list[int] | None) -> dict:
    offered = rates(profile, multiplier).total
    parts = args.processes or auto_processes(offered)
    specs = [openmix.MixSpec(url, admin_token, profile.name, multiplier, args.seconds,
                             args.warmup, part, parts, args.seed, args.connections)
             for part in range(parts)]
    results, cpu = run_generators(specs, capsvc_pids, args.warmup, args.seconds)
    return summarize(profile, multiplier, args.seconds, args.warmup, results, cpu)


# -- the run -----------------------------------------------------------------------------------
def frontier(steps: list[dict]) -> dict:
    """The highest multiplier that met the SLA with every lower one meeting it too."""
    ordered = sorted(steps, key=lambda s: s["multiplier"])
    best, first_failure = None, None
    for step in ordered:
        if not step["sla"]["passed"]:
            first_failure = step
            break
        best = step
    above = [s["multiplier"] for s in ordered
             if first_failure and s["multiplier"] > first_failure["multiplier"]
             and s["sla"]["passed"]]
    return {"multiplier": best["multiplier"] if best else None,
            "first_failure": first_failure["multiplier"] if first_failure else None,
            "failure_problems": first_failure["sla"]["problems"] if first_failure else [],
            "passed_above_failure": above}


def headline(profile: str, summary: dict) -> str:
    best, failed = summary["multiplier"], summary["first_failure"]
    if best is None:
        return (f"SLA frontier ({profile}): none of the multipliers met the SLA; "
                f"{failed:g}x failed: {'; '.join(summary['failure_problems'])}")
    text = f"SLA frontier ({profile}): {best:g}x the reference peak"
    if failed is None:
        text += f" (every multiplier tried met the SLA; the frontier is at or above {best:g}x)"
    else:
        text += f" met the SLA; {failed:g}x did not: {'; '.join(summary['failure_problems'])}"
    if summary["passed_above_failure"]:
        text += (" (met again above it, at "
                 + ", ".join(f"{m:g}x" for m in summary["passed_above_failure"])
                 + ": noise near the frontier)")
    return text


def _step_line(step: dict) -> str:
    worst = max(step["types"], key=lambda r: r["p99_ms"] if r["requests"] else -1)
    capsvc = step["capsvc"]
    return (f"{step['multiplier']:g}x: offered {step['offered_rps']:.0f} req/s, sent "
            f"{step['sent_rps']:.0f}, delivered {step['delivered_rps']:.0f}; worst p99 "
            f"{_ms(worst['p99_ms'])} ms ({worst['name']}); failures {step['failures']} "
            f"({step['failure_pct']:.3f} %); generator {step['generator']['ms_per_request']:.3f} "
            f"ms/req, {step['generator']['core_pct']:.0f} % of a core; capsvc "
            + (f"{capsvc['ms_per_request']:.3f} ms/req, {capsvc['core_pct']:.0f} % of a core"
               if capsvc else "n/a")
            + f"; SLA {'PASS' if step['sla']['passed'] else 'FAIL'}")


def _ms(value: float) -> str:
    if value != value:
        return "-"
    if value == math.inf:
        return "no answer"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def render_markdown(run: dict) -> str:
    lines = [f"# SLA frontier: profile `{run['profile']}`, {run['started']}", ""]
    lines += [f"**{run['headline']}**", ""]
    lines += [
        f"- target: {run['target']}",
        f"- machine: {run['cpus']} CPUs, shared with other work (see *other* below)",
        f"- each step: {run['warmup_s']:g} s warm-up (not recorded), then {run['seconds']:g} s "
        f"measured; the profile's mix sent open loop (`load/openmix.py`), latencies from each "
        f"request's intended send time",
        f"- SLA (`load/sla.py`): p99 < {P99_LIMIT_MS:.0f} ms for every request type, failures "
        f"<= {100 * FAILURE_RATIO_MAX:.1f} %, delivered >= {100 * DELIVERED_RATIO_MIN:.0f} % "
        "of offered",
        f"- command: `{run['command']}`",
        "",
        "## Steps",
        "",
        "| x | offered req/s | sent req/s | delivered req/s | worst p99 ms | failures | "
        "generator ms/req | generator % core | capsvc ms/req | capsvc % core | machine busy % "
        "(other) | SLA |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for step in run["steps"]:
        worst = max((r["p99_ms"] for r in step["types"] if r["requests"]), default=math.nan)
        capsvc, gen, machine = step["capsvc"], step["generator"], step["machine"]
        lines.append(
            f"| {step['multiplier']:g} | {step['offered_rps']:.0f} | {step['sent_rps']:.0f} | "
            f"{step['delivered_rps']:.0f} | {_ms(worst)} | {step['failures']} "
            f"({step['failure_pct']:.2f} %) | {gen['ms_per_request']:.3f} | "
            f"{gen['core_pct']:.0f} | "
            + (f"{capsvc['ms_per_request']:.3f} | {capsvc['core_pct']:.0f} | " if capsvc
               else "n/a | n/a | ")
            + f"{machine['busy_pct']:.0f} ({machine['other_pct']:.0f}) | "
            f"{'PASS' if step['sla']['passed'] else 'FAIL'} |")
    lines.append("")
    lines.append("*ms/req* is CPU time over the measured window per request sent (generator) "
                 "or per answer delivered in it (capsvc); *% core* is that CPU time in % of one "
                 f"core (the machine has {run['cpus'] * 100} %); *other* is the machine's busy "
                 "CPU not used by capsvc or the generator.")
    for step in run["steps"]:
        lines += ["", f"## {step['multiplier']:g}x", "", render_step(step)]
    return "\n".join(lines) + "\n"


def render_step(step: dict) -> str:
    lines = ["| request | count | failures | req/s | p50 ms | p99 ms | p99.9 ms | max ms |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in [*step["types"], step["total"]]:
        lines.append(f"| {r['name']} | {r['requests']} | {r['failures']} | {r['rps']:.1f} | "
                     f"{_ms(r['p50_ms'])} | {_ms(r['p99_ms'])} | {_ms(r['p999_ms'])} | "
                     f"{_ms(r['max_ms'])} |")
    gen, counts = step["generator"], step["counts"]
    lines += [
        "",
        f"Offered {step['offered_rps']:.1f} req/s, sent {step['sent_rps']:.1f}, delivered "
        f"{step['delivered_rps']:.1f}. Customer sessions {counts.get('sessions', 0)} (warm-up "
        f"included): {counts.get('reserved', 0)} reserved, {counts.get('taken', 0)} found the "
        f"slot taken (409), {counts.get('sold_out', 0)} found nothing bookable, "
        f"{counts.get('retries', 0)} reserves retried; planner edits "
        f"{counts.get('planner_edits', 0)}.",
        f"Generator: {gen['processes']} process(es), {gen['connections']} connections at most, "
        f"send lag mean {gen['lag_mean_ms']:.2f} ms, worst {gen['lag_max_ms']:.1f} ms.",
    ]
    reasons = {f"{r['name']}: {reason}": n for r in step["types"]
               for reason, n in r["reasons"].items()}
    if reasons:
        lines.append("Failures: " + ", ".join(f"{k} x{n}" for k, n in sorted(reasons.items())))
    lines.append("SLA PASS" if step["sla"]["passed"]
                 else "SLA FAIL: " + "; ".join(step["sla"]["problems"]))
    for warning in step["warnings"]:
        lines.append(f"Warning: {warning}")
    return "\n".join(lines)


def _json_safe(value):
    """inf and NaN as null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--multipliers", default="10,20,30,40,60",
                        help="comma-separated multiples of the reference peak, stepped upwards")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured per step")
    parser.add_argument("--warmup", type=float, default=2.0,
                        help="seconds sent before each step's measurement (not recorded)")
    parser.add_argument("--all", action="store_true",
                        help="run every multiplier, not only up to the first SLA failure")
    parser.add_argument("--host", help="a running capsvc (default: a throwaway one per step)")
    parser.add_argument("--admin-token", default=os.environ.get("CAPSVC_ADMIN_TOKEN", ""),
                        help="with --host: the admin token (default: $CAPSVC_ADMIN_TOKEN)")
    parser.add_argument("--processes", type=int, default=0,
                        help="generator processes splitting the schedule (default: one per "
                             f"{REQUESTS_PER_PROCESS} offered req/s)")
    parser.add_argument("--connections", type=int, default=256,
                        help="keep-alive connections per generator process, at most")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    return parser


def parse_multipliers(text: str) -> list[float]:
    values = sorted({float(v) for v in text.split(",") if v.strip()})
    if not values or values[0] <= 0:
        raise argparse.ArgumentTypeError(f"--multipliers must be positive numbers: {text!r}")
    return values


def _own_service_step(profile: Profile, multiplier: float, args: argparse.Namespace,
                      tmp: Path) -> dict:
    service = CapsvcProcess(tmp / f"data-x{multiplier:g}", worker_ports=False).start()
    try:
        fixtures.define(service.url, service.admin_token,
                        fixtures.all_pools(flash=profile.flash_share > 0))
        return run_step(service.url, service.admin_token, profile, multiplier, args,
                        list(service.pids().values()))
    finally:
        service.stop()


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    profile = PROFILES[args.profile]
    multipliers = parse_multipliers(args.multipliers)
    started = dt.datetime.now()
    steps: list[dict] = []
    if args.host:
        url = args.host.rstrip("/")
        target = f"{url} (a running capsvc; its CPU is not measured)"
        fixtures.define(url, args.admin_token, fixtures.all_pools(flash=profile.flash_share > 0))
    else:
        target = ("a throwaway capsvc per multiplier (2 workers, 64 shards, temp data dir), "
                  "fixtures defined before each step")
    with tempfile.TemporaryDirectory(prefix="capsvc-frontier-") as tmp:
        for multiplier in multipliers:
            print(f"{multiplier:g}x: offered {rates(profile, multiplier).total:.0f} req/s for "
                  f"{args.warmup:g} + {args.seconds:g} s ...", flush=True)
            if args.host:
                step = run_step(url, args.admin_token, profile, multiplier, args, None)
            else:
                step = _own_service_step(profile, multiplier, args, Path(tmp))
            steps.append(step)
            print(_step_line(step), flush=True)
            for warning in step["warnings"]:
                print(f"  warning: {warning}", flush=True)
            if not step["sla"]["passed"] and not args.all:
                break
    summary = frontier(steps)
    return {
        "profile": profile.name,
        "started": started.strftime("%Y-%m-%d %H:%M:%S"),
        "stamp": started.strftime("%Y%m%d-%H%M%S"),
        "command": " ".join([".venv/bin/python -m load.frontier", *argv]),
        "target": target,
        "cpus": os.cpu_count() or 1,
        "seconds": args.seconds,
        "warmup_s": args.warmup,
        "multipliers": multipliers,
        "steps": steps,
        "frontier": summary,
        "headline": headline(profile.name, summary),
    }


def write_reports(result: dict, results_dir: Path) -> tuple[Path, Path]:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = results_dir / f"frontier-{result['profile']}-{result['stamp']}"
    markdown, data = stem.with_suffix(".md"), stem.with_suffix(".json")
    markdown.write_text(render_markdown(result))
    data.write_text(json.dumps(_json_safe(result), indent=1) + "\n")
    return markdown, data


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    try:
        result = run(args, argv)
    except Exception:  # noqa: BLE001 - any failure of the run itself is exit code 2
        traceback.print_exc()
        print("frontier run failed", file=sys.stderr)
        return 2
    markdown, data = write_reports(result, args.results_dir)
    print()
    for step in result["steps"]:
        print(f"## {step['multiplier']:g}x")
        print(render_step(step))
        print()
    print(result["headline"])
    print(f"reports: {markdown}, {data}")
    return 0 if result["frontier"]["multiplier"] is not None else 1


if __name__ == "__main__":
    sys.exit(main())
