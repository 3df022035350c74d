"""Cold-chain analysis of one logger's temperature readings: excursions, time out of
range, Mean Kinetic Temperature, sensor gaps, chart downsampling and a status line.

Pure functions: readings in, values out, :class:`~provenance.core.errors.ValidationError`
on bad input. No I/O, no clock (pass ``now_us``), no state beyond constants.

A reading is a ``(time_us, temperature_c)`` pair, times in integer microseconds
since the Unix epoch. Input may be unsorted and may repeat readings: it is sorted
by time, exact repeats are dropped, and different values at one instant are all
kept (the instant is out of range if any of them is; MKT shares its time among
them). Build a :class:`Series` once with :func:`series` and pass it to several
functions to sort and check the readings only once.

Decisions, with reasons and sources in ``docs/coldchain.md``:

- The band is closed: ``low_c <= t <= high_c`` is in range.
- Excursion bounds are the worst case the samples allow: an excursion runs from the
  last in-range reading before it to the first in-range reading after it, since the
  product may have left the band just after the one and come back just before the
  other. Interpolating the crossings would assume a smooth curve and can only
  shorten it. A sensor gap cuts an excursion; its cut ends are marked open.
- MKT weights each reading by the time it stands for: half the interval to each
  neighbour (the first and last readings mirror their one interval), at most half
  the sensor-gap limit on each side. Uniform sampling gives USP's plain formula.
"""

from __future__ import annotations

import bisect
import math
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from itertools import accumulate, compress, islice, repeat
from types import MappingProxyType
from typing import NamedTuple

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time

__all__ = [
    "BOTH",
    "DEFAULT_ACTIVATION_ENERGY_KJ_MOL",
    "EXCEEDED",
    "EXCURSION",
    "GAP",
    "GAS_CONSTANT_KJ_MOL_K",
    "HIGH",
    "LOW",
    "NO_DATA",
    "OK",
    "PROFILES",
    "STATES",
    "Bucket",
    "ColdChainStatus",
    "Excursion",
    "MKTWindow",
    "Profile",
    "Series",
    "assess",
    "downsample",
    "excursions",
    "format_duration",
    "gaps",
    "max_window_mkt",
    "mean_kinetic_temperature",
    "profile",
    "series",
    "time_out_of_range",
]

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR

KELVIN = 273.15
GAS_CONSTANT_KJ_MOL_K = 0.0083144  # R as USP <1079.2> writes it: 83.144 / R = 10 000 K
DEFAULT_ACTIVATION_ENERGY_KJ_MOL = 83.144  # USP <1079.2> and ICH Q1A default ΔH

HIGH, LOW, BOTH = "high", "low", "both"  # Excursion.direction

# ColdChainStatus.state, least to most severe; NO_DATA stands apart (nothing to judge).
OK = "ok"
GAP = "gap"  # in range whenever read, but the logger fell silent for too long
EXCURSION = "excursion"  # out of range, within the profile's tolerance
EXCEEDED = "tolerance-exceeded"
NO_DATA = "no-data"
STATES = (OK, GAP, EXCURSION, EXCEEDED, NO_DATA)

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


# --- excursions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Excursion:
    """A run of out-of-range readings, with its worst-case bounds.

    ``start_us`` is the last in-range reading before the run and ``end_us`` the first
    in-range reading after it. Where there is none (the data, or a sensor gap, begins
    or ends inside the run) the bound is the run's own first or last reading and
    ``open_start`` or ``open_end`` says the true excursion may have been longer.
    """

    start_us: int
    end_us: int
    direction: str  # HIGH, LOW, or BOTH when the run crossed the band without a reading in it
    peak_c: float  # the reading farthest outside the band
    readings: int  # out-of-range readings in the run
    first_out_us: int
    last_out_us: int
    open_start: bool = False
    open_end: bool = False

    @property
    def duration_us(self) -> int:
        return self.end_us - self.start_us


def excursions(readings: Readings, profile: Profile) -> list[Excursion]:
    """Every excursion out of *profile*'s band, in time order, never overlapping."""
    data = series(readings)
    return _excursions(data, profile, _gap_ends(data.times, profile.max_gap_us))


def time_out_of_range(readings: Readings, profile: Profile) -> int:
    """Total µs out of range: the sum of the excursions' worst-case durations."""
    return sum(e.duration_us for e in excursions(readings, profile))


