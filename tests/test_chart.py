"""provenance.web.chart: the SVG is parsed and its geometry checked against known answers.

The scales are read back from the SVG itself (the frame for time, the y tick labels
and their grid lines for °C), so the tests check that every shape sits where its
value says, not that the module agrees with its own constants."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from support.paths import ROOT

from provenance.core.errors import ValidationError
from provenance.domain import coldchain as cc
from provenance.domain import coldchain_downsample, coldchain_status
from provenance.domain.coldchain import Profile
from provenance.domain.coldchain_excursions import Excursion
from provenance.web import chart, chart_text

MIN = 60_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_795_046_400_000_000  # 2026-11-19T00:00:00Z, a midnight
SVG = "{http://www.w3.org/2000/svg}"
CHILLED, FROZEN = cc.profile("chilled"), cc.profile("frozen")
VACCINE, ULTRA = cc.profile("vaccine"), cc.profile("ultra-cold")


def every(minutes: float, temps: list[float], start: int = T0) -> list[tuple[int, float]]:
    return [(start + round(i * minutes * MIN), t) for i, t in enumerate(temps)]


def render(readings, profile, start=None, end=None, buckets=160, **kw) -> str:
    """The page's way: one Series, then downsample and assess."""
    data = cc.series(readings)
    status = coldchain_status.assess(data, profile)
    return chart.render_svg(
        coldchain_downsample.downsample(data, buckets, profile),
        profile,
        start_us=data.times[0] if start is None else start,
        end_us=data.times[-1] if end is None else end,
        excursions=status.excursions,
        gaps=status.gaps,
        **kw,
    )


# --- reading the SVG back ------------------------------------------------------------------------


class Chart:
    """A parsed chart with its scales recovered from what it shows."""

    def __init__(self, svg: str, start: int | None = None, end: int | None = None):
        self.svg = svg
        self.root = ET.fromstring(svg)
        frame = self.one("frame")
        self.fx, self.fy = float(frame.get("x")), float(frame.get("y"))
        self.fw, self.fh = float(frame.get("width")), float(frame.get("height"))
        self.start, self.end = start, end

    def all(self, cls: str) -> list[ET.Element]:
        return [e for e in self.root.iter() if cls in e.get("class", "").split()]

    def one(self, cls: str) -> ET.Element:
        [element] = self.all(cls)
        return element

    def plot(self, cls: str) -> list[ET.Element]:
        """Elements of *cls* inside the plot (not the legend's swatches)."""
        return [e for e in self.one("plot") if cls in e.get("class", "").split()]

    def x(self, t: int) -> float:
        assert self.start is not None and self.end is not None
        return self.fx + (t - self.start) / (self.end - self.start) * self.fw

    def y_ticks(self) -> list[tuple[float, float]]:
        """(°C, y of its grid line), bottom to top."""
        group = self.all("tick")[0]
        values = [float(t.text.replace("\u2212", "-")) for t in group]
        across = [s for s in subpaths(self.one("grid").get("d")) if s[0][1] == s[-1][1]]
        assert len(across) == len(values)
        return [(v, s[0][1]) for v, s in zip(values, across, strict=True)]

    def y(self, c: float) -> float:
        """°C to y, by the line through the lowest and highest tick."""
        (c0, y0), *_, (c1, y1) = self.y_ticks()
        return y0 + (c - c0) * (y1 - y0) / (c1 - c0)

    def c(self, y: float) -> float:
        """y to °C."""
        (c0, y0), *_, (c1, y1) = self.y_ticks()
        return c0 + (y - y0) * (c1 - c0) / (y1 - y0)

    def line(self) -> list[list[tuple[float, float]]]:
        return subpaths(self.one("line").get("d"))

    def rects(self, cls: str) -> list[tuple[float, float]]:
        """(x, x + width) of the plot's rects of *cls*."""
        return [
            (float(r.get("x")), float(r.get("x")) + float(r.get("width"))) for r in self.plot(cls)
        ]

    def texts(self, cls: str) -> list[str]:
        return [t.text for g in self.all(cls) for t in g.iter(f"{SVG}text")]


