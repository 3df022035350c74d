"""provenance.domain.coldchain: known answers worked out by hand, a naive reference walk the
fast code must agree with, and hypothesis properties (chart envelopes keep every
breach, MKT is a mean, excursions are ordered and disjoint, input order is irrelevant)."""

from __future__ import annotations

import math
import random
import time
from itertools import pairwise

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from provenance.core.errors import ValidationError
from provenance.domain import coldchain_status
from provenance.domain.coldchain import PROFILES, Profile, gaps, profile, series
from provenance.domain.coldchain_downsample import downsample
from provenance.domain.coldchain_excursions import BOTH, HIGH, LOW, excursions, time_out_of_range
from provenance.domain.coldchain_mkt import max_window_mkt, mean_kinetic_temperature
from provenance.domain.coldchain_status import (
    EXCEEDED,
    EXCURSION,
    GAP,
    NO_DATA,
    OK,
    assess,
    format_duration,
)

MIN = 60_000_000
HOUR = 60 * MIN
DAY = 24 * HOUR
T0 = 1_795_000_000_000_000  # 2026-11-18T11:06:40Z, an arbitrary origin
R_KJ = 0.0083144  # USP <1079.2>'s gas constant, kJ/(mol·K)

# 2–8 °C, gaps beyond 1 h; tolerance rules off unless a test sets them.
BAND = Profile("test", 2.0, 8.0, None, None, interval_us=10 * MIN, max_gap_us=HOUR)


def every(minutes: int, temps: list[float], start: int = T0) -> list[tuple[int, float]]:
    return [(start + i * minutes * MIN, t) for i, t in enumerate(temps)]


def arrhenius_mkt(pairs: list[tuple[float, float]], dh_kj: float = 83.144) -> float:
    """MKT from the textbook formula, for (weight, °C) pairs: written out independently."""
    ratio = dh_kj / R_KJ
    mean = sum(w * math.exp(-ratio / (c + 273.15)) for w, c in pairs) / sum(w for w, _ in pairs)
    return ratio / -math.log(mean) - 273.15


# --- profiles --------------------------------------------------------------------------------


def test_built_in_profiles_have_the_bands_of_the_issue():
    bands = {name: (p.low_c, p.high_c) for name, p in PROFILES.items()}
    assert bands == {
        "chilled": (0.0, 5.0),
        "frozen": (None, -18.0),
        "vaccine": (2.0, 8.0),
        "ultra-cold": (-90.0, -60.0),
        "ambient": (15.0, 25.0),
    }
    for p in PROFILES.values():
        assert p.basis and p.max_gap_us >= p.interval_us
        assert profile(p.name) is p


def test_profile_names_the_known_ones_when_unknown():
    with pytest.raises(ValidationError, match="chilled, frozen, vaccine, ultra-cold, ambient"):
        profile("warm")
    with pytest.raises(ValidationError, match="unknown profile"):
        profile(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "Chilled"}, "not a profile name"),
        ({"low_c": 9.0}, "above high_c"),
        ({"low_c": None, "high_c": None}, "at least one bound"),
        ({"low_c": math.nan}, "finite temperature"),
        ({"limit_low_c": 3.0}, "below low_c"),
        ({"limit_high_c": 7.0}, "above high_c"),
        ({"max_excursion_us": -1}, "duration"),
        ({"interval_us": 0}, "> 0"),
        ({"max_gap_us": MIN}, "at least interval_us"),
    ],
)
def test_profile_checks_itself(changes, message):
    fields = {**BAND.__dict__, **changes}
    with pytest.raises(ValidationError, match=message):
        Profile(**fields)


def test_band_is_closed_and_reads_well():
    assert BAND.in_range(2.0) and BAND.in_range(8.0)
    assert not BAND.in_range(8.01) and not BAND.in_range(1.99)
    assert profile("vaccine").band == "2–8 °C"
    assert profile("frozen").band == "≤ -18 °C"


# --- excursions: known answers ---------------------------------------------------------------


