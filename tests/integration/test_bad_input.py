"""Bad input on every public route: problem+json naming the field, and nothing changed."""

from __future__ import annotations

import copy
import json
from typing import Any, NamedTuple

import pytest

from capsvc.testing.harness import Service, days_from_today, pool_body

# Dates relative to today: slots in the past take no reservation.
D0 = days_from_today(1)
D1 = days_from_today(2)
pytestmark = pytest.mark.integration

POOL = "bad-input-1"  # every bad request below targets this pool; it must never change
SCRATCH = "bad-input-scratch"  # only for known bugs whose wrong answer changes the pool
SLOT = "s1"
RID = "{rid}"  # replaced by the id of the baseline reservation on POOL
MISSING = object()  # a field value meaning "leave the field out"
PROBLEM_MEMBERS = ("type", "title", "status", "detail", "code")


@pytest.fixture(scope="module")
def baseline(service):
    """POOL with one reservation, and what GET and the event log say before any bad request."""
    assert service.define_pool(POOL, [(SLOT, 5), ("s2", 5)])[0] == 201
    assert service.define_pool(SCRATCH, [(SLOT, 5)])[0] == 201
    status, reservation, _ = service.request(
        "POST", f"/v1/pools/{POOL}/reservations", {"slot_id": SLOT, "units": 2})
    assert status == 201
    return {"rid": reservation["reservation_id"], "pool": pool_state(service),
            "events": events_page(service)}


def pool_state(service: Service) -> Any:
    status, pool = service.get(f"/v1/pools/{POOL}")
    assert status == 200
    return pool


def events_page(service: Service) -> Any:
    status, page = service.admin("GET", f"/v1/admin/pools/{POOL}/events")
    assert status == 200
    return page


# -- the table -------------------------------------------------------------------------------
class Case(NamedTuple):
    method: str
    path: str
    status: int
    code: str
    field: str | None = None  # the `field` member the problem must carry
    body: Any = None
    raw: bytes | None = None
    headers: dict[str, str] | None = None