_TOKEN = re.compile(r"[MmLlHhVvZz]|-?(?:\d+\.?\d*|\.\d+)")


def subpaths(d: str) -> list[list[tuple[float, float]]]:
    """The absolute points of each subpath of SVG path data (M, L, H, V, Z and their
    relative forms; after M/m further pairs are L/l), written out from the SVG spec."""
    tokens = _TOKEN.findall(d)
    assert "".join(tokens) == re.sub(r"[\s,]", "", d), f"unparsed path data in {d!r}"
    out: list[list[tuple[float, float]]] = []
    x = y = 0.0
    command = ""
    i = 0
    while i < len(tokens):
        if tokens[i].isalpha():
            command = tokens[i]
            i += 1
            if command in "Zz":
                x, y = out[-1][0]
                continue
        if command in "Mm":
            dx, dy = float(tokens[i]), float(tokens[i + 1])
            x, y = (x + dx, y + dy) if command == "m" else (dx, dy)
            out.append([(x, y)])
            command = "l" if command == "m" else "L"
            i += 2
        elif command in "Ll":
            dx, dy = float(tokens[i]), float(tokens[i + 1])
            x, y = (x + dx, y + dy) if command == "l" else (dx, dy)
            out[-1].append((x, y))
            i += 2
        elif command in "Hh":
            x = x + float(tokens[i]) if command == "h" else float(tokens[i])
            out[-1].append((x, y))
            i += 1
        elif command in "Vv":
            y = y + float(tokens[i]) if command == "v" else float(tokens[i])
            out[-1].append((x, y))
            i += 1
        else:
            raise AssertionError(f"unexpected {tokens[i]!r} in {d!r}")
    return out


def test_the_path_reader_reads_the_spec_examples():
    assert subpaths("M10 20l5-5 .5.5H3v-1M1 1Zm1 1 2 2") == [
        [(10, 20), (15, 15), (15.5, 15.5), (3, 15.5), (3, 14.5)],
        [(1, 1)],
        [(2, 2), (4, 4)],
    ]


def noisy(n: int, seed: int = 7, low: float = 3.0, high: float = 6.0) -> list[float]:
    """DS18B20-like readings: 1/16 °C steps between low and high."""
    rnd = random.Random(seed)
    return [round(rnd.uniform(low, high) * 16) / 16 for _ in range(n)]


# --- the line keeps every peak -------------------------------------------------------------------


def test_one_hot_reading_among_20000_is_the_peak_of_the_path():
    temps = noisy(20_000)
    temps[13_579] = 11.3  # one reading, five minutes out of 69 days
    temps[4_321] = 0.5  # and one cold one
    readings = every(5, temps)
    c = Chart(render(readings, VACCINE), readings[0][0], readings[-1][0])
    points = [p for s in c.line() for p in s]
    top = min(points, key=lambda p: p[1])
    bottom = max(points, key=lambda p: p[1])
    assert top[1] == pytest.approx(c.y(11.3), abs=0.11)
    assert top[0] == pytest.approx(c.x(readings[13_579][0]), abs=0.11)
    assert bottom[1] == pytest.approx(c.y(0.5), abs=0.11)
    assert bottom[0] == pytest.approx(c.x(readings[4_321][0]), abs=0.11)
    # 0.5 to 11.3 in 5 °C steps (10.8 / 5 rounds up to 5), one more step below to hold
    # the cold peak's label, and the band edges 2 and 8
    assert [v for v, _ in c.y_ticks()] == [-5, 0, 2, 5, 8, 10, 15]
    assert len(c.all("line")) == 1
    assert "11.3 °C" in c.texts("peak-label")


def test_m4_draws_first_min_max_last_in_time_order():
    # one bucket per hour: in each, the max comes before the min in time
    readings = every(15, [5, 9, 1, 4] * 3)
    c = Chart(render(readings, cc.Profile("wide", -50, 50, None, None, 15 * MIN, HOUR), buckets=3))
    [segment] = c.line()
    assert [round(c.c(y)) for _, y in segment] == [5, 9, 1, 4] * 3
    xs = [x for x, _ in segment]
    assert xs == sorted(xs)


