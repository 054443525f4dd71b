"""The locustfile's task logic against a real capsvc for a few seconds (Locust itself is never
run by the suite: see load/README.md).

`load.smoke` runs the users through Locust's library API in a subprocess, because importing
Locust monkey-patches the interpreter (gevent) and that must not leak into other tests.
Skipped when Locust is not installed (it comes with the `load` extra).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from capsvc.testing.harness import ADMIN_TOKEN, REPO, Service

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(importlib.util.find_spec("locust") is None,
                       reason="locust is not installed (pip install -e '.[load]')"),
]


def test_locust_users_browse_reserve_and_edit_without_failures(tmp_path):
    service = Service(tmp_path / "data", workers=2, shard_count=8).start()
    try:
        run = subprocess.run(
            [sys.executable, "-m", "load.smoke", "--host", service.url, "--seconds", "3"],
            env={**os.environ, "CAPSVC_ADMIN_TOKEN": ADMIN_TOKEN}, cwd=REPO,
            capture_output=True, text=True, timeout=60, check=False,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        summary = json.loads(run.stdout.strip().splitlines()[-1])
        assert summary["failures"] == 0, summary["errors"]
        requests = summary["requests"]
        assert requests.get("/v1/availability", 0) >= 50, requests
        assert requests.get("/v1/pools/{pool_id}/reservations", 0) >= 1, requests
        assert requests.get("/v1/admin/pools", 0) >= 1, requests  # the planner ran

        status, listing = service.admin("GET", "/v1/admin/pools")
        assert status == 200
        reserved = [p for p in listing["pools"] if p["total_reserved"] > 0]
        assert reserved, "no pool has a reservation"
        status, pool = service.get(f"/v1/pools/{reserved[0]['pool_id']}")
        assert status == 200 and pool["total_reserved"] > 0
    finally:
        assert service.stop() == 0
