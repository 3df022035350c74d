"""The words and text on the temperature chart.

:data:`DEFAULT_LABELS` are the chart's words in English; a page passes its translations
(counts as functions of n, for ngettext). Here they are filled in and placed: the y and x
labels, the gap and peak labels (kept from overlapping), the legend, the screen-reader
description and the placeholder for a leg without readings. Outside text is made safe for
XML. Pure: values in, SVG markup out.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import UTC, tzinfo
from types import MappingProxyType
from typing import NamedTuple

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import Profile
from provenance.web.chart_axes import (
    DAY,
    MINUTE,
    AxisTick,
    ChartScale,
    _edge_text,
    _n,
    _temp,
    local_moment,
)
from provenance.web.chart_layout import (
    BAND_EDGE,
    BAND_FILL,
    BOTTOM,
    FONT,
    HATCH_INK,
    HOT,
    HOT_FILL,
    INK,
    LEFT,
    LEGEND_ROW,
    LINE_GAP,
    MUTED,
    RIGHT,
    TOP,
    WIDTH,
)
from provenance.web.chart_plot import ExcursionPeak, _defs

__all__ = [
    "DEFAULT_LABELS",
]

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


# Characters XML 1.0 cannot carry at all; escaping cannot help, so they are dropped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


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


def _y_labels(ticks: list[AxisTick], words: Mapping[str, Label]) -> str:
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


def _zone_word(words: Mapping[str, Label], zone: tzinfo) -> str:
    """The axis's zone as the reader is told it: the "UTC" word, else the zone's name."""
    return _word(words, "utc") if zone is UTC else str(zone)


def _x_labels(
    ticks: list[int],
    step: int,
    scale: ChartScale,
    words: Mapping[str, Label],
    zone: tzinfo = UTC,
) -> str:
    """Times under the ticks, in *zone*: ``14:00`` with the date ``11-18`` under the
    first tick of each day; whole days as ``11-18`` with the year under the first of
    each year; the zone named at the left."""
    texts = []
    previous_day = previous_year = None
    for t in ticks:
        moment = local_moment(t, zone)
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
    utc = _text(_zone_word(words, zone))
    texts.append(
        f'<text x="2" y="{BOTTOM + 14 + LINE_GAP}" text-anchor="start" fill="{MUTED}">{utc}</text>'
    )
    return f'<g class="tick" text-anchor="middle" fill="{INK}">{"".join(texts)}</g>'


def _peak_labels(
    peaks: list[ExcursionPeak], words: Mapping[str, Label], profile: Profile, taken: list[LabelBox]
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
        box = LabelBox(left, base - FONT * 10, left + w, base + 30)
        if any(box.overlaps(other) for other in placed):
            continue
        placed.append(box)
        texts.append(f'<text x="{_n(left)}" y="{_n(base)}">{_text(text)}</text>')
    return f'<g class="peak-label" fill="{HOT}" font-weight="bold">{"".join(texts)}</g>'


class LabelBox(NamedTuple):
    """A text's extent in tenths."""

    left: int
    top: int
    right: int
    bottom: int

    def overlaps(self, other: LabelBox) -> bool:
        return (
            self.left < other.right
            and other.left < self.right
            and self.top < other.bottom
            and other.top < self.bottom
        )


def _gap_labels(
    spans: list[tuple[int, int]], words: Mapping[str, Label]
) -> tuple[str, list[LabelBox]]:
    """ "no data" across each gap wide enough to hold it; the markup and the space
    taken by text at the top of the chart (these labels and the unit)."""
    unit_w = _width(_word(words, "unit"))
    taken = [
        LabelBox((LEFT - 4) * 10 - unit_w, (TOP - 9) * 10 - FONT * 10, (LEFT - 4) * 10, TOP * 10)
    ]
    text = _word(words, "no_data")
    w = _width(text)
    texts = []
    for x0, width in spans:
        if width >= w + 40:
            mid = x0 + width // 2
            texts.append(f'<text x="{_n(mid)}" y="{TOP + 16}">{_text(text)}</text>')
            taken.append(LabelBox(mid - w // 2, (TOP + 4) * 10, mid + w // 2, (TOP + 19) * 10))
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
    zone: tzinfo = UTC,
) -> str:
    """The screen-reader text: span (in *zone*), extremes, band, excursions, gaps."""
    custom = _word(words, "desc")
    if custom:
        return custom
    unit = _word(words, "unit")
    span = (
        f"{local_moment(t0, zone).strftime('%Y-%m-%d %H:%M')} – "
        f"{local_moment(t1, zone).strftime('%Y-%m-%d %H:%M')} "
        f"{_zone_word(words, zone)}"
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