def _excursions(data: Series, profile: Profile, gap_list: list[int]) -> list[Excursion]:
    times, temps = data.times, data.temps
    low = -math.inf if profile.low_c is None else profile.low_c
    high = math.inf if profile.high_c is None else profile.high_c
    if data.lowest is None or data.highest is None:
        return []  # no readings
    too_low, too_high = data.lowest < low, data.highest > high
    if not (too_low or too_high):
        return []
    gap_ends = set(gap_list)
    if data.repeats:
        return _excursions_by_instant(data, low, high, gap_ends)
    if too_low and too_high:
        outside = map(
            operator.or_,
            map(operator.lt, temps, repeat(low)),
            map(operator.gt, temps, repeat(high)),
        )
    elif too_high:
        outside = map(operator.gt, temps, repeat(high))
    else:
        outside = map(operator.lt, temps, repeat(low))
    found: list[Excursion] = []
    run: list[int] = []  # indexes of the current run of out-of-range readings
    for k in compress(range(len(times)), outside):
        if run and (k != run[-1] + 1 or k in gap_ends):
            found.append(_run_excursion(data, run, low, high, gap_ends))
            run = []
        run.append(k)
    found.append(_run_excursion(data, run, low, high, gap_ends))
    return found


def _run_excursion(
    data: Series, run: list[int], low: float, high: float, gap_ends: set[int]
) -> Excursion:
    """The excursion of consecutive out-of-range readings *run* (one value per instant)."""
    times, temps = data.times, data.temps
    a, b = run[0], run[-1]
    open_start = a == 0 or a in gap_ends
    open_end = b + 1 == len(times) or b + 1 in gap_ends
    values = temps[a : b + 1]
    lowest, highest = min(values), max(values)
    if highest <= high:
        direction, peak = LOW, lowest
    elif lowest >= low:
        direction, peak = HIGH, highest
    else:
        direction = BOTH
        peak = highest if highest - high >= low - lowest else lowest
    return Excursion(
        start_us=times[a] if open_start else times[a - 1],
        end_us=times[b] if open_end else times[b + 1],
        direction=direction,
        peak_c=peak,
        readings=len(run),
        first_out_us=times[a],
        last_out_us=times[b],
        open_start=open_start,
        open_end=open_end,
    )


def _excursions_by_instant(
    data: Series, low: float, high: float, gap_ends: set[int]
) -> list[Excursion]:
    """The general walk, instant by instant, for records with several values per instant:
    an instant is out of range when any of its values is."""
    times, temps = data.times, data.temps
    found: list[Excursion] = []
    run: _Run | None = None
    last_in: int | None = None  # last in-range instant since the data or a gap began
    i, n = 0, len(times)
    while i < n:
        t = times[i]
        j = i + 1
        while j < n and times[j] == t:
            j += 1
        if i in gap_ends:
            if run is not None:
                found.append(run.close(run.last_out, open_end=True))
                run = None
            last_in = None
        if temps[i] < low or temps[j - 1] > high:  # values at an instant are in order
            if run is None:
                run = _Run(t if last_in is None else last_in, last_in is None, t)
            run.add(t, temps[i:j], low, high)
        else:
            if run is not None:
                found.append(run.close(t, open_end=False))
                run = None
            last_in = t
        i = j
    if run is not None:
        found.append(run.close(run.last_out, open_end=True))
    return found


class _Run:
    """An excursion being read."""

    def __init__(self, start: int, open_start: bool, first_out: int):
        self.start, self.open_start = start, open_start
        self.first_out = self.last_out = first_out
        self.count = 0
        self.high_peak: float | None = None
        self.low_peak: float | None = None
        self.high_excess = self.low_excess = -1.0

    def add(self, t: int, values: Sequence[float], low: float, high: float) -> None:
        self.last_out = t
        for v in values:
            if v > high:
                self.count += 1
                if v - high > self.high_excess:
                    self.high_peak, self.high_excess = v, v - high
            elif v < low:
                self.count += 1
                if low - v > self.low_excess:
                    self.low_peak, self.low_excess = v, low - v

    def close(self, end: int, *, open_end: bool) -> Excursion:
        if self.low_peak is None:
            direction, peak = HIGH, self.high_peak
        elif self.high_peak is None:
            direction, peak = LOW, self.low_peak
        else:
            direction = BOTH
            peak = self.high_peak if self.high_excess >= self.low_excess else self.low_peak
        assert peak is not None
        return Excursion(
            self.start,
            end,
            direction,
            peak,
            self.count,
            self.first_out,
            self.last_out,
            self.open_start,
            open_end,
        )


