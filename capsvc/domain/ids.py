"""Identifier rules and the reservation id format (which carries its pool).

A reservation id is `<pool_id>~<n>.<nonce>`: `~` never occurs in a pool id, so the pool (and
hence the shard and owner) of a reservation is known from its id alone, with no lookup table.
"""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
_ID = re.compile(ID_PATTERN)
RESERVATION_SEPARATOR = "~"
RESERVATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}~[0-9a-f]{1,16}\.[0-9a-f]{4,32}$"
_RESERVATION = re.compile(RESERVATION_ID_PATTERN)
NONCE_PATTERN = re.compile(r"^[0-9a-f]{4,32}$")


def is_valid_id(value: object) -> bool:
    return isinstance(value, str) and _ID.match(value) is not None and "\n" not in value


def make_reservation_id(pool_id: str, number: int, nonce: str) -> str:
    assert is_valid_id(pool_id) and number >= 1 and NONCE_PATTERN.match(nonce), (pool_id, nonce)
    return f"{pool_id}{RESERVATION_SEPARATOR}{number:x}.{nonce}"


def pool_of_reservation(reservation_id: object) -> str | None:
    """The pool id inside a well-formed reservation id, or None if it is malformed."""
    if not isinstance(reservation_id, str) or "\n" in reservation_id:
        return None
    if _RESERVATION.match(reservation_id) is None:
        return None
    return reservation_id.split(RESERVATION_SEPARATOR, 1)[0]
