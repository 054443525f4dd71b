"""The single-host service, end to end: real supervisor, workers and router on real sockets
with real SQLite files. Each test states the behaviour a client relies on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time

import aiohttp
import pytest

from capsvc.http.routes import ROUTES
from capsvc.testing.harness import ADMIN_TOKEN, Service, days_from_today, request, wait_for

# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
D2 = days_from_today(3)
D3 = days_from_today(4)
D4 = days_from_today(5)
pytestmark = pytest.mark.integration
POOL = f"sg-north:{D1}:logistics"


def test_define_pool_is_idempotent_and_conflicts_are_refused(service):
    status, pool = service.define_pool("def-1", [("0800-1000", 5), ("1000-1200", 3)])
    assert status == 201
    assert pool["version"] == 1 and pool["total_reserved"] == 0
    assert [s["available"] for s in pool["slots"]] == [5, 3]
    assert service.define_pool("def-1", [("0800-1000", 5), ("1000-1200", 3)])[0] == 200
    status, problem = service.define_pool("def-1", [("0800-1000", 6), ("1000-1200", 3)])
    assert (status, problem["code"]) == (409, "pool_exists")
    assert service.get("/v1/pools/def-1")[1]["slots"][0]["capacity"] == 5


def test_reserve_read_and_release_a_reservation(service):
    service.define_pool(POOL, [("0800-1000", 2)])
    status, r, _ = service.request(
        "POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "0800-1000", "order_ref": "o-1"})
    assert status == 201
    assert r["status"] == "active" and r["units"] == 1 and r["order_ref"] == "o-1"
    assert r["reservation_id"].startswith(POOL + "~")
    path = f"/v1/reservations/{r['reservation_id']}"
    assert service.get(path) == (200, r)
    assert service.get(f"/v1/pools/{POOL}")[1]["total_reserved"] == 1
    status, released, _ = service.request("DELETE", path)
    assert (status, released["status"]) == (200, "released")
    assert service.request("DELETE", path)[:2] == (200, released)  # repeating is harmless
    assert service.get(path)[1]["status"] == "released"
    assert service.get(f"/v1/pools/{POOL}")[1]["total_reserved"] == 0
    status, problem, _ = service.request("DELETE", f"/v1/reservations/{POOL}~99.abcdef")
    assert (status, problem["code"]) == (404, "reservation_not_found")


def test_thousand_concurrent_reservations_accept_exactly_the_capacity(service):
    """1,000 customers race for a slot of capacity 100 through the router."""
    service.define_pool("race-1", [("1800-2000", 100)])

    async def race():
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:
            return await asyncio.gather(*(
                request(session, service.url, "POST", "/v1/pools/race-1/reservations",
                        {"slot_id": "1800-2000", "units": 1}) for _ in range(1000)))

    results = asyncio.run(race())
    accepted = [b for s, b, _ in results if s == 201]
    refused = [b for s, b, _ in results if s == 409]
    assert len(accepted) == 100 and len(refused) == 900
    assert {b["code"] for b in refused} == {"capacity_exhausted"}
    assert {b["available_units"] for b in refused} == {0}
    assert len({b["reservation_id"] for b in accepted}) == 100
    pool = service.get("/v1/pools/race-1")[1]
    assert pool["slots"][0]["reserved"] == 100 and pool["slots"][0]["available"] == 0


def test_pool_total_capacity_caps_all_slots_together(service):
    service.define_pool("total-1", [("a", 5), ("b", 5)], total_capacity=6)
    for slot in ("a", "a", "a", "a", "b", "b"):
        assert service.request("POST", "/v1/pools/total-1/reservations", {"slot_id": slot})[0] == 201
    status, problem, _ = service.request("POST", "/v1/pools/total-1/reservations", {"slot_id": "b"})
    assert (status, problem["code"], problem["available_units"]) == (409, "capacity_exhausted", 0)
    status, problem = service.admin("PATCH", "/v1/admin/pools/total-1", {"total_capacity": 5})
    assert (status, problem["code"]) == (409, "total_capacity_below_reserved")
    assert service.admin("PATCH", "/v1/admin/pools/total-1", {"total_capacity": None})[0] == 200
    assert service.request("POST", "/v1/pools/total-1/reservations", {"slot_id": "b"})[0] == 201


def test_idempotency_key_replays_the_original_answer(service):
    service.define_pool("idem-1", [("s", 10)])
    headers = {"Idempotency-Key": "order-8812"}
    body = {"slot_id": "s", "units": 2}
    first = service.request("POST", "/v1/pools/idem-1/reservations", body, headers)
    again = service.request("POST", "/v1/pools/idem-1/reservations", body, headers)
    assert first[0] == again[0] == 201 and first[1] == again[1]
    assert "Idempotent-Replayed" not in first[2]
    assert again[2]["Idempotent-Replayed"] == "true"
    assert service.get("/v1/pools/idem-1")[1]["total_reserved"] == 2
    status, problem, _ = service.request(
        "POST", "/v1/pools/idem-1/reservations", {"slot_id": "s", "units": 3}, headers)
    assert (status, problem["code"]) == (422, "idempotency_key_reused")


def test_planner_changes_capacity_and_closes_slots(service):
    service.define_pool("plan-1", [("s", 2)])
    service.request("POST", "/v1/pools/plan-1/reservations", {"slot_id": "s", "units": 2})
    status, problem = service.admin("PATCH", "/v1/admin/pools/plan-1/slots/s", {"capacity": 1})
    assert (status, problem["code"], problem["reserved_units"]) == (
        409, "capacity_below_reserved", 2)
    status, pool = service.admin("PATCH", "/v1/admin/pools/plan-1/slots/s",
                                 {"capacity": 4, "open": False})
    assert status == 200 and pool["slots"][0]["capacity"] == 4 and not pool["slots"][0]["open"]
    status, problem, _ = service.request("POST", "/v1/pools/plan-1/reservations", {"slot_id": "s"})
    assert (status, problem["code"]) == (409, "slot_closed")
    slot = {"slot_id": "t", "starts_at": f"{D1}T20:00:00Z",
            "ends_at": f"{D1}T22:00:00Z", "capacity": 3}
    assert service.admin("POST", "/v1/admin/pools/plan-1/slots", slot)[0] == 201
    status, problem = service.admin("POST", "/v1/admin/pools/plan-1/slots", slot)
    assert (status, problem["code"]) == (409, "slot_exists")
    status, page = service.admin("GET", "/v1/admin/pools/plan-1/events?limit=2")
    assert status == 200 and [e["type"] for e in page["events"]] == [
        "PoolDefined", "CapacityReserved"]
    assert page["next_after"] == 2
    rest = service.admin("GET", "/v1/admin/pools/plan-1/events?after=2")[1]["events"]
    assert [e["type"] for e in rest] == ["SlotCapacityChanged", "SlotClosed", "SlotAdded"]
    assert rest[0]["actor"].startswith("admin:") and rest[0]["data"] == {"slot_id": "s",
                                                                         "capacity": 4}


def test_admin_routes_need_the_bearer_token(service):
    body = {"kind": "k", "region": "r", "date": D1, "slots": []}
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"},
                    {"Authorization": ADMIN_TOKEN}):
        status, problem, h = service.request("PUT", "/v1/admin/pools/auth-1", body, headers)
        assert (status, problem["code"]) == (401, "unauthorized")
        assert h["Content-Type"].startswith("application/problem+json")
    assert service.get("/v1/pools/auth-1")[0] == 404
    assert service.get("/v1/admin/cluster")[0] == 401
    assert service.get("/v1/admin/pools")[0] == 401


@pytest.mark.parametrize("route", [r for r in ROUTES if r.admin], ids=lambda r: r.name)
def test_every_admin_route_of_the_table_answers_401_without_a_valid_token(service, route):
    """One middleware keyed on `Route.admin` guards every admin route: no token, a wrong one
    or one without `Bearer` answers 401 (with WWW-Authenticate) and changes nothing."""
    path = route.path.replace("{pool_id}", "auth-table").replace("{slot_id}", "a")
    for headers in ({}, {"Authorization": "Bearer wrong-token-000000000"},
                    {"Authorization": ADMIN_TOKEN}):
        status, problem, h = service.request(route.method, path, {}, headers)
        assert (status, problem["code"]) == (401, "unauthorized"), (route.name, headers)
        assert h["WWW-Authenticate"].startswith("Bearer")
    assert service.get("/v1/pools/auth-table")[0] == 404


def test_availability_grid_follows_within_a_second(service):
    service.define_pool("grid-1", [("a", 1), ("b", 1)], region="grid-r", date=D2)
    service.define_pool("grid-2", [("a", 1)], region="grid-r", date=D2,
                        kind="warehouse")

    def grid(kind=""):
        status, body = service.get(f"/v1/availability?region=grid-r&date={D2}{kind}")
        assert status == 200
        return body

    wait_for(lambda: len(grid()["pools"]) == 2, 1.5, "both pools in the grid")
    assert [p["pool_id"] for p in grid("&kind=warehouse")["pools"]] == ["grid-2"]
    service.request("POST", "/v1/pools/grid-1/reservations", {"slot_id": "a"})
    wait_for(lambda: [s["bookable"] for s in grid()["pools"][0]["slots"]] == [False, True],
             1.5, "slot a to turn unbookable")
    assert grid()["as_of"].endswith("Z")
    assert grid()["pools"][0]["slots"][0].keys() == {"slot_id", "starts_at", "ends_at", "bookable"}


def test_the_grid_is_the_same_on_a_connection_that_aiohttp_serves(service):
    """A connection whose first request is not a hot route is served by the router's aiohttp
    app to its end: a grid read there answers what the front's hit path answers."""
    service.define_pool("grid-3", [("a", 2)], region="grid-s", date=D4)
    path = f"/v1/availability?region=grid-s&date={D4}"
    wait_for(lambda: len(service.get(path)[1]["pools"]) == 1, 1.5, "the pool in the grid")

    async def both() -> tuple[bytes, bytes]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
            async with session.get(service.url + "/healthz") as first:  # aiohttp's connection
                await first.read()
            async with session.get(service.url + path) as via_app:
                assert via_app.status == 200
                app_body = await via_app.read()
        async with aiohttp.ClientSession() as session, session.get(service.url + path) as hot:
            assert hot.status == 200
            return app_body, await hot.read()

    app_body, hot_body = asyncio.run(both())
    as_of = hot_body.index(b'"pools"')  # the two may be a feed poll apart in as_of only
    assert app_body[as_of:] == hot_body[as_of:] and app_body.startswith(b'{"as_of": "')


