"""The cold-chain verdict over the whole life of a lot: every logger, every leg, one judgement.

:func:`judge_life` takes the lot's temperature records (one :class:`Record` per logger, or
per probe of a gateway-signed logger) and, optionally, its legs (:class:`LegCover`: who held
it and how many readings were taken on that leg), and returns a :class:`LifeVerdict`. The
profile's tolerance is applied to the lot's whole life, not to each leg or logger apart:

- the time out of range is the *union* of every record's excursions, so two legs of
  3 h 50 min each are 7 h 40 min in all, and two loggers that saw the same hour count it once;
- an excursion seen by one logger that another carries on (touching or overlapping) is one
  excursion: the longest single excursion is the longest stretch of that union;
- the peak and the hard limits over every reading; the MKT over all readings together, and
  the worst window of any record for profiles that set one;
- a silence of one logger while another read is not a gap; legs on which no logger read are
  named; a lot that no logger read on any leg is :data:`UNMONITORED`, never fine.

The scan page (`provenance.ledger.lot_view`), the portal (which shows that view) and the
rules engine (`provenance.domain.rule_conditions.ColdchainTolerance`) all call this one
function, so they cannot disagree. Pure: values in, values out, no clock (pass ``now_us``).
docs/coldchain.md, "The whole life of a lot".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.domain.coldchain import Profile, Readings, Series, series
from provenance.domain.coldchain_excursions import BOTH, Excursion
from provenance.domain.coldchain_mkt import MKTWindow, mean_kinetic_temperature
from provenance.domain.coldchain_status import (
    EXCEEDED,
    EXCURSION,
    GAP,
    OK,
    ColdChainStatus,
    assess,
    format_duration,
)

__all__ = [
    "LIFE_STATES",
    "UNMONITORED",
    "LegCover",
    "LifeVerdict",
    "Record",
    "judge_life",
]

UNMONITORED = "unmonitored"  # no logger read on any leg: nothing is known
# LifeVerdict.state, least to most severe: coldchain_status's states and UNMONITORED;
# GAP also covers legs that no logger watched.
LIFE_STATES = (OK, GAP, UNMONITORED, EXCURSION, EXCEEDED)

Interval = tuple[int, int]


@dataclass(frozen=True)
class Record:
    """One logger's (or one probe's) temperature readings on the lot.

    *name* is how people call it; *key* identifies it in evidence (the logger's did and
    probe). *live*: the record is still being written, so silence up to ``now_us`` counts
    and an excursion open at the last reading runs on (as `assess` with ``now_us``).
    """

    name: str
    readings: Readings
    key: str = ""
    live: bool = False


@dataclass(frozen=True)
class LegCover:
    """A leg of the journey as the verdict sees it: who held the lot and how many readings
    any logger took while they did (0: nobody watched its temperature on this leg)."""

    holder: str
    start_us: int
    end_us: int | None
    readings: int
    receiver: str | None = None  # set while in transit

    @property
    def name(self) -> str:
        if self.receiver is not None:
            return f"in transit from {self.holder} to {self.receiver}"
        return f"with {self.holder}"


@dataclass(frozen=True)
class LifeVerdict:
    """What is known of a lot's temperature over its whole life, and what is not."""

    profile: str
    band: str
    state: str  # one of LIFE_STATES
    reasons: tuple[str, ...]  # plain English sentences (evidence, the JSON twin, hold reasons)
    breaches: tuple[str, ...]  # the tolerance rules broken, one sentence each
    records: tuple[tuple[Record, ColdChainStatus], ...]  # each logger judged on its own
    readings: int
    first_us: int | None
    last_us: int | None
    min_c: float | None
    max_c: float | None
    peak: Excursion | None  # the excursion with the reading farthest outside the band
    excursions: tuple[Excursion, ...]  # the union over all records, in time order
    time_out_of_range_us: int
    longest: Excursion | None
    mkt_c: float | None  # over every reading of the life
    window_mkt: MKTWindow | None  # the worst window of any record, if the profile sets one
    gaps: tuple[Interval, ...]  # silences no other logger covered
    unmonitored_us: int  # time inside those silences
    legs: tuple[LegCover, ...]
    unmonitored_legs: tuple[LegCover, ...]  # legs on which no logger read

    @property
    def monitored(self) -> bool:
        return self.readings > 0

    @property
    def exceeded(self) -> bool:
        return self.state == EXCEEDED

    @property
    def fine(self) -> bool:
        """Stayed in range, every leg watched, no silence: the only 'all good'."""
        return self.state == OK