def test_excursion_runs_from_last_in_range_to_first_back_in_range():
    readings = every(10, [5, 5, 9, 10, 7, 5])
    [e] = excursions(readings, BAND)
    assert (e.start_us, e.end_us) == (T0 + 10 * MIN, T0 + 40 * MIN)  # readings 1 and 4
    assert (e.first_out_us, e.last_out_us) == (T0 + 20 * MIN, T0 + 30 * MIN)
    assert e.duration_us == 30 * MIN  # worst case: not the 10 min between the two hot ones
    assert (e.direction, e.peak_c, e.readings) == (HIGH, 10, 2)
    assert not e.open_start and not e.open_end


def test_one_hot_reading_counts_both_intervals_around_it():
    [e] = excursions(every(15, [3.1, 3.4, 3.9, 4.2, 6.8, 4.4, 3.8, 3.5]), profile("chilled"))
    assert e.duration_us == 30 * MIN and e.peak_c == 6.8


def test_low_and_crossing_excursions():
    [low] = excursions(every(10, [5, 1.5, 0.5, 3]), BAND)
    assert (low.direction, low.peak_c, low.readings) == (LOW, 0.5, 2)
    [both] = excursions(every(10, [5, 12, 1, 5]), BAND)  # crossed the band between readings
    assert (both.direction, both.peak_c, both.readings) == (BOTH, 12, 2)
    assert both.duration_us == 30 * MIN


def test_bounds_are_in_range():
    assert excursions(every(10, [2.0, 8.0, 2.0, 8.0]), BAND) == []


def test_excursions_open_at_the_edges_of_the_data():
    first, last = excursions(every(10, [9, 5, 5, 1]), BAND)
    assert first.open_start and not first.open_end
    assert (first.start_us, first.end_us) == (T0, T0 + 10 * MIN)
    assert last.open_end and not last.open_start
    assert (last.start_us, last.end_us) == (T0 + 20 * MIN, T0 + 30 * MIN)


def test_a_sensor_gap_cuts_an_excursion():
    readings = every(10, [5, 9]) + every(10, [9, 5], start=T0 + 3 * HOUR)
    before, after = excursions(readings, BAND)
    assert (before.start_us, before.end_us, before.open_end) == (T0, T0 + 10 * MIN, True)
    assert (after.start_us, after.end_us, after.open_start) == (
        T0 + 3 * HOUR,
        T0 + 3 * HOUR + 10 * MIN,
        True,
    )
    assert time_out_of_range(readings, BAND) == 20 * MIN  # the silence is not counted
    assert gaps(readings, HOUR) == [(T0 + 10 * MIN, T0 + 3 * HOUR)]


def test_time_out_of_range_adds_up_excursions():
    readings = every(10, [5, 9, 5, 5, 5, 1, 1, 5, 5])
    assert [e.duration_us for e in excursions(readings, BAND)] == [20 * MIN, 30 * MIN]
    assert time_out_of_range(readings, BAND) == 50 * MIN
    assert time_out_of_range([], BAND) == 0


def test_gaps_known_answers():
    times = [0, 10, 20, 100, 110, 300]
    readings = [(t * MIN, 5.0) for t in times]
    assert gaps(readings, HOUR) == [(20 * MIN, 100 * MIN), (110 * MIN, 300 * MIN)]
    assert gaps(readings, 80 * MIN) == [(110 * MIN, 300 * MIN)]  # exactly 80 min is fine
    assert gaps(readings, 4 * HOUR) == []
    assert gaps([], HOUR) == [] and gaps([(0, 5.0)], HOUR) == []
    with pytest.raises(ValidationError, match="max_gap_us"):
        gaps(readings, 0)


def test_unsorted_and_repeated_input_reads_as_sorted():
    readings = every(10, [5, 5, 9, 10, 7, 5, 1, 5])
    shuffled = readings * 3
    random.Random(4).shuffle(shuffled)
    assert excursions(shuffled, BAND) == excursions(readings, BAND)
    assert mean_kinetic_temperature(shuffled) == pytest.approx(mean_kinetic_temperature(readings))
    assert series(shuffled).times == series(readings).times
    assert not series(shuffled).repeats


