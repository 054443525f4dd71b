"""A request's deadline travels with it from the router to the worker (issue 14 item 7): a
command that reaches its shard after the router stopped waiting is never applied, however
late it arrives (here: its worker was frozen while the request sat in its socket)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from capsvc.testing.harness import Service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
POOL = "deadline-1"


def test_a_request_frozen_past_its_deadline_is_never_applied(tmp_path):
    """Fault: the pool's worker is SIGSTOPped; a reserve reaches the router, which forwards it
    into the frozen worker's socket and answers the client 504 when its wait ends. After
    SIGCONT the worker reads the request: it is past its deadline, so it is dropped. Property:
    nothing was reserved, and the same Idempotency-Key later books afresh (it was never bound
    to an outcome, so no client holds a reservation nobody knows about)."""
    svc = Service(tmp_path / "data", workers=1, shard_count=2,
                  extra_config="[limits]\nrequest_timeout_ms = 1000\n").start()
    worker = svc.child_pids()["capsvc: worker 0"]
    try:
        assert svc.define_pool(POOL, [("s", 5)])[0] == 201
        os.kill(worker, signal.SIGSTOP)
        try:
            started = time.monotonic()
            status, problem, _ = svc.request("POST", f"/v1/pools/{POOL}/reservations",
                                             {"slot_id": "s"}, {"Idempotency-Key": "late-1"})
            assert status in (503, 504), problem  # the outcome, as far as the client knows
            assert time.monotonic() - started < 5
        finally:
            os.kill(worker, signal.SIGCONT)
        wait_for(lambda: svc.get(f"/v1/pools/{POOL}")[0] == 200, 10, "the worker to answer")
        assert svc.get(f"/v1/pools/{POOL}")[1]["total_reserved"] == 0
        status, body, headers = svc.request("POST", f"/v1/pools/{POOL}/reservations",
                                            {"slot_id": "s"}, {"Idempotency-Key": "late-1"})
        assert status == 201 and headers.get("Idempotent-Replayed") is None, body
        assert svc.get(f"/v1/pools/{POOL}")[1]["total_reserved"] == 1
    finally:
        svc.stop()