def test_admin_listing_and_cluster_view(service):
    service.define_pool("list-1", [("a", 3)], region="list-r", date=D3)
    status, listing = service.admin("GET", f"/v1/admin/pools?region=list-r&date={D3}")
    assert status == 200 and [p["pool_id"] for p in listing["pools"]] == ["list-1"]
    assert listing["pools"][0]["slots"][0]["capacity"] == 3
    status, cluster = service.admin("GET", "/v1/admin/cluster")
    assert status == 200 and len(cluster["shards"]) == 8
    assert all(s["state"] == "ready" and s["epoch"] >= 1 for s in cluster["shards"])
    assert {s["owner"]["worker"] for s in cluster["shards"]} == {0, 1}
    assert sum(s["event_count"] for s in cluster["shards"]) > 0


def test_health_metrics_and_openapi(service):
    assert service.get("/healthz") == (200, {"status": "ok"})
    assert service.get("/readyz")[0] == 200
    assert service.get("/v1/pools/metrics-none")[0] == 404  # a problem, counted by its code
    status, text = service.get("/metrics")
    assert status == 200 and "capsvc_http_requests_total" in text
    assert ('capsvc_http_errors_total{code="pool_not_found",route="/v1/pools/{pool_id}"}'
            in text)
    assert 'capsvc_shard_ready{shard="0"} 1.0' in text
    status, doc = service.get("/openapi.json")
    assert status == 200 and "/v1/pools/{pool_id}/reservations" in doc["paths"]


