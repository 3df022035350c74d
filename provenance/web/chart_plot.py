"""The shapes inside the temperature chart's plot area.

The readings as points (:class:`ChartPoint`) and the silences longer than the profile's gap
limit; the allowed band, the hatched "no data" areas, the excursion areas, the grid, the
limit lines, the M4 line itself (broken at gaps, lone readings as dots) and the excursion
peaks with their markers. Each function returns SVG markup; pure.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import NamedTuple

from provenance.domain.coldchain import Profile
from provenance.domain.coldchain_downsample import Bucket
from provenance.domain.coldchain_excursions import HIGH, LOW, Excursion
from provenance.web.chart_axes import AxisTick, ChartScale, _d, _n
from provenance.web.chart_layout import (
    BAND_EDGE,
    BAND_FILL,
    BOTTOM,
    GRID,
    HATCH_BACK,
    HATCH_INK,
    HOT,
    HOT_FILL,
    LEFT,
    MAX_DOTS,
    MIN_MARK,
    PLOT_HEIGHT,
    RIGHT,
    TOP,
)


class ChartPoint(NamedTuple):
    t: int
    c: float
    bucket: int  # index of its bucket
    gap_before: bool  # first point of a gap_before bucket in which no reported gap ends


def _points(buckets: Sequence[Bucket], gap_ends: list[int]) -> list[ChartPoint]:
    """The M4 points of every non-empty bucket in time order: first, min, max, last,
    sorted by time (first before last at a shared instant), repeats dropped.

    *gap_ends* (sorted) are the reported gaps' ends: a ``gap_before`` bucket holding
    one needs no break at its start, since the gap itself places the break."""
    points: list[ChartPoint] = []
    for k, b in enumerate(buckets):
        if not b.readings or b.min_c is None or b.max_c is None:
            continue
        four = [(b.first_us, 0, b.first_c), (b.min_us, 1, b.min_c), (b.max_us, 2, b.max_c)]
        four.append((b.last_us, 3, b.last_c))
        seen: set[tuple[int, float]] = set()
        k_end = bisect.bisect_left(gap_ends, b.start_us)
        head = b.gap_before and not (k_end < len(gap_ends) and gap_ends[k_end] < b.end_us)
        for t, _, c in sorted(four, key=lambda p: (p[0], p[1])):
            if t is None or c is None or (t, c) in seen:
                continue
            seen.add((t, c))
            points.append(ChartPoint(t, float(c), k, head))
            head = False
    points.sort(key=lambda p: p.t)  # buckets are in order already; a no-op then
    return points


def _silences(
    reported: list[tuple[int, int]],
    points: list[ChartPoint],
    profile: Profile,
    t0: int,
    t1: int,
    start_us: int,
    end_us: int,
) -> list[tuple[int, int]]:
    """Reported gaps plus silence at the leg's ends longer than the gap limit, sorted,
    clipped to the chart, overlaps merged. Gaps that only touch stay apart: the
    reading between them is a point of its own."""
    spans = list(reported)
    first, last = points[0].t, points[-1].t
    if first - start_us > profile.max_gap_us:
        spans.append((start_us, first))
    if end_us - last > profile.max_gap_us:
        spans.append((last, end_us))
    merged: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        a, b = max(a, t0), min(b, t1)
        if b <= a:
            continue
        if merged and a < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


# --- plot elements -------------------------------------------------------------------------------


def _defs(chart_id: str) -> str:
    return (
        f'<defs><pattern id="{chart_id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{HATCH_BACK}"/>'
        f'<path d="M0 0V6" stroke="{HATCH_INK}" stroke-width="2"/></pattern></defs>'
    )


def _band(profile: Profile, scale: ChartScale) -> str:
    """The allowed band, to the plot's edge on an open side, with its finite edges."""
    top = scale.y(profile.high_c) if profile.high_c is not None else TOP * 10
    bottom = scale.y(profile.low_c) if profile.low_c is not None else BOTTOM * 10
    rect = (
        f'<rect class="band" x="{LEFT}" y="{_n(top)}" width="{RIGHT - LEFT}"'
        f' height="{_n(bottom - top)}" fill="{BAND_FILL}"/>'
    )
    edges = "".join(
        f"M{LEFT} {_d(scale.y(e))}H{RIGHT}"
        for e in (profile.high_c, profile.low_c)
        if e is not None
    )
    return (
        rect + f'<path class="band-edge" d="{edges}" stroke="{BAND_EDGE}" stroke-width="1.5"'
        ' stroke-dasharray="6 3"/>'
    )