def test_size_of_a_20000_reading_chart_with_160_buckets():
    temps = noisy(20_000, seed=3, low=2.5, high=7.5)
    temps[12_000:12_040] = [9.5] * 40  # a 3 h 20 min excursion
    readings = every(5, temps)
    del readings[6_000:6_030]  # a 2.5 h gap
    svg = render(readings, VACCINE)
    c = Chart(svg)
    assert len(c.plot("excursion")) == 1 and len(c.plot("gap")) == 1
    assert len(c.line()) == 2
    assert len(svg.encode()) <= 12_000, len(svg.encode())


def test_same_input_same_bytes():
    readings = every(5, noisy(3_000))
    shuffled = readings[:]
    random.Random(1).shuffle(shuffled)
    first = render(readings, VACCINE, chart_id="leg-1")
    assert render(shuffled, VACCINE, chart_id="leg-1") == first
    assert chart.render_readings(shuffled, VACCINE, chart_id="leg-1") == first


# --- the band ------------------------------------------------------------------------------------


def test_band_rect_spans_low_to_high():
    readings = every(15, [3, 4, 9.1, 5, 3])
    c = Chart(render(readings, VACCINE))
    band = c.plot("band")[0]
    top, height = float(band.get("y")), float(band.get("height"))
    assert [v for v, _ in c.y_ticks()] == [2, 4, 6, 8, 10]  # 2 to 9.1 in 2 °C steps
    assert top == pytest.approx(c.fy + c.fh * 2 / 8)  # 8 °C, a quarter down from 10
    assert top + height == pytest.approx(c.fy + c.fh)  # 2 °C, the bottom
    assert top == pytest.approx(c.y(8), abs=0.06)
    assert top + height == pytest.approx(c.y(2), abs=0.06)
    edges = {y for s in subpaths(c.one("band-edge").get("d")) for _, y in s}
    assert edges == {top, top + height}
    assert [t.text for t in c.all("band-tick")] == ["2", "8"]


def test_frozen_band_is_open_to_the_bottom():
    temps = [-20, -19.5, -21, -12.5, -19, -20]
    c = Chart(render(every(15, temps), FROZEN))
    band = c.plot("band")[0]
    top, height = float(band.get("y")), float(band.get("height"))
    assert [v for v, _ in c.y_ticks()] == [-22, -20, -18, -16, -14, -12]
    assert top == pytest.approx(c.y(-18), abs=0.06)
    assert top + height == pytest.approx(c.fy + c.fh)  # no lower bound: to the chart edge
    assert [t.text for t in c.all("band-tick")] == ["\u221218"]
    [limit] = subpaths(c.one("limit").get("d"))  # −15 °C is on the axis anyway
    assert limit[0][1] == pytest.approx(c.y(-15), abs=0.06)
    peak = subpaths(c.one("peak").get("d"))
    assert len(peak) == 1 and peak[0][0][1] < c.y(-12.5) < peak[0][1][1]  # ▲ around it
    assert c.texts("peak-label") == ["\u221212.5 °C"]
    desc = c.root.find(f"{SVG}desc").text
    assert "min \u221221.0 °C, max \u221212.5 °C" in desc and "≤ \u221218 °C" in desc


def test_ultra_cold_band_and_ticks():
    temps = [-75 + (i % 5) for i in range(60)]
    temps[30] = -52.0
    c = Chart(render(every(5, temps), ULTRA))
    band = c.plot("band")[0]
    top, height = float(band.get("y")), float(band.get("height"))
    ticks = c.y_ticks()
    assert [v for v, _ in ticks] == [-90, -80, -70, -60, -50]
    assert top == pytest.approx(c.y(-60), abs=0.06)
    assert top + height == pytest.approx(c.y(-90), abs=0.06)
    assert not c.all("limit")  # −15 °C is far off this axis: not drawn
    [(x0, x1)] = c.rects("excursion")
    assert x0 < c.fx + c.fw / 2 < x1


