"""A request's deadline travels with it from the router to the worker (issue 14 item 7): a
command that reaches its shard after the router stopped waiting is never applied, however
late it arrives (its worker, or its whole host, frozen while the request sat in its socket)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from capsvc.testing.harness import Service, wait_for
from capsvc.testing.hosts import shard_owners, wait_balanced
from tests.reliability.cluster import host, new_cluster_name, owner, shard_of

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


@pytest.mark.cluster
def test_a_request_held_on_a_frozen_host_past_its_deadline_is_never_applied(tmp_path, zookeeper):
    """The issue's case across hosts: a reserve reaches host a's router, which forwards it to
    the owner on host b just as b is frozen (SIGSTOP of every process of b, shorter than the
    session and the owner's lease, so b stays the owner). a's router gives up and answers 504;
    after SIGCONT, b's worker reads the request and drops it: past its deadline. Property:
    nothing reserved, and the same key books afresh. (Without the deadline b would apply it:
    its lease is still valid, 2.5 s of freeze against 5 s.)"""
    name = new_cluster_name()
    data = tmp_path / "shared"
    extra = "[limits]\nrequest_timeout_ms = 1000\n"
    a, b = (host(data, zookeeper, h, name, extra=extra, session_timeout_ms=8000,
                 owner_lease_ms=5000).start(ready=False) for h in ("host-a", "host-b"))
    try:
        for svc in (a, b):
            svc.wait_ready()
        wait_balanced(a, workers=4, shard_count=8)
        on_b = {s for s, row in shard_owners(a).items() if row["owner"]["host"] == "host-b"}
        pool_id = next(p for p in (f"late-{i}" for i in range(1000)) if shard_of(p) in on_b)
        assert a.define_pool(pool_id, [("s", 5)])[0] == 201
        path = f"/v1/pools/{pool_id}/reservations"
        os.killpg(b.process.pid, signal.SIGSTOP)
        try:
            status, problem, _ = a.request("POST", path, {"slot_id": "s"},
                                           {"Idempotency-Key": "held"})
            assert status in (503, 504), problem
        finally:
            os.killpg(b.process.pid, signal.SIGCONT)
        wait_for(lambda: a.get(f"/v1/pools/{pool_id}")[0] == 200, 10, "b to answer again")
        assert a.get(f"/v1/pools/{pool_id}")[1]["total_reserved"] == 0
        assert owner(a, shard_of(pool_id))["owner"]["host"] == "host-b"  # the premise held
        status, body, headers = a.request("POST", path, {"slot_id": "s"},
                                          {"Idempotency-Key": "held"})
        assert status == 201 and headers.get("Idempotent-Replayed") is None, body
    finally:
        for svc in (a, b):
            svc.kill_all()
