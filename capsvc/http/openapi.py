"""The OpenAPI 3.1 description of capsvc's public HTTP API, served by the router at /openapi.json.

Paths and methods come from `ROUTES`, error statuses from the problem registry and request
bodies from the Structs the server decodes them with (`request_shapes`), so none of them can
drift from what the service answers. Numeric limits shown are the configuration defaults.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from typing import Any

from capsvc.config import LimitsConfig
from capsvc.domain import rejections as rj
from capsvc.domain.ids import ID_PATTERN, RESERVATION_ID_PATTERN
from capsvc.http import query_limits as q
from capsvc.http.problems import PROBLEM_JSON, PROBLEMS
from capsvc.http.request_shapes import DATE_RE, TIMESTAMP_RE, InputLimits, json_schemas
from capsvc.http.routes import ROUTES, Route

VERSION = "0.1.0"
DESCRIPTION = (
    "Capacity reservation service. Writes to one pool (define, reserve, release, change "
    "capacity) are strongly consistent: each pool has a single writer and nothing is "
    "acknowledged before it is durable. The availability grid is an eventually consistent read "
    "model, stamped with `as_of`. Every error is `application/problem+json` (RFC 9457) with a "
    "stable `code` that clients can match on."
)

Schema = dict[str, Any]
_LIMITS = LimitsConfig()
_INPUT_LIMITS = InputLimits(_LIMITS.units_max, _LIMITS.capacity_max, _LIMITS.slots_per_pool_max)
_UNAVAILABLE = tuple(code for code, (status, _) in PROBLEMS.items() if status == 503)


# -- schema helpers ------------------------------------------------------------------------
def _ref(name: str, kind: str = "schemas") -> Schema:
    return {"$ref": f"#/components/{kind}/{name}"}


def _obj(
    properties: dict[str, Schema],
    *,
    required: tuple[str, ...] | None = None,
    closed: bool = False,
    **extra: Any,
) -> Schema:
    """An object; every property is required unless `required` says otherwise. `closed`
    refuses unknown properties (request bodies: the parser is strict)."""
    schema = {
        "type": "object",
        "properties": properties,
        "required": list(properties if required is None else required),
        **extra,
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def _array(items: Schema, **extra: Any) -> Schema:
    return {"type": "array", "items": items, **extra}


def _int(minimum: int, maximum: int | None = None, **extra: Any) -> Schema:
    bounds = {"minimum": minimum} if maximum is None else {"minimum": minimum, "maximum": maximum}
    return {"type": "integer", **bounds, **extra}


def _nullable(schema: Schema) -> Schema:
    return {**schema, "type": [schema["type"], "null"]}


def _string(**extra: Any) -> Schema:
    return {"type": "string", **extra}


_ID = _string(pattern=ID_PATTERN)
_DATE = _string(format="date")
_TIMESTAMP = _string(format="date-time", description="RFC 3339 timestamp with an offset")
# query values: an empty one (`?region=`) is a value, and refused (400) like any other bad one
_QUERY_ID = _string(minLength=1, maxLength=128, pattern=ID_PATTERN)
_QUERY_DATE = _string(minLength=10, maxLength=10, format="date", pattern=DATE_RE)
_QUERY_TIMESTAMP = _string(
    minLength=20, format="date-time", pattern=TIMESTAMP_RE, description="RFC 3339 with an offset"
)
_CAPACITY = _int(0, _LIMITS.capacity_max)
_ANY_OBJECT: Schema = {"type": "object", "additionalProperties": True}


# request bodies: the Structs' JSON Schema ({name: requestBody schema}, their components)
_BODIES, _BODY_COMPONENTS = json_schemas(_INPUT_LIMITS)
# Examples are dated the day after tomorrow (UTC) when the document is built: an example pool
# must take reservations (a slot that has started, or passed its cut-off, takes none).
_EXAMPLE_DAY = (dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)).isoformat()
_SLOT_EXAMPLE = {
    "slot_id": "0800-1000",
    "starts_at": f"{_EXAMPLE_DAY}T08:00:00+08:00",
    "ends_at": f"{_EXAMPLE_DAY}T10:00:00+08:00",
    "capacity": 40,
}
BODY_EXAMPLES: dict[str, Any] = {  # each one decodes (tests/unit/test_request_shapes.py)
    "PoolDefinition": {
        "kind": "logistics",
        "region": "sg-north",
        "date": _EXAMPLE_DAY,
        "total_capacity": None,
        "booking_cutoff_minutes": 60,
        "slots": [_SLOT_EXAMPLE],
    },
    "PoolPatch": {"total_capacity": 100},
    "SlotDefinition": {**_SLOT_EXAMPLE, "slot_id": "1000-1200", "capacity": 20},
    "SlotPatch": {"capacity": 45, "open": True},
    "ReserveRequest": {"slot_id": "0800-1000", "units": 1, "order_ref": "order-8812"},
}

_BOOKABLE = (
    "open, available > 0, and before the slot's booking cut-off (`starts_at` minus the pool's "
    "`booking_cutoff_minutes`, by this router's clock: a slot shows not bookable from that "
    "instant on, with no write needed; the owner's clock decides a reserve)"
)
_CUTOFF = _int(
    0,
    description="A slot takes reservations until `starts_at` minus this many minutes; after "
    "that (and always once it has started) reserving answers 409 `booking_closed`. 0 for "
    "pools defined before cut-offs existed.",
)


# -- component schemas ---------------------------------------------------------------------
def _schemas() -> dict[str, Schema]:
    pool_slot = _obj(
        {
            "slot_id": _ID,
            "starts_at": _TIMESTAMP,
            "ends_at": _TIMESTAMP,
            "capacity": _CAPACITY,
            "reserved": _int(0),
            "available": _int(0),
            "open": {"type": "boolean"},
        }
    )
    grid_slot = _obj(
        {
            "slot_id": _ID,
            "starts_at": _TIMESTAMP,
            "ends_at": _TIMESTAMP,
            "bookable": {"type": "boolean", "description": _BOOKABLE},
        }
    )
    event = _obj(
        {
            "seq": _int(1),
            "version": _int(1),
            "type": _string(),
            "schema": _int(1),
            "epoch": _int(0),
            "at_ms": _int(0),
            "actor": _nullable(_string()),
            "data": _ANY_OBJECT,
        }
    )
    return {
        **_BODY_COMPONENTS,
        "Pool": _obj(
            {
                "pool_id": _ID,
                "kind": _ID,
                "region": _ID,
                "date": _DATE,
                "version": _int(1),
                "total_capacity": _nullable(_CAPACITY),
                "total_reserved": _int(0),
                "booking_cutoff_minutes": _CUTOFF,
                "slots": _array(pool_slot),
            }
        ),
        "PoolList": _obj({
            "pools": _array(_ref("Pool")),
            "complete": {"type": "boolean", "description": "false when a worker did not "
                         "answer in time: its pools are not in `pools`"},
            "workers_not_answering": _array(_string(), description="those workers"),
        }),
        "Reservation": _obj(
            {
                "reservation_id": _string(pattern=RESERVATION_ID_PATTERN),
                "pool_id": _ID,
                "slot_id": _ID,
                "units": _int(1),
                "status": _string(
                    enum=["active", "released"],
                    description="A released reservation is still readable (200), with "
                    "`released`: releasing keeps its record, it does not delete it.",
                ),
                "order_ref": _nullable(_string()),
            }
        ),
        "Availability": _obj(
            {
                "as_of": _TIMESTAMP | {"description": "The grid reflects every write up to here."},
                "pools": _array(
                    _obj(
                        {
                            "pool_id": _ID,
                            "kind": _ID,
                            "region": _ID,
                            "date": _DATE,
                            "slots": _array(grid_slot),
                        }
                    )
                ),
            }
        ),
        "EventPage": _obj(
            {
                "pool_id": _ID,
                "version": _int(1),
                "events": _array(event),
                "next_after": _nullable(_int(0))
                | {"description": "Pass as `after` for the next page; null at the end."},
            }
        ),
        "Cluster": _ANY_OBJECT
        | {
            "description": "Shard ownership, worker and read-model status (for operators).",
            "properties": {
                "mode": _string(),
                "shard_count": _int(1),
                "workers": _array(_ANY_OBJECT),
                "shards": _array(_ANY_OBJECT),
                "read_model": _ANY_OBJECT,
            },
        },
        "Problem": _obj(
            {
                "type": _string(format="uri", examples=["urn:capsvc:problem:capacity_exhausted"]),
                "title": _string(),
                "status": _int(400, 599),
                "detail": _string(),
                "code": _string(description="Stable; clients match on it."),
                "available_units": _int(0, description="With `capacity_exhausted`."),
                "field": _string(description="The offending field or parameter, if any."),
            },
            required=("type", "title", "status", "detail", "code"),
            additionalProperties=True,
        ),
    }


# -- responses and parameters --------------------------------------------------------------
def _json(schema: Schema, description: str, **extra: Any) -> Schema:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema}},
        **extra,
    }


def _errors(codes: tuple[str, ...]) -> dict[str, Schema]:
    """Problem responses grouped by status, each naming the codes it may carry."""
    by_status: dict[str, list[str]] = {}
    for code in codes:
        by_status.setdefault(str(PROBLEMS[code][0]), []).append(code)
    responses = {}
    for status, group in sorted(by_status.items()):
        schema = {"allOf": [_ref("Problem"), {"properties": {"code": {"enum": group}}}]}
        response = {
            "description": "; ".join(f"{PROBLEMS[c][1]} (`{c}`)" for c in group),
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        if status in ("401", "503", "504"):
            name = "WWW-Authenticate" if status == "401" else "Retry-After"
            response["headers"] = {name: _ref(name, "headers")}
        responses[status] = response
    return responses


def _query(name: str, schema: Schema, description: str, required: bool = False) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "schema": schema,
        "description": description,
    }


def _path_parameters() -> dict[str, Schema]:
    def param(name: str, pattern: str) -> Schema:
        return {"name": name, "in": "path", "required": True, "schema": _string(pattern=pattern)}

    return {
        "pool_id": param("pool_id", ID_PATTERN),
        "slot_id": param("slot_id", ID_PATTERN),
        "reservation_id": param("reservation_id", RESERVATION_ID_PATTERN),
    }


_REGION = _query("region", _QUERY_ID, "Region of the pools.")
_DAY = _query("date", _QUERY_DATE, "Service date of the pools.")
_KIND = _query("kind", _QUERY_ID, "Only pools of this kind.")
_IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": _string(minLength=1, maxLength=255, pattern=r"^[\x21-\x2b\x2d-\x7e]+$"),
    "description": "Retrying with the same key and body answers the first reservation again, "
    "or, when the first attempt was refused with `capacity_exhausted`, `slot_closed` or "
    "`booking_closed`, that same refusal (409, same body), even once capacity has come free, "
    "for the key's retention period (`limits.idempotency_retention_s`), across restarts and "
    "failovers. Not-applied answers (503, 504) bind nothing: retry them with the same key. "
    "One key, given once: a repeated header or a comma list is refused (400).",
}
_REPLAYED = {
    "description": "`true` when this answer replays an earlier request with the same key.",
    "schema": _string(enum=["true"]),
}


# -- operations ----------------------------------------------------------------------------
def _op(
    summary: str,
    ok: dict[str, Schema],
    errors: tuple[str, ...] = (),
    body: str | None = None,
    parameters: tuple[Schema, ...] = (),
) -> Schema:
    operation: Schema = {
        "summary": summary,
        "parameters": list(parameters),
        "responses": {**ok, **_errors(errors)},
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": _BODIES[body], "example": BODY_EXAMPLES[body]}
            },
        }
    return operation


def _replayable_refusals(operation: Schema) -> Schema:
    """A reserve's 409 may replay the refusal an Idempotency-Key is bound to."""
    conflict = operation["responses"]["409"]
    conflict["headers"] = {"Idempotent-Replayed": _REPLAYED}
    conflict["description"] += (
        "; with an Idempotency-Key, `capacity_exhausted`, `slot_closed` and `booking_closed` "
        "bind the key: a retry with the same body gets the same answer, with "
        "`Idempotent-Replayed: true`"
    )
    return operation


