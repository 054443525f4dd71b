"""The planner's API on a real service: a pool as of any moment, bulk plans (dry run, apply,
refusal of the whole plan), the CSV export round trip, the board's numbers, the timeline, the
CLI, and the page itself."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
import sys
import time
import urllib.parse

import pytest

from capsvc.testing.harness import ADMIN_TOKEN, REPO, days_from_today, wait_for
from tests.planner.conftest import day_body, http

# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
D2 = days_from_today(3)
D3 = days_from_today(4)
D5 = days_from_today(6)
D9 = days_from_today(10)
D31 = days_from_today(32)
pytestmark = pytest.mark.integration
CSV = {"Content-Type": "text/csv"}


def define(svc, region, date, kind="logistics", capacity=10, total=None):
    pool_id = f"{region}:{date}:{kind}"
    status, body, _ = http(
        svc, "PUT", f"/v1/admin/pools/{pool_id}", day_body(region, date, kind, capacity, total)
    )
    assert status == 201, body
    return pool_id


def reserve(svc, pool_id, slot, units=1):
    status, body, _ = http(
        svc,
        "POST",
        f"/v1/pools/{pool_id}/reservations",
        {"slot_id": slot, "units": units},
        admin=False,
    )
    assert status == 201, body
    return body


def events(svc, pool_id):
    return http(svc, "GET", f"/v1/admin/pools/{pool_id}/events")[1]["events"]


def iso(ms: int) -> str:
    moment = dt.datetime.fromtimestamp(ms // 1000, dt.UTC).replace(microsecond=ms % 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_of(svc, pool_id, stamp: str):
    return http(svc, "GET", f"/v1/admin/pools/{pool_id}?as_of={urllib.parse.quote(stamp)}")


def plan(svc, text: str, dry_run: bool):
    return http(
        svc,
        "POST",
        f"/v1/admin/plans{'?dry_run=true' if dry_run else ''}",
        raw=text.encode(),
        headers=CSV,
    )


def export(svc, region, first, last=None, kind=None):
    query = {
        "region": region,
        "from": first,
        **({"to": last} if last else {}),
        **({"kind": kind} if kind else {}),
    }
    return http(svc, "GET", f"/v1/admin/plans/export?{urllib.parse.urlencode(query)}")


# -- as of ---------------------------------------------------------------------------------
def test_a_pool_as_of_any_moment_is_rebuilt_from_its_events(planner_service):
    svc = planner_service
    pool_id = define(svc, "asof-r", D1)
    for step in (
        lambda: reserve(svc, pool_id, "0800-1000", 3),
        lambda: http(svc, "PATCH", f"/v1/admin/pools/{pool_id}/slots/0800-1000", {"capacity": 20}),
        lambda: http(svc, "PATCH", f"/v1/admin/pools/{pool_id}/slots/1000-1200", {"open": False}),
    ):
        time.sleep(0.005)  # distinct millisecond stamps
        step()
    stamps = [e["at_ms"] for e in events(svc, pool_id)]
    assert len(stamps) == 4 and stamps == sorted(stamps) and len(set(stamps)) == 4

    status, problem, _ = as_of(svc, pool_id, iso(stamps[0] - 1))
    assert (status, problem["code"]) == (404, "pool_not_found")
    status, first, _ = as_of(svc, pool_id, iso(stamps[0]))
    assert status == 200 and first["version"] == 1 and first["total_reserved"] == 0
    status, second, _ = as_of(svc, pool_id, iso(stamps[1]))
    assert second["version"] == 2 and second["slots"][0]["reserved"] == 3
    assert second["slots"][0]["capacity"] == 10 and second["as_of"] == iso(stamps[1])
    third = as_of(svc, pool_id, iso(stamps[3] - 1))[1]
    assert third["version"] == 3 and third["slots"][0]["capacity"] == 20
    assert third["slots"][1]["open"] is True
    # the same moment written with another offset
    singapore = dt.timezone(dt.timedelta(hours=8))
    moment = dt.datetime.fromtimestamp(stamps[3] / 1000 + 1, singapore)
    assert as_of(svc, pool_id, moment.strftime("%Y-%m-%dT%H:%M:%S+08:00"))[1]["version"] == 4
    now = http(svc, "GET", f"/v1/admin/pools/{pool_id}")[1]
    assert now == http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]
    assert now["slots"][1]["open"] is False and "as_of" not in now


@pytest.mark.parametrize(
    "stamp",
    [
        "yesterday",
        D1,
        f"{D1}T08:00:00",
        "2026-13-01T08:00:00Z",
        f"{D1}T08:00:00 08:00",
    ],
)
def test_a_bad_moment_is_a_400(planner_service, stamp):
    pool_id = f"asof-r:{D1}:logistics"
    status, problem, _ = http(
        planner_service, "GET", f"/v1/admin/pools/{pool_id}?as_of={stamp}".replace(" ", "%20")
    )
    assert (status, problem["code"], problem["field"]) == (400, "invalid_parameter", "as_of")


def test_as_of_needs_the_token_and_an_existing_pool(planner_service):
    svc = planner_service
    assert http(svc, "GET", "/v1/admin/pools/nope?as_of=2026-01-01T00:00:00Z")[0] == 404
    assert http(svc, "GET", "/v1/admin/pools/nope", admin=False)[0] == 401


# -- plans ---------------------------------------------------------------------------------
def test_a_plan_is_previewed_then_applied_and_applying_it_again_changes_nothing(planner_service):
    svc = planner_service
    pool_id = define(svc, "plan-r", D1, capacity=10)
    reserve(svc, pool_id, "1000-1200", 4)
    _, text, _ = export(svc, "plan-r", D1)
    lines = text.splitlines()
    lines[1] = lines[1].replace(",10,", ",25,")  # 0800-1000 raised
    lines[2] = lines[2].replace(",10,", ",4,")  # 1000-1200 lowered to what is reserved
    del lines[3:5]  # 1200-1400 and 1400-1600 not in the plan: left as they are
    lines.append(
        f"{pool_id},logistics,plan-r,{D1},1800-2000,{D1}T18:00:00+08:00,"
        f"{D1}T20:00:00+08:00,6,,"  # (an empty cut-off: the column the export wrote)
    )
    lines.append(
        f"plan-r:{D2}:warehouse,warehouse,plan-r,{D2},am,"
        f"{D2}T08:00:00+08:00,{D2}T12:00:00+08:00,100,150,30"
    )
    text = "\n".join(lines)
    version = http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]["version"]

    status, report, _ = plan(svc, text, dry_run=True)
    assert status == 200 and report["dry_run"] and report["would_apply"]
    assert report["summary"] == {
        "created": 2,
        "raised": 1,
        "lowered": 1,
        "refused": 0,
        "unchanged_pools": 0,
    }
    existing, new = report["pools"]
    assert [(c["change"], c["slot_id"], c["before"], c["after"]) for c in existing["changes"]] == [
        ("raised", "0800-1000", 10, 25),
        ("lowered", "1000-1200", 10, 4),
        ("created", "1800-2000", None, 6),
    ]
    assert existing["untouched_slots"] == ["1200-1400", "1400-1600"]
    assert new["outcome"] == "created" and new["line"] == 5
    assert http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]["version"] == version
    assert http(svc, "GET", f"/v1/pools/plan-r:{D2}:warehouse", admin=False)[0] == 404

    status, report, _ = plan(svc, text, dry_run=False)
    assert status == 200 and report["applied"], report
    assert [p["result"]["status"] for p in report["pools"]] == ["applied", "applied"]
    pool = http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]
    assert [(s["slot_id"], s["capacity"]) for s in pool["slots"]] == [
        ("0800-1000", 25),
        ("1000-1200", 4),
        ("1200-1400", 10),
        ("1400-1600", 10),
        ("1800-2000", 6),
    ]
    warehouse = http(svc, "GET", f"/v1/pools/plan-r:{D2}:warehouse", admin=False)[1]
    assert warehouse["total_capacity"] == 150 and warehouse["booking_cutoff_minutes"] == 30
    assert {e["actor"] for e in events(svc, pool_id)[-3:]} == {"admin:" + _fingerprint()}

    count = len(events(svc, pool_id))
    status, again, _ = plan(svc, text, dry_run=False)
    assert status == 200 and again["summary"]["unchanged_pools"] == 2
    assert [p["result"]["status"] for p in again["pools"]] == ["unchanged", "unchanged"]
    assert len(events(svc, pool_id)) == count


def test_a_plan_with_bad_rows_is_refused_whole_with_a_report_per_row(planner_service):
    svc = planner_service
    pool_id = define(svc, "bad-plan-r", D1, capacity=10)
    _, text, _ = export(svc, "bad-plan-r", D1)
    lines = text.splitlines()
    lines[1] = lines[1].replace(",10,", ",99,")  # a good change...
    lines.append(
        f"bad-plan-r:new,logistics,bad-plan-r,{D1},s,{D1}T08:00:00Z,"
        f"{D1}T09:00:00Z,5,,"
    )  # ...and a good new pool
    lines.append(
        f"bad-plan-r:x,logistics,bad-plan-r,{D31},s,{D1}T08:00:00Z,"
        f"{D1}T07:00:00Z,5,,"
    )  # ends before it starts
    lines.append(
        f"bad-plan-r:y,logistics,bad-plan-r,{D1},s,{D1}T08:00:00Z,"
        f"{D1}T09:00:00Z,lots,,"
    )
    lines.append("too,few,columns")
    for dry_run in (True, False):
        status, problem, headers = plan(svc, "\n".join(lines), dry_run)
        assert (status, problem["code"]) == (422, "invalid_field")
        assert headers["Content-Type"].startswith("application/problem+json")
        assert [(e["line"], e["field"]) for e in problem["errors"]] == [
            (7, "ends_at"),
            (8, "capacity"),
            (9, None),
        ]
        assert problem["detail"] == "the plan has 3 invalid lines; nothing was applied"
    status, problem, _ = plan(svc, "\n".join([*lines[:-3], lines[-1]]), dry_run=False)
    assert problem["detail"] == "the plan has 1 invalid line; nothing was applied"
    assert http(svc, "GET", "/v1/pools/bad-plan-r:new", admin=False)[0] == 404
    slot = http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]["slots"][0]
    assert slot["capacity"] == 10


def test_a_change_the_service_would_refuse_refuses_the_whole_plan(planner_service):
    svc = planner_service
    pool_id = define(svc, "refuse-r", D1, capacity=10)
    reserve(svc, pool_id, "0800-1000", 3)
    _, text, _ = export(svc, "refuse-r", D1)
    lines = text.splitlines()
    lines[1] = lines[1].replace(",10,", ",2,")  # below the 3 reserved
    lines[2] = lines[2].replace(",10,", ",12,")  # fine on its own
    lines.append(
        f"refuse-r:other,logistics,refuse-r,{D1},s,{D1}T08:00:00Z,"
        f"{D1}T09:00:00Z,5,,"
    )
    text = "\n".join(lines)
    status, report, _ = plan(svc, text, dry_run=True)
    assert status == 200 and report["would_apply"] is False
    refused = report["pools"][0]["changes"][0]
    assert (refused["change"], refused["code"], refused["line"]) == (
        "refused",
        "capacity_below_reserved",
        2,
    )
    assert report["summary"]["refused"] == 1 and report["pools"][0]["outcome"] == "refused"

    status, problem, _ = plan(svc, text, dry_run=False)
    assert (status, problem["code"]) == (409, "capacity_below_reserved")
    assert problem["detail"].startswith("1 change of the plan would be refused (first: line 2: ")
    assert (
        "nothing was applied" in problem["detail"] and problem["pools"][0]["outcome"] == "refused"
    )
    assert http(svc, "GET", "/v1/pools/refuse-r:other", admin=False)[0] == 404
    slots = http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]["slots"]
    assert [s["capacity"] for s in slots[:2]] == [10, 10]


def test_plans_need_the_token_and_a_bounded_body(planner_service):
    svc = planner_service
    status, problem, _ = http(svc, "POST", "/v1/admin/plans", raw=b"x", admin=False)
    assert (status, problem["code"]) == (401, "unauthorized")
    status, problem, _ = http(svc, "POST", "/v1/admin/plans", raw=b"x" * (4 * 1024 * 1024 + 1))
    assert (status, problem["code"]) == (413, "body_too_large")
    status, problem, _ = http(svc, "POST", "/v1/admin/plans?dry_run=yes", raw=b"x")
    assert (status, problem["field"]) == (400, "dry_run")


# -- export --------------------------------------------------------------------------------
def test_export_round_trips_through_a_plan(planner_service):
    svc = planner_service
    a = define(svc, "export-r", D1, capacity=7, total=20)
    define(svc, "export-r", D2, kind="warehouse", capacity=50)
    define(svc, "export-r", D5)  # outside the range
    define(svc, "export-other", D1)
    status, text, headers = export(svc, "export-r", D1, D3)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert "attachment" in headers["Content-Disposition"]
    rows = text.splitlines()
    assert rows[0] == ("pool_id,kind,region,date,slot_id,starts_at,ends_at,capacity,total_capacity,"
                       "booking_cutoff_minutes")
    assert len(rows) == 1 + 4 + 4 and rows[1].startswith(f"{a},logistics,export-r,{D1},")
    assert rows[1].endswith(",7,20,0") and rows[5].endswith(",50,,0")

    status, report, _ = plan(svc, text, dry_run=True)
    assert status == 200 and report["summary"]["unchanged_pools"] == 2
    assert all(not p["changes"] for p in report["pools"])

    assert plan(svc, text.replace(",7,20", ",9,20"), dry_run=False)[0] == 200
    assert export(svc, "export-r", D1, D3)[1] == text.replace(",7,20", ",9,20")
    assert export(svc, "export-r", D2, kind="warehouse")[1].count("\n") == 5


@pytest.mark.parametrize(
    "query",
    [
        f"from={D1}",
        "region=r",
        f"region=r&from={D2}&to={D1}",
        f"region=r&from=2026-01-01&to={D31}",
    ],
)
def test_export_refuses_a_bad_range(planner_service, query):
    status, problem, _ = http(planner_service, "GET", f"/v1/admin/plans/export?{query}")
    assert (status, problem["code"]) == (400, "invalid_parameter")


# -- board and timeline --------------------------------------------------------------------
def test_the_board_shows_every_pool_of_the_days_with_its_numbers(planner_service):
    svc = planner_service
    a = define(svc, "board-r", D1, capacity=10)
    define(svc, "board-r", D2, kind="warehouse", capacity=30)
    define(svc, "board-r", D9)
    path = f"/v1/admin/board?region=board-r&from={D1}&to={D3}"

    def board():
        return http(svc, "GET", path)

    wait_for(lambda: len(board()[1]["pools"]) == 2, 2, "both pools on the board")
    status, body, headers = board()
    assert body["dates"] == [D1, D2, D3]
    assert "board-r" in body["regions"] and body["days"] == [
        D1,
        D2,
        D9,
    ]
    slot = body["pools"][0]["slots"][0]
    assert {k: slot[k] for k in ("capacity", "reserved", "available", "open")} == {
        "capacity": 10,
        "reserved": 0,
        "available": 10,
        "open": True,
    }
    etag = headers["ETag"]
    assert http(svc, "GET", path, headers={"If-None-Match": etag})[0] == 304
    for matching in (f"W/{etag}", f'"other", {etag}', "*"):  # weak, a list, any (RFC 9110)
        assert http(svc, "GET", path, headers={"If-None-Match": matching})[0] == 304, matching
    assert http(svc, "GET", path, headers={"If-None-Match": '"other"'})[0] == 200

    reserve(svc, a, "0800-1000", 4)
    wait_for(
        lambda: board()[1]["pools"][0]["slots"][0]["reserved"] == 4,
        2,
        "the reservation on the board",
    )
    assert board()[2]["ETag"] != etag
    kinds = http(svc, "GET", path + "&kind=warehouse")[1]["pools"]
    assert [p["kind"] for p in kinds] == ["warehouse"]
    assert http(svc, "GET", f"/v1/admin/board?from={D1}")[1]["pools"] == []
    assert http(svc, "GET", f"/v1/admin/board?region=r&from={D1}&to={D31}")[0] == 400
    assert http(svc, "GET", path, admin=False)[0] == 401


def test_the_timeline_groups_bookings_per_minute_newest_first(planner_service):
    svc = planner_service
    pool_id = define(svc, "timeline-r", D1, capacity=50)
    held = [reserve(svc, pool_id, "0800-1000", 2) for _ in range(5)]
    http(svc, "DELETE", f"/v1/reservations/{held[0]['reservation_id']}", admin=False)
    http(svc, "PATCH", f"/v1/admin/pools/{pool_id}/slots/0800-1000", {"capacity": 60})
    status, page, _ = http(svc, "GET", f"/v1/admin/pools/{pool_id}/timeline")
    assert status == 200 and page["version"] == 8 and page["next_before"] is None
    kinds = [e["kind"] for e in page["entries"]]
    assert kinds[0] == "change" and kinds[-1] == "change" and "bookings" in kinds
    newest = page["entries"][0]
    assert newest["summary"] == "capacity of 0800-1000 50 → 60"
    assert newest["actor"] == "admin:" + _fingerprint()
    bookings = [e for e in page["entries"] if e["kind"] == "bookings"]
    assert sum(b["reservations"] for b in bookings) == 5
    assert sum(b["released_units"] for b in bookings) == 2
    assert len(bookings) <= 2  # within one minute, or split across a minute boundary

    older = http(svc, "GET", f"/v1/admin/pools/{pool_id}/timeline?limit=3")[1]
    assert (older["from_version"], older["to_version"], older["next_before"]) == (6, 8, 6)
    rest = http(svc, "GET", f"/v1/admin/pools/{pool_id}/timeline?limit=3&before=6")[1]
    assert (rest["from_version"], rest["to_version"], rest["next_before"]) == (3, 5, 3)
    assert http(svc, "GET", "/v1/admin/pools/nope/timeline")[0] == 404


# -- the page and the CLI ------------------------------------------------------------------
def test_the_page_is_served_with_no_secret_in_it(planner_service):
    svc = planner_service
    status, page, headers = http(svc, "GET", "/ui/", admin=False)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert ADMIN_TOKEN not in page and '<script src="board.js"' in page
    for name, kind in (("board.js", "text/javascript"), ("board.css", "text/css")):
        status, text, headers = http(svc, "GET", f"/ui/{name}", admin=False)
        assert (
            status == 200 and headers["Content-Type"].startswith(kind) and ADMIN_TOKEN not in text
        )
    assert "http" not in _external_urls(http(svc, "GET", "/ui/board.js", admin=False)[1])
    assert http(svc, "GET", "/ui/nothing.js", admin=False)[0] == 404
    assert http(svc, "GET", "/ui", admin=False)[1].startswith("<!doctype html>")  # redirected


def _external_urls(script: str) -> str:
    return " ".join(w for w in script.split() if "://" in w)


def _fingerprint() -> str:
    return hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()[:10]


def cli(svc, *args, token=ADMIN_TOKEN):
    env = {**os.environ, "CAPSVC_ADMIN_TOKEN": token}
    return subprocess.run(
        [sys.executable, "-m", "capsvc", "plan", *args, "--url", svc.url],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_the_cli_exports_previews_and_applies_plans(planner_service, tmp_path):
    svc = planner_service
    pool_id = define(svc, "cli-r", D1, capacity=10)
    reserve(svc, pool_id, "0800-1000", 5)
    out = tmp_path / "plan.csv"
    done = cli(svc, "export", "--region", "cli-r", "--from", D1, "-o", str(out))
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    out.write_text(text.replace(",10,", ",15,", 1))
    done = cli(svc, "apply", str(out), "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "DRY RUN" in done.stdout and "10 -> 15 (raised)" in done.stdout
    assert "would apply: yes" in done.stdout
    assert http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]["slots"][0]["capacity"] == 10
    done = cli(svc, "apply", str(out))
    assert done.returncode == 0 and "(applied)" in done.stdout
    assert http(svc, "GET", f"/v1/pools/{pool_id}", admin=False)[1]["slots"][0]["capacity"] == 15

    out.write_text(text.replace(",10,", ",1,", 1))
    done = cli(svc, "apply", str(out))
    assert done.returncode == 1 and "REFUSED (capacity_below_reserved)" in done.stdout
    assert "(applied)" not in done.stdout and "(REFUSED, nothing written)" in done.stdout
    # the service answered (with a refusal): 1, not 2, and one line
    today = dt.date.today()
    backwards = [(today + dt.timedelta(days=d)).isoformat() for d in (5, 0)]
    done = cli(svc, "export", "--region", "cli-r", "--from", backwards[0], "--to", backwards[1])
    assert done.returncode == 1 and done.stderr.startswith("capsvc plan: export failed (400)")
    assert len(done.stderr.splitlines()) == 1, done.stderr
    out.write_text(text + "broken,row\n")
    done = cli(svc, "apply", str(out), "--dry-run")
    assert done.returncode == 1 and "line 6" in done.stdout
    done = cli(svc, "apply", str(out), token="wrong-token-0000000000")
    assert done.returncode == 2 and "refused" in done.stderr
