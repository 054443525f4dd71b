"""The router's public front on a real service: the probes that found bugs in its old
connection class (the old router/fastpath.py's FrontProtocol, replaced by `http/lean.py`'s
LeanProtocol, which the worker also uses). Each of these failed on the old front."""

from __future__ import annotations

import json
import re
import socket

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from capsvc.config import load_config
from capsvc.paths import worker_socket
from capsvc.testing.harness import SOON, Service
from tests.integration.test_worker_front import Reader, http

pytestmark = pytest.mark.integration
POOL = "front-1"


@pytest.fixture(scope="module", autouse=True)
def front_pool(service):
    day = SOON  # every slot on it, in any offset, starts after now
    assert service.define_pool(POOL, [("a", 1000)], date=day)[0] == 201


def _connect(service: Service) -> socket.socket:
    return socket.create_connection(("127.0.0.1", service.port), timeout=10)


def _reserved(service: Service) -> int:
    return service.get(f"/v1/pools/{POOL}")[1]["total_reserved"]


def test_a_reserve_pipelined_before_a_refused_request_is_answered_before_the_refusal(service):
    """A reserve, then a request whose URL is over the limit, then another reserve: the first
    is applied and answered 201, then the 414, then the connection closes; the third is never
    applied. (The old front wrote the 414 at once and dropped the owed 201.)"""
    before = _reserved(service)
    reserve = http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"})
    long_url = http("GET", f"/v1/pools/{POOL}?pad=" + "x" * 9000)
    with _connect(service) as sock:
        sock.sendall(reserve + long_url + reserve)
        reader = Reader(sock)
        answers = reader.read(3)
        assert [a.status for a in answers] == [201, 414], [a.body for a in answers]
        assert answers[1].json()["code"] == "uri_too_long"
        assert reader.wait_closed()
    assert _reserved(service) == before + 1


def test_a_hot_request_asking_for_h2c_is_answered_then_closed(service):
    """`curl --http2` sends `Upgrade: h2c`: no protocol switch here, the request is answered
    over HTTP/1.1 and the connection then closes. (The old front gave it to aiohttp with zero
    bytes and it was never answered.)"""
    request = http("GET", f"/v1/pools/{POOL}",
                   headers={"Connection": "Upgrade, HTTP2-Settings", "Upgrade": "h2c",
                            "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"})
    with _connect(service) as sock:
        sock.sendall(request)
        reader = Reader(sock)
        (answer,) = reader.read(1)
        assert answer.status == 200 and answer.json()["pool_id"] == POOL
        assert reader.wait_closed()