def _link(operation_id: str, description: str, **values: Any) -> Schema:
    """An OpenAPI link: what a client (or a stateful fuzzer) may do next with this answer."""
    link: Schema = {"operationId": operation_id, "description": description}
    body = values.pop("requestBody", None)
    if values:
        link["parameters"] = values
    if body is not None:
        link["requestBody"] = body
    return link


def _with_links(response: Schema, **links: Schema) -> Schema:
    return {**response, "links": links}


_THIS_POOL = "$request.path.pool_id"
_POOL_LINKS = {  # what a planner does next with a pool just defined
    "GetPool": _link("get_pool", "Read the pool", pool_id=_THIS_POOL),
    "AdminGetPool": _link("admin_get_pool", "Read the pool (admin view)", pool_id=_THIS_POOL),
    "AddSlot": _link("add_slot", "Add a slot", pool_id=_THIS_POOL),
    "UpdateSlot": _link(
        "update_slot",
        "Change the first slot",
        pool_id=_THIS_POOL,
        slot_id="$response.body#/slots/0/slot_id",
    ),
    "ChangeTotalCapacity": _link("change_total_capacity", "Cap the pool", pool_id=_THIS_POOL),
    "Events": _link("pool_events", "The pool's audit log", pool_id=_THIS_POOL),
    "Timeline": _link("pool_timeline", "The pool's history", pool_id=_THIS_POOL),
}


