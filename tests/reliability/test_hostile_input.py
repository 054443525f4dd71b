"""Hostile input the bad-input table (tests/integration/test_bad_input.py) does not cover: NaN
and huge numbers, ids with `..`, `/` and control characters, 10 KB of text, huge headers; admin
tokens that must never reach the logs; file names that must never derive from request data.
Each bad request gets a 4xx problem+json (never a 500) and changes nothing."""

from __future__ import annotations

import json
import re
import socket
import uuid
from typing import Any, NamedTuple

import pytest

from capsvc.testing.harness import Service, days_from_today

# Dates relative to today: slots in the past take no reservation.
D1 = days_from_today(2)
pytestmark = pytest.mark.integration
POOL, SLOT = "hostile-1", "s1"
WRONG_TOKEN = "wrong-token-Zq8v1XkP0aLm4sR7"
TEN_KB = "x" * 10_240


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("hostile") / "data", workers=1, shard_count=4)
    svc.config_path.write_text(svc.config_path.read_text().replace('level = "INFO"',
                                                                   'level = "DEBUG"'))
    svc.start()
    assert svc.define_pool(POOL, [(SLOT, 5)])[0] == 201
    assert svc.request("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": SLOT})[0] == 201
    yield svc
    assert svc.stop() == 0, svc.log_text()[-3000:]


class Case(NamedTuple):
    method: str
    path: str
    raw: bytes | None = None
    headers: dict[str, str] | None = None


def reserve(raw: str) -> Case:
    return Case("POST", f"/v1/pools/{POOL}/reservations", raw.encode())


def admin(method: str, path: str, raw: str) -> Case:
    return Case(method, path, raw.encode(), {"admin": "yes"})


def slot(capacity: str) -> str:
    return (f'{{"kind": "k", "region": "r", "date": "{D1}", "slots": [{{"slot_id": "n", '
            f'"starts_at": "{D1}T08:00:00Z", "ends_at": "{D1}T09:00:00Z", '
            f'"capacity": {capacity}}}]}}')


