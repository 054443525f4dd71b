"""The router's planner routes: the board's live numbers, a pool's timeline, bulk plans and
their CSV export. Admin only; everything here goes through the same owners and commands as the
single-pool admin routes (no private path to the data).

- board: every pool of a region over a few days, with capacity/reserved/open per slot, from
  the router's read model (normally milliseconds behind). Polled by the board page; answers
  304 when nothing changed since the ETag the page holds.
- timeline: a window of a pool's events, newest first, bookings aggregated per minute.
- plans: a CSV read whole and validated (every bad row reported, nothing applied), compared
  with each pool as its owner holds it now, then applied pool by pool with the ordinary admin
  commands. A change that became impossible between the check and the write (a reservation
  raced a lowering) is refused by the owner as usual and reported for its pool; applying the
  same plan again is safe, it only changes what still differs.

The handlers get the router's helpers injected (`planner_handlers`), so this module does not
import the router app and the app imports it without a cycle.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from capsvc.domain import rejections as rj
from capsvc.domain.wording import counted
from capsvc.errors import CapsvcError, ShardUnavailable
from capsvc.http import parsing
from capsvc.http.headers import ACTOR, REQUEST_ID
from capsvc.http.json_body import json_text
from capsvc.http.problems import PROBLEMS, problem
from capsvc.http.query_limits import (  # the limits /openapi.json states too
    BOARD_DAYS_MAX,
    EXPORT_DAYS_MAX,
    TIMELINE_SCAN_DEFAULT,
    TIMELINE_SCAN_MAX,
    VERSION_MAX,
)
from capsvc.http.routes import INTERNAL_POOLS
from capsvc.planning.diff import PlanDiff, PoolDiff, Step, diff_plan
from capsvc.planning.history import timeline
from capsvc.planning.plan import (
    ERRORS_SHOWN_MAX,
    PLAN_BODY_MAX_BYTES,
    PlanInvalid,
    export_csv,
    read_plan,
)
from capsvc.router.upstream import passed_on

if TYPE_CHECKING:
    from capsvc.http.answer_reader import Answer
    from capsvc.router.app import RouterState

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Forward = Callable[..., Awaitable["Answer"]]

BOARD_DAYS_LISTED_MAX = 2000  # days with pools, listed so a planner can find one
PLAN_FETCH_CONCURRENCY = 16  # owners asked at once for the current pools of a plan
PLAN_APPLY_CONCURRENCY = 8  # pools changed at once (steps of one pool stay in order)


def planner_handlers(
    state_of: Callable[[web.Request], RouterState],
    actor_of: Callable[[web.Request], str | None],
    forward: Forward,
) -> dict[str, Handler]:
    api = _PlannerApi(state_of, actor_of, forward)
    return {
        "board": api.board,
        "pool_timeline": api.pool_timeline,
        "apply_plan": api.apply_plan,
        "export_plan": api.export_plan,
    }


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, text=json_text(body), content_type="application/json", headers=headers
    )


def _passthrough(upstream: Answer) -> web.Response:
    return web.Response(status=upstream.status, body=upstream.body, headers=passed_on(upstream))


def _limits(state: RouterState) -> parsing.InputLimits:
    lim = state.config.limits
    return parsing.InputLimits(lim.units_max, lim.capacity_max, lim.slots_per_pool_max)


def date_range(request: web.Request, days_max: int) -> list[str]:
    """`from` (required) and `to` (default: `from`) -> every date between, inclusive."""
    first = parsing.query_date(request.query, "from", required=True)
    last = parsing.query_date(request.query, "to", required=False) or first
    assert first is not None
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    if end < start:
        raise parsing.bad_parameter("to", "must not be before from")
    if (end - start).days >= days_max:
        raise parsing.bad_parameter("to", f"at most {days_max} days from `from`")
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


class _PlannerApi:
    def __init__(
        self,
        state_of: Callable[[web.Request], RouterState],
        actor_of: Callable[[web.Request], str | None],
        forward: Forward,
    ) -> None:
        self.state_of = state_of
        self.actor_of = actor_of
        self.forward = forward

    def _headers(self, request: web.Request, actor: str) -> dict[str, str]:
        return {
            REQUEST_ID: request["request_id"],
            ACTOR: actor,
            "Content-Type": "application/json",
        }

    # -- board ---------------------------------------------------------------------------
    async def board(self, request: web.Request) -> web.StreamResponse:
        state = self.state_of(request)
        region = parsing.query_id(request.query, "region", required=False)
        kind = parsing.query_id(request.query, "kind", required=False)
        dates = date_range(request, BOARD_DAYS_MAX)
        as_of = state.model.as_of([c.name for c in state.topology.clients()])
        if as_of is None:
            raise ShardUnavailable("the read model is still loading")
        regions, days, pools = _board_views(state, region, kind, dates)
        tag = _etag(region, kind, dates, regions, days, pools)
        headers = {"ETag": tag, "Cache-Control": "no-store"}
        if none_match(request.headers.getall("If-None-Match", []), tag):
            return web.Response(status=304, headers=headers)
        body = {
            "as_of": _rfc3339_ms(int(as_of * 1000)),
            "region": region,
            "kind": kind,
            "dates": dates,
            "regions": regions,
            "days": days,
            "pools": pools,
        }
        return _json(body, headers=headers)

    # -- timeline ------------------------------------------------------------------------
    async def pool_timeline(self, request: web.Request) -> web.StreamResponse:
        state = self.state_of(request)
        actor = self.actor_of(request)
        assert actor is not None  # an admin route: `authorise` let it through
        pool_id = parsing.path_id(request.match_info, "pool_id")
        before = parsing.query_int(request.query, "before", 0, 0, VERSION_MAX)
        limit = parsing.query_int(request.query, "limit", TIMELINE_SCAN_DEFAULT, 1, TIMELINE_SCAN_MAX)
        page_max = state.config.limits.events_page_max
        upstream, head = await self._events(request, actor, pool_id, 0, 1)
        if head is None:
            return _passthrough(upstream)
        version = head["version"]
        top = version if before == 0 else min(before - 1, version)
        start = max(0, top - limit)
        events: list[dict[str, Any]] = []
        after = start
        while after < top:
            upstream, page = await self._events(
                request, actor, pool_id, after, min(page_max, top - after)
            )
            if page is None:
                return _passthrough(upstream)
            events.extend(e for e in page["events"] if e["version"] <= top)
            if page["next_after"] is None:
                break
            after = page["next_after"]
        entries = timeline(events)
        entries.reverse()
        return _json(
            {
                "pool_id": pool_id,
                "version": version,
                "from_version": start + 1 if top else 0,
                "to_version": top,
                "next_before": start + 1 if start > 0 else None,
                "entries": entries,
            }
        )

    async def _events(
        self, request: web.Request, actor: str, pool_id: str, after: int, limit: int
    ) -> tuple[Answer, dict[str, Any] | None]:
        state = self.state_of(request)
        path = f"/v1/admin/pools/{pool_id}/events?after={after}&limit={limit}"
        upstream = await self.forward(
            state, pool_id, "GET", path, None, self._headers(request, actor)
        )
        return upstream, json.loads(upstream.body) if upstream.status == 200 else None

    # -- export --------------------------------------------------------------------------
    async def export_plan(self, request: web.Request) -> web.StreamResponse:
        state = self.state_of(request)
        region = parsing.query_id(request.query, "region", required=True)
        kind = parsing.query_id(request.query, "kind", required=False)
        dates = date_range(request, EXPORT_DAYS_MAX)
        timeout_s = state.config.limits.request_timeout_ms / 1000
        suffix = f"&kind={kind}" if kind else ""
        answers = await asyncio.gather(
            *(
                worker.get_json(
                    f"{INTERNAL_POOLS}?region={region}&date={date}{suffix}", timeout_s=timeout_s
                )
                for date in dates
                for worker in state.topology.clients()
            )
        )
        pools: dict[str, dict[str, Any]] = {}
        for view in (p for answer in answers for p in answer["pools"]):
            # during a handoff the old and the new owner may both answer for a pool
            if view["pool_id"] not in pools or view["version"] > pools[view["pool_id"]]["version"]:
                pools[view["pool_id"]] = view
        name = f"plan-{region}-{dates[0]}-{dates[-1]}.csv".replace(":", "_")
        return web.Response(
            text=export_csv(pools.values()),
            content_type="text/csv",
            charset="utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    # -- plans ---------------------------------------------------------------------------
    async def apply_plan(self, request: web.Request) -> web.StreamResponse:
        state = self.state_of(request)
        actor = self.actor_of(request)
        assert actor is not None  # an admin route: `authorise` let it through
        dry_run = parsing.query_bool(request.query, "dry_run", False)
        data = await _read_body(request, PLAN_BODY_MAX_BYTES)
        if data is None:
            return problem(
                "body_too_large", f"a plan is at most {PLAN_BODY_MAX_BYTES} bytes; split it"
            )
        limits = _limits(state)
        try:
            plan = read_plan(data, limits)
        except PlanInvalid as e:
            bad_lines = len({err.line for err in e.errors})
            return problem(
                "invalid_field",
                f"the plan has {counted(bad_lines, 'invalid line')}; nothing was applied",
                field="plan",
                errors=[err.as_dict() for err in e.errors[:ERRORS_SHOWN_MAX]],
                errors_total=len(e.errors),
            )
        current: dict[str, dict[str, Any] | None] = {}
        failure = await self._fetch_current(
            request, actor, [p.pool_id for p in plan.pools], current
        )
        if failure is not None:
            return failure
        diff = diff_plan(plan, current, limits.slots_max)
        report = _report(diff, dry_run)
        if dry_run:
            return _json({**report, "would_apply": not diff.refused})
        if diff.refused:
            first = diff.first_refusal()
            assert first is not None and first.code is not None
            refused = report["summary"]["refused"]
            return problem(
                first.code,
                f"{counted(refused, 'change')} of the plan would be refused "
                f"(first: line {first.line}: {first.detail}); nothing was applied",
                **report,
            )
        return await self._apply(request, actor, diff, report)

    async def _fetch_current(
        self,
        request: web.Request,
        actor: str,
        pool_ids: list[str],
        into: dict[str, dict[str, Any] | None],
    ) -> web.Response | None:
        """Each pool as its owner holds it now (read-your-writes). Returns the owner's error
        response if one could not answer."""
        state = self.state_of(request)
        gate = asyncio.Semaphore(PLAN_FETCH_CONCURRENCY)

        async def one(pool_id: str) -> Answer | None:
            async with gate:
                upstream = await self.forward(
                    state,
                    pool_id,
                    "GET",
                    f"/v1/pools/{pool_id}",
                    None,
                    self._headers(request, actor),
                )
            if upstream.status == 200:
                into[pool_id] = json.loads(upstream.body)
            elif upstream.status == 404:
                into[pool_id] = None
            else:
                return upstream
            return None

        failures = await asyncio.gather(*(one(p) for p in pool_ids))
        first = next((f for f in failures if f is not None), None)
        return None if first is None else _passthrough(first)

    async def _apply(
        self, request: web.Request, actor: str, diff: PlanDiff, report: dict[str, Any]
    ) -> web.Response:
        state = self.state_of(request)
        gate = asyncio.Semaphore(PLAN_APPLY_CONCURRENCY)

        async def run(pool: PoolDiff) -> dict[str, Any]:
            async with gate:
                return await self._apply_pool(state, request, actor, pool)

        results = await asyncio.gather(*(run(p) for p in diff.pools))
        for entry, result in zip(report["pools"], results, strict=True):
            entry["result"] = result
        failed = [r for r in results if r["status"] not in ("applied", "unchanged")]
        report["applied"] = not failed
        if not failed:
            return _json(report)
        first = failed[0]
        return problem(
            first["code"],
            f"{len(failed)} of {counted(len(results), 'pool')} could not be fully changed (first: "
            f"{first['pool_id']}: {first['detail']}); the other pools were changed; applying "
            "the same plan again changes only what still differs",
            retry_after_s=first.get("retry_after_s"),
            **report,
        )

    async def _apply_pool(
        self, state: RouterState, request: web.Request, actor: str, pool: PoolDiff
    ) -> dict[str, Any]:
        if not pool.steps:
            return {"status": "unchanged", "pool_id": pool.pool_id}
        done = 0
        for step in pool.steps:
            failure = await self._apply_step(state, request, actor, pool.pool_id, step)
            if failure is not None:
                return {**failure, "pool_id": pool.pool_id, "changes_applied": done}
            done += 1
        return {"status": "applied", "pool_id": pool.pool_id, "changes_applied": done}

    async def _apply_step(
        self, state: RouterState, request: web.Request, actor: str, pool_id: str, step: Step
    ) -> dict[str, Any] | None:
        """None when the owner applied the step, else what went wrong."""
        body = json.dumps(step.body).encode()
        try:
            upstream = await self.forward(
                state, pool_id, step.method, step.path, body, self._headers(request, actor)
            )
        except CapsvcError as e:
            return _failure(step, e.code, e.detail, e.retry_after_s)
        if upstream.status < 300:
            return None
        try:
            payload = json.loads(upstream.body)
        except ValueError:
            payload = {}
        retry = (upstream.header(b"retry-after") or b"").decode("latin-1")
        return _failure(
            step,
            payload.get("code", "internal_error"),
            payload.get("detail", f"the owner answered {upstream.status}"),
            int(retry) if retry.isdigit() else None,
        )


def _failure(step: Step, code: str, detail: str, retry_after_s: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": "refused" if code in rj.ALL_CODES else "failed",
        "code": code if code in PROBLEMS else "internal_error",
        "detail": detail,
        "line": step.change.line,
        "slot_id": step.change.slot_id,
    }
    if retry_after_s is not None:
        out["retry_after_s"] = retry_after_s
    return out


def _report(diff: PlanDiff, dry_run: bool) -> dict[str, Any]:
    return {
        "dry_run": dry_run,
        "row_count": diff.rows,
        "summary": dict(diff.summary),
        "pools": [p.as_dict() for p in diff.pools],
    }


async def _read_body(request: web.Request, limit: int) -> bytes | None:
    """The body, or None when it is larger than `limit` (the router's general body limit is
    for JSON commands; a plan may be larger)."""
    declared = request.content_length
    if declared is not None and declared > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _board_views(
    state: RouterState, region: str | None, kind: str | None, dates: list[str]
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Regions known, days with pools in `region`, and the pools of `region` on `dates`,
    from the read model."""
    model = state.model
    regions = model.regions()
    if region is None:
        return regions, [], []
    days = model.days(region)
    if len(days) > BOARD_DAYS_LISTED_MAX:
        days = days[:BOARD_DAYS_LISTED_MAX]
    pools = [view for date in dates for view in model.views(region, date, kind)]
    return regions, days, pools


def none_match(header_lines: list[str], tag: str) -> bool:
    """Whether `If-None-Match` (every line of it) matches `tag` (RFC 9110 13.1.2): `*`, or a
    list of entity tags compared weakly (`W/"x"` matches `"x"`)."""
    for line in header_lines:
        for candidate in line.split(","):
            candidate = candidate.strip()
            if candidate == "*" or candidate.removeprefix("W/") == tag.removeprefix("W/"):
                return True
    return False


def _etag(
    region: str | None,
    kind: str | None,
    dates: list[str],
    regions: list[str],
    days: list[str],
    pools: list[dict[str, Any]],
) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps([region, kind, dates, regions, days]).encode())
    for pool in pools:
        # bookable changes with no new version when a slot passes its booking cut-off
        bookable = "".join("1" if slot["bookable"] else "0" for slot in pool["slots"])
        digest.update(f"{pool['pool_id']}@{pool['version']}:{bookable};".encode())
    return f'"{digest.hexdigest()[:32]}"'


def _rfc3339_ms(ms: int) -> str:
    return (
        dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