def _operations() -> dict[str, Schema]:
    pool = _ref("Pool")
    reservation = _ref("Reservation")
    admin_body = ("malformed_json", "invalid_parameter", "unauthorized", "invalid_field")
    return {
        "define_pool": _op(
            "Define a pool (idempotent for an identical definition)",
            {
                "200": _json(pool, "Already defined identically; nothing changed"),
                "201": _with_links(
                    _json(pool, "Pool defined"),
                    Reserve=_link(
                        "reserve",
                        "Reserve a unit of the pool's first slot",
                        pool_id="$request.path.pool_id",
                        requestBody={"slot_id": "$response.body#/slots/0/slot_id", "units": 1},
                    ),
                    **_POOL_LINKS,
                ),
            },
            (*admin_body, rj.POOL_EXISTS, "body_too_large"),
            body="PoolDefinition",
        ),
        "change_total_capacity": _op(
            "Change the pool-wide capacity cap (null removes it)",
            {"200": _json(pool, "Pool after the change")},
            (*admin_body, rj.POOL_NOT_FOUND, rj.TOTAL_CAPACITY_BELOW_RESERVED),
            body="PoolPatch",
        ),
        "add_slot": _op(
            "Add a slot to a pool",
            {"201": _json(pool, "Pool with the new slot")},
            (*admin_body, rj.POOL_NOT_FOUND, rj.SLOT_EXISTS, rj.TOO_MANY_SLOTS),
            body="SlotDefinition",
        ),
        "update_slot": _op(
            "Change a slot's capacity or open it/close it",
            {"200": _json(pool, "Pool after the change")},
            (*admin_body, rj.POOL_NOT_FOUND, rj.SLOT_NOT_FOUND, rj.CAPACITY_BELOW_RESERVED),
            body="SlotPatch",
        ),
        "pool_events": _op(
            "A pool's audit log, oldest first, paged by pool version",
            {"200": _json(_ref("EventPage"), "One page of events")},
            ("invalid_parameter", "unauthorized", rj.POOL_NOT_FOUND),
            parameters=(
                _query("after", _int(0, q.VERSION_MAX, default=0), "Events after this version."),
                _query("limit", _int(1, _LIMITS.events_page_max, default=100), "Page size."),
            ),
        ),
        "list_pools": _op(
            "List pools with their committed state",
            {"200": _json(_ref("PoolList"), "Pools, ordered by pool_id")},
            ("invalid_parameter", "unauthorized"),
            parameters=(_REGION, _DAY, _KIND),
        ),
        "cluster": _op(
            "Cluster status", {"200": _json(_ref("Cluster"), "Cluster status")}, ("unauthorized",)
        ),
        "get_pool": _op(
            "Read a pool",
            {"200": _json(pool, "The pool")},
            ("invalid_parameter", rj.POOL_NOT_FOUND),
        ),
        "reserve": _replayable_refusals(_op(
            "Reserve units of a slot",
            {
                "201": _with_links(
                    _json(
                        reservation,
                        "Reserved (or replayed, see Idempotent-Replayed)",
                        headers={"Idempotent-Replayed": _REPLAYED},
                    ),
                    GetReservation=_link(
                        "get_reservation",
                        "Read the reservation",
                        reservation_id="$response.body#/reservation_id",
                    ),
                    Release=_link(
                        "release",
                        "Release the reservation",
                        reservation_id="$response.body#/reservation_id",
                    ),
                )
            },
            (
                "malformed_json",
                "invalid_parameter",
                rj.POOL_NOT_FOUND,
                rj.SLOT_NOT_FOUND,
                rj.CAPACITY_EXHAUSTED,
                rj.SLOT_CLOSED,
                rj.BOOKING_CLOSED,
                "body_too_large",
                "invalid_field",
                rj.IDEMPOTENCY_KEY_REUSED,
                *_UNAVAILABLE,
                "timeout",
            ),
            body="ReserveRequest",
            parameters=(_IDEMPOTENCY_KEY,),
        )),
        "get_reservation": _op(
            "Read a reservation",
            {
                "200": _json(
                    reservation,
                    "The reservation, active or released: a released reservation still "
                    "answers 200 with `status: released` (by design: release keeps the record)",
                )
            },
            (rj.RESERVATION_NOT_FOUND,),
        ),
        "release": _op(
            "Release a reservation (releasing twice is harmless)",
            {
                "200": _with_links(
                    _json(reservation, "The released reservation"),
                    GetReservation=_link(
                        "get_reservation",
                        "Still readable after release: 200 with `status: released`",
                        reservation_id="$request.path.reservation_id",
                    ),
                )
            },
            (rj.RESERVATION_NOT_FOUND, *_UNAVAILABLE, "timeout"),
        ),
        "availability": _op(
            "Bookable slots of a region's pools on a date (eventually consistent)",
            {"200": _json(_ref("Availability"), "The availability grid")},
            ("invalid_parameter", "shard_unavailable"),
            parameters=(_REGION | {"required": True}, _DAY | {"required": True}, _KIND),
        ),
        "healthz": _op(
            "Liveness", {"200": _json(_obj({"status": _string(enum=["ok"])}), "The router is up")}
        ),
        "readyz": _op(
            "Readiness: this host can serve (its owner view is current, its workers answer a "
            "real read of every shard they hold, read model loaded); with scope=cluster, every "
            "shard of the cluster has a ready owner",
            {"200": _json(_obj({"status": _string(enum=["ready"]), "shards": _int(0),
                                "scope": _string(enum=["host", "cluster"]),
                                "shards_moving": _array(_int(0))},
                               required=("status", "shards", "scope")), "Ready")},
            ("invalid_parameter", "shard_unavailable"),
            parameters=(_query("scope", _string(enum=["host", "cluster"], default="host"),
                               "host (the default; load balancers): this host can serve. "
                               "cluster (on-call): every shard has a ready owner."),),
        ),
        "metrics": _op(
            "Prometheus metrics",
            {
                "200": {
                    "description": "Prometheus text exposition format",
                    "content": {"text/plain": {"schema": _string()}},
                }
            },
        ),
        "openapi": _op("This document", {"200": _json(_ANY_OBJECT, "OpenAPI 3.1 document")}),
    }