# --- Mean Kinetic Temperature ----------------------------------------------------------------


class MKTWindow(NamedTuple):
    """The MKT over the readings in ``[end - window, end]`` (or all of them)."""

    mkt_c: float
    start_us: int  # first reading in the window
    end_us: int  # last reading in the window


def mean_kinetic_temperature(
    readings: Readings,
    activation_energy: float = DEFAULT_ACTIVATION_ENERGY_KJ_MOL,
    *,
    max_gap_us: int | None = None,
) -> float:
    """Mean Kinetic Temperature in °C (USP <1079.2>, ICH Q1A), time-weighted.

    ``activation_energy`` is ΔH in kJ/mol. Each reading weighs the time it stands
    for; with *max_gap_us*, at most half of it on either side, so that a reading
    beside a sensor gap does not speak for the silence.
    """
    data = _nonempty(readings)
    ratio = _ratio(activation_energy)
    gap_ends = [] if max_gap_us is None else _gaps_at(data, max_gap_us)
    return _mkt(data, _kinetics(data, ratio, max_gap_us, gap_ends))


def max_window_mkt(
    readings: Readings,
    window_us: int,
    activation_energy: float = DEFAULT_ACTIVATION_ENERGY_KJ_MOL,
    *,
    max_gap_us: int | None = None,
) -> MKTWindow:
    """The highest MKT over any *window_us* of the readings (all of them if shorter).

    USP <1079.2> evaluates an excursion by the MKT of a fixed window that includes
    it (24 h for controlled cold, 30 days for controlled room temperature): a whole
    journey's MKT would average a breach away. Windows end at each reading.
    """
    data = _nonempty(readings)
    ratio = _ratio(activation_energy)
    _check_duration("window_us", window_us)
    gap_ends = [] if max_gap_us is None else _gaps_at(data, max_gap_us)
    return _max_window(data, _kinetics(data, ratio, max_gap_us, gap_ends), window_us)


def _nonempty(readings: Readings) -> Series:
    data = series(readings)
    if not data.times:
        raise ValidationError("readings", "MKT needs at least one reading")
    return data


def _ratio(activation_energy: float) -> float:
    """ΔH/R in kelvin."""
    if (
        not isinstance(activation_energy, int | float)
        or isinstance(activation_energy, bool)
        or not math.isfinite(activation_energy)
        or activation_energy <= 0
    ):
        raise ValidationError("activation_energy", f"must be > 0 kJ/mol, got {activation_energy!r}")
    return activation_energy / GAS_CONSTANT_KJ_MOL_K


class _Kinetics(NamedTuple):
    """Per reading: its weight (relative time it stands for) and its Arrhenius factor
    exp(-ΔH/RT - shift); ``shift`` is 0 unless some factor would underflow."""

    weights: list[float]
    rates: list[float]
    shift: float
    ratio: float  # ΔH/R in kelvin


def _kinetics(data: Series, ratio: float, cap: int | None, gap_ends: list[int]) -> _Kinetics:
    weights = _weights(data, cap, gap_ends)
    temps = data.temps
    lowest, highest = data.lowest, data.highest
    assert lowest is not None and highest is not None
    shift = 0.0
    if -ratio / (lowest + KELVIN) < -700:
        shift = -ratio / (highest + KELVIN)
    exponents = map(operator.truediv, repeat(-ratio), map(operator.add, temps, repeat(KELVIN)))
    if shift:
        exponents = map(operator.sub, exponents, repeat(shift))
    rates = list(map(math.exp, exponents))
    return _Kinetics(weights, rates, shift, ratio)