def changed(base: dict[str, Any], **fields: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for name, value in fields.items():
        if value is MISSING:
            out.pop(name, None)
        else:
            out[name] = value
    return out


def define(**fields: Any) -> dict[str, Any]:
    return changed(pool_body([(SLOT, 5), ("s2", 5)]), **fields)


def define_slot(index: int, **fields: Any) -> dict[str, Any]:
    body = define()
    body["slots"][index] = changed(body["slots"][index], **fields)
    return body


NEW_SLOT = {"slot_id": "new", "starts_at": f"{D1}T20:00:00Z",
            "ends_at": f"{D1}T22:00:00Z", "capacity": 3}


def new_slot(**fields: Any) -> dict[str, Any]:
    return changed(NEW_SLOT, **fields)


def reserve(**fields: Any) -> dict[str, Any]:
    return changed({"slot_id": SLOT, "units": 1, "order_ref": "o-1"}, **fields)


def case(case_id: str, *args: Any, bug: str | None = None, **kwargs: Any):
    marks = [pytest.mark.xfail(strict=True, reason=bug)] if bug else []
    return pytest.param(Case(*args, **kwargs), id=case_id, marks=marks)


BAD_IDS = (("leading-dash", "-bad"), ("space", "a%20b"), ("129-chars", "a" * 129),
           ("tilde", "x~y"))
DEEP_NESTING = b"[" * 5000 + b"]" * 5000  # valid JSON, ~10 KB


def not_an_object(route: str, method: str, path: str) -> list:
    """Bodies that are not a JSON object: 400 malformed_json."""
    bodies = (("truncated-json", b'{"slot_id": '), ("json-array", b"[1, 2]"),
              ("json-string", b'"text"'), ("json-null", b"null"), ("empty-body", b""),
              ("not-utf8", b'{"slot_id": "\xff"}'))
    cases = [case(f"{route}/{name}", method, path, 400, "malformed_json", raw=raw)
             for name, raw in bodies]
    cases.append(case(f"{route}/deeply-nested-array", method, path, 400, "malformed_json",
                      raw=DEEP_NESTING))
    return cases


def bad_path_ids(route: str, method: str, template: str, field: str, body: Any = None) -> list:
    """`template` has one `{}` where the id goes: 400 invalid_parameter naming it."""
    return [case(f"{route}/{field}-{name}", method, template.format(bad), 400,
                 "invalid_parameter", field, body=body) for name, bad in BAD_IDS]


def too_large(route: str, method: str, path: str, body: Any) -> list:
    raw = json.dumps(body).encode()
    assert 65536 < len(raw) < 80_000, len(raw)
    return [case(f"{route}/body-over-64KiB", method, path, 413, "body_too_large", raw=raw)]


DEFINE = f"/v1/admin/pools/{POOL}"
DEFINE_CASES = [
    *not_an_object("define-pool", "PUT", DEFINE),
    *bad_path_ids("define-pool", "PUT", "/v1/admin/pools/{}", "pool_id", body=define()),
    *too_large("define-pool", "PUT", DEFINE,
               define(slots=define()["slots"] * 300)),  # a big slot list
    *[case(f"define-pool/{name}", "PUT", DEFINE, 422, "invalid_field", field, body=body)
      for name, field, body in (
          ("unknown-field", "capcity", define(capcity=5)),
          ("pool-id-differs", "pool_id", define(pool_id="other")),
          ("missing-kind", "kind", define(kind=MISSING)),
          ("kind-not-a-string", "kind", define(kind=7)),
          ("region-bad-id", "region", define(region="-north")),
          ("missing-date", "date", define(date=MISSING)),
          ("date-month-13", "date", define(date="2026-13-01")),
          ("date-tomorrow", "date", define(date="tomorrow")),
          ("date-feb-30", "date", define(date="2026-02-30")),
          ("total-capacity-negative", "total_capacity", define(total_capacity=-1)),
          ("total-capacity-over-max", "total_capacity", define(total_capacity=1_000_001)),
          ("total-capacity-string", "total_capacity", define(total_capacity="10")),
          ("total-capacity-float", "total_capacity", define(total_capacity=10.5)),
          ("missing-slots", "slots", define(slots=MISSING)),
          ("slots-an-object", "slots", define(slots={"s1": 5})),
          ("slots-null", "slots", define(slots=None)),
          ("97-slots", "slots", changed(pool_body([(f"s{i}", 1) for i in range(97)]))),
          ("slot-not-an-object", "slots[1]", define(slots=[define()["slots"][0], "s2"])),
          ("slot-unknown-field", "slots[0].capcity", define_slot(0, capcity=5)),
          ("slot-id-null", "slots[0].slot_id", define_slot(0, slot_id=None)),
          ("slot-id-missing", "slots[0].slot_id", define_slot(0, slot_id=MISSING)),
          ("slot-id-list", "slots[0].slot_id", define_slot(0, slot_id=["s1"])),
          ("slot-id-bad", "slots[1].slot_id", define_slot(1, slot_id="a b")),
          ("duplicate-slot-ids", "slots[1].slot_id", define_slot(1, slot_id=SLOT)),
          ("capacity-float", "slots[1].capacity", define_slot(1, capacity=2.5)),
          ("capacity-bool", "slots[1].capacity", define_slot(1, capacity=True)),
          ("capacity-string", "slots[1].capacity", define_slot(1, capacity="5")),
          ("capacity-negative", "slots[1].capacity", define_slot(1, capacity=-1)),
          ("capacity-over-max", "slots[1].capacity", define_slot(1, capacity=1_000_001)),
          ("capacity-missing", "slots[0].capacity", define_slot(0, capacity=MISSING)),
          ("starts-at-no-offset", "slots[0].starts_at",
           define_slot(0, starts_at=f"{D1}T08:00:00")),
          ("ends-at-no-offset", "slots[0].ends_at",
           define_slot(0, ends_at=f"{D1}T23:00:00")),
          ("starts-at-month-13", "slots[0].starts_at",
           define_slot(0, starts_at="2026-13-01T08:00:00Z")),
          ("starts-at-tomorrow", "slots[0].starts_at", define_slot(0, starts_at="tomorrow")),
          ("starts-at-date-only", "slots[0].starts_at", define_slot(0, starts_at=D1)),
          ("starts-at-number", "slots[0].starts_at", define_slot(0, starts_at=1764547200)),
          ("ends-at-equals-starts-at", "slots[0].ends_at",
           define_slot(0, ends_at=f"{D1}T00:00:00+08:00")),
          ("ends-at-before-starts-at", "slots[1].ends_at",
           define_slot(1, ends_at=f"{D1}T00:59:59+08:00")),
          ("ends-at-equal-in-other-offset", "slots[0].ends_at",
           define_slot(0, ends_at=f"{D0}T16:00:00Z")),
      )],
]

TOTAL = f"/v1/admin/pools/{POOL}"
TOTAL_CASES = [
    *not_an_object("change-total", "PATCH", TOTAL),
    *bad_path_ids("change-total", "PATCH", "/v1/admin/pools/{}", "pool_id",
                  body={"total_capacity": 10}),
    *too_large("change-total", "PATCH", TOTAL, {"total_capacity": 10, "pad": "x" * 70_000}),
    *[case(f"change-total/{name}", "PATCH", TOTAL, 422, "invalid_field", field, body=body)
      for name, field, body in (
          ("empty-object", "total_capacity", {}),
          ("unknown-field", "capcity", {"capcity": 10}),
          ("negative", "total_capacity", {"total_capacity": -1}),
          ("over-max", "total_capacity", {"total_capacity": 1_000_001}),
          ("string", "total_capacity", {"total_capacity": "10"}),
          ("float", "total_capacity", {"total_capacity": 10.5}),
          ("bool", "total_capacity", {"total_capacity": False}),
          ("list", "total_capacity", {"total_capacity": [10]}),
      )],
]

ADD_SLOT = f"/v1/admin/pools/{POOL}/slots"
ADD_SLOT_CASES = [
    *not_an_object("add-slot", "POST", ADD_SLOT),
    *bad_path_ids("add-slot", "POST", "/v1/admin/pools/{}/slots", "pool_id", body=NEW_SLOT),
    *too_large("add-slot", "POST", ADD_SLOT, new_slot(pad="x" * 70_000)),
    *[case(f"add-slot/{name}", "POST", ADD_SLOT, 422, "invalid_field", field, body=body)
      for name, field, body in (
          ("unknown-field", "capcity", new_slot(capcity=3)),
          ("slot-id-missing", "slot_id", new_slot(slot_id=MISSING)),
          ("slot-id-null", "slot_id", new_slot(slot_id=None)),
          ("slot-id-bad", "slot_id", new_slot(slot_id="x~y")),
          ("slot-id-129-chars", "slot_id", new_slot(slot_id="a" * 129)),
          ("capacity-string", "capacity", new_slot(capacity="3")),
          ("capacity-float", "capacity", new_slot(capacity=3.5)),
          ("capacity-bool", "capacity", new_slot(capacity=True)),
          ("capacity-negative", "capacity", new_slot(capacity=-1)),
          ("capacity-over-max", "capacity", new_slot(capacity=1_000_001)),
          ("capacity-missing", "capacity", new_slot(capacity=MISSING)),
          ("starts-at-missing", "starts_at", new_slot(starts_at=MISSING)),
          ("starts-at-no-offset", "starts_at", new_slot(starts_at=f"{D1}T20:00:00")),
          ("ends-at-no-offset", "ends_at", new_slot(ends_at=f"{D1}T22:00:00")),
          ("starts-at-month-13", "starts_at", new_slot(starts_at="2026-13-01T20:00:00Z")),
          ("starts-at-tomorrow", "starts_at", new_slot(starts_at="tomorrow")),
          ("ends-at-equals-starts-at", "ends_at", new_slot(ends_at=NEW_SLOT["starts_at"])),
          ("ends-at-before-starts-at", "ends_at", new_slot(ends_at=f"{D1}T19:00:00Z")),
      )],
    *[case(f"add-slot/{name}", "POST", f"/v1/admin/pools/{SCRATCH}/slots", 422,
           "invalid_field", "starts_at", body=new_slot(slot_id=f"lenient-{name}", starts_at=ts))
      for name, ts in (("starts-at-hour-only", f"{D1}T20+00:00"),
                       ("starts-at-iso-week-date", "2026-W49-2T20:00:00Z"))],
]

UPDATE_SLOT = f"/v1/admin/pools/{POOL}/slots/{SLOT}"
UPDATE_SLOT_CASES = [
    *not_an_object("update-slot", "PATCH", UPDATE_SLOT),
    *bad_path_ids("update-slot", "PATCH", "/v1/admin/pools/{}/slots/" + SLOT, "pool_id",
                  body={"capacity": 6}),
    *bad_path_ids("update-slot", "PATCH", f"/v1/admin/pools/{POOL}/slots/{{}}", "slot_id",
                  body={"capacity": 6}),
    *too_large("update-slot", "PATCH", UPDATE_SLOT, {"capacity": 6, "pad": "x" * 70_000}),
    *[case(f"update-slot/{name}", "PATCH", UPDATE_SLOT, 422, "invalid_field", field, body=body)
      for name, field, body in (
          ("empty-object", "capacity", {}),
          ("unknown-field", "capcity", {"capcity": 6}),
          ("capacity-string", "capacity", {"capacity": "6"}),
          ("capacity-float", "capacity", {"capacity": 6.5}),
          ("capacity-bool", "capacity", {"capacity": True}),
          ("capacity-negative", "capacity", {"capacity": -1}),
          ("capacity-over-max", "capacity", {"capacity": 1_000_001}),
          ("open-string", "open", {"open": "false"}),
          ("open-int", "open", {"open": 0}),
          ("open-list", "open", {"capacity": 6, "open": [True]}),
      )],
    *[case(f"update-slot/{name}", "PATCH", UPDATE_SLOT, 422, "invalid_field", field,
           body=body)
      for name, field, body in (("capacity-null", "capacity", {"capacity": None}),
                                ("open-null", "open", {"open": None}))],
]

RESERVE = f"/v1/pools/{POOL}/reservations"
RESERVE_CASES = [
    *not_an_object("reserve", "POST", RESERVE),
    *bad_path_ids("reserve", "POST", "/v1/pools/{}/reservations", "pool_id", body=reserve()),
    *too_large("reserve", "POST", RESERVE, reserve(order_ref="x" * 70_000)),
    *[case(f"reserve/{name}", "POST", RESERVE, 422, "invalid_field", field, body=body)
      for name, field, body in (
          ("unknown-field", "unit", reserve(unit=1)),
          ("slot-id-missing", "slot_id", reserve(slot_id=MISSING)),
          ("slot-id-null", "slot_id", reserve(slot_id=None)),
          ("slot-id-number", "slot_id", reserve(slot_id=1)),
          ("slot-id-list", "slot_id", reserve(slot_id=[SLOT])),
          ("slot-id-bad", "slot_id", reserve(slot_id="-s1")),
          ("units-string", "units", reserve(units="1")),
          ("units-float", "units", reserve(units=1.5)),  # 1.0 is 1
          ("units-bool", "units", reserve(units=True)),
          ("units-null", "units", reserve(units=None)),
          ("units-0", "units", reserve(units=0)),
          ("units-101", "units", reserve(units=101)),
          ("units-negative", "units", reserve(units=-1)),
          ("order-ref-129-chars", "order_ref", reserve(order_ref="x" * 129)),
          ("order-ref-empty", "order_ref", reserve(order_ref="")),
          ("order-ref-number", "order_ref", reserve(order_ref=42)),
          ("order-ref-control-char", "order_ref", reserve(order_ref="a\tb")),
      )],
    *[case(f"reserve/idempotency-key-{name}", "POST", RESERVE, 400, "invalid_parameter",
           "Idempotency-Key", body=reserve(), headers={"Idempotency-Key": key})
      for name, key in (("256-chars", "k" * 256), ("with-space", "order 1"), ("empty", ""))],
    *[case(f"reserve/{name}", "POST", f"/v1/pools/{SCRATCH}/reservations", 422,
           "invalid_field", "order_ref", body=reserve(order_ref=ref))
      for name, ref in (("order-ref-trailing-newline", "o-1\n"),
                        ("order-ref-129-chars-ending-in-newline", "x" * 128 + "\n"))],
]

RESERVATION = f"/v1/reservations/{RID}"
BAD_RESERVATION_IDS = (
    ("no-separator", POOL), ("number-not-hex", f"{POOL}~zz.abcd"),
    ("nonce-too-short", f"{POOL}~1.abc"), ("nonce-uppercase", f"{POOL}~1.ABCD"),
    ("no-nonce", f"{POOL}~1"), ("pool-leading-dash", "-bad~1.abcd"),
    ("pool-space", "a%20b~1.abcd"), ("pool-129-chars", "a" * 129 + "~1.abcd"),
    ("two-separators", "x~y~1.abcd"),
)
RESERVATION_CASES = [
    # an id capsvc could not have issued names no reservation (README: 404)
    *[case(f"{verb.lower()}-reservation/{name}", verb, f"/v1/reservations/{rid}", 404,
           "reservation_not_found")
      for verb in ("GET", "DELETE") for name, rid in BAD_RESERVATION_IDS],
    *too_large("release", "DELETE", RESERVATION, {"pad": "x" * 70_000}),
]

GET_POOL_CASES = bad_path_ids("get-pool", "GET", "/v1/pools/{}", "pool_id")

AVAILABILITY_CASES = [
    case(f"availability/{name}", "GET", f"/v1/availability{query}", 400, "invalid_parameter",
         field)
    for name, query, field in (
        ("no-query", "", "region"),
        ("no-region", f"?date={D1}", "region"),
        ("empty-region", f"?region=&date={D1}", "region"),
        ("bad-region", f"?region=-north&date={D1}", "region"),
        ("no-date", "?region=sg-north", "date"),
        ("date-month-13", "?region=sg-north&date=2026-13-01", "date"),
        ("date-tomorrow", "?region=sg-north&date=tomorrow", "date"),
        ("date-short-day", "?region=sg-north&date=2026-12-1", "date"),
        ("date-trailing-newline", f"?region=sg-north&date={D1}%0A", "date"),
        ("bad-kind", f"?region=sg-north&date={D1}&kind=a%20b", "kind"),
    )
]

EVENTS = f"/v1/admin/pools/{POOL}/events"
EVENTS_CASES = [
    *bad_path_ids("events", "GET", "/v1/admin/pools/{}/events", "pool_id"),
    *[case(f"events/{name}", "GET", f"{EVENTS}?{query}", 400, "invalid_parameter", field)
      for name, query, field in (
          ("limit-0", "limit=0", "limit"),
          ("limit-abc", "limit=abc", "limit"),
          ("limit-empty", "limit=", "limit"),
          ("limit-negative", "limit=-1", "limit"),
          ("limit-over-page-max", "limit=1001", "limit"),
          ("limit-float", "limit=1.5", "limit"),
          ("after-negative", "after=-1", "after"),
          ("after-abc", "after=abc", "after"),
      )],
    *[case(f"events/{name}", "GET", f"{EVENTS}?{query}", 400, "invalid_parameter", field)
      for name, query, field in (("limit-superscript-two", "limit=%C2%B2", "limit"),
                                 ("after-superscript-two", "after=%C2%B2", "after"))],
]

ROUTING_CASES = [
    case("routing/unknown-route", "GET", "/v1/nope", 404, "not_found"),
    case("routing/pools-without-id", "GET", "/v1/pools", 404, "not_found"),
    case("routing/unknown-pool-subroute", "GET", f"/v1/pools/{POOL}/nope", 404, "not_found"),
    case("routing/trailing-slash", "GET", f"/v1/pools/{POOL}/", 404, "not_found"),
    case("routing/put-pool", "PUT", f"/v1/pools/{POOL}", 405, "method_not_allowed",
         body=define()),
    case("routing/delete-pool", "DELETE", f"/v1/pools/{POOL}", 405, "method_not_allowed"),
    case("routing/delete-admin-pool", "DELETE", DEFINE, 405, "method_not_allowed"),
    case("routing/get-reservations-list", "GET", RESERVE, 405, "method_not_allowed"),
    case("routing/post-reservation", "POST", RESERVATION, 405, "method_not_allowed",
         body=reserve()),
    case("routing/post-availability", "POST", "/v1/availability", 405, "method_not_allowed"),
    case("routing/delete-slot", "DELETE", UPDATE_SLOT, 405, "method_not_allowed"),
]

CASES = [*DEFINE_CASES, *TOTAL_CASES, *ADD_SLOT_CASES, *UPDATE_SLOT_CASES, *RESERVE_CASES,
         *RESERVATION_CASES, *GET_POOL_CASES, *AVAILABILITY_CASES, *EVENTS_CASES,
         *ROUTING_CASES]


# -- the tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("c", CASES)
def test_bad_request_is_refused_with_a_problem_and_changes_nothing(service, baseline, c: Case):
    path = c.path.replace(RID, baseline["rid"])
    headers = {**(service.admin_headers() if path.startswith("/v1/admin/") else {}),
               **(c.headers or {})}
    before = pool_state(service)
    status, problem, response_headers = service.request(
        c.method, path, c.body, headers, c.raw)
    assert (status, problem_code(problem)) == (c.status, c.code), problem
    assert response_headers["Content-Type"].startswith("application/problem+json")
    assert isinstance(problem, dict) and all(problem.get(k) for k in PROBLEM_MEMBERS), problem
    assert problem["status"] == status
    if c.field is not None:
        assert problem.get("field") == c.field, problem
        assert c.field in problem["detail"], problem
    assert pool_state(service) == before


def problem_code(problem: Any) -> Any:
    return problem.get("code") if isinstance(problem, dict) else problem


def test_nothing_was_changed_by_the_rejected_requests(service, baseline):
    """Runs after the table (definition order): the pool and its event log are as before."""
    assert pool_state(service) == baseline["pool"]
    assert events_page(service) == baseline["events"]
    status, reservation = service.get(f"/v1/reservations/{baseline['rid']}")
    assert (status, reservation["status"], reservation["units"]) == (200, "active", 2)


@pytest.mark.parametrize(
    "method,path,allowed",
    [
        ("PUT", f"/v1/pools/{POOL}", {"GET", "HEAD", "OPTIONS"}),
        ("POST", "/v1/availability", {"GET", "HEAD", "OPTIONS"}),
        ("GET", f"/v1/pools/{POOL}/reservations", {"POST", "OPTIONS"}),
        ("DELETE", DEFINE, {"GET", "HEAD", "PATCH", "PUT", "OPTIONS"}),
    ],
)
def test_a_405_names_the_allowed_methods_and_options_answers_them(
    service, baseline, method, path, allowed
):
    headers = service.admin_headers() if path.startswith("/v1/admin/") else {}
    before = pool_state(service)
    status, problem, response_headers = service.request(method, path, None, headers)
    assert (status, problem_code(problem)) == (405, "method_not_allowed")
    assert set(response_headers["Allow"].split(", ")) == allowed
    status, body, response_headers = service.request("OPTIONS", path, None, headers)
    assert status == 204 and not body
    assert set(response_headers["Allow"].split(", ")) == allowed
    assert pool_state(service) == before


def test_head_answers_every_public_get_route_as_get_does_without_a_body(service, baseline):
    day = service.get(f"/v1/pools/{POOL}")[1]["date"]
    admin = service.admin_headers()
    for path, headers in (
        (f"/v1/pools/{POOL}", {}),
        (f"/v1/reservations/{baseline['rid']}", {}),
        (f"/v1/availability?region=x&date={day}", {}),
        ("/healthz", {}),
        ("/openapi.json", {}),
        (DEFINE, admin),
    ):
        got = service.request("GET", path, None, headers)
        head = service.request("HEAD", path, None, headers)
        assert head[0] == got[0] == 200, (path, head, got[0])
        assert not head[1], path  # no body
        assert head[2]["Content-Type"] == got[2]["Content-Type"], path