def test_conflicting_values_at_one_instant_take_the_worse():
    readings = [*every(10, [5, 5, 5]), (T0 + 10 * MIN, 9.5)]
    data = series(readings)
    assert data.repeats and data.temps == (5, 5, 9.5, 5)
    [e] = excursions(readings, BAND)
    assert (e.start_us, e.end_us, e.readings, e.peak_c) == (T0, T0 + 20 * MIN, 1, 9.5)
    # one instant's time is shared, not doubled: 5 and 9.5 each weigh half of it
    expected = arrhenius_mkt([(2, 5), (1, 5), (1, 9.5), (2, 5)])
    assert mean_kinetic_temperature(readings) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("readings", "message"),
    [
        ([(1.5, 5.0)], "integer microseconds"),
        ([(True, 5.0)], "integer microseconds"),
        ([("2026-01-01", 5.0)], "integer microseconds"),
        ([(0, math.nan)], "finite"),
        ([(0, math.inf)], "finite"),
        ([(0, -300.0)], "above -273.15"),
        ([(0, "5")], "number"),
        ([(0, None)], "number"),
        ([(0, True)], "number"),
        ([(0, 5.0, "x")], "pairs"),
        ([5], "pairs"),
    ],
)
def test_bad_readings_are_refused(readings, message):
    with pytest.raises(ValidationError, match=message):
        series(readings)


# --- Mean Kinetic Temperature ----------------------------------------------------------------


@pytest.mark.parametrize("celsius", [-80.0, -18.0, 0.0, 5.0, 25.0, 40.0])
def test_mkt_of_a_constant_is_that_constant(celsius):
    uneven = [(T0, celsius), (T0 + 7, celsius), (T0 + HOUR, celsius), (T0 + DAY, celsius)]
    assert mean_kinetic_temperature(uneven) == pytest.approx(celsius, abs=1e-9)
    assert mean_kinetic_temperature([(T0, celsius)]) == celsius


def test_mkt_of_two_temperatures_for_equal_times():
    readings = every(60, [20.0] * 12 + [30.0] * 12)
    expected = arrhenius_mkt([(1, 20.0), (1, 30.0)])
    assert expected == pytest.approx(26.2599, abs=1e-4)  # above the 25 °C arithmetic mean
    assert mean_kinetic_temperature(readings) == pytest.approx(expected, abs=1e-9)


def test_mkt_with_another_activation_energy():
    readings = every(60, [20.0, 30.0])
    expected = arrhenius_mkt([(1, 20.0), (1, 30.0)], dh_kj=60.0)
    assert mean_kinetic_temperature(readings, 60.0) == pytest.approx(expected, abs=1e-9)
    with pytest.raises(ValidationError, match="activation_energy"):
        mean_kinetic_temperature(readings, 0)
    with pytest.raises(ValidationError, match="at least one reading"):
        mean_kinetic_temperature([])


def test_mkt_weighs_readings_by_the_time_they_stand_for():
    # Readings at 0 h, 1 h and 3 h stand for 1 h, 1.5 h and 2 h: half of each interval
    # beside them, the first and last mirroring their one interval (2 : 3 : 4).
    readings = [(T0, 4.0), (T0 + HOUR, 12.0), (T0 + 3 * HOUR, 6.0)]
    expected = arrhenius_mkt([(2, 4.0), (3, 12.0), (4, 6.0)])
    assert mean_kinetic_temperature(readings) == pytest.approx(expected, abs=1e-12)
    unweighted = arrhenius_mkt([(1, 4.0), (1, 12.0), (1, 6.0)])
    assert abs(expected - unweighted) > 0.1  # the weighting matters here


def test_mkt_caps_what_a_reading_beside_a_gap_stands_for():
    # A 10 h silence: with a 1 h cap the readings beside it stand for 30 min of it each.
    readings = [(T0, 4.0), (T0 + HOUR, 20.0), (T0 + 11 * HOUR, 4.0), (T0 + 12 * HOUR, 4.0)]
    capped = arrhenius_mkt([(2, 4.0), (2, 20.0), (2, 4.0), (2, 4.0)])
    assert mean_kinetic_temperature(readings, max_gap_us=HOUR) == pytest.approx(capped)
    uncapped = arrhenius_mkt([(2, 4.0), (11, 20.0), (11, 4.0), (2, 4.0)])
    assert mean_kinetic_temperature(readings) == pytest.approx(uncapped)