def _weights(data: Series, cap: int | None, gap_ends: list[int]) -> list[float]:
    """Relative time each reading stands for: twice its µs (only ratios matter to MKT),
    readings that share an instant sharing its time."""
    times = data.times
    instants = sorted(set(times)) if data.repeats else times
    m = len(instants)
    if m == 1:
        return [1.0] * len(times)
    each: list[float] = [
        2 * (instants[1] - instants[0]),
        *map(operator.sub, islice(instants, 2, None), instants),
        2 * (instants[-1] - instants[-2]),
    ]
    if cap is not None and gap_ends:  # give no reading more than cap/2 of a silence
        ends = _gap_ends(instants, cap) if data.repeats else gap_ends
        for k in {k for g in ends for k in (g - 1, g)}:
            sides = [instants[k] - instants[k - 1]] if k > 0 else []
            sides += [instants[k + 1] - instants[k]] if k + 1 < m else []
            each[k] = 2 * sum(min(side, cap) for side in sides) / len(sides)  # ends mirror
    if not data.repeats:
        return each
    weights: list[float] = []
    for weight, instant in zip(each, instants, strict=True):
        shared = bisect.bisect_right(times, instant) - bisect.bisect_left(times, instant)
        weights += [weight / shared] * shared
    return weights


def _mkt(data: Series, kin: _Kinetics, a: int = 0, b: int | None = None) -> float:
    """MKT in °C of readings a..b-1: ΔH/R over -ln(their weighted mean factor)."""
    if a == 0 and b is None:
        weights, rates = kin.weights, kin.rates
        lowest, highest = data.lowest, data.highest
        assert lowest is not None and highest is not None
    else:
        weights, rates = kin.weights[a:b], kin.rates[a:b]
        lowest, highest = min(data.temps[a:b]), max(data.temps[a:b])
    mean = sum(map(operator.mul, weights, rates)) / sum(weights)  # positive terms: sum is fine
    kelvin = -kin.ratio / (kin.shift + math.log(mean))
    return min(max(kelvin - KELVIN, lowest), highest)  # a mean: clamp only rounding


def _max_window(
    data: Series, kin: _Kinetics, window: int, ends: Iterable[int] | None = None
) -> MKTWindow:
    """The worst window ``[t_j - window, t_j]`` over the end indexes *ends* (all if None).
    Windows reaching back before the first reading are skipped unless no other is left."""
    times = data.times
    n = len(times)
    if times[-1] - times[0] <= window:
        return MKTWindow(_mkt(data, kin), times[0], times[-1])
    ends = list(range(n) if ends is None else ends)
    first_full = bisect.bisect_left(times, times[0] + window)
    full = [j for j in ends if j >= first_full] or ends
    # Running sums over just the stretch the windows cover, offset by `base`.
    base = bisect.bisect_left(times, times[full[0]] - window)
    top = full[-1] + 1
    products = map(operator.mul, islice(kin.weights, base, top), islice(kin.rates, base, top))
    rate_sums = [0.0, *accumulate(products)]
    weight_sums = [0.0, *accumulate(islice(kin.weights, base, top))]
    best, best_span = -1.0, (0, n)
    i = base
    for j in full:
        if j + 1 < n and times[j + 1] == times[j]:
            continue  # a window takes every value at its last instant
        i = bisect.bisect_left(times, times[j] - window, i)
        a, b = i - base, j + 1 - base
        mean = (rate_sums[b] - rate_sums[a]) / (weight_sums[b] - weight_sums[a])
        if mean > best:
            best, best_span = mean, (i, j + 1)
    a, b = best_span  # recomputed on its own: the running sums only pick the window
    return MKTWindow(_mkt(data, kin, a, b), times[a], times[b - 1])


def _ends_after(data: Series, hot: Iterable[int], window: int) -> Iterable[int]:
    """End indexes of the windows ``[t_j - window, t_j]`` that hold a reading in *hot*."""
    times = data.times
    covered = 0
    for h in hot:
        stop = bisect.bisect_right(times, times[h] + window, h)
        yield from range(max(h, covered), stop)
        covered = max(covered, stop)


# --- downsampling for charts -----------------------------------------------------------------


class Bucket(NamedTuple):
    """One chart column: the readings in ``[start_us, end_us)`` reduced to first, last,
    min and max (M4), so that every peak survives. Empty: no readings, None values."""

    start_us: int
    end_us: int
    readings: int  # how many readings fall in it
    min_c: float | None
    max_c: float | None
    min_us: int | None  # when the minimum was read (the first time, if repeated)
    max_us: int | None
    first_us: int | None
    first_c: float | None
    last_us: int | None
    last_c: float | None
    out_of_range: bool  # some reading in it was outside the profile's band
    gap_before: bool  # a sensor gap ends at a reading in it: break the line there


