"""Property-based fuzzing of the public API from its own contract (`/openapi.json`) with
schemathesis: every operation, with and without valid data. Property: never a 5xx; every 4xx
is problem+json with `type`, `title`, `status`, `detail` and `code`. Skipped when schemathesis
is not installed (it is a test extra: `schemathesis>=4,<5`)."""

from __future__ import annotations

import json

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402

from capsvc.testing.harness import Service  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


@pytest.fixture(scope="module")
def fuzzed_service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("fuzz") / "data", workers=1, shard_count=4).start()
    assert svc.define_pool("fuzz-1", [("s1", 5)])[0] == 201
    yield svc
    assert svc.stop() == 0, svc.log_text()[-3000:]
    assert "unhandled error" not in svc.log_text()


def test_every_operation_answers_4xx_problems_and_never_5xx(fuzzed_service):
    schema = schemathesis.openapi.from_url(f"{fuzzed_service.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10, "the premise failed: the contract lists few operations"
    for operation in operations:

        @settings(max_examples=10, deadline=None, derandomize=True, database=None,
                  phases=(Phase.explicit, Phase.generate),  # no shrinking: bounded time
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def fuzz(case):
            _check(case, fuzzed_service)

        fuzz()


def _check(case, service: Service) -> None:
    response = case.call(base_url=service.url, headers=service.admin_headers(), timeout=10)
    status = response.status_code
    where = (case.method, case.formatted_path, status, response.text[:300])
    assert status < 500, where
    if status >= 400:
        content_type = next((v[0] if isinstance(v, list) else v
                             for k, v in response.headers.items()
                             if k.lower() == "content-type"), "")
        assert content_type.startswith("application/problem+json"), where
        body = json.loads(response.text)
        assert body["status"] == status and all(
            body.get(k) for k in ("type", "title", "detail", "code")), body
