"""Cold-chain analysis of one logger's temperature readings, the ground it stands on: time
units, temperature profiles (:class:`Profile`, :data:`PROFILES`), readings as a sorted
:class:`Series` and the sensor gaps in them.

Pure functions: readings in, values out, :class:`~provenance.core.errors.ValidationError`
on bad input. No I/O, no clock, no state beyond constants.

A reading is a ``(time_us, temperature_c)`` pair, times in integer microseconds
since the Unix epoch. Input may be unsorted and may repeat readings: it is sorted
by time, exact repeats are dropped, and different values at one instant are all
kept (the instant is out of range if any of them is; MKT shares its time among
them). Build a :class:`Series` once with :func:`series` and pass it to several
functions to sort and check the readings only once. A profile's band is closed:
``low_c <= t <= high_c`` is in range.

The analysis itself is in the modules beside this one: excursions and time out of range
(:mod:`provenance.domain.coldchain_excursions`), Mean Kinetic Temperature
(:mod:`provenance.domain.coldchain_mkt`), chart downsampling
(:mod:`provenance.domain.coldchain_downsample`) and the status line
(:mod:`provenance.domain.coldchain_status`). Reasons and sources are in
``docs/coldchain.md``.
"""

from __future__ import annotations

import bisect
import math
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import islice
from types import MappingProxyType

from provenance.core.errors import ValidationError

__all__ = [
    "PROFILES",
    "Profile",
    "Series",
    "gaps",
    "profile",
    "series",
]

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

KELVIN = 273.15


_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}\Z")  # as kinds.PROFILE accepts


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_temperature(value: object) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > -KELVIN
    )


