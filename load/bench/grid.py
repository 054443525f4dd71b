"""The availability grid through the router: reads per second and router CPU per grid read.

Starts a throwaway capsvc (2 workers, 64 shards), defines the benchmark's 500 pools (125 days
of 4 pools of 12 slots), then runs wrk (closed loop, `-t1 -c64`) for each workload:

- `grid`: grid reads only (random day), so the router's CPU per request is its CPU per read;
- `grid-mix`: the customer mix, 20 grid reads : 1 reserve : 0.2 release, so every write
  moves a pool and its day's cached grid must be rendered again.

CPU is user + system seconds of each process from /proc, per completed request; it is robust
to other work on the machine, the request rate is not. Optionally an open-loop run at a fixed
rate (`--rate`) gives latency percentiles measured from each request's intended send time.

    .venv/bin/python -m load.bench.grid --seconds 5 [--rate 1000] [--pin-load 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from load import fixtures
from load.bench import workloads
from load.bench.procstat import cpu_seconds
from load.bench.wrk import run_wrk
from load.service import REPO, CapsvcProcess

SHARDS, WORKERS = 64, 2


@dataclasses.dataclass(frozen=True)
class GridOnly(workloads.Workload):
    """Grid reads and nothing else."""

    @property
    def shares(self) -> tuple[float, float]:
        return 0.0, 0.0


def _workloads(pools: list[workloads.BenchPool]) -> dict[str, workloads.Workload]:
    mix = workloads.grid_mix(pools)
    return {"grid": GridOnly("grid", mix.pools, mix.days, with_grid=True), "grid-mix": mix}


def saturation(
    service: CapsvcProcess,
    workload: workloads.Workload,
    seconds: float,
    connections: int,
    tmp: Path,
    cpus: str | None,
) -> dict:
    script = tmp / f"{workload.name}.lua"
    script.write_text(workload.lua(nonce=f"grid-{time.time_ns()}"))
    pids = service.pids()
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    result = run_wrk(service.url, script, seconds, connections, cpus=cpus)
    after = {role: cpu_seconds(pid) for role, pid in pids.items()}
    n = max(result.requests, 1)
    cpu_ms = {role: round(1000 * (after[role] - before[role]) / n, 4) for role in pids}
    return {
        "workload": workload.name,
        "rps": round(result.rps),
        "requests": result.requests,
        "errors": result.errors,
        "detail": result.detail,
        "cpu_ms_per_request": cpu_ms,
    }


def open_loop(
    service: CapsvcProcess,
    workload: workloads.Workload,
    rate: float,
    seconds: float,
    tmp: Path,
    cpus: str | None,
) -> dict:
    spec = tmp / f"{workload.name}-open.json"
    spec.write_text(json.dumps(dataclasses.asdict(workload)))
    command = [
        sys.executable,
        "-m",
        "load.bench.openloop",
        "--url",
        service.url,
        "--workload",
        str(spec),
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    ]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    out = subprocess.run(
        command, cwd=REPO, check=True, capture_output=True, text=True, timeout=seconds + 120
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--rate", type=float, help="also an open-loop run at this rate")
    parser.add_argument("--pin-load", metavar="CPUS", help="taskset CPU list for wrk")
    parser.add_argument("--only", choices=["grid", "grid-mix"])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="capsvc-grid-") as tmp_name:
        tmp = Path(tmp_name)
        service = CapsvcProcess(tmp / "data", workers=WORKERS, shard_count=SHARDS)
        service.start()
        try:
            pools = workloads.uniform_pools()
            fixtures.define(
                service.url,
                service.admin_token,
                [fixtures.PoolSpec(p.pool_id, p.definition()) for p in pools],
            )
            for name, workload in _workloads(pools).items():
                if args.only and name != args.only:
                    continue
                saturation(service, workload, args.warmup, args.connections, tmp, args.pin_load)
                print(
                    json.dumps(
                        saturation(
                            service, workload, args.seconds, args.connections, tmp, args.pin_load
                        )
                    ),
                    flush=True,
                )
                if args.rate:
                    result = open_loop(
                        service, workload, args.rate, args.seconds, tmp, args.pin_load
                    )
                    print(json.dumps({"workload": name, "open_loop": result}), flush=True)
        finally:
            service.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