def test_window_mkt_finds_the_day_with_the_excursion():
    # 3 days at 5 °C with 4 h at 20 °C on day 2: the whole-record MKT hides it, USP's
    # 24 h window (controlled cold) does not.
    temps = [5.0] * 72
    temps[30:34] = [20.0] * 4
    readings = every(60, temps)
    whole = mean_kinetic_temperature(readings)
    worst = max_window_mkt(readings, DAY)
    assert whole < 8.0 < worst.mkt_c
    assert worst.start_us <= T0 + 30 * HOUR and worst.end_us >= T0 + 33 * HOUR
    assert worst.end_us - worst.start_us <= DAY
    short = max_window_mkt(readings, 10 * DAY)  # longer than the record: all of it
    assert short.mkt_c == pytest.approx(whole)


# --- downsampling ----------------------------------------------------------------------------


def test_downsample_keeps_min_max_first_last():
    readings = every(10, [5, 5, 9.5, 5, 5, 5, 1.0, 5])  # 8 readings, 70 min
    b1, b2 = downsample(readings, 2, BAND)
    assert (b1.readings, b2.readings) == (4, 4)
    assert (b1.min_c, b1.max_c, b1.max_us) == (5, 9.5, T0 + 20 * MIN)
    assert (b2.min_c, b2.max_c, b2.min_us) == (1.0, 5, T0 + 60 * MIN)
    assert (b1.first_us, b1.last_us, b2.first_us, b2.last_us) == (
        T0,
        T0 + 30 * MIN,
        T0 + 40 * MIN,
        T0 + 70 * MIN,
    )
    assert b1.out_of_range and b2.out_of_range
    assert b1.start_us == T0 and b1.end_us == b2.start_us and b2.end_us == T0 + 70 * MIN + 1


def test_downsample_shows_gaps_and_empty_buckets():
    readings = every(10, [5, 5, 5]) + every(10, [5, 5, 5], start=T0 + 10 * HOUR)
    buckets = downsample(readings, 10, BAND)
    assert len(buckets) == 10
    assert [b.readings for b in buckets] == [3, 0, 0, 0, 0, 0, 0, 0, 0, 3]
    assert [b.gap_before for b in buckets] == [False] * 9 + [True]
    assert not any(b.out_of_range for b in buckets)
    assert buckets[4].min_c is None and buckets[4].first_us is None
    plain = downsample(readings, 10)  # no profile: no band, no gap limit
    assert not any(b.gap_before or b.out_of_range for b in plain)
    assert downsample(readings, 10, max_gap_us=20 * HOUR)[9].gap_before is False


def test_downsample_edge_cases():
    assert downsample([], 10) == []
    [only] = downsample([(T0, 3.0)], 100)
    assert (only.readings, only.min_c, only.max_c, only.start_us, only.end_us) == (
        1,
        3.0,
        3.0,
        T0,
        T0 + 1,
    )
    assert len(downsample([*every(0, [1.0, 2.0]), (T0 + 3, 4.0)], 100)) == 4  # µs-wide
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValidationError, match="buckets"):
            downsample([(T0, 3.0)], bad)  # type: ignore[arg-type]


def test_downsample_20000_points_is_fast():
    """A guard, not a benchmark (bench/ measures): the page must never be slow to draw."""
    rng = random.Random(7)
    readings = [(T0 + i * 5 * MIN, round(rng.uniform(2, 8) * 16) / 16) for i in range(20_000)]
    readings[9_000] = (readings[9_000][0], 30.0)
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        buckets = downsample(readings, 400, profile("vaccine"))
        best = min(best, time.perf_counter() - started)
    assert best < 0.1, f"downsampling 20,000 readings took {best * 1000:.1f} ms"
    assert sum(b.readings for b in buckets) == 20_000
    assert max(b.max_c for b in buckets if b.max_c is not None) == 30.0
    started = time.perf_counter()
    assess(readings, profile("vaccine"))
    assert time.perf_counter() - started < 0.5


# --- assess ----------------------------------------------------------------------------------


def test_assess_all_good():
    status = assess(every(15, [4.0] * 20), profile("vaccine"))
    assert status.state == OK and status.ok
    assert status.excursions == () and status.gaps == () and status.time_out_of_range_us == 0
    assert status.mkt_c == pytest.approx(4.0)
    assert status.window_mkt is None  # nothing above 8 °C: no window can break the limit
    assert (status.readings, status.min_c, status.max_c) == (20, 4.0, 4.0)
    assert status.reasons == ("always within 2–8 °C",)


