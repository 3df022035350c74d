"""Mean Kinetic Temperature of one logger's readings (USP <1079.2>), overall and over the
worst window.

MKT weights each reading by the time it stands for: half the interval to each neighbour
(the first and last readings mirror their one interval), at most half the sensor-gap limit
on each side, so uniform sampling gives USP's plain formula. :func:`max_window_mkt` finds
the window (say 24 h) with the highest MKT. The activation energy defaults to USP's and ICH
Q1A's 83.144 kJ/mol. Pure: readings in, values out (docs/coldchain.md).
"""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Iterable
from itertools import accumulate, islice, repeat
from typing import NamedTuple

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import (
    KELVIN,
    Readings,
    Series,
    _check_duration,
    _gap_ends,
    _gaps_at,
    series,
)

__all__ = [
    "DEFAULT_ACTIVATION_ENERGY_KJ_MOL",
    "GAS_CONSTANT_KJ_MOL_K",
    "MKTWindow",
    "max_window_mkt",
    "mean_kinetic_temperature",
]

GAS_CONSTANT_KJ_MOL_K = 0.0083144  # R as USP <1079.2> writes it: 83.144 / R = 10 000 K
DEFAULT_ACTIVATION_ENERGY_KJ_MOL = 83.144  # USP <1079.2> and ICH Q1A default ΔH


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
