"""The router's public front on a real service: the probes that found bugs in its old
connection class (router/fastpath.py's FrontProtocol, replaced by `http/lean.py`'s
LeanProtocol, which the worker also uses). Each of these failed on the old front."""

from __future__ import annotations

import datetime as dt
import json
import socket

import pytest

from capsvc.testing.harness import Service
from tests.integration.test_worker_front import Reader, http

pytestmark = pytest.mark.integration
POOL = "front-1"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    svc = Service(tmp_path_factory.mktemp("router-front") / "data", workers=2).start()
    day = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert svc.define_pool(POOL, [("a", 1000)], date=day)[0] == 201
    yield svc
    svc.stop()


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