def test_assess_excursion_within_tolerance():
    temps = [3.1, 3.4, 3.9, 4.2, 6.8, 4.4, 3.8, 3.5]  # the demo's probe log
    status = assess(every(15, temps), profile("chilled"))
    assert status.state == EXCURSION and not status.ok
    assert status.time_out_of_range_us == status.longest_excursion_us == 30 * MIN
    assert status.reasons == ("1 excursion outside 0–5 °C, 30 min in all, within tolerance",)


def test_assess_single_excursion_too_long():
    temps = [4.0] * 4 + [9.0] * 40 + [4.0] * 4  # 41 × 15 min = 10 h 15 min out
    status = assess(every(15, temps), profile("vaccine"))
    assert status.state == EXCEEDED
    assert status.longest_excursion_us == 10 * HOUR + 15 * MIN
    assert any("lasted 10 h 15 min" in r and "tolerated: 10 h" in r for r in status.reasons)


def test_assess_tolerance_boundaries_are_inclusive():
    chilled = profile("chilled")  # 2 h for one excursion
    exactly = assess(every(15, [4.0] + [6.0] * 7 + [4.0]), chilled)
    assert exactly.longest_excursion_us == 2 * HOUR and exactly.state == EXCURSION
    longer = assess(every(15, [4.0] + [6.0] * 8 + [4.0]), chilled)
    assert longer.longest_excursion_us == 2 * HOUR + 15 * MIN and longer.state == EXCEEDED


def test_assess_cumulative_time_too_long():
    # Excursions of 1 h each (3 hot readings: 4 intervals), 2 h allowed each, 4 h in all.
    tight = Profile("tight", 2.0, 8.0, 2 * HOUR, 4 * HOUR, 15 * MIN, HOUR)
    temps = ([4.0] * 4 + [9.0] * 3) * 3 + [4.0]
    status = assess(every(15, temps), tight)
    assert status.longest_excursion_us == HOUR
    assert status.time_out_of_range_us == 3 * HOUR and status.state == EXCURSION
    status = assess(every(15, ([4.0] * 4 + [9.0] * 3) * 5 + [4.0]), tight)
    assert status.time_out_of_range_us == 5 * HOUR and status.state == EXCEEDED
    assert status.reasons == ("5 h out of range in all (tolerated: 4 h)",)


def test_assess_hard_limits_and_freezing():
    status = assess(every(15, [4.0, 4.0, -1.0, 4.0, 4.0]), profile("vaccine"))
    assert status.state == EXCEEDED
    assert status.reasons[0].startswith("-1 °C at ") and "-0.5 °C limit" in status.reasons[0]
    assert assess(every(15, [4.0, -0.5, 4.0]), profile("vaccine")).state == EXCURSION
    frozen = assess(every(15, [-20.0, -14.0, -20.0]), profile("frozen"))
    assert frozen.state == EXCEEDED and "above the -15 °C limit" in frozen.reasons[0]
    assert assess(every(15, [-20.0, -15.0, -20.0]), profile("frozen")).state == EXCURSION


def test_assess_window_mkt_over_the_limit():
    # Vaccine: 3 h at 14 °C is within the time tolerance and below the 15 °C limit, but
    # the day around it ran warm (7.5 °C): its 24 h MKT is above 8 °C. Two cool days on
    # either side bring the whole record's MKT down to 5.9 °C, which would hide it.
    temps = [5.0] * 192 + [7.5] * 42 + [14.0] * 12 + [7.5] * 42 + [5.0] * 192
    status = assess(every(15, temps), profile("vaccine"))
    assert status.window_mkt is not None
    assert status.mkt_c < 6.0 and 8.6 < status.window_mkt.mkt_c < 8.7
    assert status.window_mkt.end_us - status.window_mkt.start_us == DAY
    assert status.longest_excursion_us == 3 * HOUR + 15 * MIN
    assert status.state == EXCEEDED
    assert any(r.startswith("mean kinetic temperature 8.") for r in status.reasons)
    naive = max_window_mkt(every(15, temps), DAY, max_gap_us=HOUR)  # ties may pick another
    assert status.window_mkt.mkt_c == pytest.approx(naive.mkt_c)


