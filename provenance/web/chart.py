"""Inline SVG temperature chart for one custody leg of the consumer page.

Pure: buckets from :func:`provenance.domain.coldchain_downsample.downsample`, the leg's profile,
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

This module draws the whole chart; the layout and colours are
:mod:`provenance.web.chart_layout`, the scales and ticks :mod:`provenance.web.chart_axes`,
the plot's shapes :mod:`provenance.web.chart_plot` and its words and text
:mod:`provenance.web.chart_text`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import Profile, series
from provenance.domain.coldchain import gaps as find_gaps
from provenance.domain.coldchain_downsample import Bucket, downsample
from provenance.domain.coldchain_excursions import Excursion
from provenance.domain.coldchain_excursions import excursions as find_excursions
from provenance.web.chart_axes import (
    MINUTE,
    ChartScale,
    _n,
    _x_ticks,
    _y_domain,
    _y_ticks,
    chart_zone,
)
from provenance.web.chart_layout import (
    BOTTOM,
    FONT,
    HOT,
    INK,
    LEFT,
    LEGEND_ROW,
    LINE_GAP,
    MUTED,
    PLOT_HEIGHT,
    RIGHT,
    TOP,
    WIDTH,
)
from provenance.web.chart_plot import (
    _band,
    _defs,
    _excursion_marks,
    _excursion_rects,
    _gap_rects,
    _grid,
    _limits,
    _line,
    _marker,
    _merge_spans,
    _points,
    _silences,
    _span,
)
from provenance.web.chart_text import (
    Label,
    _description,
    _gap_labels,
    _labels,
    _legend,
    _peak_labels,
    _placeholder,
    _text,
    _word,
    _x_labels,
    _y_labels,
)

__all__ = [
    "CLASSES",
    "DEFAULT_BUCKETS",
    "render_readings",
    "render_svg",
]

DEFAULT_BUCKETS = 160  # columns: about one per 2 px at 390 px wide


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


_ID = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}\Z")


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
    zone: str = "UTC",
) -> str:
    """The leg's temperature chart as SVG markup, its time axis in *zone* (an IANA
    name: the reader's, as the text beside the chart says its times).

    *buckets* come from ``coldchain_downsample.downsample(readings, n, profile)``; *excursions*
    and *gaps* from ``coldchain_status.assess`` (or ``excursions``/``gaps``) over the same
    readings. The x-axis runs from *start_us* to *end_us* (the leg), widened only if
    a reading falls outside. *labels* overrides words of
    :data:`provenance.web.chart_text.DEFAULT_LABELS`.
    *chart_id* prefixes the ids inside the SVG and must be unique on the page.
    Raises ValidationError on an unknown label, a bad id or a reversed span.
    """
    words = _labels(labels)
    axis_zone = chart_zone(zone)
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
    scale = ChartScale(t0, t1, y_lo, y_hi)
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
    desc = _description(words, lowest, highest, profile, len(found), len(silent), t0, t1, axis_zone)
    out.append(f'<desc id="{desc_id}">{_text(desc)}</desc>')
    out.append(_defs(chart_id))

    out.append('<g class="plot">')
    out.append(_band(profile, scale))
    gap_spans = _merge_spans([_span(a, b, scale) for a, b in silent])
    out.extend(_gap_rects(gap_spans, chart_id))
    spans, peaks = _excursion_marks(found, buckets, profile, scale)
    out.extend(_excursion_rects(spans))
    y_ticks = _y_ticks(y_lo, y_hi, step, profile, scale)
    x_ticks, x_step = _x_ticks(t0, t1, axis_zone)
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
    out.append(_x_labels(x_ticks, x_step, scale, words, axis_zone))
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
