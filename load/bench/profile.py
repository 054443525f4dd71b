"""Where capsvc's CPU goes under load: py-spy samples of the router and both workers while wrk
drives one workload, summed into the functions that cost the most.

    .venv/bin/python -m load.bench.profile --workload uniform --target router --seconds 10

Needs py-spy (`.venv/bin/pip install py-spy`; as root it may attach to any process). Prints CPU
ms per request per process and thread (from /proc/<pid>/task) and, per process, the top functions by own time and
the capsvc functions by inclusive time (share of that process's samples); writes the raw
collapsed stacks to load/results/profile-<workload>-<target>-<process>.txt.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from load import fixtures
from load.bench import workloads
from load.bench.procstat import thread_cpu_seconds
from load.bench.wrk import run_wrk
from load.service import REPO, CapsvcProcess

RESULTS = REPO / "load" / "results"
SHARDS, WORKERS = 64, 2


_LOOP = "Runner.run (asyncio/runners.py"  # uvloop's C loop: polling and callbacks (py-spy
# cannot tell its waiting from its work, so it is reported apart)


def _frames(raw: Path) -> dict[str, collections.Counter]:
    """Collapsed stacks of py-spy raw output, split into the main thread (the event loop) and
    the other threads (aiosqlite's SQLite thread)."""
    out = {"own": collections.Counter(), "inclusive": collections.Counter(),
           "loop": collections.Counter(), "threads": collections.Counter()}
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n, frames = int(count), stack.split(";")
        if not frames[0].startswith("_run_module_as_main"):
            out["threads"][frames[-1]] += n
        elif frames[-1].startswith(_LOOP):
            out["loop"]["uvloop"] += n
        else:
            out["own"][frames[-1]] += n
            for frame in set(frames):
                out["inclusive"][frame] += n
    return out


_CATEGORIES = (  # (label, substrings of a frame's file), first match wins
    ("HTTP: aiohttp, yarl, multidict, httptools, capsvc/http, the lean fronts",
     ("aiohttp/", "yarl/", "multidict/", "httptools", "capsvc/router/front",
      "capsvc/worker/front", "capsvc/router/rawclient", "capsvc/http/")),
    ("JSON", ("json/",)),
    ("SQLite calls (aiosqlite, sqlite3, capsvc/storage)", ("aiosqlite/", "sqlite3/",
                                                           "capsvc/storage/")),
    ("pool logic (capsvc/domain)", ("capsvc/domain/",)),
    ("shard writer (capsvc/shard)", ("capsvc/shard/",)),
    ("router read model and feed", ("capsvc/router/read_model", "capsvc/router/feed")),
    ("other capsvc code", ("capsvc/",)),
    ("asyncio", ("asyncio/",)),
)


def _category(frame: str) -> str:
    for label, needles in _CATEGORIES:
        if any(n in frame for n in needles):
            return label
    return "other"


def summarize(raw: Path, top: int = 12) -> list[str]:
    f = _frames(raw)
    busy = sum(f["own"].values())
    if not busy:
        return ["  (no samples)"]
    lines = [f"  main thread: {busy} samples in Python code, {sum(f['loop'].values())} in "
             f"uvloop's C loop; other threads (aiosqlite): {sum(f['threads'].values())} samples "
             "(sampled only while holding the GIL: CPU in Python, not waits)",
             "  own time (share of the main thread's Python samples):"]
    lines += [f"    {100 * n / busy:5.1f}%  {name}" for name, n in f["own"].most_common(top)]
    categories: collections.Counter = collections.Counter()
    for name, n in f["own"].items():
        categories[_category(name)] += n
    lines.append("  own time by kind of code:")
    lines += [f"    {100 * n / busy:5.1f}%  {name}" for name, n in categories.most_common()]
    lines.append("  capsvc functions, inclusive:")
    ours = [(name, n) for name, n in f["inclusive"].most_common()
            if "capsvc/" in name and "cli.py" not in name and "__main__" not in name]
    lines += [f"    {100 * n / busy:5.1f}%  {name}" for name, n in ours[:top]]
    return lines


def run(workload_name: str, target: str, seconds: float) -> list[str]:
    if shutil.which("py-spy") is None and not (Path(sys.executable).parent / "py-spy").exists():
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    RESULTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="capsvc-profile-") as tmp:
        service = CapsvcProcess(Path(tmp) / "data", workers=WORKERS, shard_count=SHARDS)
        service.start()
        try:
            pools = workloads.uniform_pools()
            hot = workloads.hot_pool("profile", SHARDS, WORKERS)
            fixtures.define(service.url, service.admin_token,
                            [fixtures.PoolSpec(p.pool_id, p.definition()) for p in
                             [*pools, hot]])
            if target == "worker":
                pools = [p for p in pools if workloads.owned_by(p.pool_id, 0, SHARDS, WORKERS)]
            workload = {"uniform": workloads.uniform(pools), "hot": workloads.hot(hot),
                        "grid-mix": workloads.grid_mix(pools)}[workload_name]
            script = Path(tmp) / "w.lua"
            url = service.url if target == "router" else service.worker_url(0)
            script.write_text(workload.lua(nonce=f"warm-{time.time_ns()}"))
            run_wrk(url, script, 2, 64)  # warm up
            script.write_text(workload.lua(nonce=f"profile-{time.time_ns()}"))
            pids = {role: pid for role, pid in service.pids().items() if role != "supervisor"}
            raws = {role: RESULTS / f"profile-{workload_name}-{target}-{role.replace(' ', '')}"
                    f".txt" for role in pids}
            spies = [subprocess.Popen([py_spy, "record", "--pid", str(pid), "--duration",
                                       str(int(seconds)), "--rate", "250", "--format", "raw",
                                       "--nonblocking", "--gil", "--output", str(raws[role])],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                     for role, pid in pids.items()]
            before = {pid: thread_cpu_seconds(pid) for pid in pids.values()}
            result = run_wrk(url, script, seconds, 64)
            after = {pid: thread_cpu_seconds(pid) for pid in pids.values()}
            for spy in spies:
                spy.wait(60)
        finally:
            service.stop()
    lines = [f"{workload_name} through the {target}: {result.rps:,.0f} req/s, "
             f"{result.errors} errors {result.detail or ''}"]
    per_request = 1000 / max(result.requests, 1)
    for role, pid in pids.items():
        main = (after[pid][0] - before[pid][0]) * per_request
        other = (after[pid][1] - before[pid][1]) * per_request
        lines += [f"{role}: {main + other:.3f} CPU ms per request ({main:.3f} in the event-loop "
                  f"thread, {other:.3f} in other threads)", *summarize(raws[role])]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("uniform", "hot", "grid-mix"), default="uniform")
    parser.add_argument("--target", choices=("router", "worker"), default="router")
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    print("\n".join(run(args.workload, args.target, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