def test_processes_show_their_roles(service):
    titles = service.child_pids()
    assert {"capsvc: worker 0", "capsvc: worker 1", "capsvc: router"} <= set(titles)


def test_kill_nine_of_a_worker_loses_no_acknowledged_reservation(tmp_path):
    """Fault: SIGKILL of a worker while reservations stream in. Property: the supervisor
    restarts it; every acknowledged reservation exists afterwards; nothing is overbooked."""
    svc = Service(tmp_path / "data", workers=2, shard_count=4).start()
    try:
        pools = [f"kill-{i}" for i in range(8)]
        for p in pools:
            assert svc.define_pool(p, [("s", 60)])[0] == 201
        before = svc.child_pids()
        acked, unknown = [], 0

        async def load():
            nonlocal unknown
            async with aiohttp.ClientSession() as session:
                async def client(n):
                    nonlocal unknown
                    for i in range(40):
                        pool = pools[(n + i) % len(pools)]
                        try:
                            status, body, _ = await request(
                                session, svc.url, "POST", f"/v1/pools/{pool}/reservations",
                                {"slot_id": "s"}, {"Idempotency-Key": f"c{n}-{i}"})
                        except aiohttp.ClientError:
                            unknown += 1
                            continue
                        if status == 201:
                            acked.append(body)
                        elif status >= 500:
                            unknown += 1

                async def killer():
                    await asyncio.sleep(0.3)
                    os.kill(before["capsvc: worker 0"], signal.SIGKILL)

                await asyncio.gather(killer(), *(client(n) for n in range(20)))

        asyncio.run(load())
        wait_for(lambda: svc.child_pids().get("capsvc: worker 0") not in (
            None, before["capsvc: worker 0"]), 10, "worker 0 to be restarted")
        svc.wait_ready()
        assert len(acked) > 100
        for r in acked:
            status, now = svc.get(f"/v1/reservations/{r['reservation_id']}")
            assert status == 200 and now["status"] == "active", r
        total = 0
        for p in pools:
            slot = svc.get(f"/v1/pools/{p}")[1]["slots"][0]
            assert slot["reserved"] <= slot["capacity"]
            total += slot["reserved"]
        assert len(acked) <= total <= len(acked) + unknown
    finally:
        assert svc.stop() == 0


