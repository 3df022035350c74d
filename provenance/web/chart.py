"""Inline SVG temperature chart for one custody leg of the consumer page.

Pure: buckets from :func:`provenance.domain.coldchain.downsample`, the leg's profile,
excursions and sensor gaps go in; a ``str`` of SVG markup comes out. No I/O, no
clock, no Flask. The same input gives the same bytes, so a finished leg's chart
can be cached and compared in tests. ``docs/chart.md`` lists what is drawn, the
CSS class names and the reasons behind each choice.

- The line is the M4 envelope: within each bucket it runs through the first,
  minimum, maximum and last readings in time order, so every peak survives.
  Nothing is averaged.
- The line breaks at sensor gaps, and each gap is drawn as a hatched "no data" area.
  So is silence at the start or end of the leg that is longer than the profile's
  gap limit.
- All words come from *labels*, so the page can translate them. Numbers and
  dates are language-neutral (``2.5``, ``11-18``, ``14:00``, UTC).
- No readings at all gives a small placeholder SVG, not None, so the page
  needs no special case.
"""

from __future__ import annotations

import bisect
import html
import math
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from types import MappingProxyType
from typing import NamedTuple

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import HIGH, LOW, Bucket, Excursion, Profile, downsample, series
from provenance.domain.coldchain import excursions as find_excursions
from provenance.domain.coldchain import gaps as find_gaps

__all__ = [
    "CLASSES",
    "DEFAULT_BUCKETS",
    "DEFAULT_LABELS",
    "render_readings",
    "render_svg",
]

DEFAULT_BUCKETS = 160  # columns: about one per 2 px at 390 px wide

# Words on the chart. A value is a str, or for the counts a function of n (so the
# page can use ngettext); in a str, "{n}", "{min}" and "{max}" are filled in.
Label = str | Callable[[int], str]
DEFAULT_LABELS: Mapping[str, Label] = MappingProxyType(
    {
        "title": "Temperature",
        "unit": "°C",
        "utc": "UTC",
        "band": "allowed band",
        "excursion": "excursion",
        "no_data": "no data",
        "no_readings": "no readings",
        "summary": "min {min}, max {max}",
        "excursions": lambda n: "1 excursion" if n == 1 else f"{n} excursions",
        "gaps": lambda n: "1 gap without data" if n == 1 else f"{n} gaps without data",
        "desc": "",  # when set, the whole screen-reader description, used as is
    }
)

# Every class the chart uses, for the page's CSS (documented in docs/chart.md).
CLASSES = (
    "chart",
    "plot",
    "band",
    "band-edge",
    "limit",
    "gap",
    "excursion",
    "grid",
    "frame",
    "line",
    "dot",
    "peak",
    "tick",
    "band-tick",
    "peak-label",
    "gap-label",
    "unit",
    "legend",
    "placeholder",
)

# --- layout, in viewBox units (about CSS px on a 390 px phone) ----------------------------------

WIDTH = 360
LEFT, RIGHT, TOP = 42, 350, 22  # plot area; the y labels sit left of LEFT
PLOT_HEIGHT = 130
BOTTOM = TOP + PLOT_HEIGHT
FONT = 12  # px; text widths below are estimated from it
LINE_GAP = 13  # between the time and the date line of an x label
LEGEND_ROW = 18
LABEL_ROOM = 20  # under a cold peak, for its marker and value
MIN_MARK = 1.5  # narrowest excursion or gap, so that a short one is still visible
MAX_DOTS = 20  # lone readings drawn as circles; more stay in the line's path
Y_INTERVALS = 5  # aim for about this many steps on the y-axis
X_INTERVALS = 5  # at most this many steps on the x-axis

# Colours that hold up in sunlight: dark ink, tints with dark edges.
INK = "#1a1a1a"
MUTED = "#595959"
GRID = "#d0d0d0"
BAND_FILL = "#d4edda"
BAND_EDGE = "#1e6b34"
HOT = "#b00020"
HOT_FILL = "#f6c4c9"
HATCH_INK = "#707070"
HATCH_BACK = "#ececec"

_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")
# Characters XML 1.0 cannot carry at all; escaping cannot help, so they are dropped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")
_MINUS = "\u2212"
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


# --- public API ---------------------------------------------------------------------------------


