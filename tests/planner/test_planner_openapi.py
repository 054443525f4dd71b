"""The planner routes are in the contract with their statuses (tests/unit/test_openapi.py
checks the document as a whole)."""

from __future__ import annotations

import pytest

from capsvc.http.openapi import openapi_document
from capsvc.http.routes import ROUTES

DOC = openapi_document()
PLANNER_STATUSES = {
    "admin_get_pool": {"200", "400", "401", "404"},
    "pool_timeline": {"200", "400", "401", "404"},
    "board": {"200", "304", "400", "401", "503"},
    "apply_plan": {"200", "400", "401", "409", "413", "422", "503"},
    "export_plan": {"200", "400", "401", "503"},
}


@pytest.mark.parametrize("name", sorted(PLANNER_STATUSES))
def test_planner_route_is_documented_with_its_statuses(name):
    (route,) = [r for r in ROUTES if r.name == name]
    assert route.admin
    operation = DOC["paths"][route.path][route.method.lower()]
    assert operation["security"] == [{"bearerAuth": []}]
    assert PLANNER_STATUSES[name] <= set(operation["responses"])


def test_plans_take_csv_and_export_gives_csv():
    plans = DOC["paths"]["/v1/admin/plans"]["post"]
    assert list(plans["requestBody"]["content"]) == ["text/csv"]
    assert [p["name"] for p in plans["parameters"]] == ["dry_run"]
    export = DOC["paths"]["/v1/admin/plans/export"]["get"]
    assert list(export["responses"]["200"]["content"]) == ["text/csv"]


def test_as_of_is_a_documented_parameter():
    operation = DOC["paths"]["/v1/admin/pools/{pool_id}"]["get"]
    assert "as_of" in [p.get("name") for p in operation["parameters"]]