def judge_life(
    records: Iterable[Record],
    profile: Profile,
    *,
    legs: Sequence[LegCover] = (),
    now_us: int | None = None,
) -> LifeVerdict:
    """Judge the lot's whole life against *profile*.

    Each record is read on its own (mixing two probes would let one probe's in-range
    readings cut the other's excursion short), then the excursions, silences, extremes
    and MKT are combined over the life and the profile's tolerance applied to the
    combination. Without *legs* (the rules engine does not know them) no leg is named.
    """
    if not isinstance(profile, Profile):
        raise ValidationError("profile", f"must be a Profile, got {profile!r}")
    judged: list[tuple[Record, ColdChainStatus]] = []
    everything: list[Series] = []
    for record in records:
        data = series(record.readings)
        if not data.times:
            continue
        status = assess(data, profile, now_us if record.live else None)
        judged.append((record, status))
        everything.append(data)
    legs = tuple(legs)
    unwatched = tuple(leg for leg in legs if leg.readings == 0)
    if not judged:
        return _unmonitored(profile, legs, unwatched)
    merged = _union_excursions((e for _, s in judged for e in s.excursions), profile)
    total = sum(e.duration_us for e in merged)
    longest = max(merged, key=lambda e: e.duration_us, default=None)
    silences = _silences(judged)
    lowest = min(s.min_c for _, s in judged if s.min_c is not None)
    highest = max(s.max_c for _, s in judged if s.max_c is not None)
    if len(judged) == 1:  # one logger: its own MKT (the usual case; no second pass)
        mkt = judged[0][1].mkt_c
        assert mkt is not None
    else:
        merged_readings = [
            pair for data in everything for pair in zip(data.times, data.temps, strict=True)
        ]
        mkt = mean_kinetic_temperature(merged_readings, max_gap_us=profile.max_gap_us)
    windows = [s.window_mkt for _, s in judged if s.window_mkt is not None]
    window = max(windows, key=lambda w: w.mkt_c, default=None)
    peak = max(merged, key=lambda e: _outside(profile, e.peak_c), default=None)
    breaches = _breaches(profile, merged, total, longest, mkt, window, lowest, highest)
    reasons: list[str] = []
    if breaches:
        state = EXCEEDED
        reasons += breaches
    elif merged:
        state = EXCURSION
        reasons.append(
            f"{len(merged)} excursion{'s' if len(merged) > 1 else ''} outside {profile.band}, "
            f"{format_duration(total)} in all over its whole life, within tolerance"
        )
    elif silences or unwatched:
        state = GAP
    else:
        state = OK
        reasons.append(f"always within {profile.band} on every leg")
    reasons += [
        f"no readings for {format_duration(b - a)} from {format_time(a)}" for a, b in silences
    ]
    reasons += [f"no temperature logger {leg.name}" for leg in unwatched]
    return LifeVerdict(
        profile=profile.name,
        band=profile.band,
        state=state,
        reasons=tuple(reasons),
        breaches=tuple(breaches),
        records=tuple(judged),
        readings=sum(s.readings for _, s in judged),
        first_us=min(s.first_us for _, s in judged if s.first_us is not None),
        last_us=max(s.last_us for _, s in judged if s.last_us is not None),
        min_c=lowest,
        max_c=highest,
        peak=peak,
        excursions=tuple(merged),
        time_out_of_range_us=total,
        longest=longest,
        mkt_c=mkt,
        window_mkt=window,
        gaps=tuple(silences),
        unmonitored_us=sum(b - a for a, b in silences),
        legs=legs,
        unmonitored_legs=unwatched,
    )


def _unmonitored(
    profile: Profile, legs: tuple[LegCover, ...], unwatched: tuple[LegCover, ...]
) -> LifeVerdict:
    return LifeVerdict(
        profile=profile.name,
        band=profile.band,
        state=UNMONITORED,
        reasons=(
            f"no temperature logger recorded it on any leg: it should be kept at "
            f"{profile.band}, and whether it was is not known",
        ),
        breaches=(),
        records=(),
        readings=0,
        first_us=None,
        last_us=None,
        min_c=None,
        max_c=None,
        peak=None,
        excursions=(),
        time_out_of_range_us=0,
        longest=None,
        mkt_c=None,
        window_mkt=None,
        gaps=(),
        unmonitored_us=0,
        legs=legs,
        unmonitored_legs=unwatched,
    )