def test_y_ticks_rise_and_stay_inside_the_plot():
    for profile, temps in [
        (CHILLED, [0.3, 4.9, 2.2]),
        (VACCINE, [-0.7, 3, 15.5]),
        (FROZEN, [-30, -25]),
        (ULTRA, [-89.9, -60.1]),
        (cc.profile("ambient"), [15.01, 15.02]),
    ]:
        c = Chart(render(every(15, temps), profile))
        ticks = c.y_ticks()
        values = [v for v, _ in ticks]
        ys = [y for _, y in ticks]
        assert values == sorted(values) and len(set(values)) == len(values)
        assert ys == sorted(ys, reverse=True)
        assert all(c.fy - 0.01 <= y <= c.fy + c.fh + 0.01 for y in ys)
        assert values[0] <= min(temps) and values[-1] >= max(temps)
        assert 3 <= len(values) <= 8
        for edge in (profile.low_c, profile.high_c):
            assert edge is None or edge in values


# --- gaps ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("silent_h", "labelled"), [(6, True), (2, False)])
def test_gap_breaks_the_line_and_is_shaded_over_its_span(silent_h, labelled):
    # every 15 min for a day, silent from 08:00 for silent_h hours
    stop = T0 + (8 + silent_h) * HOUR
    readings = every(15, [3.0 + (i % 4) * 0.5 for i in range(97)])
    readings = [r for r in readings if not T0 + 8 * HOUR < r[0] < stop]
    c = Chart(render(readings, CHILLED, T0, T0 + DAY), T0, T0 + DAY)
    first, second = c.line()
    assert first[-1][0] == pytest.approx(c.x(T0 + 8 * HOUR), abs=0.11)
    assert second[0][0] == pytest.approx(c.x(stop), abs=0.11)
    [(x0, x1)] = c.rects("gap")
    assert x0 == pytest.approx(c.x(T0 + 8 * HOUR), abs=0.11)
    assert x1 == pytest.approx(c.x(stop), abs=0.11)
    # words over the gap when it is wide enough; the legend says it either way
    assert c.texts("gap-label") == (["no data"] if labelled else [])
    assert c.texts("legend") == ["allowed band", "no data"]
    assert "1 gap without data" in c.root.find(f"{SVG}desc").text


def test_a_gap_inside_one_bucket_still_breaks_the_line():
    # 20,000 readings in 160 buckets: about 10 h each; a 2.5 h gap sits inside one
    readings = every(5, noisy(20_000))
    gap_start, gap_end = readings[9_999][0], readings[10_030][0]
    del readings[10_000:10_030]
    c = Chart(render(readings, VACCINE), readings[0][0], readings[-1][0])
    first, second = c.line()
    assert max(x for x, _ in first) <= c.x(gap_start) + 0.11
    assert min(x for x, _ in second) >= c.x(gap_end) - 0.11
    [(x0, x1)] = c.rects("gap")  # 0.3 units wide: drawn 1.5 wide around it
    assert x1 - x0 == pytest.approx(1.5)
    assert x0 < c.x(gap_start) < c.x(gap_end) < x1


def test_gap_flag_breaks_the_line_even_when_no_gaps_are_passed():
    readings = [r for r in every(15, [4.0] * 97) if not T0 + 8 * HOUR < r[0] < T0 + 12 * HOUR]
    buckets = coldchain_downsample.downsample(readings, 96, CHILLED)
    assert sum(b.gap_before for b in buckets) == 1
    svg = chart.render_svg(buckets, CHILLED, start_us=T0, end_us=T0 + DAY)
    assert len(Chart(svg).line()) == 2


def test_empty_buckets_are_not_gaps():
    # readings every 15 min, buckets of 7.2 min: every other bucket is empty
    readings = every(15, [3.0 + (i % 3) for i in range(97)])
    buckets = coldchain_downsample.downsample(readings, 200, CHILLED)
    assert sum(b.readings == 0 for b in buckets) > 80
    c = Chart(render(readings, CHILLED, buckets=200))
    assert len(c.line()) == 1 and not c.plot("gap")


