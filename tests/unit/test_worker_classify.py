"""Which requests the worker's lean front answers itself (`fastpath.classify`): exactly the
four hot routes of the route table, with a valid id, and the router's feed poll; everything
else is the aiohttp app's."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from capsvc.domain.ids import is_valid_id, pool_of_reservation
from capsvc.http.routes import INTERNAL_FEED, ROUTES
from capsvc.worker.fastpath import classify

HOT = {r.name: r for r in ROUTES if r.name in ("reserve", "release", "get_pool", "get_reservation")}
METHODS = [b"GET", b"POST", b"DELETE", b"PUT", b"PATCH", b"HEAD"]
segment = st.text(alphabet="aZ09._:-~%?/ ", min_size=0, max_size=12)


def _expected(method: bytes, url: bytes) -> tuple[str | None, str | None]:
    """The route table read literally: the template with its one parameter filled in."""
    path = url.partition(b"?")[0].decode("latin-1")
    if method == b"GET" and path == INTERNAL_FEED:
        return "feed", None  # the router's feed poll
    for name, route in HOT.items():
        if route.method.encode() != method:
            continue
        prefix, _, suffix = route.path.partition("{")
        suffix = suffix.partition("}")[2]
        if not (path.startswith(prefix) and path.endswith(suffix)):
            continue
        target = path[len(prefix) : len(path) - len(suffix)]
        if "/" in target or "%" in target or len(path) < len(prefix) + len(suffix):
            continue
        valid = (
            is_valid_id(target)
            if route.target == "pool"
            else (pool_of_reservation(target) is not None)
        )
        return (name, target) if valid else (None, None)
    return None, None


@given(
    method=st.sampled_from(METHODS),
    shape=st.sampled_from(
        [
            "/v1/pools/{}",
            "/v1/pools/{}/reservations",
            "/v1/reservations/{}",
            "/v1/admin/pools/{}",
            "/v1/pools/{}/",
            "/v2/pools/{}",
            "{}",
            "/internal/feed{}",
        ]
    ),
    target=st.one_of(
        segment,
        st.sampled_from(["p-1", "p~1.0123456789ab", "A" * 128, "A" * 129, "p~x.0123456789ab"]),
    ),
    query=st.sampled_from(["", "?a=1", "?"]),
)
def test_classify_is_the_route_table_for_hot_routes(method, shape, target, query):
    url = (shape.format(target) + query).encode("latin-1")
    assert classify(method, url) == _expected(method, url)


def test_examples():
    assert classify(b"GET", b"/internal/feed?since=0:1&rows=1") == ("feed", None)
    assert classify(b"POST", b"/v1/pools/p-1/reservations") == ("reserve", "p-1")
    assert classify(b"GET", b"/v1/pools/p-1?x=1") == ("get_pool", "p-1")
    assert classify(b"DELETE", b"/v1/reservations/p~1.0123456789ab") == (
        "release",
        "p~1.0123456789ab",
    )
    assert classify(b"GET", b"/v1/reservations/p~1.0123456789ab") == (
        "get_reservation",
        "p~1.0123456789ab",
    )
    for method, url in (
        (b"GET", b"/v1/pools/b%20ad"),
        (b"GET", b"/v1/pools/-bad"),
        (b"GET", b"/v1/reservations/no-tilde"),
        (b"PUT", b"/v1/pools/p"),
        (b"GET", b"/v1/admin/pools/p"),
        (b"POST", b"/internal/feed"),
        (b"GET", b"/v1/pools/p/"),
        (b"HEAD", b"/v1/pools/p"),
    ):
        assert classify(method, url) == (None, None), (method, url)
