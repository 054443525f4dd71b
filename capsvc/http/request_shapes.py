"""The JSON request bodies of the public API, defined once as msgspec Structs.

`capsvc.http.parsing` decodes bodies with these types and `capsvc.http.openapi` publishes their
JSON Schema, so what the server refuses and what `/openapi.json` promises cannot drift apart.
What a Struct cannot say (`ends_at` after `starts_at`, a slot on its pool's date and at most
24 h long, unique slot ids, a real calendar date) is checked after decoding, in `parsing`, and
described in each Struct's docstring.

Numeric limits come from the configuration, so the Structs are built per `InputLimits`; the
OpenAPI document shows the defaults.

No `from __future__ import annotations` here: the Structs are declared inside a function and
msgspec must see their annotations as real types, not as names to look up later.
"""

import functools
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from capsvc.domain.ids import ID_PATTERN

# msgspec matches patterns with `re.search`, where `$` also matches before a final newline;
# JSON Schema (ECMA-262) reads `$` as the end of the text. The lookahead makes Python agree.
END = r"(?!\n)"
ID_RE = ID_PATTERN + END
DATE_RE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$" + END
TIMESTAMP_RE = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})$" + END
)
TEXT_RE = r"^[^\x00-\x1f\x7f]*$" + END

INTEGERS = (
    "Integers may be written `5` or `5.0` (the same JSON number); a fraction (`5.5`) is refused."
)
BOOKING_CUTOFF_MINUTES_MAX = 10_080  # a week: slots are on their pool's date
SLOT_HOURS_MAX = 24

# What each constraint means, in the words the problems use (keyed by the pattern msgspec
# names in its error).
PATTERN_WORDS = {
    ID_RE: "must be a string matching ^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$",
    DATE_RE: "must be a date YYYY-MM-DD",
    TIMESTAMP_RE: "must be an RFC 3339 timestamp with an offset",
    TEXT_RE: "must be a string of 1..128 printable characters",
}


@dataclass(frozen=True)
class InputLimits:
    units_max: int = 100
    capacity_max: int = 1_000_000
    slots_max: int = 96


class Shapes(NamedTuple):
    """The request body types for one set of limits."""

    slot: type[Struct]  # SlotDefinition: add a slot, and each slot of a pool definition
    pool: type[Struct]  # PoolDefinition: define a pool
    pool_patch: type[Struct]  # PoolPatch: change the pool-wide capacity
    slot_patch: type[Struct]  # SlotPatch: change a slot's capacity or open it/close it
    reserve: type[Struct]  # ReserveRequest: reserve units of a slot


def _string(pattern: str, description: str, **extra: Any) -> Any:
    return Annotated[str, Meta(pattern=pattern, description=description, **extra)]


Id = _string(ID_RE, "An id: 1-128 of A-Z a-z 0-9 . _ : - (not first).")
Date = _string(DATE_RE, "A calendar date.", extra_json_schema={"format": "date"})
Timestamp = _string(
    TIMESTAMP_RE,
    "RFC 3339 timestamp with an offset",
    extra_json_schema={"format": "date-time"},
)
OrderRef = _string(TEXT_RE, "The caller's reference.", min_length=1, max_length=128)


@functools.cache
def _shapes(limits: InputLimits) -> Shapes:
    Capacity = Annotated[int, Meta(ge=0, le=limits.capacity_max, description=INTEGERS)]

    class SlotDefinition(Struct, forbid_unknown_fields=True):
        """A slot. `ends_at` must be after `starts_at`, by at most 24 hours, and the date of
        `starts_at` (in its own UTC offset) must be the pool's `date`."""

        slot_id: Id
        starts_at: Timestamp
        ends_at: Timestamp
        capacity: Capacity

    class PoolDefinition(Struct, forbid_unknown_fields=True):
        """A pool with its slots. Slot ids must be unique; `pool_id`, if given, must equal
        the path's pool_id."""

        kind: Id
        region: Id
        date: Date
        slots: Annotated[
            list[SlotDefinition],
            Meta(max_length=limits.slots_max, description="Slot ids must be unique."),
        ]
        total_capacity: Capacity | None = None
        pool_id: Id | UnsetType = UNSET
        booking_cutoff_minutes: Annotated[
            int,
            Meta(
                ge=0,
                le=BOOKING_CUTOFF_MINUTES_MAX,
                description="A slot takes reservations until its `starts_at` minus this many "
                "minutes (a started slot never does); after that, reserving answers 409 "
                "`booking_closed`. Part of the definition: it cannot change. " + INTEGERS,
            ),
        ] = 0

    class PoolPatch(Struct, forbid_unknown_fields=True):
        """The pool-wide capacity cap; null removes it."""

        total_capacity: Capacity | None

    class SlotPatch(Struct, forbid_unknown_fields=True):
        """Give `capacity`, `open`, or both."""

        capacity: Capacity | UnsetType = UNSET
        open: bool | UnsetType = UNSET

    class ReserveRequest(Struct, forbid_unknown_fields=True):
        """Units of one slot; `units` defaults to 1."""

        slot_id: Id
        units: Annotated[int, Meta(ge=1, le=limits.units_max, description=INTEGERS)] = 1
        order_ref: OrderRef | None = None

    return Shapes(SlotDefinition, PoolDefinition, PoolPatch, SlotPatch, ReserveRequest)


_last: tuple[InputLimits, Shapes] | None = None


def shapes(limits: InputLimits) -> Shapes:
    """The Structs for `limits`. The hot path passes the same object every time: an identity
    check answers it without hashing the limits."""
    global _last
    last = _last
    if last is not None and last[0] is limits:
        return last[1]
    found = _shapes(limits)
    _last = (limits, found)
    return found


# Extra JSON Schema a Struct cannot carry itself, added where the body is used.
BODY_EXTRA: dict[str, dict[str, Any]] = {"SlotPatch": {"minProperties": 1}}


def json_schemas(limits: InputLimits) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """-> ({Struct name: the requestBody schema}, components) for the OpenAPI document."""
    types = list(shapes(limits))
    refs, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    bodies = {t.__name__: {**ref, **BODY_EXTRA.get(t.__name__, {})} for t, ref in zip(types, refs, strict=True)}
    return bodies, components
