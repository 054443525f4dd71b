"""The benchmark: capsvc (through the router and straight at one worker), three classical
PostgreSQL designs and Redis with a Lua script, side by side in one run on this machine; then
recovery and memory.

    .venv/bin/python -m load.bench            # full: 3 rounds, 1M-event shard, 100k pools
    .venv/bin/python -m load.bench --quick    # 1 round, short cells, smaller storage runs

Each round runs every workload against every system in turn (so noise from other work on the
machine spreads over all of them): a wrk saturation cell (throughput, CPU per request), then
an open-loop cell at a fixed offered rate (latency). Writes load/results/bench-<date>.md and
prints it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from load.bench import memory, recovery, redis_server, report
from load.bench.procstat import cpu_snapshot
from load.bench.results import WORKLOADS, Cell, Results
from load.bench.systems import System, capsvc_systems, classical_systems, redis_systems
from load.bench.wrk import WrkResult, run_wrk, wrk_available
from load.service import REPO

RESULTS = REPO / "load" / "results"
_START_LOAD = ", ".join(Path("/proc/loadavg").read_text().split()[:3])


@dataclass(frozen=True)
class Settings:
    rounds: int = 3
    saturation_s: float = 3.0
    fixed_s: float = 4.0
    warmup_s: float = 1.0
    connections: int = 64  # wrk's closed-loop concurrency
    rates: dict[str, float] = field(
        default_factory=lambda: {"uniform": 400.0, "hot": 400.0, "grid-mix": 1000.0})
    recovery_events: int = 1_000_000
    recovery_rounds: dict[str, int] = field(default_factory=lambda: {"plain": 1, "snap": 3})
    memory_pools: int = 100_000
    load_cpus: str | None = None  # taskset CPU list for wrk and the open-loop generator
    storage: bool = True


QUICK = Settings(rounds=1, saturation_s=3.0, fixed_s=3.0, recovery_events=200_000,
                 recovery_rounds={"plain": 1, "snap": 1}, memory_pools=20_000)


def _groups_cpu(system: System) -> dict[str, dict[int, float]]:
    return {role: cpu_snapshot(pids) for role, pids in system.cpu_groups().items()}


def saturation(system: System, workload_name: str, round_index: int, settings: Settings,
               tmp: Path, seconds: float) -> tuple[WrkResult, float, dict[str, float]]:
    """(wrk's result, CPU ms/request, CPU ms/request by role) from one wrk run."""
    workload = system.workload(workload_name, round_index)
    script = tmp / f"{system.name}-{workload_name}-{round_index}.lua"
    script.write_text(workload.lua(nonce=f"{system.name}-{round_index}-{time.time_ns()}"))
    before = _groups_cpu(system)
    result = run_wrk(system.url, script, seconds, settings.connections, cpus=settings.load_cpus)
    after = _groups_cpu(system)
    per_role = {
        role: 1000 * sum(after[role][p] - before.get(role, {}).get(p, 0.0) for p in after[role])
        / max(result.requests, 1)
        for role in after
    }
    return result, sum(per_role.values()), per_role


def fixed_rate(system: System, workload_name: str, round_index: int, settings: Settings,
               tmp: Path) -> dict:
    workload = system.workload(workload_name, round_index)
    spec = tmp / f"{system.name}-{workload_name}-{round_index}.json"
    spec.write_text(json.dumps(dataclasses.asdict(workload)))
    command = [sys.executable, "-m", "load.bench.openloop", "--url", system.url,
               "--workload", str(spec), "--rate", str(settings.rates[workload_name]),
               "--seconds", str(settings.fixed_s), "--seed", str(round_index + 1)]
    if settings.load_cpus is not None:
        command = ["taskset", "-c", settings.load_cpus, *command]
    out = subprocess.run(command, cwd=REPO, check=True, capture_output=True, text=True,
                         timeout=settings.fixed_s + 120).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_throughput(systems: list[System], settings: Settings, results: Results,
                   tmp: Path, workloads: tuple[str, ...] = WORKLOADS) -> None:
    warmed: set[tuple[str, str]] = set()
    for round_index in range(settings.rounds):
        for workload_name in workloads:
            for system in systems:
                if workload_name == "grid-mix" and not system.serves_grid:
                    continue
                if (system.name, workload_name) not in warmed:
                    saturation(system, workload_name, round_index, settings, tmp,
                               settings.warmup_s)
                    warmed.add((system.name, workload_name))
                sat, cpu, by_role = saturation(system, workload_name, round_index, settings,
                                               tmp, settings.saturation_s)
                fixed = fixed_rate(system, workload_name, round_index, settings, tmp)
                results.cells.append(Cell(workload_name, system.name, round_index, sat.rps,
                                          sat.errors, sat.detail, cpu, by_role, fixed))
                print(f"round {round_index + 1} {workload_name:<8} {system.name:<14} "
                      f"{sat.rps:>8.0f} req/s  cpu {cpu:5.2f} ms/req  p99 "
                      f"{fixed['p99_ms']:7.1f} ms @ {fixed['offered_rps']:.0f}/s  "
                      f"errors {sat.detail} {fixed['statuses']} lost {fixed['errors']}",
                      flush=True)


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                  if ln.startswith("model name")), "unknown")
    mem_kb = int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                      if ln.startswith("MemTotal")))
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return [f"- machine: {os.cpu_count()} CPUs (`nproc`), {model}, "
            f"{mem_kb / 2**20:.1f} GiB RAM, Linux {platform.release()}, "
            f"Python {platform.python_version()}, {(wrk.stdout or wrk.stderr).split()[1]}",
            f"- load average (1, 5, 15 min) at the end: "
            f"{', '.join(Path('/proc/loadavg').read_text().split()[:3])}, at the start: "
            f"{_START_LOAD}; the machine is shared, other work ran alongside"]


