"""Booking cut-offs, slot times that belong to their pool, and refusals that replay, through a
real service (the shared one, with pools of our own; restarts get a service of their own)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from capsvc.testing.harness import SOON, Service, wait_for

pytestmark = pytest.mark.integration
FRESH_S = 5  # the grid follows writes within milliseconds; this bounds the wait when green


def _stamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pool_starting_at(starts: dt.datetime, cutoff: int, region: str,
                      capacity: int = 5) -> dict[str, Any]:
    """A pool of one slot `s`, an hour long from `starts` (UTC), on the start's date."""
    return {
        "kind": "van", "region": region, "date": starts.astimezone(dt.UTC).date().isoformat(),
        "booking_cutoff_minutes": cutoff,
        "slots": [{"slot_id": "s", "starts_at": _stamp(starts),
                   "ends_at": _stamp(starts + dt.timedelta(hours=1)), "capacity": capacity}],
    }


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _bookable(service: Service, region: str, date: str) -> dict[str, bool]:
    status, grid = service.get(f"/v1/availability?region={region}&date={date}")
    assert status == 200, grid
    return {p["pool_id"]: p["slots"][0]["bookable"] for p in grid["pools"]}


def _reserve(service: Service, pool_id: str, body: dict, key: str | None = None):
    headers = {} if key is None else {"Idempotency-Key": key}
    return service.request("POST", f"/v1/pools/{pool_id}/reservations", body, headers)


# -- booking cut-off ------------------------------------------------------------------------
def test_a_slot_past_its_cut_off_refuses_reservations_but_not_planners_or_releases(service):
    starts = _now() + dt.timedelta(hours=2)
    date = starts.date().isoformat()
    closed = _pool_starting_at(starts, 180, "cut-r")  # closed an hour ago
    still_open = _pool_starting_at(starts, 60, "cut-r")  # closes in an hour
    assert service.admin("PUT", "/v1/admin/pools/cut-closed", closed)[0] == 201
    status, pool = service.admin("PUT", "/v1/admin/pools/cut-open", still_open)
    assert status == 201 and pool["booking_cutoff_minutes"] == 60
    assert service.admin("PUT", "/v1/admin/pools/cut-open", still_open)[0] == 200
    status, problem = service.admin("PUT", "/v1/admin/pools/cut-open",
                                    {**still_open, "booking_cutoff_minutes": 30})
    assert (status, problem["code"]) == (409, "pool_exists")

    status, problem, _ = _reserve(service, "cut-closed", {"slot_id": "s"})
    assert (status, problem["code"]) == (409, "booking_closed")
    assert "180 minutes before it starts" in problem["detail"]
    status, made, _ = _reserve(service, "cut-open", {"slot_id": "s", "units": 2})
    assert status == 201
    wait_for(lambda: _bookable(service, "cut-r", date) == {"cut-closed": False,
                                                           "cut-open": True},
             FRESH_S, "the grid to show the cut-off")
    # planners still shape the closed slot, and releases still work
    status, pool = service.admin("PATCH", "/v1/admin/pools/cut-closed/slots/s", {"capacity": 9})
    assert status == 200 and pool["slots"][0]["capacity"] == 9
    assert service.request("DELETE", f"/v1/reservations/{made['reservation_id']}")[0] == 200


def test_a_started_slot_is_never_bookable_even_with_cut_off_0(service):
    starts = _now() - dt.timedelta(minutes=10)
    assert service.admin("PUT", "/v1/admin/pools/cut-started",
                         _pool_starting_at(starts, 0, "cut-s"))[0] == 201
    status, problem, _ = _reserve(service, "cut-started", {"slot_id": "s"})
    assert (status, problem["code"]) == (409, "booking_closed")
    wait_for(lambda: _bookable(service, "cut-s", starts.date().isoformat())
             == {"cut-started": False}, FRESH_S, "the grid to show the started slot")