def render_svg(
    buckets: Sequence[Bucket],
    profile: Profile,
    *,
    start_us: int,
    end_us: int,
    excursions: Iterable[Excursion] = (),
    gaps: Iterable[tuple[int, int]] = (),
    labels: Mapping[str, Label] | None = None,
    chart_id: str = "chart",
) -> str:
    """The leg's temperature chart as SVG markup.

    *buckets* come from ``coldchain.downsample(readings, n, profile)``; *excursions*
    and *gaps* from ``coldchain.assess`` (or ``excursions``/``gaps``) over the same
    readings. The x-axis runs from *start_us* to *end_us* (the leg), widened only if
    a reading falls outside. *labels* overrides words of :data:`DEFAULT_LABELS`.
    *chart_id* prefixes the ids inside the SVG and must be unique on the page.
    Raises ValidationError on an unknown label, a bad id or a reversed span.
    """
    words = _labels(labels)
    if not isinstance(chart_id, str) or not _ID.match(chart_id):
        raise ValidationError(
            "chart_id", f"must be a letter then letters, digits, - or _, got {chart_id!r}"
        )
    for field, value in (("start_us", start_us), ("end_us", end_us)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValidationError(field, f"must be integer microseconds, got {value!r}")
    if end_us < start_us:
        raise ValidationError("end_us", f"{end_us} is before start_us {start_us}")
    reported = sorted((int(a), int(b)) for a, b in gaps if b > a)
    points = _points(buckets, sorted(b for _, b in reported))
    if not points:
        return _placeholder(words, chart_id)
    t0 = min(start_us, points[0].t)
    t1 = max(end_us, points[-1].t)
    if t1 - t0 < 2 * MINUTE:  # an instant or a few seconds: centre them in two minutes
        middle = (t0 + t1) // 2
        t0, t1 = middle - MINUTE, middle + MINUTE
    lowest = min(p.c for p in points)
    highest = max(p.c for p in points)
    found = sorted(excursions, key=lambda e: (e.start_us, e.end_us))
    low_peak = any(profile.low_c is not None and e.peak_c < profile.low_c for e in found)
    y_lo, y_hi, step = _y_domain(lowest, highest, profile, room_below=low_peak)
    scale = _Scale(t0, t1, y_lo, y_hi)
    silent = _silences(reported, points, profile, t0, t1, start_us, end_us)

    out: list[str] = []
    legend_rows, legend = _legend(words, chart_id, bool(found), bool(silent))
    height = BOTTOM + 2 * LINE_GAP + 8 + legend_rows * LEGEND_ROW
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    out.append(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{chart_id}"'
        f' viewBox="0 0 {WIDTH} {height}" width="100%" role="img"'
        f' aria-labelledby="{title_id} {desc_id}"'
        f' font-family="system-ui,sans-serif" font-size="{FONT}" fill="{INK}">'
    )
    out.append(f'<title id="{title_id}">{_text(_word(words, "title"))}</title>')
    desc = _description(words, lowest, highest, profile, len(found), len(silent), t0, t1)
    out.append(f'<desc id="{desc_id}">{_text(desc)}</desc>')
    out.append(_defs(chart_id))

    out.append('<g class="plot">')
    out.append(_band(profile, scale))
    gap_spans = _merge_spans([_span(a, b, scale) for a, b in silent])
    out.extend(_gap_rects(gap_spans, chart_id))
    spans, peaks = _excursion_marks(found, buckets, profile, scale)
    out.extend(_excursion_rects(spans))
    y_ticks = _y_ticks(y_lo, y_hi, step, profile, scale)
    x_ticks, x_step = _x_ticks(t0, t1)
    out.append(_grid(y_ticks, x_ticks, scale))
    out.append(_limits(profile, y_lo, y_hi, scale))
    line, dots = _line(points, silent, scale)
    out.append(
        f'<path class="line" d="{line}" fill="none" stroke="{INK}" stroke-width="2"'
        ' stroke-linejoin="round" stroke-linecap="round"/>'
    )
    out.extend(
        f'<circle class="dot" cx="{_n(x)}" cy="{_n(y)}" r="2.5" fill="{INK}"/>' for x, y in dots
    )
    if peaks:
        marks = "".join(_marker(p.x, p.y, p.up) for p in peaks)
        out.append(f'<path class="peak" d="{marks}" fill="{HOT}" stroke="#fff" stroke-width="1"/>')
    out.append(
        f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{RIGHT - LEFT}" height="{PLOT_HEIGHT}"'
        f' fill="none" stroke="{MUTED}"/>'
    )
    out.append("</g>")

    out.append(_y_labels(y_ticks, words))
    out.append(_x_labels(x_ticks, x_step, scale, words))
    gap_labels, taken = _gap_labels(gap_spans, words)
    out.append(gap_labels)
    out.append(_peak_labels(peaks, words, profile, taken))
    out.append(legend)
    out.append("</svg>")
    return "".join(part for part in out if part)


def render_readings(
    readings: Iterable[tuple[int, float]],
    profile: Profile,
    *,
    start_us: int | None = None,
    end_us: int | None = None,
    buckets: int = DEFAULT_BUCKETS,
    labels: Mapping[str, Label] | None = None,
    chart_id: str = "chart",
) -> str:
    """:func:`render_svg` straight from readings: downsample, excursions and gaps here.

    The leg's span defaults to the first and last reading. A page that already
    has a ``ColdChainStatus`` should call :func:`render_svg` with its excursions
    and gaps, so that the chart and the status line agree.
    """
    data = series(readings)
    times = data.times
    start = start_us if start_us is not None else (times[0] if times else 0)
    end = end_us if end_us is not None else (times[-1] if times else start)
    return render_svg(
        downsample(data, buckets, profile),
        profile,
        start_us=start,
        end_us=end,
        excursions=find_excursions(data, profile),
        gaps=find_gaps(data, profile.max_gap_us),
        labels=labels,
        chart_id=chart_id,
    )


# --- input ---------------------------------------------------------------------------------------


def _labels(labels: Mapping[str, Label] | None) -> dict[str, Label]:
    words = dict(DEFAULT_LABELS)
    for key, value in (labels or {}).items():
        if key not in DEFAULT_LABELS:
            known = ", ".join(DEFAULT_LABELS)
            raise ValidationError("labels", f"unknown label {key!r}; known: {known}")
        if not (isinstance(value, str) or callable(value)):
            raise ValidationError("labels", f"{key} must be text, got {value!r}")
        words[key] = value
    return words


def _word(words: Mapping[str, Label], key: str, n: int = 0, **values: str) -> str:
    """The label *key* as text: called with *n* if it is a function, else filled in.
    Plain replacement, not str.format: a translated string cannot reach attributes."""
    value = words[key]
    text = value(n) if callable(value) else value
    if not isinstance(text, str):
        raise ValidationError("labels", f"{key} must give text, got {text!r}")
    text = text.replace("{n}", str(n))
    for name, filled in values.items():
        text = text.replace("{" + name + "}", filled)
    return text


class _Point(NamedTuple):
    t: int
    c: float
    bucket: int  # index of its bucket
    gap_before: bool  # first point of a gap_before bucket in which no reported gap ends


def _points(buckets: Sequence[Bucket], gap_ends: list[int]) -> list[_Point]:
    """The M4 points of every non-empty bucket in time order: first, min, max, last,
    sorted by time (first before last at a shared instant), repeats dropped.

    *gap_ends* (sorted) are the reported gaps' ends: a ``gap_before`` bucket holding
    one needs no break at its start, since the gap itself places the break."""
    points: list[_Point] = []
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
            points.append(_Point(t, float(c), k, head))
            head = False
    points.sort(key=lambda p: p.t)  # buckets are in order already; a no-op then
    return points


def _silences(
    reported: list[tuple[int, int]],
    points: list[_Point],
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


# --- scales --------------------------------------------------------------------------------------


class _Scale:
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


# --- plot elements -------------------------------------------------------------------------------


def _defs(chart_id: str) -> str:
    return (
        f'<defs><pattern id="{chart_id}-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)">'
        f'<rect width="6" height="6" fill="{HATCH_BACK}"/>'
        f'<path d="M0 0V6" stroke="{HATCH_INK}" stroke-width="2"/></pattern></defs>'
    )


def _band(profile: Profile, scale: _Scale) -> str:
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


def _span(a: int, b: int, scale: _Scale) -> tuple[int, int]:
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


class _Tick(NamedTuple):
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
    return text.replace("-", _MINUS)


def _edge_text(value: float) -> str:
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return _temp(float(text), max(0, len(text.partition(".")[2])))


def _y_ticks(lo: float, hi: float, step: float, profile: Profile, scale: _Scale) -> list[_Tick]:
    """Whole steps from lo to hi, plus the band edges; a step that would crowd a band
    edge's label gives way to it."""
    decimals = _decimals(step)
    count = round((hi - lo) / step)
    ticks = [_Tick(scale.y(lo + k * step), lo + k * step, "") for k in range(count + 1)]
    ticks = [t._replace(text=_temp(t.value, decimals)) for t in ticks]
    edges = [
        _Tick(scale.y(e), e, _edge_text(e), edge=True)
        for e in (profile.low_c, profile.high_c)
        if e is not None
    ]
    crowd = FONT * 10
    kept = [t for t in ticks if all(abs(t.pos - e.pos) >= crowd for e in edges)]
    return sorted([*kept, *edges], key=lambda t: -t.pos)  # bottom to top: rising °C


def _x_ticks(t0: int, t1: int) -> tuple[list[int], int]:
    """Tick times and the step (about, for months): the first 'nice' UTC step that
    gives at most X_INTERVALS steps. Weeks start on Monday, months on the 1st."""
    span = t1 - t0
    for step in _FIXED_STEPS:
        if span <= step * X_INTERVALS:
            offset = _MONDAY if step >= WEEK else 0
            first = t0 + (offset - t0) % step  # the first grid time at or after t0
            return list(range(first, t1 + 1, step)), step
    for months in _MONTH_STEPS:
        if span <= months * 30 * DAY * X_INTERVALS:
            return _calendar_ticks(t0, t1, months), months * 30 * DAY
    years = 1
    while span > years * 365 * DAY * X_INTERVALS:
        years = round(_nice_step(years * 1.5))
    return _calendar_ticks(t0, t1, 12 * years), years * 365 * DAY


def _calendar_ticks(t0: int, t1: int, months: int) -> list[int]:
    day = _EPOCH + timedelta(microseconds=t0)
    index = day.year * 12 + day.month - 1
    ticks = []
    while True:
        year, month = divmod(index, 12)
        if index % months == 0:
            t = _micros(datetime(year, month + 1, 1, tzinfo=UTC))
            if t > t1:
                return ticks
            if t >= t0:
                ticks.append(t)
        index += 1


def _micros(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * SECOND + delta.microseconds


def _grid(y_ticks: list[_Tick], x_ticks: list[int], scale: _Scale) -> str:
    across = "".join(f"M{LEFT} {_d(t.pos)}H{RIGHT}" for t in y_ticks)
    down = "".join(f"M{_d(scale.x(t))} {TOP}V{BOTTOM}" for t in x_ticks)
    return f'<path class="grid" d="{across}{down}" stroke="{GRID}" stroke-width="1"/>'


def _limits(profile: Profile, lo: float, hi: float, scale: _Scale) -> str:
    """Hard limits as thin dashed lines, only where the axis reaches them anyway."""
    shown = [
        v for v in (profile.limit_low_c, profile.limit_high_c) if v is not None and lo <= v <= hi
    ]
    if not shown:
        return ""
    d = "".join(f"M{LEFT} {_d(scale.y(v))}H{RIGHT}" for v in shown)
    return f'<path class="limit" d="{d}" stroke="{HOT}" stroke-width="1" stroke-dasharray="2 3"/>'


def _line(
    points: list[_Point], silent: list[tuple[int, int]], scale: _Scale
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


class _Peak(NamedTuple):
    x: int  # tenths
    y: int
    up: bool  # too warm (▲), else too cold (▼)
    c: float
    excess: float  # °C beyond the band edge


def _excursion_marks(
    found: list[Excursion], buckets: Sequence[Bucket], profile: Profile, scale: _Scale
) -> tuple[list[tuple[int, int]], list[_Peak]]:
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
    e: Excursion, buckets: Sequence[Bucket], starts: list[int], profile: Profile, scale: _Scale
) -> _Peak:
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
    return _Peak(scale.x(when), scale.y(e.peak_c), up, e.peak_c, excess)


def _marker(x: int, y: int, up: bool) -> str:
    """A triangle centred on the peak: ▲ for too warm, ▼ for too cold."""
    if up:
        return f"M{_d(x)} {_d(y - 50)}l4.5 8h-9z"
    return f"M{_d(x)} {_d(y + 50)}l4.5-8h-9z"


# --- text ----------------------------------------------------------------------------------------


def _text(value: str) -> str:
    """Outside text made safe for XML element content and attributes."""
    return html.escape(_NOT_XML.sub("", value), quote=True)


def _width(text: str) -> int:
    """Estimated width in tenths of a unit at FONT: wide (CJK) glyphs a full em."""
    em = FONT * 10
    return sum(em if unicodedata.east_asian_width(c) in "WF" else em * 6 // 10 for c in text)


def _reading(value: float, profile: Profile, words: Mapping[str, Label]) -> str:
    """A reading for people: one decimal, more if one would round it onto a band edge."""
    for decimals in (1, 2, 3):
        text = f"{value:.{decimals}f}"
        if all(
            e is None or float(text) != e or value == e for e in (profile.low_c, profile.high_c)
        ):
            break
    return f"{_temp(float(text), decimals)} {_word(words, 'unit')}"


def _y_labels(ticks: list[_Tick], words: Mapping[str, Label]) -> str:
    edge = f' class="band-tick" fill="{BAND_EDGE}" font-weight="bold"'
    texts = "".join(
        f'<text x="{LEFT - 4}" y="{_n(t.pos + 40)}"{edge if t.edge else ""}>{t.text}</text>'
        for t in ticks
    )
    unit = _text(_word(words, "unit"))
    return (
        f'<g class="tick" text-anchor="end" fill="{INK}">{texts}</g>'
        f'<text class="unit" x="{LEFT - 4}" y="{TOP - 9}" text-anchor="end">{unit}</text>'
    )


def _x_labels(ticks: list[int], step: int, scale: _Scale, words: Mapping[str, Label]) -> str:
    """Times under the ticks: ``14:00`` with the date ``11-18`` under the first tick
    of each day; whole days as ``11-18`` with the year under the first of each year."""
    texts = []
    previous_day = previous_year = None
    for t in ticks:
        moment = _EPOCH + timedelta(microseconds=t)
        if step < MINUTE:
            head, sub = moment.strftime("%H:%M:%S"), ""
        elif step < DAY:
            head, sub = moment.strftime("%H:%M"), ""
            if moment.date() != previous_day:
                sub = moment.strftime("%m-%d")
        else:
            head, sub = moment.strftime("%m-%d"), ""
            if moment.year != previous_year:
                sub = moment.strftime("%Y")
        previous_day, previous_year = moment.date(), moment.year
        x = scale.x(t)
        half = max(_width(head), _width(sub)) // 2
        anchor = ""
        if x + half > WIDTH * 10:
            anchor = ' text-anchor="end"'
        elif x - half < 0:
            anchor = ' text-anchor="start"'
        base = (BOTTOM + 14) * 10
        texts.append(f'<text x="{_n(x)}" y="{_n(base)}"{anchor}>{head}</text>')
        if sub:
            texts.append(f'<text x="{_n(x)}" y="{_n(base + LINE_GAP * 10)}"{anchor}>{sub}</text>')
    utc = _text(_word(words, "utc"))
    texts.append(
        f'<text x="2" y="{BOTTOM + 14 + LINE_GAP}" text-anchor="start" fill="{MUTED}">{utc}</text>'
    )
    return f'<g class="tick" text-anchor="middle" fill="{INK}">{"".join(texts)}</g>'


def _peak_labels(
    peaks: list[_Peak], words: Mapping[str, Label], profile: Profile, taken: list[_Box]
) -> str:
    """The value beside each peak marker, the most extreme first; a label that would
    overlap other text is left out (its marker stays)."""
    if not peaks:
        return ""
    placed = list(taken)
    texts = []
    for p in sorted(peaks, key=lambda p: (-p.excess, p.x, p.y)):
        text = _reading(p.c, profile, words)
        w = _width(text)
        base = p.y - 80 if p.up else p.y + 180
        left = min(max(p.x - w // 2, 0), WIDTH * 10 - w)
        box = _Box(left, base - FONT * 10, left + w, base + 30)
        if any(box.overlaps(other) for other in placed):
            continue
        placed.append(box)
        texts.append(f'<text x="{_n(left)}" y="{_n(base)}">{_text(text)}</text>')
    return f'<g class="peak-label" fill="{HOT}" font-weight="bold">{"".join(texts)}</g>'


class _Box(NamedTuple):
    """A text's extent in tenths."""

    left: int
    top: int
    right: int
    bottom: int

    def overlaps(self, other: _Box) -> bool:
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )


def _gap_labels(spans: list[tuple[int, int]], words: Mapping[str, Label]) -> tuple[str, list[_Box]]:
    """ "no data" across each gap wide enough to hold it; the markup and the space
    taken by text at the top of the chart (these labels and the unit)."""
    unit_w = _width(_word(words, "unit"))
    taken = [_Box((LEFT - 4) * 10 - unit_w, (TOP - 9) * 10 - FONT * 10, (LEFT - 4) * 10, TOP * 10)]
    text = _word(words, "no_data")
    w = _width(text)
    texts = []
    for x0, width in spans:
        if width >= w + 40:
            mid = x0 + width // 2
            texts.append(f'<text x="{_n(mid)}" y="{TOP + 16}">{_text(text)}</text>')
            taken.append(_Box(mid - w // 2, (TOP + 4) * 10, mid + w // 2, (TOP + 19) * 10))
    if not texts:
        return "", taken
    return (
        f'<g class="gap-label" text-anchor="middle" fill="{INK}" stroke="#fff" stroke-width="3"'
        f' paint-order="stroke">{"".join(texts)}</g>',
        taken,
    )


def _legend(
    words: Mapping[str, Label], chart_id: str, excursions: bool, gaps: bool
) -> tuple[int, str]:
    """Swatches with their words under the axis, wrapping rows to fit; (rows, markup)."""
    entries = [("band", f'fill="{BAND_FILL}" stroke="{BAND_EDGE}"', _word(words, "band"))]
    if excursions:
        entries.append(
            ("excursion", f'fill="{HOT_FILL}" stroke="{HOT}"', _word(words, "excursion"))
        )
    if gaps:
        entries.append(
            ("gap", f'fill="url(#{chart_id}-hatch)" stroke="{HATCH_INK}"', _word(words, "no_data"))
        )
    row, x = 0, LEFT * 10
    items = []
    for cls, paint, text in entries:
        w = 160 + _width(text)
        if x + w > WIDTH * 10 and x > LEFT * 10:
            row, x = row + 1, LEFT * 10
        y = (BOTTOM + 2 * LINE_GAP + 8 + row * LEGEND_ROW) * 10
        items.append(
            f'<rect class="{cls}" x="{_n(x)}" y="{_n(y + 30)}" width="12" height="10" {paint}/>'
            f'<text x="{_n(x + 160)}" y="{_n(y + 130)}">{_text(text)}</text>'
        )
        x += w + 140
    return row + 1, f'<g class="legend">{"".join(items)}</g>'


def _description(
    words: Mapping[str, Label],
    lowest: float,
    highest: float,
    profile: Profile,
    excursions: int,
    gaps: int,
    t0: int,
    t1: int,
) -> str:
    """The screen-reader text: span, extremes, band, excursions, gaps."""
    custom = _word(words, "desc")
    if custom:
        return custom
    unit = _word(words, "unit")
    span = (
        f"{(_EPOCH + timedelta(microseconds=t0)).strftime('%Y-%m-%d %H:%M')} – "
        f"{(_EPOCH + timedelta(microseconds=t1)).strftime('%Y-%m-%d %H:%M')} "
        f"{_word(words, 'utc')}"
    )
    low = _reading(lowest, profile, words)
    high = _reading(highest, profile, words)
    parts = [span, _word(words, "summary", min=low, max=high)]
    if profile.low_c is None:
        band = f"≤ {_edge_text(profile.high_c or 0.0)} {unit}"
    elif profile.high_c is None:
        band = f"≥ {_edge_text(profile.low_c)} {unit}"
    else:
        band = f"{_edge_text(profile.low_c)}–{_edge_text(profile.high_c)} {unit}"
    parts.append(f"{_word(words, 'band')} {band}")
    parts.append(_word(words, "excursions", excursions))
    if gaps:
        parts.append(_word(words, "gaps", gaps))
    return "; ".join(parts)


def _placeholder(words: Mapping[str, Label], chart_id: str) -> str:
    """A short hatched box that says there are no readings."""
    text = _text(_word(words, "no_readings"))
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart placeholder" id="{chart_id}"'
        f' viewBox="0 0 {WIDTH} 48" width="100%" role="img"'
        f' aria-labelledby="{title_id} {desc_id}"'
        f' font-family="system-ui,sans-serif" font-size="{FONT}" fill="{INK}">'
        f'<title id="{title_id}">{_text(_word(words, "title"))}</title>'
        f'<desc id="{desc_id}">{text}</desc>'
        f"{_defs(chart_id)}"
        f'<rect class="gap" x="{LEFT}" y="4" width="{RIGHT - LEFT}" height="40"'
        f' fill="url(#{chart_id}-hatch)" stroke="{MUTED}"/>'
        f'<text x="{(LEFT + RIGHT) // 2}" y="29" text-anchor="middle" stroke="#fff"'
        f' stroke-width="3" paint-order="stroke">{text}</text></svg>'
    )