def test_silence_at_the_ends_of_the_leg_shows_as_no_data():
    readings = every(15, [3.0] * 41, start=T0 + 3 * HOUR)  # 03:00 to 13:00
    c = Chart(
        render(readings, CHILLED, T0, T0 + 13 * HOUR + 30 * MIN), T0, T0 + 13 * HOUR + 30 * MIN
    )
    [(x0, x1)] = c.rects("gap")  # 3 h before the first reading; the last 30 min are not a gap
    assert (x0, x1) == (pytest.approx(c.fx), pytest.approx(c.x(T0 + 3 * HOUR), abs=0.11))
    [segment] = c.line()
    assert segment[0][0] == pytest.approx(c.x(T0 + 3 * HOUR), abs=0.11)
    assert segment[-1][0] == pytest.approx(c.x(T0 + 13 * HOUR), abs=0.11)


# --- excursions ----------------------------------------------------------------------------------


def test_excursion_is_shaded_over_its_worst_case_span_with_its_peak_marked():
    temps = [3.0] * 97
    temps[25:35] = [7.0] * 10  # 06:15 to 08:30 too warm
    temps[30] = 7.5
    readings = every(15, temps)
    c = Chart(render(readings, CHILLED, T0, T0 + DAY), T0, T0 + DAY)
    [(x0, x1)] = c.rects("excursion")
    assert x0 == pytest.approx(c.x(T0 + 6 * HOUR), abs=0.11)  # the last good reading
    assert x1 == pytest.approx(c.x(T0 + 8 * HOUR + 45 * MIN), abs=0.11)  # the first one back
    [triangle] = subpaths(c.one("peak").get("d"))
    xs = [x for x, _ in triangle]
    assert min(xs) < c.x(T0 + 7 * HOUR + 30 * MIN) < max(xs)
    assert c.texts("peak-label") == ["7.5 °C"]
    assert "1 excursion" in c.root.find(f"{SVG}desc").text
    assert [t.text for t in c.all("legend")[0].iter(f"{SVG}text")] == ["allowed band", "excursion"]


def test_cold_excursion_points_down_and_gets_room_below():
    readings = every(1, [3, 3, 2.5, 1, 0.4, -1.2, 1.5, 3, 3.5, 3.2, 3.1, 3.0])
    c = Chart(render(readings, VACCINE))
    [triangle] = subpaths(c.one("peak").get("d"))
    apex_y = triangle[0][1]
    assert apex_y > c.y(-1.2) > triangle[1][1]  # ▼: apex below the peak
    assert c.y(-1.2) + 20 <= c.fy + c.fh + 0.01  # its label fits inside the plot
    assert c.texts("peak-label") == ["\u22121.2 °C"]


def test_a_short_excursion_is_still_visible():
    temps = noisy(20_000)
    temps[7_000] = 9.0
    readings = every(5, temps)
    c = Chart(render(readings, VACCINE), readings[0][0], readings[-1][0])
    [(x0, x1)] = c.rects("excursion")
    assert x1 - x0 == pytest.approx(1.5)
    assert x0 < c.x(readings[7_000][0]) < x1


def test_excursions_closer_than_a_unit_share_one_span_and_keep_the_worst_peak():
    temps = noisy(20_000)
    temps[7_000], temps[7_003], temps[7_006] = 9.0, 10.0, 8.5
    readings = every(5, temps)
    c = Chart(render(readings, VACCINE))
    assert len(c.rects("excursion")) == 1
    assert len(subpaths(c.one("peak").get("d"))) == 1
    assert c.texts("peak-label") == ["10.0 °C"]
    assert "3 excursions" in c.root.find(f"{SVG}desc").text


def test_a_peak_just_past_the_edge_does_not_read_as_the_edge():
    c = Chart(render(every(15, [3, 5.04, 3]), CHILLED))
    assert c.texts("peak-label") == ["5.04 °C"]