# -- planner tools -------------------------------------------------------------------------
def _planner_schemas() -> dict[str, Schema]:
    board_slot = _obj(
        {
            "slot_id": _ID,
            "starts_at": _TIMESTAMP,
            "ends_at": _TIMESTAMP,
            "capacity": _CAPACITY,
            "reserved": _int(0),
            "available": _int(0),
            "open": {"type": "boolean"},
            "bookable": {"type": "boolean", "description": _BOOKABLE},
        }
    )
    board_pool = _obj(
        {
            "pool_id": _ID,
            "kind": _ID,
            "region": _ID,
            "date": _DATE,
            "version": _int(1),
            "total_capacity": _nullable(_CAPACITY),
            "total_reserved": _int(0),
            "booking_cutoff_minutes": _CUTOFF,
            "slots": _array(board_slot),
        }
    )
    change = _obj(
        {
            "change": _string(enum=["created", "raised", "lowered", "refused"]),
            "line": _int(1, description="Line of the CSV (the header is line 1)."),
            "slot_id": _nullable(_ID),
            "field": _nullable(_string()),
            "before": {},
            "after": {},
            "code": _string(description="With `refused`: the code the service would answer."),
            "detail": _string(),
        },
        required=("change", "line", "slot_id", "field", "before", "after"),
    )
    plan_pool = _obj(
        {
            "pool_id": _ID,
            "line": _int(1),
            "outcome": _string(enum=["created", "changed", "unchanged", "refused"]),
            "changes": _array(change),
            "untouched_slots": _array(_ID, description="Slots the plan does not mention."),
            "result": _ANY_OBJECT
            | {"description": "When applied: `status` applied/unchanged/refused/failed."},
        },
        required=("pool_id", "line", "outcome", "changes", "untouched_slots"),
    )
    return {
        "PoolAsOf": {
            "allOf": [
                _ref("Pool"),
                _obj(
                    {"as_of": _TIMESTAMP | {"description": "The moment asked for (only then)."}},
                    required=(),
                ),
            ]
        },
        "Board": _obj(
            {
                "as_of": _TIMESTAMP | {"description": "The numbers reflect writes up to here."},
                "region": _nullable(_ID),
                "kind": _nullable(_ID),
                "dates": _array(_DATE),
                "regions": _array(_ID, description="Every region with pools."),
                "days": _array(_DATE, description="Days with pools in `region`."),
                "pools": _array(board_pool),
            }
        ),
        "Timeline": _obj(
            {
                "pool_id": _ID,
                "version": _int(0),
                "from_version": _int(0),
                "to_version": _int(0),
                "next_before": _nullable(_int(1))
                | {"description": "Pass as `before` for older entries; null at the start."},
                "entries": _array(
                    _ANY_OBJECT
                    | {
                        "description": "Newest first. `kind` change: one planner change "
                        "(type, version, at_ms, actor, slot_id, summary, data); `kind` "
                        "bookings: the reservations, releases and keyed refusals "
                        "(`refusals`) of one minute."
                    }
                ),
            }
        ),
        "PlanReport": _obj(
            {
                "dry_run": {"type": "boolean"},
                "row_count": _int(0),
                "summary": _obj(
                    {k: _int(0) for k in ("created", "raised", "lowered", "refused")}
                    | {"unchanged_pools": _int(0)}
                ),
                "pools": _array(plan_pool),
                "would_apply": {"type": "boolean", "description": "Dry run only."},
                "applied": {"type": "boolean", "description": "Apply only."},
            },
            required=("dry_run", "row_count", "summary", "pools"),
        ),
    }


