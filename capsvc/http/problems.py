"""RFC 9457 problem+json rendering from one registry of codes.

Only this module knows HTTP statuses. Every error a client can see has a stable `code`;
business rejections keep their extra fields (such as `available_units`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from capsvc.domain import rejections as rj
from capsvc.domain.rejections import Rejection
from capsvc.errors import CapsvcError
from capsvc.http.json_body import decode_json as json_loads
from capsvc.http.json_body import json_text

log = logging.getLogger(__name__)
PROBLEM_JSON = "application/problem+json"

# code -> (status, title)
PROBLEMS: dict[str, tuple[int, str]] = {
    rj.POOL_EXISTS: (409, "Pool already exists"),
    rj.POOL_NOT_FOUND: (404, "Pool not found"),
    rj.SLOT_NOT_FOUND: (404, "Slot not found"),
    rj.SLOT_EXISTS: (409, "Slot already exists"),
    rj.SLOT_CLOSED: (409, "Slot is closed"),
    rj.BOOKING_CLOSED: (409, "Booking closed"),
    rj.CAPACITY_EXHAUSTED: (409, "Capacity exhausted"),
    rj.CAPACITY_BELOW_RESERVED: (409, "Capacity below reserved units"),
    rj.TOTAL_CAPACITY_BELOW_RESERVED: (409, "Total capacity below reserved units"),
    rj.TOO_MANY_SLOTS: (409, "Too many slots"),
    rj.IDEMPOTENCY_KEY_REUSED: (422, "Idempotency key reused"),
    rj.RESERVATION_NOT_FOUND: (404, "Reservation not found"),
    "malformed_json": (400, "Malformed JSON"),
    "malformed_request": (400, "Malformed request"),
    "invalid_parameter": (400, "Invalid parameter"),
    "invalid_field": (422, "Invalid field"),
    "body_too_large": (413, "Request body too large"),
    "uri_too_long": (414, "Request target too long"),
    "headers_too_large": (431, "Request headers too large"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Forbidden"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "storage_full": (503, "Storage full"),
    "storage_unavailable": (503, "Storage unavailable"),
    "shard_corrupt": (503, "Shard unavailable: damaged file"),
    "shard_fenced": (503, "Shard moved to a newer owner"),
    "shard_unavailable": (503, "Shard unavailable"),
    "overloaded": (503, "Overloaded"),
    "upstream_unavailable": (503, "Owner unreachable"),
    "timeout": (504, "Timed out"),
    "internal_error": (500, "Internal error"),
    "http_version_not_supported": (505, "HTTP version not supported"),
}
assert all(code in PROBLEMS for code in rj.ALL_CODES)


def problem_json(code: str, detail: str, **fields: Any) -> tuple[int, str]:
    """-> (status, body) of the problem `code`: the one place that shapes a problem body."""
    status, title = PROBLEMS[code]
    body = {
        "type": f"urn:capsvc:problem:{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **fields,
    }
    return status, json_text(body)


def problem_code(response: web.StreamResponse) -> str | None:
    """The `code` of a problem+json answer (None for anything else)."""
    body = getattr(response, "body", None)
    if not isinstance(body, bytes) or not response.content_type.endswith("problem+json"):
        return None
    try:
        return json_loads(body).get("code")
    except (ValueError, AttributeError):
        return None


def problem(
    code: str, detail: str, *, retry_after_s: int | None = None, **fields: Any
) -> web.Response:
    status, text = problem_json(code, detail, **fields)
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else {}
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="capsvc-admin"'
    return web.Response(status=status, text=text, content_type=PROBLEM_JSON, headers=headers)


def rejection_problem(rejection: Rejection) -> web.Response:
    return problem(rejection.code, rejection.detail, **rejection.fields)


def error_problem(error: CapsvcError) -> web.Response:
    return problem(error.code, error.detail, retry_after_s=error.retry_after_s, **error.fields)


_HTTP_CODES = {
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    400: "malformed_request",  # aiohttp's own 400s are about HTTP, not JSON (parsing.py's are)
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Render every error as problem+json, in one place. A 405 names the methods the resource
    allows (`Allow`), and OPTIONS on a resource answers them (204)."""
    try:
        return await handler(request)
    except CapsvcError as e:
        return error_problem(e)
    except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
        raise
    except web.HTTPMethodNotAllowed as e:
        allow = ", ".join(sorted({*e.allowed_methods, "OPTIONS"}))
        if request.method == "OPTIONS":
            return web.Response(status=204, headers={"Allow": allow})
        response = problem(
            "method_not_allowed", f"{request.method} is not allowed on {request.path}"
        )
        response.headers["Allow"] = allow
        return response
    except web.HTTPException as e:
        if e.status < 400:
            raise
        code = _HTTP_CODES.get(e.status)
        if code is None:
            raise
        detail = {
            404: f"no route for {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
            413: "the request body is larger than the limit",
            400: e.text or "bad request",
        }[e.status]
        return problem(code, detail)
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return problem("internal_error", "an unexpected error occurred; it has been logged")
