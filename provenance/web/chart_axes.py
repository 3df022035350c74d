"""The temperature chart's scales and axis ticks.

:class:`ChartScale` maps microseconds and °C to viewBox tenths; the y domain is padded to
nice steps around the readings and the profile's band; y ticks fall on those steps and x
ticks on round times (seconds to weeks, then calendar months) in the reader's time zone
(UTC unless told; the grid follows the zone's offset at the chart's start), at most
``X_INTERVALS`` of them. Numbers are written language-neutral (``2.5``, a real minus sign).
Pure: numbers in, positions and text out.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import Profile
from provenance.web.chart_layout import (
    FONT,
    LABEL_ROOM,
    LEFT,
    MINUS,
    PLOT_HEIGHT,
    RIGHT,
    TOP,
    X_INTERVALS,
    Y_INTERVALS,
)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
_MONDAY = 4 * DAY  # 1970-01-05, the first Monday after the epoch: weeks start there
_FIXED_STEPS = (
    *(s * SECOND for s in (1, 2, 5, 10, 15, 30)),
    *(m * MINUTE for m in (1, 2, 5, 10, 15, 30)),
    *(h * HOUR for h in (1, 2, 3, 6, 12)),
    DAY,
    2 * DAY,
    WEEK,
    2 * WEEK,
)
_MONTH_STEPS = (1, 2, 3, 6)


def chart_zone(name: str) -> tzinfo:
    """The zone the time axis is in, by its IANA name ("UTC", "Asia/Shanghai")."""
    if name == "UTC":
        return UTC
    if not isinstance(name, str) or len(name) > 64 or name.startswith("/") or ".." in name:
        raise ValidationError("zone", f"not a time zone name: {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError("zone", f"not a time zone name: {name!r}") from None


def local_moment(t: int, zone: tzinfo = UTC) -> datetime:
    """Microseconds since the epoch as a time in *zone*."""
    return (_EPOCH + timedelta(microseconds=t)).astimezone(zone)


# --- scales --------------------------------------------------------------------------------------


class ChartScale:
    """Time and °C to viewBox units, rounded to tenths (as integers, so that sums and
    differences of coordinates stay exact)."""

    def __init__(self, t0: int, t1: int, lo: float, hi: float):
        self.t0, self.kx = t0, (RIGHT - LEFT) * 10 / (t1 - t0)  # tenths per µs
        self.hi, self.ky = hi, PLOT_HEIGHT * 10 / (hi - lo)  # tenths per °C

    def x(self, t: int) -> int:
        return round(LEFT * 10 + (t - self.t0) * self.kx)

    def y(self, c: float) -> int:
        return round(TOP * 10 + (self.hi - c) * self.ky)


def _n(tenths: int) -> str:
    """A coordinate in tenths as a short decimal: 123 → 12.3, 120 → 12."""
    whole, frac = divmod(abs(tenths), 10)
    sign = "-" if tenths < 0 else ""
    return f"{sign}{whole}.{frac}" if frac else f"{sign}{whole}"


@lru_cache(maxsize=4096)
def _d(tenths: int) -> str:
    """Like :func:`_n` but without a leading zero (.5, -.5), for path data."""
    text = _n(tenths)
    if text.startswith("0."):
        return text[1:]
    if text.startswith("-0."):
        return "-" + text[2:]
    return text


def _nice_step(raw: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at least *raw*."""
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if m * power >= raw * (1 - 1e-9):
            return m * power
    return 10 * power  # pragma: no cover - the loop always returns


def _y_domain(
    lowest: float, highest: float, profile: Profile, *, room_below: bool = False
) -> tuple[float, float, float]:
    """The y-axis: the readings and the band edges, widened to whole 1-2-5 steps, and
    with *room_below* by more steps until a label fits under the lowest reading."""
    values = [lowest, highest, *(e for e in (profile.low_c, profile.high_c) if e is not None)]
    lo, hi = min(values), max(values)
    if hi - lo < 1e-9:
        lo, hi = lo - 1, hi + 1
    step = _nice_step((hi - lo) / Y_INTERVALS)
    lo = math.floor(lo / step + 1e-9) * step
    hi = math.ceil(hi / step - 1e-9) * step
    while room_below and (lowest - lo) * PLOT_HEIGHT < LABEL_ROOM * (hi - lo):
        lo -= step
    return lo, hi, step


class AxisTick(NamedTuple):
    pos: int  # y or x in tenths
    value: float | int  # °C or µs
    text: str
    edge: bool = False  # a band edge


def _decimals(step: float) -> int:
    return max(0, -math.floor(math.log10(step) + 1e-9))


def _temp(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("-", MINUS)


def _edge_text(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return _temp(float(text), max(0, len(text.partition(".")[2])))


def _y_ticks(
    lo: float, hi: float, step: float, profile: Profile, scale: ChartScale
) -> list[AxisTick]:
    """Whole steps from lo to hi, plus the band edges; a step that would crowd a band
    edge's label gives way to it."""
    decimals = _decimals(step)
    count = round((hi - lo) / step)
    ticks = [AxisTick(scale.y(lo + k * step), lo + k * step, "") for k in range(count + 1)]
    ticks = [t._replace(text=_temp(t.value, decimals)) for t in ticks]
    edges = [
        AxisTick(scale.y(e), e, _edge_text(e), edge=True)
        for e in (profile.low_c, profile.high_c)
        if e is not None
    ]
    crowd = FONT * 10
    kept = [t for t in ticks if all(abs(t.pos - e.pos) >= crowd for e in edges)]
    return sorted([*kept, *edges], key=lambda t: -t.pos)  # bottom to top: rising °C


def _x_ticks(t0: int, t1: int, zone: tzinfo = UTC) -> tuple[list[int], int]:
    """Tick times and the step (about, for months): the first 'nice' step that
    gives at most X_INTERVALS steps, on round times of *zone* (its offset at t0).
    Weeks start on Monday, months on the 1st."""
    span = t1 - t0
    shift = local_moment(t0, zone).utcoffset() or timedelta(0)
    shift_us = (shift.days * 86_400 + shift.seconds) * SECOND
    for step in _FIXED_STEPS:
        if span <= step * X_INTERVALS:
            offset = _MONDAY if step >= WEEK else 0
            first = t0 + (offset - shift_us - t0) % step  # the first grid time at or after t0
            return list(range(first, t1 + 1, step)), step
    for months in _MONTH_STEPS:
        if span <= months * 30 * DAY * X_INTERVALS:
            return _calendar_ticks(t0, t1, months, zone), months * 30 * DAY
    years = 1
    while span > years * 365 * DAY * X_INTERVALS:
        years = round(_nice_step(years * 1.5))
    return _calendar_ticks(t0, t1, 12 * years, zone), years * 365 * DAY


def _calendar_ticks(t0: int, t1: int, months: int, zone: tzinfo = UTC) -> list[int]:
    day = local_moment(t0, zone)
    index = day.year * 12 + day.month - 1
    ticks = []
    while True:
        year, month = divmod(index, 12)
        if index % months == 0:
            t = _micros(datetime(year, month + 1, 1, tzinfo=zone))
            if t > t1:
                return ticks
            if t >= t0:
                ticks.append(t)
        index += 1


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds
