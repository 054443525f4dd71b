"""Request bodies are defined once (`capsvc.http.request_shapes`): what `/openapi.json` says a
body may be and what the parser accepts are the same set, both ways."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from capsvc.errors import BadRequest
from capsvc.http import parsing
from capsvc.http.openapi import openapi_document
from capsvc.http.request_shapes import InputLimits, shapes

LIMITS = InputLimits()
DOC = json.loads(json.dumps(openapi_document()))


def body_validator(operation_id: str) -> jsonschema.Draft202012Validator:
    """The validator of an operation's JSON request body, as the served document states it."""
    for item in DOC["paths"].values():
        for operation in item.values():
            if isinstance(operation, dict) and operation.get("operationId") == operation_id:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                return jsonschema.Draft202012Validator({**schema, "components": DOC["components"]})
    raise AssertionError(operation_id)


def accepts(parse: Any, body: Any) -> bool:
    try:
        parse(body)
    except BadRequest as e:
        assert e.code == "invalid_field" and e.fields["field"], (e.code, e.fields)
        return False
    return True


def reserve(body: Any) -> Any:
    return parsing.parse_reserve("p1", body, None, LIMITS, "abcd", 0)


IDS = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,20}\Z")
ANY_SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-10, 10**7), st.floats(allow_nan=False),
    st.text(max_size=6),
)
RESERVE_BODIES = st.fixed_dictionaries(
    {},
    optional={
        "slot_id": st.one_of(IDS, IDS.map(lambda s: s + "\n"), st.text(max_size=5), ANY_SCALAR),
        "units": st.one_of(
            st.integers(-2, 105), st.integers(-2, 105).map(float), st.floats(0, 200), ANY_SCALAR
        ),
        "order_ref": st.one_of(
            st.none(), st.text(min_size=0, max_size=130), st.text(max_size=3).map(lambda s: s + "\n"),
            st.text(min_size=128, max_size=129), ANY_SCALAR,
        ),
        "unit": ANY_SCALAR,
    },
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=RESERVE_BODIES)
def test_reserve_the_schema_and_the_parser_accept_the_same_bodies(body):
    assert body_validator("reserve").is_valid(body) == accepts(reserve, body), body


@pytest.mark.parametrize("units", [1.0, 2e0, 100.0])
def test_an_integer_written_with_a_fraction_of_zero_is_that_integer(units):
    """JSON Schema's `integer` is a number with no fraction, however written: the spec accepts
    1.0 and so does the server."""
    assert body_validator("reserve").is_valid({"slot_id": "s1", "units": units})
    command = reserve({"slot_id": "s1", "units": units})
    assert command.units == int(units) and type(command.units) is int


@pytest.mark.parametrize("units", [1.5, 0.0, 101.0, True])
def test_a_fraction_or_an_out_of_range_integer_is_refused(units):
    assert not body_validator("reserve").is_valid({"slot_id": "s1", "units": units})
    with pytest.raises(BadRequest) as refused:
        reserve({"slot_id": "s1", "units": units})
    assert refused.value.fields["field"] == "units"


def slot(**fields: Any) -> dict[str, Any]:
    base = {"slot_id": "s1", "starts_at": "2026-12-01T08:00:00Z",
            "ends_at": "2026-12-01T10:00:00Z", "capacity": 4}
    return {**base, **fields}


def pool(**fields: Any) -> dict[str, Any]:
    return {"kind": "k", "region": "r", "date": "2026-12-01", "slots": [slot()], **fields}


@pytest.mark.parametrize(
    "body,field",
    [
        (pool(slots=[slot(), slot(slot_id="s2", capacity=2.5)]), "slots[1].capacity"),
        (pool(slots=[{**slot(), "capcity": 1}]), "slots[0].capcity"),
        (pool(slots=[{k: v for k, v in slot().items() if k != "ends_at"}]), "slots[0].ends_at"),
        (pool(slots=[slot(), "s2"]), "slots[1]"),
        (pool(slots=[slot(), slot()]), "slots[1].slot_id"),
        (pool(slots=[slot(ends_at="2026-12-01T08:00:00Z")]), "slots[0].ends_at"),
        (pool(date="2026-02-30"), "date"),
        (pool(total_capacity=1_000_001), "total_capacity"),
        (pool(slots=[slot(slot_id=f"s{i}") for i in range(97)]), "slots"),
        (pool(pool_id="other"), "pool_id"),
        (pool(kind="k\n"), "kind"),
    ],
)
def test_define_pool_names_the_dotted_field(body, field):
    with pytest.raises(BadRequest) as refused:
        parsing.parse_define_pool("p1", body, LIMITS)
    assert refused.value.code == "invalid_field"
    assert refused.value.fields["field"] == field
    assert str(refused.value).startswith(f"{field}: ")