# --- time axis -----------------------------------------------------------------------------------


def test_a_day_gets_six_hour_ticks_at_utc_midnight_and_dates():
    readings = every(15, [3.0] * 97)
    c = Chart(render(readings, CHILLED, T0, T0 + DAY), T0, T0 + DAY)
    down = [s for s in subpaths(c.one("grid").get("d")) if s[0][0] == s[-1][0]]
    assert [s[0][0] for s in down] == [
        pytest.approx(c.x(T0 + k * 6 * HOUR), abs=0.06) for k in range(5)
    ]
    x_labels = [t.text for t in c.all("tick")[1]]
    assert x_labels == ["00:00", "11-19", "06:00", "12:00", "18:00", "00:00", "11-20", "UTC"]


def test_the_time_axis_is_in_the_readers_zone():
    """Shanghai is UTC+8: the same day's ticks fall on Shanghai's round hours
    (00:00 UTC is 08:00 there, so 06:00 local comes 22 h after T0), say
    Shanghai's times and dates, and name the zone instead of UTC, as the text
    beside the chart does; the screen-reader span says the same."""
    readings = every(15, [3.0] * 97)
    svg = render(readings, CHILLED, T0, T0 + DAY, zone="Asia/Shanghai")
    c = Chart(svg, T0, T0 + DAY)
    down = [s for s in subpaths(c.one("grid").get("d")) if s[0][0] == s[-1][0]]
    assert [s[0][0] for s in down] == [
        pytest.approx(c.x(T0 + (4 + 6 * k) * HOUR), abs=0.06) for k in range(4)
    ]
    x_labels = [t.text for t in c.all("tick")[1]]
    assert x_labels == ["12:00", "11-19", "18:00", "00:00", "11-20", "06:00", "Asia/Shanghai"]
    assert "2026-11-19 08:00 – 2026-11-20 08:00 Asia/Shanghai" in svg
    with pytest.raises(ValidationError):
        render(readings, CHILLED, T0, T0 + DAY, zone="../../etc/passwd")


@pytest.mark.parametrize(
    ("span", "fmt"),
    [
        (90 * 1_000_000, r"\d\d:\d\d:\d\d"),  # a minute and a half
        (10 * MIN, r"\d\d:\d\d"),
        (6 * HOUR, r"\d\d:\d\d"),
        (4 * DAY, r"\d\d-\d\d|\d\d:\d\d"),
        (3 * 7 * DAY, r"\d\d-\d\d"),
        (200 * DAY, r"\d\d-\d\d"),
        (6 * 365 * DAY, r"\d\d-\d\d"),
    ],
)
def test_time_ticks_are_monotone_nice_and_inside(span, fmt):
    start = T0 + 37 * MIN + 11_000_000  # not on any grid
    readings = [(start, 3.0), (start + span, 4.0)]
    c = Chart(render(readings, CHILLED), start, start + span)
    down = [s[0][0] for s in subpaths(c.one("grid").get("d")) if s[0][0] == s[-1][0]]
    assert 2 <= len(down) <= 6
    assert down == sorted(down) and len(set(down)) == len(down)
    assert all(c.fx <= x <= c.fx + c.fw for x in down)
    group = c.all("tick")[1]
    heads = [t for t in group if t.get("y") == group[0].get("y")]
    assert len(heads) == len(down)
    assert all(re.fullmatch(fmt, t.text) for t in heads)
    width = float(c.root.get("viewBox").split()[2])
    for t in group:  # estimated extent of each label stays in the view box
        x, w = float(t.get("x")), len(t.text) * 7.2
        anchor = t.get("text-anchor", "middle")
        left = {"start": x, "middle": x - w / 2, "end": x - w}[anchor]
        assert left >= 0 and left + w <= width, (t.text, x, anchor)
    if span == 3 * 7 * DAY:  # weekly ticks fall on Mondays
        for x in down:
            t = c.start + (x - c.fx) / c.fw * (c.end - c.start)
            when = datetime.fromtimestamp(round(t / HOUR) * 3600, UTC)  # x is rounded
            assert when.weekday() == 0 and when.hour == 0


