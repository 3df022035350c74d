"""Temperature excursions of one logger's readings against a profile's band, and the time
out of range.

An :class:`Excursion` is a run of out-of-range readings with its worst-case bounds: it runs
from the last in-range reading before it to the first in-range reading after it, since the
product may have left the band just after the one and come back just before the other
(interpolating the crossings would assume a smooth curve and can only shorten it). A sensor
gap cuts an excursion; its cut ends are marked open. Its direction is :data:`HIGH`,
:data:`LOW` or :data:`BOTH`. Pure: readings and a profile in, values out (docs/coldchain.md).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat

from provenance.domain.coldchain import Profile, Readings, Series, _gap_ends, series

__all__ = [
    "BOTH",
    "HIGH",
    "LOW",
    "Excursion",
    "excursions",
    "time_out_of_range",
]

HIGH, LOW, BOTH = "high", "low", "both"  # Excursion.direction


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
