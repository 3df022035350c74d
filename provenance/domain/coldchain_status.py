"""The cold-chain status line of a leg or lot: one judgement of its temperature record.

:func:`assess` reads the readings against the profile — excursions, time out of range
against the tolerance, overall and windowed Mean Kinetic Temperature, sensor gaps, and a
logger that fell silent before ``now_us`` — and returns a :class:`ColdChainStatus` whose
``state`` is one of :data:`STATES` (least to most severe, with ``no-data`` apart) and whose
``reasons`` explain it in plain words; :func:`format_duration` writes durations for people.
Pure: no clock (pass ``now_us``), no I/O (docs/coldchain.md).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from itertools import compress, repeat

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.domain.coldchain import (
    SECOND,
    Profile,
    Readings,
    Series,
    _gap_ends,
    _is_int,
    series,
)
from provenance.domain.coldchain_excursions import Excursion, _excursions
from provenance.domain.coldchain_mkt import (
    DEFAULT_ACTIVATION_ENERGY_KJ_MOL,
    MKTWindow,
    _ends_after,
    _kinetics,
    _max_window,
    _mkt,
    _ratio,
)

__all__ = [
    "EXCEEDED",
    "EXCURSION",
    "GAP",
    "NO_DATA",
    "OK",
    "STATES",
    "ColdChainStatus",
    "assess",
    "format_duration",
]

# ColdChainStatus.state, least to most severe; NO_DATA stands apart (nothing to judge).
OK = "ok"
GAP = "gap"  # in range whenever read, but the logger fell silent for too long
EXCURSION = "excursion"  # out of range, within the profile's tolerance
EXCEEDED = "tolerance-exceeded"
NO_DATA = "no-data"
STATES = (OK, GAP, EXCURSION, EXCEEDED, NO_DATA)


# --- the status line -------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdChainStatus:
    """What the consumer page says about one leg's (or lot's) temperature record.

    ``state`` is one of :data:`STATES`; ``reasons`` explain it in plain words.
    """

    profile: str
    state: str
    reasons: tuple[str, ...]
    readings: int
    first_us: int | None
    last_us: int | None
    min_c: float | None
    max_c: float | None
    excursions: tuple[Excursion, ...]
    time_out_of_range_us: int
    longest_excursion_us: int
    mkt_c: float | None
    window_mkt: MKTWindow | None  # worst MKT over the profile's window, if it sets one
    gaps: tuple[tuple[int, int], ...]
    unmonitored_us: int  # total time inside sensor gaps

    @property
    def ok(self) -> bool:
        return self.state == OK


def assess(
    readings: Readings,
    profile: Profile,
    now_us: int | None = None,
    *,
    activation_energy: float = DEFAULT_ACTIVATION_ENERGY_KJ_MOL,
) -> ColdChainStatus:
    """Judge *readings* against *profile*.

    With *now_us* the record is still being written: silence since the last reading
    longer than the profile's gap limit is a gap, and an excursion still open at the
    last reading lasts until now while the logger is not yet overdue.
    """
    if now_us is not None and not _is_int(now_us):
        raise ValidationError("now_us", f"must be integer microseconds, got {now_us!r}")
    data = series(readings)
    times, temps = data.times, data.temps
    if not times:
        return _no_data(profile)
    ratio = _ratio(activation_energy)
    gap_ends = _gap_ends(times, profile.max_gap_us)
    found = _excursions(data, profile, gap_ends)
    silent = [(times[i - 1], times[i]) for i in gap_ends]
    if now_us is not None and now_us > times[-1]:
        if now_us - times[-1] > profile.max_gap_us:
            silent.append((times[-1], now_us))
        elif found and found[-1].open_end and found[-1].last_out_us == times[-1]:
            found[-1] = replace(found[-1], end_us=now_us)
    lowest, highest = data.lowest, data.highest
    assert lowest is not None and highest is not None
    kin = _kinetics(data, ratio, profile.max_gap_us, gap_ends)
    mkt = _mkt(data, kin)
    window = None
    limit, span = profile.mkt_limit_c, profile.mkt_window_us
    if limit is not None and span is not None and highest > limit:
        # A window with no reading above the limit cannot have an MKT above it.
        hot = compress(range(len(temps)), map(operator.gt, temps, repeat(limit)))
        window = _max_window(data, kin, span, _ends_after(data, hot, span))
    total = sum(e.duration_us for e in found)
    longest = max((e.duration_us for e in found), default=0)
    breaches = _breaches(profile, data, found, total, longest, mkt, window, lowest, highest)
    if breaches:
        state, reasons = EXCEEDED, breaches
    elif found:
        state = EXCURSION
        reasons = [
            f"{len(found)} excursion{'s' if len(found) > 1 else ''} outside {profile.band}, "
            f"{format_duration(total)} in all, within tolerance"
        ]
    elif silent:
        state, reasons = GAP, []
    else:
        state, reasons = OK, [f"always within {profile.band}"]
    reasons += [
        f"no readings for {format_duration(b - a)} from {format_time(a)}" for a, b in silent
    ]
    return ColdChainStatus(
        profile=profile.name,
        state=state,
        reasons=tuple(reasons),
        readings=len(times),
        first_us=times[0],
        last_us=times[-1],
        min_c=lowest,
        max_c=highest,
        excursions=tuple(found),
        time_out_of_range_us=total,
        longest_excursion_us=longest,
        mkt_c=mkt,
        window_mkt=window,
        gaps=tuple(silent),
        unmonitored_us=sum(b - a for a, b in silent),
    )


def _no_data(profile: Profile) -> ColdChainStatus:
    return ColdChainStatus(
        profile=profile.name,
        state=NO_DATA,
        reasons=("no temperature readings",),
        readings=0,
        first_us=None,
        last_us=None,
        min_c=None,
        max_c=None,
        excursions=(),
        time_out_of_range_us=0,
        longest_excursion_us=0,
        mkt_c=None,
        window_mkt=None,
        gaps=(),
        unmonitored_us=0,
    )


def _breaches(
    profile: Profile,
    data: Series,
    found: list[Excursion],
    total: int,
    longest: int,
    mkt: float,
    window: MKTWindow | None,
    lowest: float,
    highest: float,
) -> list[str]:
    """Why tolerance is exceeded, one sentence per rule broken."""
    why = []
    if profile.limit_high_c is not None and highest > profile.limit_high_c:
        at = format_time(data.times[data.temps.index(highest)])
        why.append(f"{highest:g} °C at {at} is above the {profile.limit_high_c:g} °C limit")
    if profile.limit_low_c is not None and lowest < profile.limit_low_c:
        at = format_time(data.times[data.temps.index(lowest)])
        why.append(f"{lowest:g} °C at {at} is below the {profile.limit_low_c:g} °C limit")
    if profile.max_excursion_us is not None and longest > profile.max_excursion_us:
        worst = max(found, key=lambda e: e.duration_us)
        why.append(
            f"one excursion lasted {format_duration(longest)} from {format_time(worst.start_us)}"
            f" (tolerated: {format_duration(profile.max_excursion_us)})"
        )
    if profile.max_total_us is not None and total > profile.max_total_us:
        why.append(
            f"{format_duration(total)} out of range in all"
            f" (tolerated: {format_duration(profile.max_total_us)})"
        )
    if profile.mkt_limit_c is not None:
        worst_mkt = window.mkt_c if window is not None else mkt
        if worst_mkt > profile.mkt_limit_c:
            where = f" over the window ending {format_time(window.end_us)}" if window else ""
            why.append(
                f"mean kinetic temperature {worst_mkt:.1f} °C{where}"
                f" is above {profile.mkt_limit_c:g} °C"
            )
    return why


def format_duration(us: int) -> str:
    """A duration for people, two units at most: ``2 h 5 min``, ``45 s``."""
    seconds = max(us, 0) // SECOND
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    lead = next((k for k, (value, _) in enumerate(parts) if value), len(parts) - 1)
    shown = [f"{value} {unit}" for value, unit in parts[lead : lead + 2] if value]
    return " ".join(shown) or "0 s"
