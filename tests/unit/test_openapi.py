"""The OpenAPI document covers the route table exactly and is internally consistent."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from capsvc.http.openapi import openapi_document
from capsvc.http.routes import ROUTES, Route

DOC = openapi_document()
HTTP_METHODS = {"get", "put", "post", "patch", "delete", "head", "options", "trace"}

EXPECTED_STATUSES = {
    "admin_get_pool": {"200", "400", "401", "404"},
    "pool_timeline": {"200", "400", "401", "404"},
    "board": {"200", "400", "401"},
    "apply_plan": {"200", "400", "401", "409", "413", "422"},
    "export_plan": {"200", "400", "401"},
    "define_pool": {"200", "201", "400", "401", "409", "413", "422"},
    "get_pool": {"200", "400", "404"},
    "reserve": {"201", "400", "404", "409", "413", "422", "503", "504"},
    "get_reservation": {"200", "404"},  # an id capsvc could not have issued: 404 too
    "release": {"200", "404", "503"},
    "update_slot": {"200", "400", "401", "404", "409", "422"},
    "add_slot": {"201", "400", "401", "404", "409", "422"},
    "change_total_capacity": {"200", "400", "401", "404", "409", "422"},
    "pool_events": {"200", "401", "404"},
    "list_pools": {"200", "401"},
    "cluster": {"200", "401"},
    "availability": {"200", "400", "503"},
    "healthz": {"200"},
    "readyz": {"200", "400", "503"},
    "metrics": {"200"},
    "openapi": {"200"},
}


def operation(route: Route) -> dict[str, Any]:
    return DOC["paths"][route.path][route.method.lower()]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def resolve(pointer: str) -> Any:
    assert pointer.startswith("#/"), pointer
    node: Any = DOC
    for part in pointer[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_is_cached_and_openapi_3_1() -> None:
    assert openapi_document() is DOC
    assert DOC["openapi"].startswith("3.1")
    assert DOC["info"]["title"] == "capsvc"


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_every_route_is_described(route: Route) -> None:
    assert operation(route)["operationId"] == route.name


def test_no_operation_beyond_the_route_table() -> None:
    described = {(path, method.upper()) for path, item in DOC["paths"].items()
                 for method in item if method in HTTP_METHODS}
    assert described == {(r.path, r.method) for r in ROUTES}
    ids = [op["operationId"] for item in DOC["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_path_parameters_match_the_path(route: Route) -> None:
    params = [resolve(p["$ref"]) if "$ref" in p else p
              for p in operation(route).get("parameters", [])]
    in_path = {p["name"] for p in params if p["in"] == "path"}
    assert {f"{{{name}}}" for name in in_path} == {
        part for part in route.path.split("/") if part.startswith("{")}


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_statuses(route: Route) -> None:
    responses = operation(route)["responses"]
    assert EXPECTED_STATUSES[route.name] <= set(responses) - {"default"}


def test_every_ref_resolves() -> None:
    found = list(refs(DOC))
    assert found
    for pointer in found:
        assert isinstance(resolve(pointer), dict), pointer


def test_admin_routes_need_a_bearer_token() -> None:
    scheme = DOC["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for route in ROUTES:
        security = operation(route).get("security")
        if route.admin:
            assert security == [{"bearerAuth": []}], route.name
        else:
            assert not security, route.name


def test_errors_are_problem_json() -> None:
    for route in ROUTES:
        for status, response in operation(route)["responses"].items():
            if "$ref" in response:
                response = resolve(response["$ref"])
            if status == "default" or int(status) >= 400:
                assert list(response["content"]) == ["application/problem+json"], (
                    route.name, status)


def test_problem_schema() -> None:
    problem = DOC["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail", "code"}
    assert problem.get("additionalProperties", True) is not False


def test_reserve_contract() -> None:
    reserve = next(operation(r) for r in ROUTES if r.name == "reserve")
    assert "Idempotent-Replayed" in reserve["responses"]["201"]["headers"]
    headers = [p for p in reserve["parameters"] if p.get("in") == "header"]
    assert [(p["name"], p["required"]) for p in headers] == [("Idempotency-Key", False)]
    units = DOC["components"]["schemas"]["ReserveRequest"]["properties"]["units"]
    assert (units["minimum"], units["maximum"], units["default"]) == (1, 100, 1)


def test_json_serialisable() -> None:
    assert json.loads(json.dumps(DOC)) == DOC


def test_valid_openapi_3_1() -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(json.loads(json.dumps(DOC)))


def test_as_of_is_in_the_admin_pool_view_only_when_asked_for() -> None:
    """`GET /v1/admin/pools/{id}` answers `as_of` only with `?as_of=`: the spec must not
    require it (schemathesis found answers without it failing the schema)."""
    part = DOC["components"]["schemas"]["PoolAsOf"]["allOf"][1]
    assert "as_of" in part["properties"]
    assert "as_of" not in part.get("required", [])


# -- request bodies come from the Structs the server decodes them with ---------------------
JSON_BODIES = {"define_pool": "PoolDefinition", "change_total_capacity": "PoolPatch",
               "add_slot": "SlotDefinition", "update_slot": "SlotPatch",
               "reserve": "ReserveRequest"}


def test_every_json_request_body_is_generated_from_a_struct() -> None:
    from capsvc.http.openapi import _INPUT_LIMITS
    from capsvc.http.request_shapes import json_schemas, shapes

    bodies, components = json_schemas(_INPUT_LIMITS)
    struct_names = {t.__name__ for t in shapes(_INPUT_LIMITS)}
    assert set(JSON_BODIES.values()) == struct_names
    seen = {}
    for route in ROUTES:
        body = operation(route).get("requestBody")
        if body is None or "application/json" not in body["content"]:
            continue
        seen[route.name] = body["content"]["application/json"]["schema"]
    assert set(seen) == set(JSON_BODIES)
    for name, schema in seen.items():
        assert schema == bodies[JSON_BODIES[name]], name
    for name, component in components.items():
        assert DOC["components"]["schemas"][name] == component, name
        assert component["additionalProperties"] is False, name  # unknown fields: refused


def test_integers_written_with_a_zero_fraction_are_said_to_be_accepted() -> None:
    units = DOC["components"]["schemas"]["ReserveRequest"]["properties"]["units"]
    assert units["type"] == "integer" and "5.0" in units["description"]


def query_parameters(name: str) -> dict[str, dict[str, Any]]:
    route = next(r for r in ROUTES if r.name == name)
    return {p["name"]: p for p in operation(route).get("parameters", []) if p.get("in") == "query"}


@pytest.mark.parametrize("name", [r.name for r in ROUTES])
def test_no_query_string_may_be_empty(name: str) -> None:
    """`?region=` is refused (400 naming it): every string parameter says minLength >= 1 (or
    lists its values, none empty)."""
    for parameter in query_parameters(name).values():
        schema = parameter["schema"]
        if schema.get("type") == "string":
            non_empty = schema.get("minLength", 0) >= 1 or "" not in schema.get("enum", [""])
            assert non_empty, (name, parameter["name"])


def test_the_limits_the_server_enforces_are_stated() -> None:
    from capsvc.http import query_limits as q

    assert query_parameters("pool_events")["after"]["schema"]["maximum"] == q.VERSION_MAX
    assert query_parameters("pool_timeline")["before"]["schema"]["maximum"] == q.VERSION_MAX
    for name, days in (("board", q.BOARD_DAYS_MAX), ("export_plan", q.EXPORT_DAYS_MAX)):
        to = query_parameters(name)["to"]["description"]
        assert "not before `from`" in to and f"at most {days} days" in to, name
    plan = next(operation(r) for r in ROUTES if r.name == "apply_plan")["requestBody"]
    assert plan["content"]["text/csv"]["schema"]["minLength"] == 1


def test_links_lead_from_a_new_pool_to_its_reservation_and_its_release() -> None:
    define = next(operation(r) for r in ROUTES if r.name == "define_pool")
    reserve = next(operation(r) for r in ROUTES if r.name == "reserve")
    release = next(operation(r) for r in ROUTES if r.name == "release")
    assert define["responses"]["201"]["links"]["Reserve"]["operationId"] == "reserve"
    targets = {link["operationId"] for link in reserve["responses"]["201"]["links"].values()}
    assert targets == {"get_reservation", "release"}
    read_after = release["responses"]["200"]["links"]["GetReservation"]
    assert read_after["operationId"] == "get_reservation"
    ids = {link["operationId"] for item in DOC["paths"].values() for op in item.values()
           for response in op["responses"].values() for link in response.get("links", {}).values()}
    assert ids <= {r.name for r in ROUTES}


def test_a_released_reservation_reading_200_is_documented() -> None:
    read = next(operation(r) for r in ROUTES if r.name == "get_reservation")
    assert "released" in read["responses"]["200"]["description"]