def _planner_operations() -> dict[str, Schema]:
    def range_params(days_max: int) -> tuple[Schema, ...]:
        return (
            _query("from", _QUERY_DATE, "First date.", required=True),
            _query(
                "to",
                _QUERY_DATE,
                f"Last date (default: `from`): not before `from`, and at most {days_max} days "
                f"from it counting both (400 `invalid_parameter` naming `to` otherwise).",
            ),
        )

    csv_columns = (
        "pool_id,kind,region,date,slot_id,starts_at,ends_at,capacity,total_capacity, and "
        "optionally booking_cutoff_minutes (one row per slot; empty total_capacity: no "
        "pool-wide cap; without the cut-off column, existing pools keep theirs and new ones get "
        "0; exports write it)"
    )
    apply = _op(
        "Apply a bulk plan (CSV), or preview it with dry_run=true",
        {"200": _json(_ref("PlanReport"), "What changed (or would change), per pool")},
        (
            "invalid_parameter",
            "unauthorized",
            "invalid_field",
            "body_too_large",
            rj.POOL_EXISTS,
            rj.SLOT_EXISTS,
            rj.CAPACITY_BELOW_RESERVED,
            rj.TOTAL_CAPACITY_BELOW_RESERVED,
            rj.TOO_MANY_SLOTS,
            *_UNAVAILABLE,
            "timeout",
        ),
        parameters=(
            _query(
                "dry_run",
                {"type": "boolean", "default": False},
                "Only report what would change.",
            ),
        ),
    )
    apply["description"] = (
        "The CSV is validated whole: any bad row refuses the plan (422, `errors` lists every "
        "bad line) and any change the service would refuse refuses it too (409, the report in "
        "`pools`); nothing is applied then. Otherwise each pool is changed with the ordinary "
        "admin commands. A refusal that races the check is reported for its pool; applying "
        "the same plan again changes only what still differs."
    )
    apply["requestBody"] = {
        "required": True,
        "content": {
            "text/csv": {"schema": _string(minLength=1, description=csv_columns)}
        },
    }
    return {
        "admin_get_pool": _op(
            "A pool now, or as it was at `as_of` (rebuilt from its events)",
            {"200": _json(_ref("PoolAsOf"), "The pool (with `as_of` when asked)")},
            ("invalid_parameter", "unauthorized", rj.POOL_NOT_FOUND),
            parameters=(
                _query(
                    "as_of", _QUERY_TIMESTAMP, "The moment; 404 if the pool did not exist yet."
                ),
            ),
        ),
        "pool_timeline": _op(
            "A pool's history for people: changes, and bookings per minute (newest first)",
            {"200": _json(_ref("Timeline"), "One window of the history")},
            ("invalid_parameter", "unauthorized", rj.POOL_NOT_FOUND),
            parameters=(
                _query(
                    "before", _int(0, q.VERSION_MAX, default=0), "Only events below this version."
                ),
                _query(
                    "limit",
                    _int(1, q.TIMELINE_SCAN_MAX, default=q.TIMELINE_SCAN_DEFAULT),
                    "Events read for the window.",
                ),
            ),
        ),
        "board": _op(
            "The planners' board: a region's pools over a few days, with their numbers",
            {
                "200": _json(_ref("Board"), "Pools with capacity, reserved and open per slot"),
                "304": {"description": "Nothing changed since the ETag in If-None-Match"},
            },
            ("invalid_parameter", "unauthorized", "shard_unavailable"),
            parameters=(_REGION, *range_params(q.BOARD_DAYS_MAX), _KIND),
        ),
        "apply_plan": apply,
        "export_plan": _op(
            "A region's pools over a date range as a plan (the CSV that POST /plans reads)",
            {
                "200": {
                    "description": "The plan, one row per slot",
                    "content": {"text/csv": {"schema": _string()}},
                }
            },
            ("invalid_parameter", "unauthorized", *_UNAVAILABLE, "timeout"),
            parameters=(_REGION | {"required": True}, *range_params(q.EXPORT_DAYS_MAX), _KIND),
        ),
    }


