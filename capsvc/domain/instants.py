"""RFC 3339 timestamps as instants (milliseconds since the Unix epoch), without a clock.

The domain decides the booking cut-off against a command's `now_ms`, so it needs a slot's
start as a number. `datetime` stays out of the domain (it is where clocks live), so the
arithmetic is done here on the text `capsvc.http.parsing` already validated: `YYYY-MM-DD`,
`T`, `hh:mm:ss`, an optional fraction, then `Z` or `+hh:mm` / `-hh:mm` (either case).
"""

from __future__ import annotations

import functools

MINUTE_MS = 60_000
_DAY_MS = 86_400_000


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    era = year // 400
    year_of_era = year - era * 400
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


@functools.lru_cache(maxsize=65_536)  # slot times repeat across pools (one day template)
def instant_ms(timestamp: str) -> int:
    """The instant a validated RFC 3339 timestamp names, in ms (a fraction is truncated)."""
    year, month, day = int(timestamp[0:4]), int(timestamp[5:7]), int(timestamp[8:10])
    hour, minute, second = int(timestamp[11:13]), int(timestamp[14:16]), int(timestamp[17:19])
    rest = timestamp[19:]
    millis = 0
    if rest.startswith("."):
        digits = len(rest) - len(rest[1:].lstrip("0123456789"))
        millis = int((rest[1:digits] + "00")[:3])
        rest = rest[digits:]
    offset_minutes = 0
    if rest not in ("Z", "z"):
        sign = -1 if rest[0] == "-" else 1
        offset_minutes = sign * (int(rest[1:3]) * 60 + int(rest[4:6]))
    local_ms = (
        _days_from_civil(year, month, day) * _DAY_MS
        + ((hour * 60 + minute) * 60 + second) * 1000
        + millis
    )
    return local_ms - offset_minutes * MINUTE_MS


def booking_closes_at_ms(starts_at: str, cutoff_minutes: int) -> int:
    """The first instant a slot starting at `starts_at` no longer takes reservations."""
    return instant_ms(starts_at) - cutoff_minutes * MINUTE_MS