CASES = {
    "units-NaN": reserve('{"slot_id": "s1", "units": NaN}'),
    "units-Infinity": reserve('{"slot_id": "s1", "units": Infinity}'),
    "units-1e309": reserve('{"slot_id": "s1", "units": 1e309}'),
    "units-10**30": reserve('{"slot_id": "s1", "units": ' + str(10**30) + "}"),
    "units-5000-digits": reserve('{"slot_id": "s1", "units": ' + "9" * 5000 + "}"),
    "units-negative-zero-float": reserve('{"slot_id": "s1", "units": -0.0}'),
    "total-capacity-NaN": admin("PATCH", f"/v1/admin/pools/{POOL}", '{"total_capacity": NaN}'),
    "total-capacity-1e309": admin("PATCH", f"/v1/admin/pools/{POOL}",
                                  '{"total_capacity": 1e309}'),
    "slot-capacity-10**30": admin("PUT", "/v1/admin/pools/hostile-new", slot(str(10**30))),
    "slot-capacity-NaN": admin("PUT", "/v1/admin/pools/hostile-new", slot("NaN")),
    "update-capacity--1e309": admin("PATCH", f"/v1/admin/pools/{POOL}/slots/{SLOT}",
                                    '{"capacity": -1e309}'),
    "pool-id-dotdot-slash": Case("GET", "/v1/pools/..%2F..%2Fshards"),
    "pool-id-dot-dot": Case("GET", "/v1/pools/%2E%2E"),
    "pool-id-backslash": Case("GET", "/v1/pools/..%5C..%5Cx"),
    "define-dotdot-slash": admin("PUT", "/v1/admin/pools/..%2Fescape", slot("1")),
    "pool-id-NUL": Case("GET", "/v1/pools/a%00b"),
    "pool-id-escape-char": Case("GET", "/v1/pools/a%1B%5B31mb"),
    "pool-id-newline": Case("POST", "/v1/pools/a%0Ab/reservations", b'{"slot_id": "s1"}'),
    "reservation-id-dotdot": Case("DELETE", "/v1/reservations/..%2F~1.abcd"),
    "slot-id-control-char": reserve('{"slot_id": "s\\u0007"}'),
    "slot-id-NUL": reserve('{"slot_id": "s\\u0000"}'),
    "order-ref-escape-sequence": reserve('{"slot_id": "s1", "order_ref": "\\u001b[2J"}'),
    "order-ref-10KB": reserve(json.dumps({"slot_id": "s1", "order_ref": TEN_KB})),
    "kind-10KB": admin("PUT", "/v1/admin/pools/hostile-new", slot("1").replace('"k"',
                                                                                f'"{TEN_KB}"')),
    "slot-id-10KB": reserve(json.dumps({"slot_id": TEN_KB})),
    "idempotency-key-non-ascii": Case("POST", f"/v1/pools/{POOL}/reservations",
                                      b'{"slot_id": "s1"}', {"Idempotency-Key": "cl\u00e9"}),
    "many-headers": Case("POST", f"/v1/pools/{POOL}/reservations", b'{"slot_id": "s1"',
                         {f"X-H{i}": "v" * 40 for i in range(150)}),
}
# Requests whose head exceeds aiohttp's 8190-byte line/field limit, or the router front's
# 16 KiB header limit, are refused by the HTTP parser before any capsvc code runs: a 4xx, but
# text/plain instead of problem+json. Tracked as known gaps of the router front.
HUGE = {
    "idempotency-key-10KB": Case("POST", f"/v1/pools/{POOL}/reservations", b'{"slot_id": "s1"}',
                                 {"Idempotency-Key": "k" * 10_240}),
    "pool-id-10KB": Case("GET", f"/v1/pools/{'a' * 10_240}"),
    "query-region-10KB": Case("GET", f"/v1/availability?region={TEN_KB}&date={D1}"),
    "header-20KB-hot-route": Case("GET", f"/v1/pools/{POOL}", None, {"X-Big": "a" * 20_000}),
    "header-9KB-admin-route": Case("GET", "/v1/admin/cluster", None, {"admin": "yes",
                                                                      "X-Big": "a" * 9_000}),
}


def _send(service: Service, case: Case) -> tuple[int, Any, dict[str, str]]:
    headers = dict(case.headers or {})
    if headers.pop("admin", None):
        headers.update(service.admin_headers())
    return service.request(case.method, case.path, None, headers, case.raw)


def _state(service: Service) -> tuple[Any, Any]:
    pool = service.get(f"/v1/pools/{POOL}")
    events = service.admin("GET", f"/v1/admin/pools/{POOL}/events")
    return pool, events


def _assert_problem(status: int, body: Any, headers: dict[str, str]) -> None:
    assert 400 <= status < 500, (status, body)
    assert headers.get("Content-Type", "").startswith("application/problem+json"), (status, body)
    assert isinstance(body, dict) and body["status"] == status and body["code"], body
    assert all(body.get(k) for k in ("type", "title", "detail")), body


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_refused_with_a_problem_and_changes_nothing(service, name):
    before = _state(service)
    status, body, headers = _send(service, CASES[name])
    _assert_problem(status, body, headers)
    assert _state(service) == before
    assert service.get("/v1/pools/hostile-new")[0] == 404


@pytest.mark.parametrize("name", sorted(HUGE))
def test_huge_request_heads_are_refused_with_a_problem(service, name):
    before = _state(service)
    try:
        status, body, headers = _send(service, HUGE[name])
    finally:
        assert _state(service) == before
    _assert_problem(status, body, headers)


def test_huge_request_heads_are_refused_with_a_4xx_and_change_nothing(service):
    before = _state(service)
    for name, case in HUGE.items():
        status, body, _ = _send(service, case)
        assert status in (400, 413, 414, 431), (name, status, body)
    assert _state(service) == before


