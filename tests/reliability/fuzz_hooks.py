"""schemathesis hooks for `test_fuzz_openapi.py` (loaded with SCHEMATHESIS_HOOKS).

JSON Schema cannot relate two values (nor requests), so the rules `/openapi.json` states in words are applied
to *positive* cases here, rather than letting the fuzzer "find" that the server enforces them:
`to` not before `from` and within the span, `ends_at` after `starts_at` by at most 24 h, a slot
starting on its pool's date (every positive pool and slot is put on one day, `FUZZ_DAY`, as a
slot added through a link cannot know its pool's date otherwise), unique slot ids, and no body
`pool_id` (optional; it must equal the path's, which a stateful link may set later), and an
Idempotency-Key used once. Negative cases are left alone: those must be refused.

The plan body is CSV (`text/csv`, a string in the schema): Hypothesis would only draw random
text, which the server refuses as it should, so a strategy draws real plans instead.

One finding is by design and documented in the spec (`get_reservation`'s 200): a released
reservation still answers 200 with `status: released`. Only that exact finding is dropped.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import MutableMapping
from typing import Any

import schemathesis
from hypothesis import strategies as st

from capsvc.http.query_limits import BOARD_DAYS_MAX, EXPORT_DAYS_MAX

DAYS_MAX = {"board": BOARD_DAYS_MAX, "export_plan": EXPORT_DAYS_MAX}
PLAN_HEADER = "pool_id,kind,region,date,slot_id,starts_at,ends_at,capacity,total_capacity"
# ahead, so its slots stay bookable; the day the OpenAPI examples use (their pool is reused)
FUZZ_DAY = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode.is_positive


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    if not _positive(case):
        return case
    name = case.operation.definition.raw.get("operationId")
    if name == "reserve" and case.headers:  # a case-insensitive mapping, not a dict
        _fresh_key(case.headers)
    if name in DAYS_MAX and isinstance(case.query, dict):
        _order_dates(case.query, DAYS_MAX[name])
    elif name in ("define_pool", "add_slot") and isinstance(case.body, dict):
        body = case.body
        if name == "add_slot":
            _order_times(body)
        else:
            # links may set the path after this hook: the optional body pool_id is left out
            body.pop("pool_id", None)
            if "date" in body:
                body["date"] = FUZZ_DAY.isoformat()
            seen: set[str] = set()
            for i, slot in enumerate(s for s in body.get("slots", []) if isinstance(s, dict)):
                _order_times(slot)
                if slot.get("slot_id") in seen:
                    slot["slot_id"] = f"dup{i}"
                seen.add(slot.get("slot_id"))
    return case


def _fresh_key(headers: MutableMapping[str, Any]) -> None:
    """A drawn Idempotency-Key made unique: the fuzzer draws the same few keys for different
    bodies, which the server rightly refuses (422 `idempotency_key_reused`, documented)."""
    for name, key in list(headers.items()):
        if name.lower() == "idempotency-key" and isinstance(key, str):
            headers[name] = f"{key[:200]}.{uuid.uuid4().hex}"


def _order_dates(query: dict[str, Any], days_max: int) -> None:
    try:
        first = dt.date.fromisoformat(query["from"])
        last = dt.date.fromisoformat(query["to"])
    except (KeyError, TypeError, ValueError):
        return
    first, last = min(first, last), max(first, last)
    last = min(last, first + dt.timedelta(days=days_max - 1))
    query["from"], query["to"] = first.isoformat(), last.isoformat()


def _order_times(slot: dict[str, Any]) -> None:
    try:
        starts = dt.datetime.fromisoformat(str(slot["starts_at"]).upper())
        ends = dt.datetime.fromisoformat(str(slot["ends_at"]).upper())
    except (KeyError, ValueError):
        return  # not a Python datetime: left for the server (and the spec) to agree on
    if starts.tzinfo is not None and ends.tzinfo is not None:
        # on the pool's day (in its own offset), and at most 24 h long
        on_the_day = dt.datetime.combine(FUZZ_DAY, starts.timetz())
        if not starts < ends <= starts + dt.timedelta(hours=24):
            ends = on_the_day + dt.timedelta(hours=1)
        else:
            ends = on_the_day + (ends - starts)
        slot["starts_at"], slot["ends_at"] = on_the_day.isoformat(), ends.isoformat()
        return
    if ends > starts:
        return
    if ends < starts:
        slot["starts_at"], slot["ends_at"] = slot["ends_at"], slot["starts_at"]
    else:  # equal: the end an hour later, written as the start was
        later = starts + dt.timedelta(hours=1) if starts.year < 9999 else starts
        earlier = starts - dt.timedelta(hours=1) if starts.year >= 9999 else starts
        slot["starts_at"] = earlier.isoformat()
        slot["ends_at"] = later.isoformat()


# -- the plan body -----------------------------------------------------------------------------
IDS = st.from_regex(r"\A[a-z][a-z0-9-]{0,11}\Z")


@st.composite
def plans(draw: Any) -> bytes:
    """A plan of one to three pools on `FUZZ_DAY` (a slot added to one of them later must be
    on its date too), each with one to three slots."""
    rows = [PLAN_HEADER]
    for p in range(draw(st.integers(1, 3))):
        day = FUZZ_DAY
        pool = f"plan-{draw(IDS)}-{p}"
        kind, region = draw(IDS), draw(IDS)
        total = draw(st.one_of(st.just(""), st.integers(0, 500).map(str)))
        for s in range(draw(st.integers(1, 3))):
            start = dt.datetime.combine(day, dt.time(s * 2), dt.UTC)
            end = start + dt.timedelta(hours=2)
            capacity = draw(st.integers(0, 100))
            rows.append(
                f"{pool},{kind},{region},{day.isoformat()},s{s},{start.isoformat()},"
                f"{end.isoformat()},{capacity},{total}"
            )
    return ("\n".join(rows) + "\n").encode()


schemathesis.openapi.media_type("text/csv", plans())


# -- the one finding by design -------------------------------------------------------------------
@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """Keep every failure but "use after free" on a released reservation, which answers 200
    with `status: released` as the spec documents."""
    if type(failure).__name__ != "UseAfterFree":
        return True
    if not (case.operation.path == "/v1/reservations/{reservation_id}" and case.method == "GET"):
        return True
    try:
        return json.loads(response.content).get("status") != "released"
    except (ValueError, AttributeError):
        return True