def _outside(profile: Profile, temperature_c: float) -> float:
    """How far *temperature_c* lies outside the band (0 inside)."""
    above = temperature_c - profile.high_c if profile.high_c is not None else 0.0
    below = profile.low_c - temperature_c if profile.low_c is not None else 0.0
    return max(above, below, 0.0)


def _union_excursions(found: Iterable[Excursion], profile: Profile) -> list[Excursion]:
    """The excursions of all records as one: touching or overlapping ones merge."""
    merged: list[Excursion] = []
    for e in sorted(found, key=lambda e: (e.start_us, e.end_us)):
        if merged and e.start_us <= merged[-1].end_us:
            merged[-1] = _merge(merged[-1], e, profile)
        else:
            merged.append(e)
    return merged


def _merge(a: Excursion, b: Excursion, profile: Profile) -> Excursion:
    direction = a.direction if a.direction == b.direction else BOTH
    peak = a.peak_c if _outside(profile, a.peak_c) >= _outside(profile, b.peak_c) else b.peak_c
    end = max(a.end_us, b.end_us)
    return Excursion(
        start_us=a.start_us,
        end_us=end,
        direction=direction,
        peak_c=peak,
        readings=a.readings + b.readings,
        first_out_us=min(a.first_out_us, b.first_out_us),
        last_out_us=max(a.last_out_us, b.last_out_us),
        open_start=a.open_start,
        open_end=(a.open_end if a.end_us == end else False) or (b.open_end and b.end_us == end),
    )


def _silences(judged: list[tuple[Record, ColdChainStatus]]) -> list[Interval]:
    """Each record's silences less the time another record was reading."""
    out: list[Interval] = []
    for k, (_, status) in enumerate(judged):
        for gap in status.gaps:
            pieces = [gap]
            for j, (_, other) in enumerate(judged):
                if j != k:
                    pieces = _subtract(pieces, _watched(other))
            out += pieces
    return _union(out)


def _watched(status: ColdChainStatus) -> list[Interval]:
    """When a record was reading: its span less its own silences."""
    if status.first_us is None or status.last_us is None:
        return []
    return _subtract([(status.first_us, status.last_us)], list(status.gaps))


def _subtract(pieces: list[Interval], cuts: list[Interval]) -> list[Interval]:
    for c0, c1 in cuts:
        kept: list[Interval] = []
        for a, b in pieces:
            if c1 <= a or c0 >= b:
                kept.append((a, b))
                continue
            if a < c0:
                kept.append((a, c0))
            if c1 < b:
                kept.append((c1, b))
        pieces = kept
    return pieces


def _union(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def _breaches(
    profile: Profile,
    merged: list[Excursion],
    total: int,
    longest: Excursion | None,
    mkt: float,
    window: MKTWindow | None,
    lowest: float,
    highest: float,
) -> list[str]:
    """Why the life exceeds tolerance, one sentence per rule broken (as `assess` words them)."""
    why = []
    if profile.limit_high_c is not None and highest > profile.limit_high_c:
        why.append(f"{highest:g} °C is above the {profile.limit_high_c:g} °C limit")
    if profile.limit_low_c is not None and lowest < profile.limit_low_c:
        why.append(f"{lowest:g} °C is below the {profile.limit_low_c:g} °C limit")
    if (
        profile.max_excursion_us is not None
        and longest is not None
        and longest.duration_us > profile.max_excursion_us
    ):
        why.append(
            f"one excursion lasted {format_duration(longest.duration_us)} from "
            f"{format_time(longest.start_us)}"
            f" (tolerated: {format_duration(profile.max_excursion_us)})"
        )
    if profile.max_total_us is not None and total > profile.max_total_us:
        legs = f" over {len(merged)} excursions" if len(merged) > 1 else ""
        why.append(
            f"{format_duration(total)} out of range in all{legs}"
            f" (tolerated: {format_duration(profile.max_total_us)})"
        )
    if profile.mkt_limit_c is not None:
        worst = window.mkt_c if window is not None else None
        if profile.mkt_window_us is None:
            worst = mkt
        if worst is not None and worst > profile.mkt_limit_c:
            where = f" over the window ending {format_time(window.end_us)}" if window else ""
            why.append(
                f"mean kinetic temperature {worst:.1f} °C{where}"
                f" is above {profile.mkt_limit_c:g} °C"
            )
    return why