def test_assess_gaps_and_now():
    readings = every(15, [4.0] * 4) + every(15, [4.0] * 4, start=T0 + 5 * HOUR)
    status = assess(readings, profile("vaccine"))
    assert status.state == GAP
    assert status.gaps == ((T0 + 45 * MIN, T0 + 5 * HOUR),)
    assert status.unmonitored_us == 4 * HOUR + 15 * MIN
    assert status.reasons == ("no readings for 4 h 15 min from 2026-11-18T11:51:40.000Z",)
    last = readings[-1][0]
    stale = assess(readings, profile("vaccine"), now_us=last + 2 * HOUR)
    assert stale.gaps[-1] == (last, last + 2 * HOUR)
    fresh = assess(every(15, [4.0] * 4), profile("vaccine"), now_us=T0 + HOUR)
    assert fresh.state == OK and fresh.gaps == ()


def test_assess_an_ongoing_excursion_lasts_until_now():
    readings = every(15, [4.0, 4.0, 9.0, 9.5])
    ended = assess(readings, profile("vaccine"))
    assert ended.longest_excursion_us == 30 * MIN and ended.excursions[0].open_end
    live = assess(readings, profile("vaccine"), now_us=T0 + 80 * MIN)
    assert live.longest_excursion_us == 65 * MIN
    overdue = assess(readings, profile("vaccine"), now_us=T0 + 10 * HOUR)
    assert overdue.longest_excursion_us == 30 * MIN and overdue.state == EXCURSION
    assert overdue.gaps == ((T0 + 45 * MIN, T0 + 10 * HOUR),)


def test_assess_no_data():
    status = assess([], profile("frozen"))
    assert status.state == NO_DATA and status.mkt_c is None and status.readings == 0
    with pytest.raises(ValidationError, match="now_us"):
        assess([], profile("frozen"), now_us=1.5)  # type: ignore[arg-type]


def test_format_duration():
    assert format_duration(0) == "0 s"
    assert format_duration(45 * 1_000_000) == "45 s"
    assert format_duration(30 * MIN) == "30 min"
    assert format_duration(2 * HOUR + 5 * MIN + 7_000_000) == "2 h 5 min"
    assert format_duration(2 * HOUR) == "2 h"
    assert format_duration(DAY + 3 * HOUR) == "1 d 3 h"


# --- a naive reference -----------------------------------------------------------------------


def reference_excursions(readings, p: Profile) -> list[tuple]:
    """Instant by instant, straight from the definitions (slow, obviously right)."""
    instants: dict[int, list[float]] = {}
    for t, v in readings:
        instants.setdefault(t, []).append(v)
    out, run, last_in, previous = [], None, None, None
    for t in sorted(instants):
        if previous is not None and t - previous > p.max_gap_us:
            if run:
                out.append((run[0], run[2], run[1], True))
            run, last_in = None, None
        bad = [v for v in instants[t] if not p.in_range(v)]
        if bad:
            run = run or [t if last_in is None else last_in, last_in is None, t]
            run[2] = t
        else:
            if run:
                out.append((run[0], t, run[1], False))
            run, last_in = None, t
        previous = t
    if run:
        out.append((run[0], run[2], run[1], True))
    return out  # (start, end, open_start, open_end)


# --- properties ------------------------------------------------------------------------------

temperatures = st.one_of(
    st.floats(-100, 150, allow_nan=False),
    st.integers(-40, 40).map(lambda n: n / 4),  # logger steps: repeats and exact bounds
)


@st.composite
def reading_lists(draw, min_size: int = 0) -> list[tuple[int, float]]:
    """Up to 120 readings over 3 days, in any order, some repeated exactly; times on a
    5-minute grid make some instants carry several different values."""
    times = st.one_of(
        st.integers(T0, T0 + 3 * DAY), st.integers(0, 864).map(lambda k: T0 + k * 5 * MIN)
    )
    readings = draw(st.lists(st.tuples(times, temperatures), min_size=min_size, max_size=120))
    if readings:
        readings += draw(st.lists(st.sampled_from(readings), max_size=20))
    return draw(st.permutations(readings))


profiles = st.sampled_from([BAND, *PROFILES.values()])


