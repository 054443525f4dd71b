"""Closed-loop saturation runs with wrk (Debian's /usr/bin/wrk) and a generated Lua script.

wrk keeps `connections` requests in flight, so its request rate is the system's capacity; its
own latencies are closed-loop (they hide queueing) and are not used for the latency columns.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int  # connect/read/write/timeout errors and non-2xx answers
    detail: dict[str, int]  # "connect", "timeout", ... and HTTP statuses >= 300

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, script: Path, seconds: float, connections: int, threads: int = 1,
            cpus: str | None = None) -> WrkResult:
    command = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s",
               "-s", str(script), url]
    if cpus is not None:
        command = ["taskset", "-c", cpus, *command]
    out = subprocess.run(command, capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    line = next((ln for ln in out.splitlines() if ln.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{out[-2000:]}")
    r = json.loads(line.removeprefix("WRK_RESULT "))
    detail = {k: r[k] for k in ("connect", "read", "write", "timeout") if r[k]}
    for item in filter(None, r["statuses"].split(",")):
        code, n = item.split(":")
        detail[code] = detail.get(code, 0) + int(n)
    errors = r["connect"] + r["read"] + r["write"] + r["timeout"] + r["status"]
    return WrkResult(r["requests"], r["duration_us"] / 1e6, errors, detail)