# --- profiles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """A product's allowed band and how much time outside it is tolerated.

    Tolerance is exceeded when one excursion lasts longer than ``max_excursion_us``,
    all of them together longer than ``max_total_us``, any reading goes beyond a hard
    limit (``limit_low_c``/``limit_high_c``, outside the band), or the MKT over any
    ``mkt_window_us`` (the whole record when None) is above ``mkt_limit_c``. None
    switches a rule off. Equal to a limit is still tolerated.
    """

    name: str
    low_c: float | None  # lowest in-range temperature; None: no lower bound
    high_c: float | None  # highest in-range temperature; None: no upper bound
    max_excursion_us: int | None  # longest single excursion tolerated
    max_total_us: int | None  # total time out of range tolerated
    interval_us: int  # how often the logger is expected to read
    max_gap_us: int  # silence longer than this between readings is a sensor gap
    limit_low_c: float | None = None  # any reading below this exceeds tolerance at once
    limit_high_c: float | None = None  # any reading above this exceeds tolerance at once
    mkt_limit_c: float | None = None
    mkt_window_us: int | None = None
    basis: str = ""  # where the numbers come from, in a few words

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValidationError("name", f"{self.name!r} is not a profile name like chilled")
        for field in ("low_c", "high_c", "limit_low_c", "limit_high_c", "mkt_limit_c"):
            value = getattr(self, field)
            if value is not None and not _is_temperature(value):
                raise ValidationError(field, f"must be a finite temperature in °C, got {value!r}")
        if self.low_c is None and self.high_c is None:
            raise ValidationError("low_c", "a profile needs at least one bound")
        if self.low_c is not None and self.high_c is not None and self.low_c > self.high_c:
            raise ValidationError("low_c", f"{self.low_c} is above high_c {self.high_c}")
        if self.limit_low_c is not None and (self.low_c is None or self.limit_low_c > self.low_c):
            raise ValidationError("limit_low_c", "must lie below low_c")
        if self.limit_high_c is not None and (
            self.high_c is None or self.limit_high_c < self.high_c
        ):
            raise ValidationError("limit_high_c", "must lie above high_c")
        for field in ("max_excursion_us", "max_total_us", "mkt_window_us"):
            value = getattr(self, field)
            if value is not None and (not _is_int(value) or value < 0):
                raise ValidationError(field, f"must be a duration in µs >= 0, got {value!r}")
        if not _is_int(self.interval_us) or self.interval_us <= 0:
            raise ValidationError("interval_us", f"must be > 0 µs, got {self.interval_us!r}")
        if not _is_int(self.max_gap_us) or self.max_gap_us < self.interval_us:
            raise ValidationError("max_gap_us", "must be at least interval_us")

    def in_range(self, temperature_c: float) -> bool:
        """Whether *temperature_c* lies in the band (bounds included)."""
        return (self.low_c is None or temperature_c >= self.low_c) and (
            self.high_c is None or temperature_c <= self.high_c
        )

    @property
    def band(self) -> str:
        """The band for people: ``2–8 °C``, ``≤ -18 °C``."""
        if self.low_c is None:
            return f"≤ {self.high_c:g} °C"
        if self.high_c is None:
            return f"≥ {self.low_c:g} °C"
        return f"{self.low_c:g}–{self.high_c:g} °C"


PROFILES = MappingProxyType(
    {
        p.name: p
        for p in (
            Profile(
                "chilled",
                0.0,
                5.0,
                max_excursion_us=2 * HOUR,
                max_total_us=4 * HOUR,
                interval_us=15 * MINUTE,
                max_gap_us=HOUR,
                basis="FDA Food Code 3-501.16 (≤ 5 °C) and 3-501.19 (4 h); UK chill tolerance",
            ),
            Profile(
                "frozen",
                None,
                -18.0,
                max_excursion_us=HOUR,
                max_total_us=4 * HOUR,
                interval_us=15 * MINUTE,
                max_gap_us=HOUR,
                limit_high_c=-15.0,
                basis="EU Directive 89/108/EEC: -18 °C, brief rises of at most 3 °C",
            ),
            Profile(
                "vaccine",
                2.0,
                8.0,
                max_excursion_us=10 * HOUR,
                max_total_us=24 * HOUR,
                interval_us=15 * MINUTE,
                max_gap_us=HOUR,
                limit_low_c=-0.5,
                limit_high_c=15.0,
                mkt_limit_c=8.0,
                mkt_window_us=DAY,
                basis="WHO PQS 30-day recorder alarms; USP <659>/<1079.2> controlled cold",
            ),
            Profile(
                "ultra-cold",
                -90.0,
                -60.0,
                max_excursion_us=30 * MINUTE,
                max_total_us=2 * HOUR,
                interval_us=5 * MINUTE,
                max_gap_us=30 * MINUTE,
                limit_high_c=-15.0,
                basis="mRNA vaccine labels (-90 to -60 °C); our own tight excursion limits",
            ),
            Profile(
                "ambient",
                15.0,
                25.0,
                max_excursion_us=DAY,
                max_total_us=None,
                interval_us=30 * MINUTE,
                max_gap_us=2 * HOUR,
                limit_high_c=40.0,
                mkt_limit_c=25.0,
                mkt_window_us=30 * DAY,
                basis="USP <659>/<1079.2> controlled room temperature",
            ),
        )
    }
)


def profile(name: str) -> Profile:
    """The built-in profile called *name*; ValidationError lists the known ones."""
    try:
        return PROFILES[name]
    except (KeyError, TypeError):
        known = ", ".join(PROFILES)
        raise ValidationError("profile", f"unknown profile {name!r}; known: {known}") from None


# --- readings --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """Readings sorted by time and checked: parallel ``times`` and ``temps``.

    Exact repeats are gone; readings that share a time but differ stay, in value order.
    Make one with :func:`series`, which checks; the constructor trusts its arguments.
    """

    times: tuple[int, ...]
    temps: tuple[float, ...]
    repeats: bool  # some instants carry more than one value
    lowest: float | None  # min(temps), None when empty
    highest: float | None

    def __len__(self) -> int:
        return len(self.times)


Readings = Iterable[tuple[int, float]] | Series


def series(readings: Readings) -> Series:
    """Sort and check *readings* once, for passing to several functions."""
    if isinstance(readings, Series):
        return readings
    try:
        columns = list(zip(*readings, strict=False))
    except TypeError:
        columns = [(), (), ()]
    if not columns:
        return Series((), (), False, None, None)
    if len(columns) != 2:
        raise ValidationError("readings", "must be (time_us, temperature_c) pairs")
    times, temps = columns
    if set(map(type, times)) != {int}:
        bad = next(t for t in times if type(t) is not int)
        raise ValidationError("time_us", f"must be integer microseconds, got {bad!r}")
    if not set(map(type, temps)) <= {int, float}:  # a float subclass, or worse
        for v in temps:
            if not isinstance(v, int | float) or isinstance(v, bool):
                raise ValidationError("temperature_c", f"must be a number in °C, got {v!r}")
        temps = tuple(map(float, temps))
    lowest, highest = min(temps), max(temps)
    if not math.isfinite(sum(temps)) or lowest <= -KELVIN:
        bad = next((v for v in temps if not _is_temperature(v)), "a sum beyond float range")
        raise ValidationError("temperature_c", f"must be finite and above -273.15, got {bad!r}")
    if all(map(operator.lt, times, islice(times, 1, None))):
        return Series(times, temps, False, lowest, highest)  # the usual case
    unique = sorted(set(zip(times, temps, strict=True)))
    times = tuple(t for t, _ in unique)
    temps = tuple(v for _, v in unique)
    repeats = any(map(operator.eq, times, islice(times, 1, None)))
    return Series(times, temps, repeats, lowest, highest)


def _check_duration(field: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError(field, f"must be a positive number of µs, got {value!r}")
    return value


# --- sensor gaps -----------------------------------------------------------------------------


def gaps(readings: Readings, max_gap_us: int) -> list[tuple[int, int]]:
    """``(start_us, end_us)`` of each silence longer than *max_gap_us* between readings."""
    data = series(readings)
    times = data.times
    return [(times[i - 1], times[i]) for i in _gaps_at(data, max_gap_us)]


def _gaps_at(data: Series, max_gap_us: int) -> list[int]:
    """Indexes into *data* of the readings that end a silence longer than *max_gap_us*."""
    return _gap_ends(data.times, _check_duration("max_gap_us", max_gap_us))


def _gap_ends(times: Sequence[int], limit: int) -> list[int]:
    """Indexes of the readings that end a gap. Jumps as far as *limit* reaches at each
    step, so a well-kept log costs about len(times) · interval / limit bisections."""
    ends: list[int] = []
    i, n = 0, len(times)
    while i < n - 1:
        j = bisect.bisect_right(times, times[i] + limit, i + 1) - 1
        if j == i:  # the next reading is more than limit away
            ends.append(i + 1)
            j = i + 1
        i = j
    return ends