@settings(max_examples=150, deadline=None)
@given(reading_lists(), st.integers(1, 50), profiles)
def test_downsampled_envelope_holds_every_point(readings, count, p):
    buckets = downsample(readings, count, p)
    data = series(readings)
    assert sum(b.readings for b in buckets) == len(data)
    for b in buckets:
        pairs = zip(data.times, data.temps, strict=True)
        inside = [v for t, v in pairs if b.start_us <= t < b.end_us]
        assert len(inside) == b.readings
        if inside:
            assert (b.min_c, b.max_c) == (min(inside), max(inside))
            assert b.out_of_range == any(not p.in_range(v) for v in inside)
    for t, v in readings:  # every breach shows, in the right bucket
        [home] = [b for b in buckets if b.start_us <= t < b.end_us]
        assert home.min_c <= v <= home.max_c
        if not p.in_range(v):
            assert home.out_of_range
    for _, end in gaps(readings, p.max_gap_us):
        assert next(b for b in buckets if b.start_us <= end < b.end_us).gap_before
    assert len(buckets) <= count
    assert all(a.end_us == b.start_us for a, b in pairwise(buckets))


@settings(max_examples=150, deadline=None)
@given(reading_lists(), profiles)
def test_excursions_are_sorted_disjoint_and_match_the_reference(readings, p):
    found = excursions(readings, p)
    assert [(e.start_us, e.end_us, e.open_start, e.open_end) for e in found] == (
        reference_excursions(readings, p)
    )
    for e in found:
        assert e.start_us <= e.first_out_us <= e.last_out_us <= e.end_us
        assert e.readings >= 1 and not p.in_range(e.peak_c)
    for a, b in pairwise(found):
        assert a.end_us <= b.start_us
    total = time_out_of_range(readings, p)
    span = max(t for t, _ in readings) - min(t for t, _ in readings) if readings else 0
    assert 0 <= total <= span
    shuffled = list(readings)
    random.Random(len(readings)).shuffle(shuffled)
    assert excursions(shuffled, p) == found


@settings(max_examples=150, deadline=None)
@given(reading_lists(min_size=1), st.sampled_from([None, 10 * MIN, HOUR]))
def test_mkt_lies_between_min_and_max(readings, cap):
    mkt = mean_kinetic_temperature(readings, max_gap_us=cap)
    values = [v for _, v in readings]
    assert min(values) <= mkt <= max(values)
    window = max_window_mkt(readings, 6 * HOUR, max_gap_us=cap)
    assert min(values) <= window.mkt_c <= max(values)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.floats(-30, 40, allow_nan=False), min_size=4, max_size=30),
    st.lists(st.integers(1, 10 * MIN), min_size=29, max_size=29),
    st.data(),
)
def test_extra_readings_of_an_unchanged_temperature_leave_mkt_alone(temps, steps, data):
    """Time-weighting: sampling a steady stretch more often must not change the MKT."""
    times = [T0]
    for step in steps[: len(temps) - 1]:
        times.append(times[-1] + step)
    k = data.draw(st.integers(1, len(temps) - 3))  # an interior pair, k and k + 1
    assume(times[k + 1] - times[k] > 1)
    temps[k + 1] = temps[k]
    readings = list(zip(times, temps, strict=True))
    between = data.draw(st.integers(times[k] + 1, times[k + 1] - 1))
    more = [*readings, (between, temps[k])]
    assert mean_kinetic_temperature(more) == pytest.approx(
        mean_kinetic_temperature(readings), abs=1e-9
    )


@settings(max_examples=100, deadline=None)
@given(reading_lists(min_size=1), st.sampled_from([PROFILES["vaccine"], PROFILES["ambient"]]))
def test_assess_windowed_mkt_agrees_with_the_naive_search(readings, p):
    status = assess(readings, p)
    naive = max_window_mkt(readings, p.mkt_window_us, max_gap_us=p.max_gap_us)
    if naive.mkt_c > p.mkt_limit_c:  # then the worst window holds a reading above the limit
        assert status.window_mkt is not None
        assert status.window_mkt.mkt_c == pytest.approx(naive.mkt_c)
        assert status.state == EXCEEDED
    assert status.state in coldchain_status.STATES
    assert status.time_out_of_range_us <= (status.last_us or 0) - (status.first_us or 0)