def _span(a: int, b: int, scale: ChartScale) -> tuple[int, int]:
    """x and width of the span [a, b], at least MIN_MARK wide, kept inside the plot."""
    x0, x1 = scale.x(a), scale.x(b)
    least = round(MIN_MARK * 10)
    if x1 - x0 < least:
        mid = (x0 + x1) // 2
        x0 = min(max(mid - least // 2, LEFT * 10), RIGHT * 10 - least)
        x1 = x0 + least
    return x0, x1 - x0


def _merge_spans(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """(x, width) spans in time order, those less than a unit apart joined into one."""
    merged: list[tuple[int, int]] = []
    for x, w in spans:
        if merged and x <= merged[-1][0] + merged[-1][1] + 10:
            x0 = merged[-1][0]
            merged[-1] = (x0, max(x + w, x0 + merged[-1][1]) - x0)
        else:
            merged.append((x, w))
    return merged


def _gap_rects(spans: list[tuple[int, int]], chart_id: str) -> list[str]:
    rects = []
    for x, w in spans:
        rects.append(
            f'<rect class="gap" x="{_n(x)}" y="{TOP}" width="{_n(w)}" height="{PLOT_HEIGHT}"'
            f' fill="url(#{chart_id}-hatch)"/>'
        )
    return rects


def _excursion_rects(spans: list[tuple[int, int]]) -> list[str]:
    rects = []
    for x, w in spans:
        rects.append(
            f'<rect class="excursion" x="{_n(x)}" y="{TOP}" width="{_n(w)}"'
            f' height="{PLOT_HEIGHT}" fill="{HOT_FILL}" fill-opacity=".8"/>'
        )
    return rects


def _grid(y_ticks: list[AxisTick], x_ticks: list[int], scale: ChartScale) -> str:
    across = "".join(f"M{LEFT} {_d(t.pos)}H{RIGHT}" for t in y_ticks)
    down = "".join(f"M{_d(scale.x(t))} {TOP}V{BOTTOM}" for t in x_ticks)
    return f'<path class="grid" d="{across}{down}" stroke="{GRID}" stroke-width="1"/>'


def _limits(profile: Profile, lo: float, hi: float, scale: ChartScale) -> str:
    """Hard limits as thin dashed lines, only where the axis reaches them anyway."""
    shown = [
        v for v in (profile.limit_low_c, profile.limit_high_c) if v is not None and lo <= v <= hi
    ]
    if not shown:
        return ""
    d = "".join(f"M{LEFT} {_d(scale.y(v))}H{RIGHT}" for v in shown)
    return f'<path class="limit" d="{d}" stroke="{HOT}" stroke-width="1" stroke-dasharray="2 3"/>'


def _line(
    points: list[ChartPoint], silent: list[tuple[int, int]], scale: ChartScale
) -> tuple[str, list[tuple[int, int]]]:
    """One path through every M4 point, a new subpath after each sensor gap. Returns
    the path data and the lone points (a subpath of one point), which get a dot; past
    MAX_DOTS of them they stay in the path as zero-length subpaths instead, which a
    round line cap draws as a smaller dot.

    The line breaks between two readings when a gap lies between them, and before a
    ``gap_before`` bucket when no gap was reported inside that bucket."""
    segments: list[list[tuple[int, int]]] = []
    k, n = 0, len(silent)  # the first silence that does not start before the last point
    previous = None
    t0, kx, hi, ky = scale.t0, scale.kx, scale.hi, scale.ky
    for p in points:
        xy = (round(LEFT * 10 + (p.t - t0) * kx), round(TOP * 10 + (hi - p.c) * ky))  # as scale
        if previous is not None:
            while k < n and silent[k][0] < previous:
                k += 1
            broken = (k < n and silent[k][1] <= p.t) or p.gap_before
        if previous is None or broken:
            segments.append([xy])
        elif xy != segments[-1][-1]:
            segments[-1].append(xy)
        previous = p.t
    parts: list[str] = []
    dots = []
    inline = sum(len(segment) == 1 for segment in segments) > MAX_DOTS
    for segment in segments:
        (x, y), rest = segment[0], segment[1:]
        parts.append(f"M{_d(x)} {_d(y)}")
        if not rest:
            if inline:
                parts.append("h0")
            else:
                dots.append((x, y))
            continue
        parts.append("l")
        for nx, ny in rest:
            dx, dy = _d(nx - x), _d(ny - y)
            # a number needs a space before it unless it starts with its minus sign
            parts.append(dx if dx[0] == "-" or parts[-1] == "l" else " " + dx)
            parts.append(dy if dy[0] == "-" else " " + dy)
            x, y = nx, ny
    return "".join(parts), dots


# --- excursion peaks -----------------------------------------------------------------------------


class ExcursionPeak(NamedTuple):
    x: int  # tenths
    y: int
    up: bool  # too warm (▲), else too cold (▼)
    c: float
    excess: float  # °C beyond the band edge


def _excursion_marks(
    found: list[Excursion], buckets: Sequence[Bucket], profile: Profile, scale: ChartScale
) -> tuple[list[tuple[int, int]], list[ExcursionPeak]]:
    """The shaded spans (x, width) and peak markers of the excursions.

    Excursions closer than a unit on the chart share one span, which keeps the
    warmest and the coldest peak among them: a sensor flapping across the band edge
    a hundred times gives a few shapes, not a hundred."""
    starts = [b.start_us for b in buckets]
    groups: list[list] = []  # [x0, x1, warmest, coldest]
    for e in found:
        x, w = _span(e.start_us, e.end_us, scale)
        peak = _peak(e, buckets, starts, profile, scale)
        if groups and x <= groups[-1][1] + 10:
            group = groups[-1]
            group[1] = max(group[1], x + w)
        else:
            group = [x, x + w, None, None]
            groups.append(group)
        slot = 2 if peak.up else 3
        if group[slot] is None or peak.excess > group[slot].excess:
            group[slot] = peak
    spans = [(x0, x1 - x0) for x0, x1, _, _ in groups]
    peaks = [p for _, _, *pair in groups for p in pair if p is not None]
    return spans, peaks


def _peak(
    e: Excursion, buckets: Sequence[Bucket], starts: list[int], profile: Profile, scale: ChartScale
) -> ExcursionPeak:
    """Where excursion *e* peaked: the first bucket in its span that read its peak."""
    when = None
    k = max(bisect.bisect_right(starts, e.start_us) - 1, 0)
    stop = bisect.bisect_right(starts, e.end_us)
    for b in buckets[k:stop]:
        if b.readings and b.max_c == e.peak_c and b.max_us is not None:
            when = b.max_us
            break
        if b.readings and b.min_c == e.peak_c and b.min_us is not None:
            when = b.min_us
            break
    if when is None:  # buckets and excursions from different readings: do not guess the time
        when = (e.first_out_us + e.last_out_us) // 2
    up = e.direction == HIGH or (
        e.direction != LOW and profile.high_c is not None and e.peak_c > profile.high_c
    )
    edge = profile.high_c if up else profile.low_c
    excess = abs(e.peak_c - edge) if edge is not None else 0.0
    return ExcursionPeak(scale.x(when), scale.y(e.peak_c), up, e.peak_c, excess)


def _marker(x: int, y: int, up: bool) -> str:
    """A triangle centred on the peak: ▲ for too warm, ▼ for too cold."""
    if up:
        return f"M{_d(x)} {_d(y - 50)}l4.5 8h-9z"
    return f"M{_d(x)} {_d(y + 50)}l4.5-8h-9z"