# --- odd records ---------------------------------------------------------------------------------


def test_no_readings_give_a_placeholder():
    svg = chart.render_svg(
        [], CHILLED, start_us=T0, end_us=T0 + HOUR, labels={"no_readings": "无读数"}
    )
    root = ET.fromstring(svg)
    assert root.get("role") == "img"
    assert [t.text for t in root.iter(f"{SVG}text")] == ["无读数"]
    assert root.find(f"{SVG}desc").text == "无读数"
    assert len(svg) < 1_000
    assert chart.render_readings([], CHILLED) == chart.render_svg([], CHILLED, start_us=0, end_us=0)


def test_one_reading_is_a_dot_in_the_middle():
    c = Chart(render([(T0, 4.0)], CHILLED))
    [dot] = c.plot("dot")
    assert float(dot.get("cx")) == pytest.approx(c.fx + c.fw / 2)
    assert float(dot.get("cy")) == pytest.approx(c.y(4.0), abs=0.06)
    assert "min 4.0 °C, max 4.0 °C" in c.root.find(f"{SVG}desc").text


def test_identical_readings_are_one_flat_line():
    c = Chart(render(every(15, [3.0] * 50), CHILLED))
    [segment] = c.line()
    assert all(y == pytest.approx(c.y(3.0), abs=0.06) for _, y in segment)
    assert segment[0][0] == pytest.approx(c.fx) and segment[-1][0] == pytest.approx(c.fx + c.fw)
    assert [v for v, _ in c.y_ticks()] == [0, 1, 2, 3, 4, 5]


def test_lone_readings_between_gaps_stay_visible():
    readings = every(120, [3.0, 4.0, 3.5])  # 2 h apart: each one is alone
    c = Chart(render(readings, CHILLED))
    assert len(c.line()) == 3 and len(c.plot("dot")) == 3
    many = every(120, [3.0] * 40)
    c = Chart(render(many, CHILLED))
    assert not c.plot("dot") and len(c.line()) == 40  # zero-length subpaths: one path
    assert c.one("line").get("stroke-linecap") == "round"


def test_readings_outside_the_leg_widen_the_axis():
    readings = every(15, [3.0] * 9)  # 00:00 to 02:00
    c = Chart(render(readings, CHILLED, T0 + HOUR, T0 + 90 * MIN), T0, T0 + 2 * HOUR)
    [segment] = c.line()
    assert segment[0][0] == pytest.approx(c.fx) and segment[-1][0] == pytest.approx(c.fx + c.fw)


# --- words and safety ----------------------------------------------------------------------------


def test_outside_text_is_escaped():
    evil = '</title><script>alert("x")</script>&amp;\x00\'"'
    labels = {key: evil for key in chart_text.DEFAULT_LABELS if key != "desc"}
    temps = [3.0] * 97
    temps[40] = 9.0
    readings = [r for r in every(15, temps) if not T0 + 8 * HOUR < r[0] < T0 + 12 * HOUR]
    svg = render(readings, CHILLED, labels=labels)
    root = ET.fromstring(svg)  # well-formed despite everything
    assert not [e for e in root.iter() if e.tag.endswith("script")]
    assert root.find(f"{SVG}title").text == evil.replace("\x00", "")
    assert evil.replace("\x00", "") in [t.text for t in root.iter(f"{SVG}text")]
    assert "<script>" not in svg and "\x00" not in svg


