"""One logger's readings reduced to chart columns (M4 downsampling).

:func:`downsample` cuts a leg into buckets (:class:`Bucket`) and keeps, for each, the first,
last, minimum and maximum reading in time order, so every peak survives and nothing is
averaged; each bucket also says whether it holds an out-of-range reading or follows a sensor
gap. The consumer page's chart (:mod:`provenance.web.chart`) draws its line through them. Pure:
readings and a profile in, buckets out.
"""

from __future__ import annotations

import bisect
import math
from typing import NamedTuple

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import (
    Profile,
    Readings,
    _check_duration,
    _gap_ends,
    _is_int,
    series,
)

__all__ = [
    "Bucket",
    "downsample",
]

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