def test_admin_tokens_never_reach_the_logs(service):
    """Admin calls with the right token, failed ones with a wrong token, a malformed header:
    the service's whole log output (DEBUG level) mentions neither token."""
    assert service.admin("GET", "/v1/admin/cluster")[0] == 200
    assert service.admin("PATCH", f"/v1/admin/pools/{POOL}", {"total_capacity": None})[0] == 200
    for header in (f"Bearer {WRONG_TOKEN}", WRONG_TOKEN, f"Basic {WRONG_TOKEN}"):
        status, body, _ = service.request("GET", "/v1/admin/cluster",
                                          headers={"Authorization": header})
        assert (status, body["code"]) == (401, "unauthorized")
    status, body, _ = service.request("PUT", f"/v1/admin/pools/{POOL}", {"x": 1},
                                      {"Authorization": f"Bearer {WRONG_TOKEN}"})
    assert status == 401
    text = service.log_text()
    assert "DEBUG" in text or "INFO" in text, "the premise failed: nothing was logged"
    for secret in (service.admin_token, WRONG_TOKEN):
        assert secret not in text
    events = service.admin("GET", f"/v1/admin/pools/{POOL}/events")[1]["events"]
    assert all(service.admin_token not in json.dumps(e) for e in events)


LONG_ID = "L" + "o" * 126 + "g"
ODD_IDS = ("a..", "a...b", "x.:..:.", "nul", "con.txt", "a:b:c", "A-.-.-", LONG_ID)
ALLOWED = re.compile(
    r"^(shards/[0-9]{3}\.sqlite3(-wal|-journal|-shm)?|capsvc\.lock|admin-token|"
    r"run/(worker-[0-9]{3}|router)\.sock|run/[a-z]+\.prom)$")


def test_file_names_never_derive_from_request_data(service):
    """Pools with odd ids (dots, colons, reserved device names, 128 characters) and
    reservations on them create no file other than shards/NNN.sqlite3 (and SQLite's own
    companions) in the data directory, and no name on disk contains a pool id."""
    for pool_id in ODD_IDS:
        status, body = service.define_pool(pool_id, [("s", 3)])
        assert status == 201, (pool_id, body)
        assert service.request("POST", f"/v1/pools/{pool_id}/reservations",
                               {"slot_id": "s"}, {"Idempotency-Key": f"k-{pool_id}"})[0] == 201
    names = sorted(str(p.relative_to(service.data_dir)) for p in service.data_dir.rglob("*")
                   if not p.is_dir())
    assert names, "the premise failed: no files"
    assert [n for n in names if not ALLOWED.match(n)] == []
    assert not [n for n in names for pool_id in ODD_IDS if pool_id in n]


@pytest.mark.parametrize("lines", [
    ["Idempotency-Key: {first}", "Idempotency-Key: {second}"],
    ["Idempotency-Key: {first},{second}"],
])
def test_a_repeated_or_listed_idempotency_key_is_refused_naming_the_header(service, lines):
    """Two Idempotency-Key lines (or a comma list) on one reservation: 400 naming the header,
    and nothing is reserved under either key (it used to take the first silently)."""
    first, second = (f"dup-{uuid.uuid4().hex[:12]}" for _ in range(2))
    lines = [line.format(first=first, second=second) for line in lines]
    body = json.dumps({"slot_id": SLOT}).encode()
    head = (f"POST /v1/pools/{POOL}/reservations HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/json\r\n" + "".join(f"{ln}\r\n" for ln in lines)
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as conn:
        conn.sendall(head + body)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.split()[1] == b"400", answer
    problem = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert (problem["code"], problem["field"]) == ("invalid_parameter", "Idempotency-Key")
    for key in (first, second):  # neither key was used: each makes a new one
        made = service.request("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": SLOT},
                               {"Idempotency-Key": key})
        assert made[0] == 201 and "Idempotent-Replayed" not in made[2]
        path = f"/v1/reservations/{made[1]['reservation_id']}"
        assert service.request("DELETE", path)[0] == 200  # leave the capacity as it was