def test_100_continue_never_goes_out_before_answers_owed_to_earlier_requests(service):
    """A reserve, then a reserve with `Expect: 100-continue` on the same connection: the first
    bytes back are the first reserve's answer, not a `100 Continue`. (The old front could write
    the 100 ahead of answers it still owed.)"""
    body = json.dumps({"slot_id": "a"}).encode()
    expecting = (f"POST /v1/pools/{POOL}/reservations HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode() + body
    with _connect(service) as sock:
        sock.sendall(http("POST", f"/v1/pools/{POOL}/reservations", {"slot_id": "a"})
                     + expecting)
        first = b""
        while b"\r\n" not in first:
            chunk = sock.recv(65536)
            assert chunk, "closed"
            first += chunk
        assert first.startswith(b"HTTP/1.1 201"), first[:80]
        reader = Reader(sock)
        reader._parser.feed_data(first)
        answers = reader.read(2)
        assert [a.status for a in answers if a.status != 100] == [201, 201]
    for answer in answers:
        if answer.status == 201:
            rid = answer.json()["reservation_id"]
            assert service.request("DELETE", f"/v1/reservations/{rid}")[0] == 200


def test_a_first_request_that_is_not_hot_does_not_change_how_later_ones_are_served(service):
    """`/healthz` first, then reserves on the same connection: they are the lean front's
    (no aiohttp `Server` header), as on a connection whose first request was a reserve.
    (The old front handed such a connection to aiohttp for good.)"""
    with _connect(service) as sock:
        sock.sendall(http("GET", "/healthz") + http("GET", f"/v1/pools/{POOL}")
                     + http("GET", f"/v1/pools/{POOL}"))
        answers = Reader(sock).read(3)
    assert [a.status for a in answers] == [200, 200, 200]
    assert answers[0].header("Server") is not None  # the app answered /healthz
    assert [a.header("Server") for a in answers[1:]] == [None, None]  # the front, both times


def test_sigterm_closes_idle_keep_alive_connections_cleanly(tmp_path):
    """On SIGTERM, open keep-alive connections end with a FIN after their answers, never a
    reset (the old front reset every open connection; clients saw errors a drain must not
    cause)."""
    svc = Service(tmp_path / "data", workers=2).start()
    socks = []
    try:
        for path in ("/healthz", "/v1/pools/nope", f"/v1/pools/{POOL}"):
            sock = socket.create_connection(("127.0.0.1", svc.port), timeout=10)
            sock.sendall(http("GET", path))
            assert Reader(sock).read(1)[0].status in (200, 404)
            socks.append(sock)
        assert svc.stop() == 0
        for sock in socks:
            sock.settimeout(10)
            assert sock.recv(100) == b""  # a clean end of stream, not ConnectionResetError
    finally:
        for sock in socks:
            sock.close()
        if svc.process is not None and svc.process.poll() is None:
            svc.kill_all()


# -- the router's front answers as the worker's, for every shape ------------------------------
_NONCE = re.compile(r"~([0-9a-f]+)\.[0-9a-f]{12}")
_PER_PROCESS = {"date", "server", "connection", "content-length"}
_ODD_BODY = st.fixed_dictionaries(
    {"slot_id": st.sampled_from(["a", "b", "zz", 7])},
    optional={"units": st.integers(-1, 4), "order_ref": st.sampled_from(["o-1", "", 3]),
              "extra": st.just(1)},
).map(json.dumps)
# A few bodies and keys, so that replays and reused keys happen often.
_COMMON_BODY = st.sampled_from(['{"slot_id": "a"}', '{"slot_id": "b", "units": 2}'])
_MALFORMED_BODY = st.sampled_from(["", "[]", "{", "null", '{"slot_id": "a"'])
_POOLS = st.sampled_from([TWIN_POOL := "twin-1", TWIN_POOL, "other-pool", "b@d", "x" * 129,
                          "tw%69n-1", "b%20ad"])
steps = st.one_of(
    st.tuples(st.just("POST"), st.just("reserve"), _POOLS,
              st.one_of(_COMMON_BODY, _COMMON_BODY, _ODD_BODY, _MALFORMED_BODY),
              st.one_of(st.none(), st.sampled_from(["k1", "k2", "k1", "k 3", "k" * 256, "a,b"]))),
    st.tuples(st.sampled_from(["GET", "GET", "PUT", "OPTIONS"]), st.just("pool"), _POOLS),
    st.tuples(st.sampled_from(["GET", "DELETE", "POST"]), st.just("reservation"),
              st.one_of(st.integers(0, 5), st.sampled_from(["nope", "twin-1~99.0123456789ab"]))),
)


def _request(step, issued: list[str]) -> bytes:
    method, shape, target = step[:3]
    headers = {"X-Request-Id": "rid-1"}
    if shape == "reserve":
        body, key = step[3:]
        if key is not None:
            headers["Idempotency-Key"] = key
        return http(method, f"/v1/pools/{target}/reservations", body.encode(), headers, True)
    if shape == "pool":
        return http(method, f"/v1/pools/{target}", None, headers, True)
    if isinstance(target, int):
        target = issued[target] if target < len(issued) else f"twin-1~{target}.0123456789ab"
    return http(method, f"/v1/reservations/{target}", None, headers, True)


def _seen(sock: socket.socket, request: bytes, issued: list[str]) -> tuple:
    """(status, headers but the per-process ones, body) with reservation ids' random parts
    masked; new reservation ids join `issued`, so later steps can name them."""
    with sock:
        sock.sendall(request)
        (answer,) = Reader(sock).read(1)
    body = answer.body.decode()
    for rid in re.findall(r"[A-Za-z0-9._:-]+~[0-9a-f]+\.[0-9a-f]{12}", body):
        if rid not in issued:
            issued.append(rid)
    kept = sorted((k.lower(), v) for k, v in answer.headers if k.lower() not in _PER_PROCESS)
    return answer.status, kept, _NONCE.sub(r"~\1.NONCE", body)


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """Two fresh services fed the same requests: one through its router's front, the other
    straight at its worker's front (one worker owns every shard)."""
    base = tmp_path_factory.mktemp("twins")
    pair = [Service(base / name, workers=1, shard_count=4).start()
            for name in ("via-router", "at-worker")]
    day = SOON  # every slot on it, in any offset, starts after now
    for svc in pair:
        assert svc.define_pool(TWIN_POOL, [("a", 1000), ("b", 1000)], date=day)[0] == 201
    worker = str(worker_socket(load_config(pair[1].config_path), 0))
    yield pair[0], worker, ([], [])
    for svc in pair:
        svc.stop()


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sequence=st.lists(steps, min_size=1, max_size=6))
@example(sequence=[("POST", "reserve", "twin-1", '{"slot_id": "a"}', "k-once")] * 2
         + [("DELETE", "reservation", 0)] * 2)
def test_the_routers_front_answers_every_shape_as_the_workers_front(twins, sequence):
    """Property: for any sequence of requests to the customers' routes (valid or not: bad ids,
    escapes, wrong methods, OPTIONS, bad bodies and keys, replays), the router's answers equal
    the worker's: status, headers (but Date, Server and framing), body. The router checks ids
    itself before it forwards; this holds its checks to the worker's."""
    router, worker_path, (issued_router, issued_worker) = twins
    for step in sequence:
        via_router = _seen(_connect(router), _request(step, issued_router), issued_router)
        worker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        worker.settimeout(10)
        worker.connect(worker_path)
        at_worker = _seen(worker, _request(step, issued_worker), issued_worker)
        assert via_router == at_worker, step
