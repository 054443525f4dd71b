"""Run the Locust load test headless and give the SLA verdict (exit code 1 on failure).

    .venv/bin/python load/run_locust.py --profile default --multiplier 10 --duration 1m
    .venv/bin/python load/run_locust.py --profile default --multiplier 10 --duration 1h  # soak

Without `--host` it starts a throwaway capsvc (2 workers, 64 shards, temp data directory) and
stops it afterwards; with `--host` it targets a running one (admin token from
$CAPSVC_ADMIN_TOKEN). Reports go to load/results/: `<run>_stats.csv` (and the other Locust
CSVs), `<run>.html` and `<run>-verdict.txt`. Exit codes: 0 SLA met, 1 SLA missed, 2 the run
itself failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the `load` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from load.profiles import PROFILES, rates, user_plan  # noqa: E402
from load.service import CapsvcProcess  # noqa: E402
from load.sla import steady_rps, verdict  # noqa: E402

LOAD_DIR = Path(__file__).resolve().parent
RESULTS = LOAD_DIR / "results"
RAMP_S = 10.0  # users start over this long
REQUESTS_PER_PROCESS = 4000  # one Locust process tops out near 7k req/s here: keep headroom


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="default")
    parser.add_argument("--multiplier", type=float, default=1.0,
                        help="times the reference peak (load/README.md)")
    parser.add_argument("--duration", default="1m", help="Locust run time: 30s, 1m, 1h, ...")
    parser.add_argument("--host", help="a running capsvc (default: start a throwaway one)")
    parser.add_argument("--processes", type=int, default=0,
                        help="Locust processes (default: one per 4,000 planned req/s)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS)
    return parser


def locust_command(args: argparse.Namespace, host: str, prefix: Path, processes: int) -> list:
    plan = user_plan(PROFILES[args.profile], args.multiplier)
    command = [
        sys.executable, "-m", "locust", "-f", str(LOAD_DIR / "locustfile.py"), "--headless",
        "-H", host, "-u", str(plan.users), "-r", f"{max(plan.users / RAMP_S, 1):.1f}",
        "-t", args.duration, "--stop-timeout", "5", "--only-summary",
        "--csv", str(prefix), "--html", f"{prefix}.html", "--exit-code-on-error", "0",
        "--load-profile", args.profile, "--multiplier", str(args.multiplier),
    ]
    if processes > 1:
        command += ["--processes", str(processes)]
    return command


def run(args: argparse.Namespace, host: str, token: str) -> int:
    planned = rates(PROFILES[args.profile], args.multiplier).total
    processes = args.processes or max(1, math.ceil(planned / REQUESTS_PER_PROCESS))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    prefix = args.results_dir / f"locust-{args.profile}-x{args.multiplier:g}-{args.duration}-{stamp}"
    command = locust_command(args, host, prefix, processes)
    print(f"planned {planned:.1f} req/s with {processes} Locust process(es):", " ".join(command),
          flush=True)
    env = {**os.environ, "CAPSVC_ADMIN_TOKEN": token}
    code = subprocess.run(command, env=env, check=False).returncode
    stats = Path(f"{prefix}_stats.csv")
    if code != 0 or not stats.exists():
        print(f"locust failed (exit {code}); no verdict", file=sys.stderr)
        return 2
    users = user_plan(PROFILES[args.profile], args.multiplier).users
    delivered = steady_rps(Path(f"{prefix}_stats_history.csv"), users)
    result = verdict(stats, planned, delivered)
    text = result.render()
    Path(f"{prefix}-verdict.txt").write_text(text + "\n")
    print(text)
    print(f"reports: {prefix}_stats.csv, {prefix}.html, {prefix}-verdict.txt")
    return 0 if result.passed else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.host:
        return run(args, args.host.rstrip("/"), os.environ.get("CAPSVC_ADMIN_TOKEN", ""))
    with tempfile.TemporaryDirectory(prefix="capsvc-locust-") as tmp:
        service = CapsvcProcess(Path(tmp) / "data", worker_ports=False).start()
        try:
            return run(args, service.url, service.admin_token)
        finally:
            service.stop()


if __name__ == "__main__":
    sys.exit(main())
