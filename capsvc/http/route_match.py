"""Matching a request line against routes of the table, for the lean fronts (aiohttp matches
the app's own routes).

The rules are aiohttp's, so that a path means the same whichever side answers it: a
`{parameter}` is one non-empty path segment without `{` or `}`, percent-escapes are decoded per
segment (an escaped `/` stays inside its segment), the query string plays no part, and a
trailing slash is another path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import yarl

from capsvc.http.routes import Route


@dataclass(frozen=True)
class Match:
    """A path the front answers: the route for the request's method (`None` when the path has
    no route for it: 405, or OPTIONS), the decoded path parameters, and the path's methods."""

    route: Route | None
    params: dict[str, str]
    path: str  # the route's template: the metrics' label
    allow: bytes  # for `Allow` on 405 and OPTIONS (RFC 9110 10.2.1)

    @property
    def target(self) -> str | None:
        """The path's one parameter (pool id or reservation id), if it has one."""
        return next(iter(self.params.values()), None)


@dataclass(frozen=True)
class _Template:
    path: str
    segments: tuple[str, ...]  # literal segments, or "" where a parameter goes
    names: tuple[str | None, ...]  # the parameter's name at each position, else None
    methods: dict[bytes, Route]
    allow: bytes


class RouteMatcher:
    def __init__(self, routes: Iterable[Route]) -> None:
        by_path: dict[str, dict[bytes, Route]] = {}
        for route in routes:
            methods = by_path.setdefault(route.path, {})
            methods[route.method.encode()] = route
            if route.method == "GET":
                methods.setdefault(b"HEAD", route)  # RFC 9110 9.3.2: HEAD is GET without body
        self._templates: list[_Template] = []
        for path, methods in by_path.items():
            parts = path.split("/")
            names = tuple(p[1:-1] if p.startswith("{") else None for p in parts)
            segments = tuple("" if n is not None else p for p, n in zip(parts, names, strict=True))
            allow = ", ".join(sorted({m.decode() for m in methods} | {"OPTIONS"})).encode()
            self._templates.append(_Template(path, segments, names, methods, allow))

    def match(self, method: bytes, url: bytes) -> Match | None:
        """The match for a request, or None when no route of this matcher has its path."""
        raw = url.partition(b"?")[0].decode("utf-8", "surrogateescape")
        parts = raw.split("/")
        if "%" in raw:
            parts = [_decoded(p) if "%" in p else p for p in parts]
        for template in self._templates:
            params = _params(template, parts)
            if params is not None:
                route = template.methods.get(method)
                return Match(route, params, template.path, template.allow)
        return None


def _decoded(segment: str) -> str:
    """One path segment's escapes decoded as aiohttp decodes them (yarl: UTF-8; an escape
    that is not valid UTF-8 stays as it was, in upper case)."""
    return yarl.URL("/" + segment).path[1:]


def _params(template: _Template, parts: list[str]) -> dict[str, str] | None:
    if len(parts) != len(template.segments):
        return None
    params = {}
    for part, literal, name in zip(parts, template.segments, template.names, strict=True):
        if name is None:
            if part != literal:
                return None
        elif not part or "{" in part or "}" in part:
            return None
        else:
            params[name] = part
    return params