def code_version() -> str:
    """The commit measured, and whether capsvc/ had uncommitted changes (it is shared)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True,
                              text=True).stdout.strip()

    changed = len(git("status", "--porcelain", "capsvc").splitlines())
    return (f"- code: commit {git('rev-parse', '--short', 'HEAD') or 'unknown'}"
            + (f" with {changed} uncommitted changed/new files under capsvc/" if changed else ""))


def header(settings: Settings, argv: list[str], pg_version: str, started: dt.datetime,
           finished: dt.datetime) -> list[str]:
    rates = ", ".join(f"{k} {v:g}/s" for k, v in settings.rates.items())
    return [
        f"# capsvc benchmark, {started:%Y-%m-%d %H:%M}", "",
        f"- command: `.venv/bin/python -m load.bench {' '.join(argv)}`".rstrip(),
        f"- ran {started:%H:%M:%S} to {finished:%H:%M:%S}",
        *machine(),
        code_version(),
        f"- PostgreSQL {pg_version} (Debian), default durable settings (fsync, "
        "synchronous_commit on), private cluster on a temp directory; classical app: "
        "aiohttp + asyncpg, 2 processes x 16 connections",
        f"- redis-lua: Redis {redis_server.version()} (Debian), appendonly yes, appendfsync "
        "always, private server on a temp directory; the same app over redis-py, the rule in "
        "one Lua script (EVALSHA), 2 processes x 16 connections",
        "- capsvc: 2 workers, 64 shards, synchronous=FULL; router, workers, PostgreSQL, Redis "
        "and the load generators all on this machine",
        f"- {settings.rounds} round(s); saturation: wrk -t1 -c{settings.connections} "
        f"{settings.saturation_s:g} s; latency: open loop {settings.fixed_s:g} s at {rates}; "
        f"load generators pinned to CPUs: {settings.load_cpus or 'no'}",
    ]


def _guarded(measure: Callable[[], dict]) -> dict | None:
    """Run one storage measurement; a failure is reported, not fatal to the whole run."""
    try:
        return measure()
    except Exception:  # the throughput results must still be written
        traceback.print_exc()
        return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="one short round (~2 minutes)")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--no-storage", action="store_true",
                        help="skip the recovery and memory measurements")
    parser.add_argument("--pin-load", metavar="CPUS",
                        help="taskset CPU list for wrk and the open-loop generator, e.g. 1")
    parser.add_argument("--output", type=Path, help="Markdown file (default: load/results/)")
    parser.add_argument("--systems", help="comma-separated system names (default: all)")
    parser.add_argument("--workloads", help="comma-separated workloads (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if not wrk_available():
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    settings = QUICK if args.quick else Settings()
    settings = dataclasses.replace(settings, rounds=args.rounds or settings.rounds,
                                   storage=not args.no_storage, load_cpus=args.pin_load)
    started = dt.datetime.now()
    results = Results()
    with tempfile.TemporaryDirectory(prefix="capsvc-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with contextlib.ExitStack() as stack:
            router, worker, _ = stack.enter_context(capsvc_systems(settings.rounds))
            classical, cluster = stack.enter_context(classical_systems(settings.rounds))
            redis_lua, _ = stack.enter_context(redis_systems(settings.rounds))
            pg_version = cluster.setting("server_version")
            systems = [router, worker, *classical, *redis_lua]
            if args.systems:
                systems = [s for s in systems if s.name in args.systems.split(",")]
            chosen = tuple(args.workloads.split(",")) if args.workloads else WORKLOADS
            run_throughput(systems, settings, results, tmp, chosen)
        output = args.output or RESULTS / f"bench-{started:%Y%m%d-%H%M}.md"
        write = _writer(output, results, settings, argv, pg_version, started)
        write()  # the throughput tables, in case a storage measurement hangs
        if settings.storage:
            print("recovery ...", flush=True)
            results.recovery = _guarded(lambda: recovery.measure(
                settings.recovery_events, settings.recovery_rounds,
                RESULTS / "cache" / f"shard-{settings.recovery_events}"))
            print("memory ...", flush=True)
            results.memory = _guarded(
                lambda: memory.measure(settings.memory_pools, tmp / "memory"))
    print(write())
    print(f"written: {output}")
    return 0


def _writer(output: Path, results: Results, settings: Settings, argv: list[str],
            pg_version: str, started: dt.datetime) -> Callable[[], str]:
    """A function that (re)writes the report and its JSON from `results` as they are now."""
    def write() -> str:
        text = report.render(results, header(settings, argv, pg_version, started,
                                             dt.datetime.now()))
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        output.with_suffix(".json").write_text(json.dumps(dataclasses.asdict(results),
                                                          indent=1))
        return text

    return write