def test_the_grid_shows_a_slot_closing_with_no_write_at_all(service):
    closes = _now() + dt.timedelta(seconds=4)
    body = _pool_starting_at(closes + dt.timedelta(minutes=60), 60, "cut-g")
    assert service.admin("PUT", "/v1/admin/pools/cut-soon", body)[0] == 201
    date = body["date"]
    wait_for(lambda: _bookable(service, "cut-g", date) == {"cut-soon": True}, FRESH_S,
             "the new pool in the grid")
    time.sleep(max(0.0, (closes - dt.datetime.now(dt.UTC)).total_seconds()))
    # no write happened since: the grid compares the closing instant with the clock itself
    wait_for(lambda: _bookable(service, "cut-g", date) == {"cut-soon": False}, 1,
             "the grid to show the slot closed at its cut-off")
    status, problem, _ = _reserve(service, "cut-soon", {"slot_id": "s"})
    assert (status, problem["code"]) == (409, "booking_closed")


# -- slot times belong to their pool ----------------------------------------------------------
_NEXT_DAY = (dt.date.fromisoformat(SOON) + dt.timedelta(days=1)).isoformat()
_NEXT_YEAR = f"{int(SOON[:4]) + 1}{SOON[4:]}"


@pytest.mark.parametrize(
    ("name", "starts_at", "ends_at", "field"),
    [
        ("ok", f"{SOON}T08:00:00+08:00", f"{SOON}T09:00:00+08:00", None),
        ("another-year", "2030-01-01T08:00:00Z", "2030-01-01T09:00:00Z", "slots[0].starts_at"),
        # the date is read in the start's own offset, whatever day it is in UTC
        ("day-before-in-utc", f"{SOON}T00:30:00+01:00", f"{SOON}T01:30:00+01:00", None),
        ("day-after-in-utc", f"{SOON}T23:30:00-02:00", f"{SOON}T23:45:00-02:00", None),
        ("utc-date-only", f"{_NEXT_DAY}T00:30:00+01:00", f"{_NEXT_DAY}T01:00:00+01:00",
         "slots[0].starts_at"),
        ("exactly-24-hours", f"{SOON}T08:00:00Z", f"{_NEXT_DAY}T08:00:00Z", None),
        ("24-hours-and-a-minute", f"{SOON}T08:00:00Z", f"{_NEXT_DAY}T08:01:00Z",
         "slots[0].ends_at"),
        ("a-year-long", f"{SOON}T08:00:00Z", f"{_NEXT_YEAR}T08:00:00Z", "slots[0].ends_at"),
    ],
    ids=lambda value: value if isinstance(value, str) and "T" not in value else "",
)
def test_a_slot_must_start_on_its_pools_date_and_last_at_most_24_hours(
    service, name, starts_at, ends_at, field
):
    body = {"kind": "van", "region": "slot-rule", "date": SOON,
            "slots": [{"slot_id": "s", "starts_at": starts_at, "ends_at": ends_at,
                       "capacity": 1}]}
    status, answer = service.admin("PUT", f"/v1/admin/pools/slot-rule-{name}", body)
    if field is None:
        assert status == 201, answer
    else:
        assert (status, answer["code"], answer["field"]) == (422, "invalid_field", field)


def test_an_added_slot_must_start_on_its_pools_date(service):
    assert service.define_pool("slot-rule-add", [("a", 1)], region="slot-rule")[0] == 201
    other_day = {"slot_id": "b", "starts_at": "2030-01-01T08:00:00Z",
                 "ends_at": "2030-01-01T09:00:00Z", "capacity": 1}
    status, problem = service.admin("POST", "/v1/admin/pools/slot-rule-add/slots", other_day)
    assert (status, problem["code"], problem["field"]) == (422, "invalid_field", "starts_at")
    same_day = {**other_day, "starts_at": f"{SOON}T08:00:00Z", "ends_at": f"{SOON}T09:00:00Z"}
    assert service.admin("POST", "/v1/admin/pools/slot-rule-add/slots", same_day)[0] == 201


# -- refusals replay ---------------------------------------------------------------------------
def _events(service: Service, pool_id: str) -> list[str]:
    return [e["type"] for e in service.admin("GET", f"/v1/admin/pools/{pool_id}/events")[1][
        "events"]]


