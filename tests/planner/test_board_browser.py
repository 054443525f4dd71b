"""The capacity board in a real headless Chromium, used as a planner would: sign in, find the
day, read the grid, change a capacity and see the cell follow, meet a refusal, close a slot,
watch a reservation arrive live, and look back in time.

Needs Debian's `chromium` and Playwright for Python (driving the system browser: no browser
download). Both are installed here when missing; the test is skipped only if that fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from capsvc.testing.harness import ADMIN_TOKEN, REPO, days_from_today
from tests.planner.conftest import day_body, http

# the first test may install chromium (apt) and playwright (pip) before it starts
# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
D2 = days_from_today(3)
D3 = days_from_today(4)
D9 = days_from_today(10)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
REGION = "ui-r"
DAY = D1
POOL = f"{REGION}:{DAY}:logistics"
CELL = f"[data-key='{POOL}|0800-1000']"


def _run(command: list[str], timeout_s: float) -> bool:
    try:
        return (
            subprocess.run(
                command,
                capture_output=True,
                timeout=timeout_s,
                env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
            ).returncode
            == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="module")
def browser(planner_service):
    """Chromium, started after the service (whose harness uses asyncio.run, which cannot run
    inside Playwright's sync API)."""
    if not Path(CHROMIUM).exists() and shutil.which("apt-get") and os.geteuid() == 0:
        _run(["apt-get", "update", "-qq"], 300)
        _run(["apt-get", "install", "-y", "-qq", "chromium", "fonts-dejavu-core"], 900)
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed and could not be installed")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "-q", "playwright"], 600)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright could not be installed")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def artifacts() -> Path:
    where = Path(
        os.environ.get("CAPSVC_TEST_ARTIFACTS")
        or Path(tempfile.gettempdir()) / "capsvc-test-artifacts"
    )
    where.mkdir(parents=True, exist_ok=True)
    return where


