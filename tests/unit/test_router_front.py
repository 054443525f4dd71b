"""The router's front (`capsvc.router.front`): the grid's query check, its answer's bytes, and
its pipelining, on the worker's connection class."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from urllib.parse import parse_qs

import pytest

from capsvc.config import Config
from capsvc.errors import BadRequest
from capsvc.http.lean import LeanRequest
from capsvc.http.route_match import RouteMatcher
from capsvc.router import front as front_module
from capsvc.router.front import FRONT_ROUTES, RouterFront, rfc3339
from capsvc.router.read_model import ReadModel
from tests.unit.test_read_model import _answer

DAY = "2026-12-01"


VALID = [
    (b"region=r&date=2026-12-01", ("r", DAY, None)),
    (b"date=2026-12-01&region=r", ("r", DAY, None)),
    (b"region=r&date=2026-12-01&kind=van", ("r", DAY, "van")),
    (b"region=r%31&date=2026-12-01", ("r1", DAY, None)),
    (b"region=r&date=2026-12-01&x=1", ("r", DAY, None)),  # others are ignored
    (b"region=r&region=s&date=2026-12-01", ("r", DAY, None)),  # the first counts
    (b"region=r&date=2026-12-01&", ("r", DAY, None)),
]
INVALID = [
    (b"region=r", "date"),
    (b"date=2026-12-01", "region"),
    (b"region=r&date=2026-13-01", "date"),
    (b"region=&date=2026-12-01", "region"),
    (b"region=r&date=", "date"),
    (b"region=r r&date=2026-12-01", "region"),
    (b"region=r&date=2026-12-01&kind=%20", "kind"),
    (b"", "region"),
    (b"region", "region"),
    (b"region=r;date=2026-12-01", "region"),
]


@pytest.mark.parametrize(("query", "parsed"), VALID)
def test_a_valid_availability_query_is_parsed_and_remembered(query, parsed):
    for _ in range(2):  # the first call parses, the second is remembered
        assert front_module.availability_query(query) == parsed


@pytest.mark.parametrize(("query", "field"), INVALID)
def test_an_invalid_availability_query_is_refused_naming_the_parameter(query, field):
    for _ in range(2):  # refusals are not remembered: each is refused again
        with pytest.raises(BadRequest) as refused:
            front_module.availability_query(query)
        assert (refused.value.code, refused.value.fields["field"]) == ("invalid_parameter", field)
    assert query not in front_module._grid_queries


def test_remembered_queries_are_bounded(monkeypatch):
    monkeypatch.setattr(front_module, "GRID_QUERIES_MAX", 8)
    for i in range(50):
        front_module.availability_query(b"region=q%d&date=2026-12-01" % i)
        assert len(front_module._grid_queries) <= 8


class _Topology:
    def clients(self):
        return [SimpleNamespace(name="w0")]


def _front(model: ReadModel) -> RouterFront:
    state = SimpleNamespace(
        topology=_Topology(),
        model=model,
        config=Config(),
        requests=_Metrics(),
        latency=_Metrics(),
        errors=_Metrics(),
        resends=_Metrics(),
        upstream_lines=b"",
        upstream_timeout_s=6.0,
    )
    return RouterFront(state, lambda: None)


def _model() -> ReadModel:
    model = ReadModel(shard_count=1)
    rows = [
        [
            f"p{i}",
            "van" if i % 2 else "bike",
            "r",
            DAY,
            3,
            None,
            0,
            [
                ["a", f"{DAY}T08:00:00Z", f"{DAY}T09:00:00Z", 2, i % 3, True],
                ["b", f"{DAY}T09:00:00Z", f"{DAY}T10:00:00Z", 1, 0, i != 2],
            ],
        ]
        for i in range(4)
    ]
    model.apply("w0", _answer(0, 1, 1, rows, full=True), at=1_795_000_000.1234)
    return model


@pytest.mark.parametrize(
    "query,kind",
    [
        (b"region=r&date=2026-12-01", None),
        (b"region=r&date=2026-12-01&kind=van", "van"),
        (b"region=zz&date=2026-12-01", None),
    ],
)
def test_a_grid_answer_is_the_read_models_pools_with_its_as_of(query, kind):
    async def scenario() -> None:
        model = _model()
        front = _front(model)
        region = parse_qs(query.decode())["region"][0]
        for _ in range(2):  # rendered, then cached
            request = _request(b"/v1/availability?" + query, b"req-1")
            front.handle(request)
            body = (
                b'{"as_of": "'
                + rfc3339(model.as_of(["w0"]))
                + b'", "pools": '
                + json.dumps(model.grid(region, DAY, kind)).encode()
                + b"}"
            )
            assert request.status == 200
            assert request.head == (
                b"Content-Type: application/json; charset=utf-8\r\nX-Request-Id: req-1\r\n"
            )
            assert request.payload == body
            assert json.loads(body)["as_of"] == "2026-11-18T11:06:40.123Z"

    asyncio.run(scenario())


def _request(url: bytes, request_id: bytes) -> LeanRequest:
    match = RouteMatcher(FRONT_ROUTES).match(b"GET", url)
    return LeanRequest(None, b"GET", url, {b"x-request-id": request_id}, b"", True, match)


def test_a_model_still_loading_answers_the_problem_it_did():
    async def scenario() -> None:
        front = _front(ReadModel(shard_count=1))
        request = _request(b"/v1/availability?region=r&date=2026-12-01", b"req-2")
        front.handle(request)
        assert request.status == 503
        assert request.head.startswith(b"Retry-After: 1\r\n")
        assert b"X-Request-Id: req-2\r\n" in request.head
        assert b"application/problem+json; charset=utf-8" in request.head
        problem = json.loads(request.payload)
        assert problem["code"] == "shard_unavailable"
        assert problem["detail"] == "the availability read model is still loading"

    asyncio.run(scenario())


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def _grid_request(region: str, extra: str = "") -> bytes:
    return (
        f"GET /v1/availability?region={region}&date={DAY} HTTP/1.1\r\nHost: x\r\n"
        f"X-Request-Id: {region}\r\n{extra}\r\n"
    ).encode()


def test_pipelined_grid_requests_are_answered_in_order_and_close_is_honoured():
    async def scenario() -> list[bytes]:
        front = _front(_model())
        protocol = front.protocol()
        transport = _Transport()
        protocol.connection_made(transport)
        protocol.data_received(
            _grid_request("r") + _grid_request("zz") + _grid_request("r", "Connection: close\r\n")
        )
        deadline = asyncio.get_running_loop().time() + 5
        while not transport.closed and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.001)
        protocol.connection_lost(None)
        assert transport.closed
        return transport.written

    written = asyncio.run(scenario())
    assert len(written) == 3
    assert [json.loads(w.partition(b"\r\n\r\n")[2])["pools"] != [] for w in written] == [
        True,
        False,
        True,
    ]
    assert [w.split(b"X-Request-Id: ")[1].split(b"\r\n")[0] for w in written] == [
        b"r",
        b"zz",
        b"r",
    ]
    assert b"Connection:" not in written[0] and b"Connection: close" in written[2]


class _Metrics:
    """Stands in for the router's Prometheus metrics (counted, not exported)."""

    def __init__(self) -> None:
        self.seen: list[tuple] = []

    def labels(self, *labels: str) -> _Metrics:
        self.seen.append(labels)
        return self

    def inc(self) -> None:
        pass

    def observe(self, value: float) -> None:
        pass
