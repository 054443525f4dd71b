"""Request parsing: JSON bodies and parameters into domain commands, or a BadRequest.

Strict on purpose: unknown fields, wrong types and out-of-range numbers are refused with the
dotted name of the offending field, so a typo never silently becomes a default. Bodies are
decoded with the Structs of `request_shapes`, whose JSON Schema `/openapi.json` publishes; what
a Struct cannot say (cross-field rules, real calendar dates) is checked here after decoding.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from msgspec import UNSET

from capsvc.domain import commands as cmd
from capsvc.domain.events import SlotSpec
from capsvc.domain.ids import is_valid_id, pool_of_reservation
from capsvc.domain.rejections import RESERVATION_NOT_FOUND
from capsvc.errors import BadRequest
from capsvc.http.request_shapes import (
    BOOKING_CUTOFF_MINUTES_MAX,
    DATE_RE,
    PATTERN_WORDS,
    SLOT_HOURS_MAX,
    TIMESTAMP_RE,
    InputLimits,
    shapes,
)

__all__ = ["InputLimits"]  # re-exported: callers build limits from here

if TYPE_CHECKING:  # only annotations: planning (plans read offline) stays free of aiohttp
    from aiohttp import web

# Patterns are used with fullmatch: `$` would also accept a trailing newline (the shared
# ones, DATE_RE and TIMESTAMP_RE, are anchored and refuse it themselves).
_KEY = re.compile(r"[\x21-\x2b\x2d-\x7e]{1,255}")  # visible ASCII but the list comma; no spaces
_DATE = re.compile(DATE_RE)
_DIGITS = re.compile(r"[0-9]{1,16}")
_RFC3339 = re.compile(TIMESTAMP_RE)

T = TypeVar("T")


def invalid(field: str, detail: str) -> BadRequest:
    return BadRequest("invalid_field", f"{field}: {detail}", field=field)


def bad_parameter(name: str, detail: str) -> BadRequest:
    return BadRequest("invalid_parameter", f"{name}: {detail}", field=name)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    return json_object(await request.read())  # aiohttp enforces client_max_size (413)


_decode_json = msgspec.json.Decoder().decode


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object (shared by aiohttp and the lean fronts).
    msgspec: strict JSON (no NaN), and a fraction of `json.loads`'s time on the hot path."""
    try:
        body = _decode_json(raw) if raw else None
    except (msgspec.DecodeError, RecursionError) as e:
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
    if value is None:
        if required:
            raise bad_parameter(name, "is required")
        return None
    if not is_valid_id(value):  # "" too: `?region=` names no region (the spec: minLength 1)
        raise bad_parameter(name, "must match ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    return value


def query_date(query: Mapping[str, str], name: str, *, required: bool) -> str | None:
    value = query.get(name)
    if value is None:
        if required:
            raise bad_parameter(name, "is required")
        return None
    if not is_date(value):  # "" too
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


# -- request bodies ------------------------------------------------------------------------
# Bodies are decoded with the Structs of `request_shapes` (the same types `/openapi.json`
# describes); msgspec's refusal is turned into the problem naming the field.
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_FIELD_NAMED = re.compile(r"^Object (?P<how>contains unknown|missing required) field `(?P<name>[^`]*)`$")
_EXPECTED = re.compile(r"^Expected `(?P<type>[^`]*)`(?P<rest>.*)$", re.DOTALL)
_TYPE_WORDS = {
    "int": "an integer",
    "str": "a string",
    "bool": "true or false",
    "array": "a list",
    "object": "an object",
    "int | null": "an integer or null",
    "str | null": "a string or null",
}
_BOUND = re.compile(r"^ (?P<op>[<>]=) (?P<n>-?[0-9]+)$")
_LENGTH = re.compile(r"^ of length (?P<op>[<>]=) (?P<n>[0-9]+)$")
_REGEX = re.compile(r"^ matching regex '(?P<pattern>.*)'$", re.DOTALL)
_PATTERN_WORDS = {repr(p)[1:-1]: words for p, words in PATTERN_WORDS.items()}


def _refusal(error: msgspec.ValidationError, within: str) -> BadRequest:
    """msgspec's message (`Expected `int` <= 100 - at `$.units``) as our problem, naming the
    field as `slots[0].capacity` (`within`: the field the body was found in, if any)."""
    at = _AT.fullmatch(str(error))
    assert at is not None
    what, path = at["what"], (at["path"] or "").lstrip(".")
    names = [within, path]
    named = _FIELD_NAMED.fullmatch(what)
    if named:
        names.append(named["name"])
        words = "is required" if named["how"] == "missing required" else "is not a known field"
    else:
        words = _words(what)
    return invalid(".".join(n for n in names if n) or "body", words)


def _words(what: str) -> str:
    expected = _EXPECTED.fullmatch(what)
    if expected is None:
        return what
    kind, rest = expected["type"], expected["rest"]
    if rest.startswith(", got "):
        return f"must be {_TYPE_WORDS.get(kind, kind)}"
    if bound := _BOUND.fullmatch(rest):
        return f"must be {'at least' if bound['op'] == '>=' else 'at most'} {bound['n']}"
    if length := _LENGTH.fullmatch(rest):
        unit = "items" if kind == "array" else "characters"
        return f"must have {'at least' if length['op'] == '>=' else 'at most'} {length['n']} {unit}"
    if regex := _REGEX.fullmatch(rest):
        return _PATTERN_WORDS.get(regex["pattern"], f"must match {regex['pattern']}")
    return what


def _whole_numbers(value: Any) -> Any:
    """`value` with every float that is a whole number (`5.0`) as an int: JSON Schema (and so
    `/openapi.json`) calls 5.0 an integer, so the server takes it as one."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {k: _whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_whole_numbers(v) for v in value]
    return value


def decode(body: Any, shape: type[T], within: str = "") -> T:
    """`body` (decoded JSON) as the Struct `shape`, or the problem naming the bad field."""
    try:
        return msgspec.convert(body, shape, strict=True)
    except msgspec.ValidationError as error:
        refused = error
    if "got `float`" in str(refused):  # rare: only then pay for the copy
        try:
            return msgspec.convert(_whole_numbers(body), shape, strict=True)
        except msgspec.ValidationError as error:
            refused = error
    raise _refusal(refused, within) from None


def is_date(value: Any) -> bool:
    """A real calendar date written YYYY-MM-DD."""
    if not isinstance(value, str) or not _DATE.match(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _id(value: Any, field: str) -> str:
    if not is_valid_id(value):
        raise invalid(field, "must be a string matching ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
    return value


def _calendar_date(value: str, field: str) -> str:
    if not is_date(value):
        raise invalid(field, "must be a date YYYY-MM-DD")
    return value


def _timestamp(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise invalid(field, "must be an RFC 3339 timestamp with an offset")
    try:
        parsed = dt.datetime.fromisoformat(value.upper())
    except ValueError:
        raise invalid(field, "must be an RFC 3339 timestamp with an offset") from None
    if parsed.tzinfo is None:
        raise invalid(field, "needs a UTC offset (Z or +hh:mm)")
    return parsed


_SLOT_LONGEST = dt.timedelta(hours=SLOT_HOURS_MAX)


def _slot_spec(slot: Any, prefix: str, pool_date: str | None) -> SlotSpec:
    """The checks a Struct cannot express: real instants, the end after the start by at most
    24 h, and the start on the pool's date (`pool_date`, when known) in the start's own
    offset. Only new definitions are checked: data stored before the rule still loads."""
    starts = _timestamp(slot.starts_at, prefix + "starts_at")
    ends = _timestamp(slot.ends_at, prefix + "ends_at")
    if ends <= starts:
        raise invalid(prefix + "ends_at", "must be after starts_at")
    if ends - starts > _SLOT_LONGEST:
        raise invalid(prefix + "ends_at", f"must be at most {SLOT_HOURS_MAX} hours after starts_at")
    if pool_date is not None and starts.date().isoformat() != pool_date:
        raise invalid(prefix + "starts_at",
                      f"must be on the pool's date {pool_date} (in its own UTC offset)")
    return SlotSpec(slot.slot_id, slot.starts_at, slot.ends_at, slot.capacity)


def parse_slot(
    body: Any, field: str, limits: InputLimits, pool_date: str | None = None
) -> SlotSpec:
    """One slot; `pool_date`: the date of the pool it is for (its start must be on it)."""
    prefix = f"{field}." if field else ""
    if not isinstance(body, dict):
        raise invalid(field or "body", "must be an object")
    return _slot_spec(decode(body, shapes(limits).slot, field), prefix, pool_date)


def parse_define_pool(pool_id: str, body: dict[str, Any], limits: InputLimits) -> cmd.DefinePool:
    pool = decode(body, shapes(limits).pool)
    if pool.pool_id is not UNSET and pool.pool_id != pool_id:
        raise invalid("pool_id", "differs from the pool id in the path")
    _calendar_date(pool.date, "date")
    slots = tuple(_slot_spec(s, f"slots[{i}].", pool.date) for i, s in enumerate(pool.slots))
    seen: set[str] = set()
    for i, s in enumerate(slots):
        if s.slot_id in seen:
            raise invalid(f"slots[{i}].slot_id", f"duplicate slot id {s.slot_id}")
        seen.add(s.slot_id)
    return cmd.DefinePool(pool_id, pool.kind, pool.region, pool.date, pool.total_capacity, slots,
                          pool.booking_cutoff_minutes)


def parse_update_slot(
    pool_id: str, slot_id: str, body: dict[str, Any], limits: InputLimits
) -> cmd.UpdateSlot:
    patch = decode(body, shapes(limits).slot_patch)
    capacity = None if patch.capacity is UNSET else patch.capacity
    is_open = None if patch.open is UNSET else patch.open
    if capacity is None and is_open is None:
        raise invalid("capacity", "give capacity, open, or both")
    return cmd.UpdateSlot(pool_id, slot_id, capacity, is_open)


def parse_change_total(
    pool_id: str, body: dict[str, Any], limits: InputLimits
) -> cmd.ChangeTotalCapacity:
    return cmd.ChangeTotalCapacity(pool_id, decode(body, shapes(limits).pool_patch).total_capacity)


def parse_reserve(
    pool_id: str,
    body: dict[str, Any],
    key: str | None,
    limits: InputLimits,
    nonce: str,
    now_ms: int,
) -> cmd.ReserveCapacity:
    r = decode(body, shapes(limits).reserve)
    return cmd.ReserveCapacity(pool_id, r.slot_id, r.units, key, r.order_ref, nonce, now_ms)


# -- planner tools -------------------------------------------------------------------------
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def query_time_ms(query: Mapping[str, str], name: str) -> int | None:
    """An optional RFC 3339 query parameter, as milliseconds since the Unix epoch."""
    value = query.get(name)
    if value is None:
        return None
    try:  # "" too: `?as_of=` names no moment
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
    if not _DIGITS.fullmatch(text) or int(text) > limits.capacity_max:
        raise invalid(field, f"must be a whole number in 0..{limits.capacity_max}, not {text!r}")
    return int(text)


def parse_plan_row(row: dict[str, str], limits: InputLimits) -> cmd.DefinePool:
    """One row of a plan CSV (every value is text, already stripped): the definition of its
    pool with the row's one slot. Raises BadRequest naming the first bad column."""
    pool_id = _id(row["pool_id"], "pool_id")
    kind = _id(row["kind"], "kind")
    region = _id(row["region"], "region")
    if not is_date(row["date"]):
        raise invalid("date", "must be a date YYYY-MM-DD")
    times = {"slot_id": row["slot_id"], "starts_at": row["starts_at"], "ends_at": row["ends_at"]}
    slot = parse_slot({**times, "capacity": 0}, "", limits, row["date"])
    capacity = _whole(row["capacity"], "capacity", limits)
    slot = SlotSpec(slot.slot_id, slot.starts_at, slot.ends_at, capacity)
    total_text = row["total_capacity"]
    total = None if total_text == "" else _whole(total_text, "total_capacity", limits)
    cutoff_text = row.get("booking_cutoff_minutes", "")  # an optional column; empty: 0
    cutoff = 0 if cutoff_text == "" else _cutoff(cutoff_text)
    return cmd.DefinePool(pool_id, kind, region, row["date"], total, (slot,), cutoff)


def _cutoff(text: str) -> int:
    if not _DIGITS.fullmatch(text) or int(text) > BOOKING_CUTOFF_MINUTES_MAX:
        raise invalid("booking_cutoff_minutes",
                      f"must be a whole number in 0..{BOOKING_CUTOFF_MINUTES_MAX}, not {text!r}")
    return int(text)