def test_sigterm_drains_in_flight_requests_and_exits_zero(tmp_path):
    """Planned stop under load: requests already accepted are answered, exit code is 0, and
    every acknowledged reservation is there after the next start (from the snapshot)."""
    svc = Service(tmp_path / "data", workers=2, shard_count=4).start()
    svc.define_pool("drain-1", [("s", 10_000)])
    acked = []

    async def load():
        async with aiohttp.ClientSession() as session:
            async def client():
                while svc.process.poll() is None:
                    try:
                        status, body, _ = await request(
                            session, svc.url, "POST", "/v1/pools/drain-1/reservations",
                            {"slot_id": "s"})
                    except aiohttp.ClientError:
                        return  # the router stopped accepting
                    if status == 201:
                        acked.append(body["reservation_id"])

            async def stopper():
                deadline = time.monotonic() + 20
                while len(acked) < 20:  # SIGTERM lands while the load is flowing
                    assert time.monotonic() < deadline, "no load flowed before the drain"
                    await asyncio.sleep(0.01)
                svc.process.send_signal(signal.SIGTERM)

            await asyncio.gather(stopper(), *(client() for _ in range(10)))

    asyncio.run(load())
    assert svc.stop() == 0
    assert "stopped" in svc.log_text()
    assert len(acked) > 10
    svc.start()
    try:
        pool = svc.get("/v1/pools/drain-1")[1]
        assert pool["total_reserved"] == len(acked)
        status, cluster = svc.admin("GET", "/v1/admin/cluster")
        replayed = sum(s["replayed_events"] for s in cluster["shards"])
        assert replayed == 0, "a clean stop checkpoints every pool"
    finally:
        assert svc.stop() == 0


