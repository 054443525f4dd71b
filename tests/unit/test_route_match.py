"""Which route a lean front sees in a request line (`capsvc.http.route_match`): the same as
aiohttp's own router would, for any method and path, so a path means one thing whichever side
of a process answers it. aiohttp's router is the oracle."""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import example, given, settings
from hypothesis import strategies as st

from capsvc.http.route_match import RouteMatcher
from capsvc.http.routes import FEED_ROUTE, ROUTES

TABLE = (*ROUTES, FEED_ROUTE)
METHODS = ["GET", "POST", "DELETE", "PUT", "PATCH", "HEAD", "OPTIONS"]
SHAPES = [
    "/v1/pools/{}",
    "/v1/pools/{}/reservations",
    "/v1/reservations/{}",
    "/v1/admin/pools/{}",
    "/v1/admin/pools/{}/slots/{}",
    "/v1/pools/{}/",
    "/v1/availability{}",
    "/v2/pools/{}",
    "{}",
    "/internal/feed{}",
    "/v1/{}/p-1",
]
segment = st.text(alphabet="aZ09._:-~%2F9e{}?/ é", min_size=0, max_size=12)
target = st.one_of(
    segment,
    st.sampled_from(["p-1", "p~1.0123456789ab", "A" * 129, "%41", "a%2Fb", "%7Bx%7D", "pools"]),
)


async def _nothing(request: web.Request) -> web.Response:
    return web.Response()


def _aiohttp_router() -> web.UrlDispatcher:
    app = web.Application()
    for route in TABLE:
        if route.method == "GET":
            app.router.add_get(route.path, _nothing, name=route.name)  # HEAD too
        else:
            app.router.add_route(route.method, route.path, _nothing, name=route.name)
    return app.router


ORACLE = _aiohttp_router()
MATCHER = RouteMatcher(TABLE)


def _aiohttp_says(method: str, path: str):
    """(route name or None, params) when aiohttp knows the path; None when it does not."""
    request = make_mocked_request(method, path)
    info = asyncio.run(ORACLE.resolve(request))
    error = info.http_exception
    if error is not None and error.status == 404:
        return None
    if error is not None:  # 405: aiohttp keeps no parameters for it
        return None, None
    return info.route.name, dict(info)


@settings(max_examples=400)
@given(
    method=st.sampled_from(METHODS),
    shape=st.sampled_from(SHAPES),
    first=target,
    second=target,
    query=st.sampled_from(["", "?a=1", "?", "?x=%2F"]),
)
@example(method="GET", shape="/v1/pools/{}", first="%41", second="", query="")
@example(method="GET", shape="/v1/pools/{}", first="a%2Fb", second="", query="")
@example(method="GET", shape="/v1/pools/{}", first="%90%e9", second="", query="")
@example(method="PUT", shape="/v1/pools/{}", first="p-1", second="", query="")
@example(method="HEAD", shape="/v1/reservations/{}", first="p~1.0123456789ab", second="",
         query="")
def test_a_path_means_what_it_means_to_aiohttp(method, shape, first, second, query):
    path = shape.replace("{}", first, 1).replace("{}", second, 1)
    if not path.startswith("/"):
        path = "/" + path
    url = path + query
    expected = _aiohttp_says(method, url)
    got = MATCHER.match(method.encode(), url.encode())
    if expected is None:
        assert got is None, url
        return
    assert got is not None, url
    route = got.route.name if got.route is not None else None
    params = got.params if got.route is not None else None
    assert (route, params) == expected, url


def test_allow_lists_the_paths_methods_and_options():
    pool = MATCHER.match(b"PUT", b"/v1/pools/p-1")
    assert pool is not None and pool.route is None
    assert pool.allow == b"GET, HEAD, OPTIONS" and pool.path == "/v1/pools/{pool_id}"
    reservation = MATCHER.match(b"GET", b"/v1/reservations/p~1.0123456789ab")
    assert reservation is not None and reservation.route is not None
    assert reservation.allow == b"DELETE, GET, HEAD, OPTIONS"
    assert reservation.target == "p~1.0123456789ab"
