"""The open-loop frontier (`python -m load.frontier`) for two seconds at a low multiplier against
a real capsvc: every request type of each profile's mix is sent and measured, nothing fails,
and each step gets an SLA verdict and the run a headline and its reports (load/README.md).
"""

from __future__ import annotations

import json

import pytest

from capsvc.testing.harness import ADMIN_TOKEN, Service
from load import frontier, openmix
from load.profiles import PROFILES, rates
from load.traffic import METHODS

pytestmark = pytest.mark.integration

ROWS = [f"{METHODS[name]} {name}" for name in openmix.TYPES]


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = Service(tmp_path_factory.mktemp("frontier") / "data", workers=2,
                      shard_count=8).start()
    yield service
    assert service.stop() == 0


@pytest.mark.parametrize("profile", ["default", "flash-sale"])
def test_a_short_frontier_measures_every_request_type_and_judges_the_sla(
        service, tmp_path, profile):
    # No warm-up: the first planner edit is due at the start, so it is recorded.
    code = frontier.main(["--host", service.url, "--admin-token", ADMIN_TOKEN,
                          "--profile", profile, "--multipliers", "5", "--seconds", "2",
                          "--warmup", "0", "--results-dir", str(tmp_path)])
    assert code in (0, 1)  # the SLA verdict may go either way on a busy machine
    (report,) = tmp_path.glob(f"frontier-{profile}-*.json")
    assert tmp_path.joinpath(report.stem + ".md").read_text().startswith("# SLA frontier")
    run = json.loads(report.read_text())
    (step,) = run["steps"]
    rows = {row["name"]: row for row in step["types"]}
    assert list(rows) == ROWS
    for name, row in rows.items():
        assert row["requests"] > 0, (name, step["counts"])
        assert 0 < row["p50_ms"] <= row["p99_ms"] <= row["p999_ms"], row
    assert step["failures"] == 0, {n: r["reasons"] for n, r in rows.items() if r["reasons"]}
    assert step["total"]["requests"] == sum(r["requests"] for r in rows.values())
    assert step["counts"]["reserved"] > 0 and step["counts"]["planner_edits"] >= 1

    assert step["offered_rps"] == pytest.approx(rates(PROFILES[profile], 5).total)
    assert step["delivered_rps"] > 0.5 * step["offered_rps"]
    assert step["generator"]["ms_per_request"] > 0 and step["capsvc"] is None  # --host
    assert isinstance(step["sla"]["passed"], bool)
    assert step["sla"]["passed"] == (not step["sla"]["problems"])
    assert run["frontier"]["multiplier"] == (5 if step["sla"]["passed"] else None)
    assert run["headline"].startswith(f"SLA frontier ({profile}):")

    status, listing = service.admin("GET", "/v1/admin/pools")
    assert status == 200 and any(p["total_reserved"] > 0 for p in listing["pools"])


def _step(multiplier: float, passed: bool) -> dict:
    return {"multiplier": multiplier,
            "sla": {"passed": passed, "problems": [] if passed else ["p99 too high"]}}


def test_the_frontier_is_the_highest_multiplier_below_the_first_failure():
    steps = [_step(10, True), _step(20, True), _step(30, False), _step(40, True)]
    summary = frontier.frontier(steps)
    assert summary["multiplier"] == 20 and summary["first_failure"] == 30
    assert summary["passed_above_failure"] == [40]
    assert "20x" in frontier.headline("default", summary)
    assert frontier.frontier([_step(10, False)])["multiplier"] is None
    assert frontier.frontier([_step(10, True)])["first_failure"] is None
    assert frontier.parse_multipliers("30,10,20,10") == [10, 20, 30]
