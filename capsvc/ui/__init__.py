"""The planners' capacity board: static HTML, CSS and JavaScript served by the router at /ui/.

No build step and nothing from the internet: the three files below are the whole page. The page
holds no secret: the planner signs in with an admin token kept in the browser's session storage,
and every change goes through the public admin API with it. A strict Content-Security-Policy
allows only these files and requests to this origin.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).parent / "static"
FILES = {
    "index.html": "text/html",
    "board.css": "text/css",
    "board.js": "text/javascript",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
_cache: dict[str, bytes] = {}


def _asset(name: str) -> web.Response:
    body = _cache.get(name)
    if body is None:
        try:
            body = (STATIC_DIR / name).read_bytes()
        except OSError:
            raise web.HTTPNotFound() from None
        _cache[name] = body
    return web.Response(body=body, content_type=FILES[name], charset="utf-8", headers=HEADERS)


async def _index(request: web.Request) -> web.Response:
    return _asset("index.html")


async def _file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in FILES:
        raise web.HTTPNotFound()
    return _asset(name)


async def _redirect(request: web.Request) -> web.Response:
    raise web.HTTPPermanentRedirect("/ui/")


def add_ui_routes(app: web.Application) -> None:
    app.router.add_get("/ui", _redirect, name="ui_redirect")
    app.router.add_get("/ui/", _index, name="ui")
    app.router.add_get("/ui/{name}", _file, name="ui_file")