def test_translated_words_and_plurals():
    temps = [3.0] * 40
    temps[10], temps[30] = 7.0, 8.0
    labels = {
        "title": "温度",
        "band": "允许范围",
        "excursion": "超温",
        "summary": "最低 {min}，最高 {max}",
        "excursions": lambda n: f"{n} 次超温",
    }
    c = Chart(render(every(15, temps), CHILLED, labels=labels, chart_id="leg-2"))
    assert c.root.find(f"{SVG}title").text == "温度"
    desc = c.root.find(f"{SVG}desc").text
    assert "最低 3.0 °C，最高 8.0 °C" in desc and "允许范围 0–5 °C" in desc and "2 次超温" in desc
    assert [t.text for t in c.all("legend")[0].iter(f"{SVG}text")] == ["允许范围", "超温"]
    assert "2 excursions" in Chart(render(every(15, temps), CHILLED)).root.find(f"{SVG}desc").text
    custom = render(every(15, temps), CHILLED, labels={"desc": "two warm spells"})
    assert ET.fromstring(custom).find(f"{SVG}desc").text == "two warm spells"


def test_screen_readers_get_a_name_and_a_description():
    c = Chart(render(every(15, [3.0, 4.0]), CHILLED, chart_id="leg-7"))
    root = c.root
    assert root.get("role") == "img" and root.get("width") == "100%"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id == "leg-7-title"
    assert root.find(f"{SVG}desc").get("id") == desc_id == "leg-7-desc"
    assert root.find(f"{SVG}desc").text == (
        "2026-11-19 00:00 – 2026-11-19 00:15 UTC; min 3.0 °C, max 4.0 °C; "
        "allowed band 0–5 °C; 0 excursions"
    )
    assert root.find(f"{SVG}defs/{SVG}pattern").get("id") == "leg-7-hatch"  # unique per page


def test_every_class_used_is_documented():
    temps = noisy(2_000)
    temps[500] = 12.0
    readings = every(5, temps)
    del readings[900:950]
    svg = render(readings, VACCINE, start=readings[0][0] - 3 * HOUR)
    used = {c for e in ET.fromstring(svg).iter() for c in e.get("class", "").split()}
    assert used <= set(chart.CLASSES)
    docs = (ROOT / "docs" / "chart.md").read_text(encoding="utf-8")
    for name in chart.CLASSES:
        assert f"`.{name}`" in docs, name


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"labels": {"titel": "x"}}, "labels"),
        ({"labels": {"title": 3}}, "labels"),
        ({"chart_id": "1abc"}, "chart_id"),
        ({"chart_id": 'a" onload="x'}, "chart_id"),
        ({"start_us": T0 + 1, "end_us": T0}, "end_us"),
        ({"start_us": 1.5}, "start_us"),
    ],
)
def test_bad_arguments_are_refused(kwargs, field):
    args = {"start_us": T0, "end_us": T0 + HOUR, **kwargs}
    with pytest.raises(ValidationError) as info:
        chart.render_svg(
            coldchain_downsample.downsample(every(15, [3.0]), 10, CHILLED), CHILLED, **args
        )
    assert info.value.field == field


def test_excursions_from_other_readings_do_not_break_the_chart():
    """A peak no bucket holds is placed between its first and last reading out."""
    readings = every(15, [3.0] * 9)
    ghost = Excursion(T0 + HOUR, T0 + 2 * HOUR, "high", 6.0, 1, T0 + 75 * MIN, T0 + 105 * MIN)
    buckets = coldchain_downsample.downsample(readings, 10, CHILLED)
    c = Chart(
        chart.render_svg(buckets, CHILLED, start_us=T0, end_us=T0 + 2 * HOUR, excursions=[ghost]),
        T0,
        T0 + 2 * HOUR,
    )
    [triangle] = subpaths(c.one("peak").get("d"))
    assert triangle[0][0] == pytest.approx(c.x(T0 + 90 * MIN), abs=0.11)


def test_profile_with_only_a_low_bound():
    warm = Profile("warm", 30.0, None, None, None, 15 * MIN, HOUR)
    c = Chart(render(every(15, [31, 35, 29, 33]), warm))
    band = c.plot("band")[0]
    assert float(band.get("y")) == pytest.approx(c.fy)  # open to the top
    assert float(band.get("y")) + float(band.get("height")) == pytest.approx(c.y(30), abs=0.06)
    [triangle] = subpaths(c.one("peak").get("d"))
    assert triangle[0][1] > triangle[1][1]  # ▼ for the 29 °C reading
