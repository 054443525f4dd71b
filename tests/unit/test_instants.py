"""The domain's clock-free RFC 3339 arithmetic agrees with `datetime` on every valid stamp."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from capsvc.domain.instants import booking_closes_at_ms, instant_ms

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
moments = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2200, 12, 31))
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59)


@given(moments, offsets, st.sampled_from([0, 1, 3, 6, 9]), st.booleans())
def test_instant_ms_agrees_with_datetime(moment, offset, digits, lower):
    zone = dt.timezone(dt.timedelta(minutes=offset))
    local = moment.replace(tzinfo=zone)
    text = local.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{local.microsecond:06d}123"[:digits]
    if digits:
        text += "." + fraction
    sign, minutes = ("-", -offset) if offset < 0 else ("+", offset)
    text += "Z" if offset == 0 and lower else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    if lower:
        text = text.replace("T", "t").replace("Z", "z")
    whole_seconds = (local.replace(microsecond=0) - _EPOCH) // dt.timedelta(milliseconds=1)
    assert instant_ms(text) == whole_seconds + int((fraction + "000")[:3])

def test_the_cut_off_is_minutes_before_the_start():
    assert booking_closes_at_ms("2030-01-01T08:00:00+08:00", 90) == (
        instant_ms("2030-01-01T00:00:00Z") - 90 * 60_000)