def downsample(
    readings: Readings,
    buckets: int,
    profile: Profile | None = None,
    *,
    max_gap_us: int | None = None,
) -> list[Bucket]:
    """At most *buckets* equal time slices from the first reading to the last.

    Every bucket keeps its minimum and maximum, so a breach is never averaged away;
    with *profile* it flags out-of-range readings and, with its ``max_gap_us`` (or
    *max_gap_us*), sensor gaps. Empty buckets are kept; only ``gap_before`` means
    the logger was silent. O(buckets · log n + n) with C-speed scans.
    """
    if not _is_int(buckets) or buckets < 1:
        raise ValidationError("buckets", f"must be a positive int, got {buckets!r}")
    data = series(readings)
    times, temps = data.times, data.temps
    if not times:
        return []
    limit = max_gap_us if max_gap_us is not None else profile.max_gap_us if profile else None
    gap_ends = [] if limit is None else _gap_ends(times, _check_duration("max_gap_us", limit))
    low = -math.inf if profile is None or profile.low_c is None else profile.low_c
    high = math.inf if profile is None or profile.high_c is None else profile.high_c
    first, span = times[0], times[-1] - times[0] + 1
    count = min(buckets, span)
    edges = [first + k * span // count for k in range(count + 1)]
    gap_at = {bisect.bisect_right(edges, times[g]) - 1 for g in gap_ends}
    out: list[Bucket] = []
    i = 0
    for k in range(count):
        j = bisect.bisect_left(times, edges[k + 1], i)
        if i == j:
            out.append(_empty_bucket(edges[k], edges[k + 1]))
            continue
        values = temps[i:j]
        lowest, highest = min(values), max(values)
        out.append(
            Bucket(
                edges[k],
                edges[k + 1],
                j - i,
                lowest,
                highest,
                times[i + values.index(lowest)],
                times[i + values.index(highest)],
                times[i],
                temps[i],
                times[j - 1],
                temps[j - 1],
                lowest < low or highest > high,
                k in gap_at,
            )
        )
        i = j
    return out


def _empty_bucket(start: int, end: int) -> Bucket:
    return Bucket(start, end, 0, None, None, None, None, None, None, None, None, False, False)


# --- the status line -------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdChainStatus:
    """What the consumer page says about one leg's (or lot's) temperature record.

    ``state`` is one of :data:`STATES`; ``reasons`` explain it in plain words.
    """

    profile: str
    state: str
    reasons: tuple[str, ...]
    readings: int
    first_us: int | None
    last_us: int | None
    min_c: float | None
    max_c: float | None
    excursions: tuple[Excursion, ...]
    time_out_of_range_us: int
    longest_excursion_us: int
    mkt_c: float | None
    window_mkt: MKTWindow | None  # worst MKT over the profile's window, if it sets one
    gaps: tuple[tuple[int, int], ...]
    unmonitored_us: int  # total time inside sensor gaps

    @property
    def ok(self) -> bool:
        return self.state == OK


def assess(
    readings: Readings,
    profile: Profile,
    now_us: int | None = None,
    *,
    activation_energy: float = DEFAULT_ACTIVATION_ENERGY_KJ_MOL,
) -> ColdChainStatus:
    """Judge *readings* against *profile*.

    With *now_us* the record is still being written: silence since the last reading
    longer than the profile's gap limit is a gap, and an excursion still open at the
    last reading lasts until now while the logger is not yet overdue.
    """
    if now_us is not None and not _is_int(now_us):
        raise ValidationError("now_us", f"must be integer microseconds, got {now_us!r}")
    data = series(readings)
    times, temps = data.times, data.temps
    if not times:
        return _no_data(profile)
    ratio = _ratio(activation_energy)
    gap_ends = _gap_ends(times, profile.max_gap_us)
    found = _excursions(data, profile, gap_ends)
    silent = [(times[i - 1], times[i]) for i in gap_ends]
    if now_us is not None and now_us > times[-1]:
        if now_us - times[-1] > profile.max_gap_us:
            silent.append((times[-1], now_us))
        elif found and found[-1].open_end and found[-1].last_out_us == times[-1]:
            found[-1] = replace(found[-1], end_us=now_us)
    lowest, highest = data.lowest, data.highest
    assert lowest is not None and highest is not None
    kin = _kinetics(data, ratio, profile.max_gap_us, gap_ends)
    mkt = _mkt(data, kin)
    window = None
    limit, span = profile.mkt_limit_c, profile.mkt_window_us
    if limit is not None and span is not None and highest > limit:
        # A window with no reading above the limit cannot have an MKT above it.
        hot = compress(range(len(temps)), map(operator.gt, temps, repeat(limit)))
        window = _max_window(data, kin, span, _ends_after(data, hot, span))
    total = sum(e.duration_us for e in found)
    longest = max((e.duration_us for e in found), default=0)
    breaches = _breaches(profile, data, found, total, longest, mkt, window, lowest, highest)
    if breaches:
        state, reasons = EXCEEDED, breaches
    elif found:
        state = EXCURSION
        reasons = [
            f"{len(found)} excursion{'s' if len(found) > 1 else ''} outside {profile.band}, "
            f"{format_duration(total)} in all, within tolerance"
        ]
    elif silent:
        state, reasons = GAP, []
    else:
        state, reasons = OK, [f"always within {profile.band}"]
    reasons += [
        f"no readings for {format_duration(b - a)} from {format_time(a)}" for a, b in silent
    ]
    return ColdChainStatus(
        profile=profile.name,
        state=state,
        reasons=tuple(reasons),
        readings=len(times),
        first_us=times[0],
        last_us=times[-1],
        min_c=lowest,
        max_c=highest,
        excursions=tuple(found),
        time_out_of_range_us=total,
        longest_excursion_us=longest,
        mkt_c=mkt,
        window_mkt=window,
        gaps=tuple(silent),
        unmonitored_us=sum(b - a for a, b in silent),
    )


def _no_data(profile: Profile) -> ColdChainStatus:
    return ColdChainStatus(
        profile=profile.name,
        state=NO_DATA,
        reasons=("no temperature readings",),
        readings=0,
        first_us=None,
        last_us=None,
        min_c=None,
        max_c=None,
        excursions=(),
        time_out_of_range_us=0,
        longest_excursion_us=0,
        mkt_c=None,
        window_mkt=None,
        gaps=(),
        unmonitored_us=0,
    )


def _breaches(
    profile: Profile,
    data: Series,
    found: list[Excursion],
    total: int,
    longest: int,
    mkt: float,
    window: MKTWindow | None,
    lowest: float,
    highest: float,
) -> list[str]:
    """Why tolerance is exceeded, one sentence per rule broken."""
    why = []
    if profile.limit_high_c is not None and highest > profile.limit_high_c:
        at = format_time(data.times[data.temps.index(highest)])
        why.append(f"{highest:g} °C at {at} is above the {profile.limit_high_c:g} °C limit")
    if profile.limit_low_c is not None and lowest < profile.limit_low_c:
        at = format_time(data.times[data.temps.index(lowest)])
        why.append(f"{lowest:g} °C at {at} is below the {profile.limit_low_c:g} °C limit")
    if profile.max_excursion_us is not None and longest > profile.max_excursion_us:
        worst = max(found, key=lambda e: e.duration_us)
        why.append(
            f"one excursion lasted {format_duration(longest)} from {format_time(worst.start_us)}"
            f" (tolerated: {format_duration(profile.max_excursion_us)})"
        )
    if profile.max_total_us is not None and total > profile.max_total_us:
        why.append(
            f"{format_duration(total)} out of range in all"
            f" (tolerated: {format_duration(profile.max_total_us)})"
        )
    if profile.mkt_limit_c is not None:
        worst_mkt = window.mkt_c if window is not None else mkt
        if worst_mkt > profile.mkt_limit_c:
            where = f" over the window ending {format_time(window.end_us)}" if window else ""
            why.append(
                f"mean kinetic temperature {worst_mkt:.1f} °C{where}"
                f" is above {profile.mkt_limit_c:g} °C"
            )
    return why


def format_duration(us: int) -> str:
    """A duration for people, two units at most: ``2 h 5 min``, ``45 s``."""
    seconds = max(us, 0) // SECOND
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    lead = next((k for k, (value, _) in enumerate(parts) if value), len(parts) - 1)
    shown = [f"{value} {unit}" for value, unit in parts[lead : lead + 2] if value]
    return " ".join(shown) or "0 s"