def test_a_keyed_refusal_replays_even_once_capacity_is_free(service):
    assert service.define_pool("replay-1", [("s", 1)])[0] == 201
    body = {"slot_id": "s", "units": 2, "order_ref": "o-1"}
    status, first, headers = _reserve(service, "replay-1", body, "replay-k1")
    assert (status, first["code"], first["available_units"]) == (409, "capacity_exhausted", 1)
    assert "Idempotent-Replayed" not in headers
    status, again, headers = _reserve(service, "replay-1", body, "replay-k1")
    assert (status, again) == (409, first) and headers["Idempotent-Replayed"] == "true"
    assert service.admin("PATCH", "/v1/admin/pools/replay-1/slots/s", {"capacity": 10})[0] == 200
    status, later, headers = _reserve(service, "replay-1", body, "replay-k1")
    assert (status, later) == (409, first) and headers["Idempotent-Replayed"] == "true"
    status, problem, _ = _reserve(service, "replay-1", {**body, "units": 1}, "replay-k1")
    assert (status, problem["code"]) == (422, "idempotency_key_reused")
    # the same body with another key is decided afresh, and now fits
    assert _reserve(service, "replay-1", body, "replay-k2")[0] == 201
    assert service.get("/v1/pools/replay-1")[1]["total_reserved"] == 2
    assert _events(service, "replay-1") == [
        "PoolDefined", "ReservationRefused", "SlotCapacityChanged", "CapacityReserved"]


def test_a_closed_slot_refusal_binds_its_key_and_a_refusal_without_a_key_costs_nothing(service):
    assert service.define_pool("replay-2", [("s", 5)])[0] == 201
    assert service.admin("PATCH", "/v1/admin/pools/replay-2/slots/s", {"open": False})[0] == 200
    for _ in range(3):
        status, problem, _ = _reserve(service, "replay-2", {"slot_id": "s"})
        assert (status, problem["code"]) == (409, "slot_closed")
    status, problem, _ = _reserve(service, "replay-2", {"slot_id": "nope"}, "replay-k3")
    assert (status, problem["code"]) == (404, "slot_not_found")  # binds nothing
    assert _events(service, "replay-2") == ["PoolDefined", "SlotClosed"]
    status, first, _ = _reserve(service, "replay-2", {"slot_id": "s"}, "replay-k4")
    assert (status, first["code"]) == (409, "slot_closed")
    assert service.admin("PATCH", "/v1/admin/pools/replay-2/slots/s", {"open": True})[0] == 200
    status, again, headers = _reserve(service, "replay-2", {"slot_id": "s"}, "replay-k4")
    assert (status, again, headers["Idempotent-Replayed"]) == (409, first, "true")
    assert _reserve(service, "replay-2", {"slot_id": "nope"}, "replay-k3")[0] == 404


def test_a_refusal_still_replays_after_a_restart_and_after_a_crash(tmp_path):
    svc = Service(tmp_path / "data").start()
    try:
        assert svc.define_pool("restart-1", [("s", 1)])[0] == 201
        body = {"slot_id": "s", "units": 3}
        status, first, _ = _reserve(svc, "restart-1", body, "restart-k1")
        assert (status, first["code"]) == (409, "capacity_exhausted")
        assert svc.admin("PATCH", "/v1/admin/pools/restart-1/slots/s", {"capacity": 9})[0] == 200
        assert svc.stop() == 0  # a clean stop: the pool comes back from its snapshot
        svc.start()
        status, again, headers = _reserve(svc, "restart-1", body, "restart-k1")
        assert (status, again, headers["Idempotent-Replayed"]) == (409, first, "true")
        svc.admin("PATCH", "/v1/admin/pools/restart-1/slots/s", {"capacity": 0})
        status, second, _ = _reserve(svc, "restart-1", body, "restart-k2")
        assert (status, second["code"]) == (409, "capacity_exhausted")
        svc.kill_all()  # a crash: the refusal after the snapshot comes back from the log
        svc.start()
        svc.admin("PATCH", "/v1/admin/pools/restart-1/slots/s", {"capacity": 9})
        for key, answer in (("restart-k1", first), ("restart-k2", second)):
            status, again, headers = _reserve(svc, "restart-1", body, key)
            assert (status, again, headers["Idempotent-Replayed"]) == (409, answer, "true")
        assert svc.get("/v1/pools/restart-1")[1]["total_reserved"] == 0
    finally:
        if svc.process is not None and svc.process.poll() is None:
            assert svc.stop() == 0, svc.log_text()[-3000:]
    assert "unhandled error" not in svc.log_text(), svc.log_text()[-3000:]
