"""Request parsing: JSON bodies and parameters into domain commands, or a BadRequest.

Strict on purpose: unknown fields, wrong types and out-of-range numbers are refused with the
dotted name of the offending field, so a typo never silently becomes a default.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from capsvc.domain import commands as cmd
from capsvc.domain.events import SlotSpec
from capsvc.domain.ids import is_valid_id, pool_of_reservation
from capsvc.domain.rejections import RESERVATION_NOT_FOUND
from capsvc.errors import BadRequest

if TYPE_CHECKING:  # only annotations: planning (plans read offline) stays free of aiohttp
    from aiohttp import web

# Patterns are used with fullmatch: `$` would also accept a trailing newline.
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,255}")  # visible ASCII but the list comma; no spaces
_TEXT = re.compile(r"[^\x00-\x1f\x7f]{1,128}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_DIGITS = re.compile(r"[0-9]{1,16}")
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class InputLimits:
    units_max: int = 100
    capacity_max: int = 1_000_000
    slots_max: int = 96


def invalid(field: str, detail: str) -> BadRequest:
    return BadRequest("invalid_field", f"{field}: {detail}", field=field)


def bad_parameter(name: str, detail: str) -> BadRequest:
    return BadRequest("invalid_parameter", f"{name}: {detail}", field=name)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    return json_object(await request.read())  # aiohttp enforces client_max_size (413)


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object (shared by aiohttp and the lean fronts)."""
    try:
        body = json.loads(raw) if raw else None
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise BadRequest("malformed_json", f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise BadRequest("malformed_json", "the body must be a JSON object")
    return body


def path_id(params: Mapping[str, str], name: str) -> str:
    """A path parameter that must be an id (`params`: aiohttp's match_info, or the front's)."""
    value = params[name]
    if not is_valid_id(value):
        raise bad_parameter(name, "must match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    return value


def path_reservation(params: Mapping[str, str]) -> tuple[str, str]:
    """-> (pool id, reservation id) from the path."""
    reservation_id = params["reservation_id"]
    pool_id = pool_of_reservation(reservation_id)
    if pool_id is None:  # an id we could not have issued names no reservation: 404
        raise BadRequest(
            RESERVATION_NOT_FOUND,
            f"no reservation {reservation_id}: it is not a reservation id capsvc issues",
        )
    return pool_id, reservation_id


def query_id(query: Mapping[str, str], name: str, *, required: bool) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        if required:
            raise bad_parameter(name, "is required")
        return None
    if not is_valid_id(value):
        raise bad_parameter(name, "must match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    return value


def query_date(query: Mapping[str, str], name: str, *, required: bool) -> str | None:
    value = query.get(name)
    if value is None or value == "":
        if required:
            raise bad_parameter(name, "is required")
        return None
    if not is_date(value):
        raise bad_parameter(name, "must be a date YYYY-MM-DD")
    return value


def query_int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return int_parameter(name, query.get(name), default, low, high)


def int_parameter(name: str, value: str | None, default: int, low: int, high: int) -> int:
    """A query parameter that must be an integer in low..high (`default` when absent)."""
    if value is None:
        return default
    if not _DIGITS.fullmatch(value) or not low <= int(value) <= high:
        raise bad_parameter(name, f"must be an integer in {low}..{high}")
    return int(value)


def checked_idempotency_key(key: str | None) -> str | None:
    """One key: repeated header lines arrive joined by commas (RFC 9110 5.3) and are refused,
    rather than silently taking one of them."""
    if key is None:
        return None
    if "," in key:
        raise BadRequest(
            "invalid_parameter",
            "Idempotency-Key: give exactly one key (the header came more than once, or as a list)",
            field="Idempotency-Key",
        )
    if not _KEY.fullmatch(key):
        raise BadRequest(
            "invalid_parameter",
            "Idempotency-Key: must be 1..255 visible ASCII characters",
            field="Idempotency-Key",
        )
    return key


# -- field checks --------------------------------------------------------------------------
def _only(body: dict[str, Any], allowed: set[str], prefix: str = "") -> None:
    for name in body:
        if name not in allowed:
            raise invalid(prefix + name, "is not a known field")


def _req(body: dict[str, Any], name: str, prefix: str = "") -> Any:
    if name not in body:
        raise invalid(prefix + name, "is required")
    return body[name]


def _id(value: Any, field: str) -> str:
    if not is_valid_id(value):
        raise invalid(field, "must be a string matching ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    return value


def _int(value: Any, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(field, "must be an integer")
    if not low <= value <= high:
        raise invalid(field, f"must be in {low}..{high}")
    return value


def is_date(value: Any) -> bool:
    """A real calendar date written YYYY-MM-DD."""
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _timestamp(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise invalid(field, "must be an RFC 3339 timestamp with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value.upper())
    except ValueError:
        raise invalid(field, "must be an RFC 3339 timestamp with an offset") from None
    if parsed.tzinfo is None:
        raise invalid(field, "needs a UTC offset (Z or +hh:mm)")
    return parsed


def parse_slot(body: Any, field: str, limits: InputLimits) -> SlotSpec:
    if not isinstance(body, dict):
        raise invalid(field, "must be an object")
    prefix = f"{field}." if field else ""
    _only(body, {"slot_id", "starts_at", "ends_at", "capacity"}, prefix)
    slot_id = _id(_req(body, "slot_id", prefix), prefix + "slot_id")
    starts = _timestamp(_req(body, "starts_at", prefix), prefix + "starts_at")
    ends = _timestamp(_req(body, "ends_at", prefix), prefix + "ends_at")
    if ends <= starts:
        raise invalid(prefix + "ends_at", "must be after starts_at")
    capacity = _int(_req(body, "capacity", prefix), prefix + "capacity", 0, limits.capacity_max)
    return SlotSpec(slot_id, body["starts_at"], body["ends_at"], capacity)


def _total(value: Any, limits: InputLimits) -> int | None:
    return None if value is None else _int(value, "total_capacity", 0, limits.capacity_max)


def parse_define_pool(pool_id: str, body: dict[str, Any], limits: InputLimits) -> cmd.DefinePool:
    _only(body, {"pool_id", "kind", "region", "date", "total_capacity", "slots"})
    if "pool_id" in body and body["pool_id"] != pool_id:
        raise invalid("pool_id", "differs from the pool id in the path")
    kind = _id(_req(body, "kind"), "kind")
    region = _id(_req(body, "region"), "region")
    date = _req(body, "date")
    if not is_date(date):
        raise invalid("date", "must be a date YYYY-MM-DD")
    total = _total(body.get("total_capacity"), limits)
    raw_slots = _req(body, "slots")
    if not isinstance(raw_slots, list):
        raise invalid("slots", "must be a list")
    if len(raw_slots) > limits.slots_max:
        raise invalid("slots", f"at most {limits.slots_max} slots")
    slots = tuple(parse_slot(s, f"slots[{i}]", limits) for i, s in enumerate(raw_slots))
    seen: set[str] = set()
    for i, s in enumerate(slots):
        if s.slot_id in seen:
            raise invalid(f"slots[{i}].slot_id", f"duplicate slot id {s.slot_id}")
        seen.add(s.slot_id)
    return cmd.DefinePool(pool_id, kind, region, date, total, slots)


def parse_update_slot(
    pool_id: str, slot_id: str, body: dict[str, Any], limits: InputLimits
) -> cmd.UpdateSlot:
    _only(body, {"capacity", "open"})
    if not body:
        raise invalid("capacity", "give capacity, open, or both")
    capacity = None
    if "capacity" in body:
        capacity = _int(body["capacity"], "capacity", 0, limits.capacity_max)
    is_open = body.get("open")
    if "open" in body and not isinstance(is_open, bool):
        raise invalid("open", "must be true or false")
    return cmd.UpdateSlot(pool_id, slot_id, capacity, is_open)


def parse_change_total(
    pool_id: str, body: dict[str, Any], limits: InputLimits
) -> cmd.ChangeTotalCapacity:
    _only(body, {"total_capacity"})
    return cmd.ChangeTotalCapacity(pool_id, _total(_req(body, "total_capacity"), limits))


def parse_reserve(
    pool_id: str,
    body: dict[str, Any],
    key: str | None,
    limits: InputLimits,
    nonce: str,
    now_ms: int,
) -> cmd.ReserveCapacity:
    _only(body, {"slot_id", "units", "order_ref"})
    slot_id = _id(_req(body, "slot_id"), "slot_id")
    units = _int(body.get("units", 1), "units", 1, limits.units_max)
    order_ref = body.get("order_ref")
    if order_ref is not None and (not isinstance(order_ref, str) or not _TEXT.fullmatch(order_ref)):
        raise invalid("order_ref", "must be a string of 1..128 printable characters")
    return cmd.ReserveCapacity(pool_id, slot_id, units, key, order_ref, nonce, now_ms)


# -- planner tools -------------------------------------------------------------------------
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def query_time_ms(query: Mapping[str, str], name: str) -> int | None:
    """An optional RFC 3339 query parameter, as milliseconds since the Unix epoch."""
    value = query.get(name)
    if value is None or value == "":
        return None
    try:
        parsed = _timestamp(value, name)
    except BadRequest:
        hint = " (a '+' in a URL must be sent as %2B)" if " " in value else ""
        raise bad_parameter(
            name, f"must be an RFC 3339 timestamp with an offset, e.g. 2026-12-01T08:00:00Z{hint}"
        ) from None
    return (parsed - _EPOCH) // dt.timedelta(milliseconds=1)


def query_bool(query: Mapping[str, str], name: str, default: bool) -> bool:
    value = query.get(name)
    if value is None:
        return default
    if value not in ("true", "false"):
        raise bad_parameter(name, "must be true or false")
    return value == "true"


def _whole(text: str, field: str, limits: InputLimits) -> int:
    if not _DIGITS.fullmatch(text):
        raise invalid(field, f"must be a whole number in 0..{limits.capacity_max}, not {text!r}")
    return _int(int(text), field, 0, limits.capacity_max)


def parse_plan_row(row: dict[str, str], limits: InputLimits) -> cmd.DefinePool:
    """One row of a plan CSV (every value is text, already stripped): the definition of its
    pool with the row's one slot. Raises BadRequest naming the first bad column."""
    pool_id = _id(row["pool_id"], "pool_id")
    kind = _id(row["kind"], "kind")
    region = _id(row["region"], "region")
    if not is_date(row["date"]):
        raise invalid("date", "must be a date YYYY-MM-DD")
    times = {"slot_id": row["slot_id"], "starts_at": row["starts_at"], "ends_at": row["ends_at"]}
    slot = parse_slot({**times, "capacity": 0}, "", limits)
    capacity = _whole(row["capacity"], "capacity", limits)
    slot = SlotSpec(slot.slot_id, slot.starts_at, slot.ends_at, capacity)
    total_text = row["total_capacity"]
    total = None if total_text == "" else _whole(total_text, "total_capacity", limits)
    return cmd.DefinePool(pool_id, kind, region, row["date"], total, (slot,))
