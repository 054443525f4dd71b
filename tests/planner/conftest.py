"""One capsvc for the planner's API and browser tests (each test uses its own region), and a
few planner-shaped helpers."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from capsvc.testing.harness import Service

SLOTS = (
    ("0800-1000", "08:00", "10:00"),
    ("1000-1200", "10:00", "12:00"),
    ("1200-1400", "12:00", "14:00"),
    ("1400-1600", "14:00", "16:00"),
)


@pytest.fixture(scope="session")
def planner_service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("planner") / "data", workers=2, shard_count=4).start()
    yield svc
    assert svc.stop() == 0, svc.log_text()[-3000:]


def day_body(
    region: str, date: str, kind: str, capacity: int, total: int | None = None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "region": region,
        "date": date,
        "total_capacity": total,
        "slots": [
            {
                "slot_id": s,
                "starts_at": f"{date}T{a}:00+08:00",
                "ends_at": f"{date}T{b}:00+08:00",
                "capacity": capacity,
            }
            for s, a, b in SLOTS
        ],
    }


def http(
    svc: Service,
    method: str,
    path: str,
    body: Any = None,
    raw: bytes | None = None,
    headers: dict[str, str] | None = None,
    admin: bool = True,
) -> tuple[int, Any, Any]:
    """A plain synchronous request (usable next to Playwright's sync API, which owns the
    thread's event loop)."""
    all_headers = dict(headers or {})
    if admin:
        all_headers.update(svc.admin_headers())
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        all_headers["Content-Type"] = "application/json"
    request = urllib.request.Request(svc.url + path, data=data, method=method, headers=all_headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, payload, response_headers = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, payload, response_headers = e.code, e.read(), e.headers
    text = payload.decode()
    if "json" in (response_headers.get("Content-Type") or ""):
        return status, json.loads(text), response_headers
    return status, text, response_headers