def test_sigterms_repeated_until_the_end_change_nothing_and_the_exit_is_zero(tmp_path):
    """An impatient operator (or a second SIGTERM from a script) while the host stops: every
    repeat is ignored, to the very last moment of the process, and the exit stays clean."""
    svc = Service(tmp_path / "data", workers=1, shard_count=2).start()
    svc.define_pool("term-1", [("s", 5)])
    assert svc.request("POST", "/v1/pools/term-1/reservations", {"slot_id": "s"})[0] == 201
    deadline = time.monotonic() + 30
    signals = 0
    while svc.process.poll() is None:
        assert time.monotonic() < deadline, "the supervisor did not stop"
        svc.process.send_signal(signal.SIGTERM)
        signals += 1
        with contextlib.suppress(subprocess.TimeoutExpired):
            svc.process.wait(0.002)  # the pace of the repeats, not a wait for a condition
    assert signals > 10 and svc.stop() == 0
    svc.start()
    try:
        assert svc.get("/v1/pools/term-1")[1]["total_reserved"] == 1
    finally:
        assert svc.stop() == 0


def test_idempotent_replay_survives_a_restart(tmp_path):
    svc = Service(tmp_path / "data", workers=1, shard_count=2).start()
    try:
        svc.define_pool("restart-1", [("s", 5)])
        headers = {"Idempotency-Key": "order-1"}
        first = svc.request("POST", "/v1/pools/restart-1/reservations", {"slot_id": "s"}, headers)
        svc.kill_all()  # no clean shutdown: recovery must replay the log
        svc.start()
        again = svc.request("POST", "/v1/pools/restart-1/reservations", {"slot_id": "s"}, headers)
        assert (again[0], again[1]) == (first[0], first[1])
        assert again[2]["Idempotent-Replayed"] == "true"
        assert svc.get("/v1/pools/restart-1")[1]["total_reserved"] == 1
    finally:
        svc.stop()


def test_a_second_instance_on_the_same_data_dir_is_refused(service):
    other = Service(service.data_dir, workers=1)
    other.start(ready=False)
    assert other.process.wait(30) == 1
    assert "another capsvc instance" in other.log_text()


def test_first_start_without_a_token_generates_one(tmp_path):
    svc = Service(tmp_path / "data", workers=1, shard_count=2, admin_token=None).start()
    try:
        token_file = tmp_path / "data" / "admin-token"
        assert str(token_file) in svc.log_text()
        assert token_file.stat().st_mode & 0o777 == 0o600
        svc.admin_token = token_file.read_text().strip()
        assert len(svc.admin_token) >= 32
        assert svc.admin("GET", "/v1/admin/cluster")[0] == 200
    finally:
        svc.stop()


def test_ctrl_c_stops_every_process_cleanly(tmp_path):
    """`make run` in a terminal, then Ctrl-C: SIGINT reaches the supervisor, the router and
    the workers at once, and the supervisor then sends each child its own SIGTERM in drain
    order. Property: exit 0 and no child reported as killed during the drain (the router used
    to die of that second signal: "router exited with -15 during drain", an unclean stop)."""
    svc = Service(tmp_path / "data", workers=2, shard_count=4).start()
    os.killpg(svc.process.pid, signal.SIGINT)
    assert svc.process.wait(30) == 0, svc.log_text()[-3000:]
    assert "during drain" not in svc.log_text(), svc.log_text()[-3000:]