def test_a_good_definition_and_its_whole_number_capacities():
    command = parsing.parse_define_pool(
        "p1", pool(pool_id="p1", total_capacity=10.0, slots=[slot(capacity=4.0)]), LIMITS
    )
    assert (command.total_capacity, command.slots[0].capacity) == (10, 4)
    assert body_validator("define_pool").is_valid(pool(total_capacity=10.0))


@pytest.mark.parametrize(
    "body,field",
    [({}, "capacity"), ({"capacity": None}, "capacity"), ({"open": 0}, "open"),
     ({"capacity": 1, "x": 1}, "x")],
)
def test_update_slot_refusals(body, field):
    assert not body_validator("update_slot").is_valid(body)
    with pytest.raises(BadRequest) as refused:
        parsing.parse_update_slot("p1", "s1", body, LIMITS)
    assert refused.value.fields["field"] == field


def test_change_total_needs_the_field_and_takes_null():
    assert parsing.parse_change_total("p1", {"total_capacity": None}, LIMITS).total_capacity is None
    with pytest.raises(BadRequest) as refused:
        parsing.parse_change_total("p1", {}, LIMITS)
    assert refused.value.fields["field"] == "total_capacity"


def test_configured_limits_build_their_own_shapes():
    small = InputLimits(units_max=3, capacity_max=10, slots_max=1)
    assert shapes(small) is shapes(InputLimits(3, 10, 1)) is not shapes(LIMITS)
    with pytest.raises(BadRequest):
        parsing.parse_reserve("p1", {"slot_id": "s1", "units": 4}, None, small, "abcd", 0)
    assert reserve({"slot_id": "s1", "units": 4}).units == 4


@pytest.mark.parametrize(
    "raw", [b"NaN", b'{"units": NaN}', b'{"a": 1}x', b"[" * 5000 + b"]" * 5000, b'"\xff"', b""]
)
def test_a_body_that_is_not_one_json_object_is_malformed(raw):
    with pytest.raises(BadRequest) as refused:
        parsing.json_object(raw)
    assert refused.value.code == "malformed_json"


@pytest.mark.parametrize("name", ["region", "kind"])
def test_an_empty_query_id_is_refused_naming_it(name):
    assert parsing.query_id({}, name, required=False) is None
    with pytest.raises(BadRequest) as refused:
        parsing.query_id({name: ""}, name, required=False)
    assert (refused.value.code, refused.value.fields["field"]) == ("invalid_parameter", name)


@pytest.mark.parametrize(
    "check",
    [lambda q: parsing.query_date(q, "to", required=False),
     lambda q: parsing.query_time_ms(q, "to")],
)
def test_an_empty_date_or_time_is_refused_naming_it(check):
    assert check({}) is None
    with pytest.raises(BadRequest) as refused:
        check({"to": ""})
    assert refused.value.fields["field"] == "to"


def test_the_examples_in_the_spec_are_bodies_the_server_accepts():
    from capsvc.http.openapi import BODY_EXAMPLES

    parsers = {
        "PoolDefinition": lambda b: parsing.parse_define_pool("p1", b, LIMITS),
        "PoolPatch": lambda b: parsing.parse_change_total("p1", b, LIMITS),
        "SlotDefinition": lambda b: parsing.parse_slot(b, "", LIMITS),
        "SlotPatch": lambda b: parsing.parse_update_slot("p1", "s1", b, LIMITS),
        "ReserveRequest": reserve,
    }
    assert set(BODY_EXAMPLES) == set(parsers)
    for name, example in BODY_EXAMPLES.items():
        assert accepts(parsers[name], example), name