def seed(svc) -> None:
    for date, kind, capacity in (
        (DAY, "logistics", 10),
        (DAY, "warehouse", 120),
        (D2, "logistics", 10),
        (D2, "warehouse", 120),
    ):
        status, body, _ = http(
            svc,
            "PUT",
            f"/v1/admin/pools/{REGION}:{date}:{kind}",
            day_body(REGION, date, kind, capacity),
        )
        assert status == 201, body
    for slot, units in (("0800-1000", 3), ("1000-1200", 6), ("1200-1400", 10)):
        http(
            svc,
            "POST",
            f"/v1/pools/{POOL}/reservations",
            {"slot_id": slot, "units": units},
            admin=False,
        )
    for slot, units in (("0800-1000", 90), ("1000-1200", 60), ("1400-1600", 100)):
        for _ in range(units // 10):
            http(
                svc,
                "POST",
                f"/v1/pools/{REGION}:{DAY}:warehouse/reservations",
                {"slot_id": slot, "units": 10},
                admin=False,
            )
    http(
        svc,
        "PATCH",
        f"/v1/admin/pools/{REGION}:{D2}:logistics/slots/1400-1600",
        {"open": False},
    )


def test_a_planner_signs_in_reads_changes_and_looks_back(planner_service, browser, artifacts):
    svc = planner_service
    seed(svc)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("requestfailed", lambda r: errors.append(f"{r.url}: {r.failure}"))

    # Sign in: the page asks for the token and keeps it in this tab's session storage only.
    page.goto(f"{svc.url}/ui/")
    assert page.is_visible("#signin") and not page.is_visible("#app")
    page.fill("#token-input", "wrong-token-123456789")
    page.click("text=Sign in")
    page.wait_for_selector("#signin-error:has-text('refused')")
    page.goto(f"{svc.url}/ui/#region={REGION}&from={DAY}&to={D2}")
    page.fill("#token-input", ADMIN_TOKEN)
    page.click("text=Sign in")

    # The grid: rows per pool grouped by type, a cell per slot with reserved/capacity.
    page.wait_for_selector(f"{CELL} .nums:text-is('3/10')")
    groups = [t.lower() for t in page.locator("tr.group th").all_inner_texts()]
    assert groups == ["logistics", "warehouse"]
    assert page.locator(".board tbody th .day").count() == 4
    assert "full" in page.text_content(f"[data-key='{REGION}:{DAY}:logistics|1200-1400']")
    closed = page.locator(f"[data-key='{REGION}:{D2}:logistics|1400-1600']")
    assert "closed" in closed.get_attribute("class") and "closed" in closed.text_content()
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("Object.values(sessionStorage)") == [ADMIN_TOKEN]
    assert ADMIN_TOKEN not in page.content()
    page.screenshot(path=str(artifacts / "planner-board.png"))

    # Live: a customer books, the cell follows within a few seconds without a reload.
    http(
        svc,
        "POST",
        f"/v1/pools/{POOL}/reservations",
        {"slot_id": "0800-1000", "units": 2},
        admin=False,
    )
    page.wait_for_selector(f"{CELL} .nums:text-is('5/10')", timeout=6000)

    # Change a capacity: the server's answer is shown and the cell updates at once.
    page.click(CELL)
    assert page.input_value("#capacity-input") == "10"
    assert page.inner_text("#n-reserved") == "5"
    page.fill("#capacity-input", "20")
    page.click("#save-capacity")
    page.wait_for_selector("#answer.ok:has-text('10 → 20')")
    page.wait_for_selector(f"{CELL} .nums:text-is('5/20')", timeout=2000)

    # A refusal: lowering below what is reserved is refused, with the service's reason.
    page.fill("#capacity-input", "1")
    page.click("#save-capacity")
    page.wait_for_selector("#answer.refused:has-text('capacity_below_reserved')")
    assert "5 units reserved" in page.inner_text("#answer")
    assert page.inner_text(f"{CELL} .nums") == "5/20"

    # Close the slot: it is marked closed (pattern and word, not colour alone).
    page.click("#toggle-open")
    page.wait_for_selector(f"{CELL}.closed")
    assert "closed" in page.text_content(CELL) and page.text_content("#n-status") == "closed"
    page.screenshot(path=str(artifacts / "planner-board-editing.png"))

    # History: who changed what, and the pool as of a moment.
    page.click("#open-history")
    page.wait_for_selector("#timeline li.change:has-text('capacity of 0800-1000 10 → 20')")
    first = page.locator("#timeline li").first.inner_text()
    assert "slot 0800-1000 closed" in first and "(you)" in first
    assert page.locator("#timeline li.bookings").count() >= 1
    page.wait_for_selector("#asof-result table")  # opens on "now"
    page.locator("#timeline li.change:has-text('pool defined') button").click()
    page.wait_for_selector("#asof-result:has-text('version 1')")
    rows = page.locator("#asof-result tbody tr").first.locator("td").all_inner_texts()
    assert rows[0] == "0800-1000" and rows[2:] == ["0", "10", "open"]
    page.fill("#asof-input", "2020-01-01T00:00:00")
    page.click("#asof-form button[type=submit]")
    page.wait_for_selector("#asof-result:has-text('did not exist yet')")
    page.screenshot(path=str(artifacts / "planner-history.png"))
    page.click("#history-dialog [data-close]")

    # A new pool from the form, prefilled from a pool on the board.
    page.click("#new-pool")
    page.fill("#pool-kind", "express")
    page.click("#pool-create")
    page.wait_for_selector("tr.group th:has-text('express')")
    assert http(svc, "GET", f"/v1/pools/{REGION}:{DAY}:express", admin=False)[0] == 200

    assert not errors, errors
    if os.environ.get("CAPSVC_UPDATE_DOCS_SCREENSHOT"):
        shutil.copy(artifacts / "planner-board.png", REPO / "docs" / "planner-board.png")
    page.close()


def sign_in(page, svc, fragment: str) -> None:
    page.goto(f"{svc.url}/ui/#{fragment}")
    page.fill("#token-input", ADMIN_TOKEN)
    page.click("text=Sign in")


def test_a_planner_copies_a_day_and_sees_a_bad_plan_refused(planner_service, browser):
    svc = planner_service
    for kind in ("logistics", "warehouse"):
        http(svc, "PUT", f"/v1/admin/pools/ui-copy:{DAY}:{kind}", day_body("ui-copy", DAY, kind, 8))
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, svc, f"region=ui-copy&from={DAY}&to={DAY}")
    page.wait_for_selector(".cell")

    # Copy the day onto the next two: a dry run first, then apply.
    page.click("#copy-day")
    assert page.input_value("#copy-source") == DAY
    page.fill("#copy-from", D2)
    page.fill("#copy-to", D3)
    page.click("#copy-form button[type=submit]")
    page.wait_for_selector("#plan-report .verdict:has-text('Dry run')")
    assert "4 created" in page.inner_text("#plan-report")
    assert http(svc, "GET", f"/v1/pools/ui-copy:{D2}:logistics", admin=False)[0] == 404
    page.click("#plan-apply")
    page.wait_for_selector("#plan-report .verdict:has-text('Applied')")
    pool = http(svc, "GET", f"/v1/pools/ui-copy:{D3}:warehouse", admin=False)[1]
    assert pool["slots"][0]["starts_at"] == f"{D3}T08:00:00+08:00"
    assert pool["slots"][0]["capacity"] == 8

    # A plan with a bad line is refused whole, line by line.
    page.fill(
        "#plan-text",
        "pool_id,kind,region,date,slot_id,starts_at,ends_at,capacity,"
        f"total_capacity\nui-copy:x,k,ui-copy,{D9},s,soon,later,1,\n",
    )
    page.click("#plan-preview")
    page.wait_for_selector("#plan-report .verdict.refused")
    assert page.locator("#plan-report tbody td").all_inner_texts()[:2] == ["2", "starts_at"]
    assert page.is_disabled("#plan-apply")
    page.click("#plan-dialog [data-close]")

    # The copied days are on the board once the range shows them.
    page.fill("#to-input", D3)
    page.dispatch_event("#to-input", "change")
    page.wait_for_selector(f"[data-key='ui-copy:{D3}:warehouse|0800-1000']")
    assert not errors, errors
    page.close()