def _operation(route: Route, spec: Schema) -> Schema:
    path_params = [_ref(name, "parameters") for name in re.findall(r"{(\w+)}", route.path)]
    operation = {"operationId": route.name, **spec, "parameters": path_params + spec["parameters"]}
    if not operation["parameters"]:
        del operation["parameters"]
    operation["responses"]["default"] = _ref("Error", "responses")
    if route.admin:
        operation["security"] = [{"bearerAuth": []}]
    return operation


@functools.cache
def openapi_document() -> dict[str, Any]:
    """The document, built once; callers must not mutate it."""
    specs = {**_operations(), **_planner_operations()}
    paths: dict[str, dict[str, Schema]] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(
            route, specs[route.name]
        )
    return {
        "openapi": "3.1.0",
        "info": {"title": "capsvc", "version": VERSION, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": {**_schemas(), **_planner_schemas()},
            "parameters": _path_parameters(),
            "headers": {
                "Retry-After": {
                    "description": "Seconds to wait before retrying.",
                    "schema": _int(0),
                },
                "WWW-Authenticate": {"description": "The bearer challenge.", "schema": _string()},
            },
            "responses": {
                "Error": {
                    "description": "Any other error (e.g. 500 internal_error, 503 shard_unavailable)",
                    "content": {PROBLEM_JSON: {"schema": _ref("Problem")}},
                }
            },
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Admin token; required on /v1/admin/ routes.",
                }
            },
        },
    }
