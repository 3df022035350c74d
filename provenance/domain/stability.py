"""Stability budget and remaining shelf life of a lot from its temperature readings
(docs/coldchain.md, "Stability budget").

A producer states, per product, how long it stays good at which temperature: a
:class:`StabilityModel` made of any of

- **bands** as manufacturers publish them ("up to 30 days at 2–8 °C after thaw,
  12 h at 8–25 °C"): time in each band uses up ``time / allowed`` of the budget,
  the bands' shares add up (Miner's rule), and time outside every band spends it
  at once: the data say nothing about it;
- **Arrhenius**: ``hours`` at a reference temperature, faster or slower elsewhere by
  ``exp(Ea/R · (1/T_ref − 1/T))``, the kinetics Mean Kinetic Temperature rests on;
- a **VVM** category (WHO's vaccine vial monitors): the days to the monitor's end
  point at 37, 25 and 5 °C, joined by Arrhenius between those points.

Each part gives the share of its budget used; the lot's budget is the most spent of
them. Remaining shelf life is what is left of the most spent part at its storage
condition (the band with the longest allowance, the reference temperature, 5 °C).

How readings count: each interval between two readings no farther apart than the
gap limit counts at the warmer of its two readings, rounded up to 0.01 °C (the more
damaging one: as the excursions in :mod:`provenance.domain.coldchain_excursions`,
nothing rules out that the product was that warm all along). A longer silence is a gap: stated, not
counted and not assumed cold, so the budget left is then an upper bound.

Pure functions: readings in, values out, :class:`ValidationError` on bad input. No
I/O, no clock.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import DAY, HOUR, KELVIN, Readings, series
from provenance.domain.coldchain_mkt import GAS_CONSTANT_KJ_MOL_K

__all__ = [
    "VVM_CATEGORIES",
    "Arrhenius",
    "Band",
    "Part",
    "StabilityBudget",
    "StabilityModel",
    "assess",
    "model_from_data",
]

YEAR = 365 * DAY

# WHO's vaccine vial monitor categories (WHO PQS E006/IND03.1): the time to the
# monitor's end point at a steady 37, 25 and 5 °C. The 5 °C figures are given as
# "more than" n years; we take n years, the safe side. VVM2 has no 25 °C figure.
VVM_CATEGORIES: Mapping[str, tuple[tuple[float, int], ...]] = {
    "VVM30": ((37.0, 30 * DAY), (25.0, 193 * DAY), (5.0, 4 * YEAR)),
    "VVM14": ((37.0, 14 * DAY), (25.0, 90 * DAY), (5.0, 3 * YEAR)),
    "VVM7": ((37.0, 7 * DAY), (25.0, 45 * DAY), (5.0, 2 * YEAR)),
    "VVM2": ((37.0, 2 * DAY), (5.0, 225 * DAY)),
}
VVM_STORAGE_C = 5.0

# Parts of a model, as a budget names them.
BANDS = "bands"
ARRHENIUS = "arrhenius"
VVM = "vvm"


@dataclass(frozen=True)
class Band:
    """Up to ``hours`` in total at ``low_c <= t <= high_c``."""

    low_c: float
    high_c: float
    hours: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low_c) and math.isfinite(self.high_c)):
            raise ValidationError("band", "its bounds must be finite numbers")
        if self.low_c >= self.high_c:
            raise ValidationError(
                "band", f"low_c must be below high_c, got {self.low_c} and {self.high_c}"
            )
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise ValidationError("band.hours", f"must be above 0, got {self.hours}")

    @property
    def text(self) -> str:
        return f"{_c(self.low_c)}–{_c(self.high_c)} °C"


@dataclass(frozen=True)
class Arrhenius:
    """``hours`` at ``reference_c``; at T the clock runs exp(Ea/R·(1/T_ref − 1/T)) times
    as fast (T in kelvin)."""

    activation_kj_mol: float
    reference_c: float
    hours: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.activation_kj_mol) and self.activation_kj_mol > 0):
            raise ValidationError(
                "arrhenius.activation_kj_mol", f"must be above 0, got {self.activation_kj_mol}"
            )
        if not (math.isfinite(self.reference_c) and self.reference_c > -KELVIN):
            raise ValidationError("arrhenius.reference_c", "must be a temperature in °C")
        if not (math.isfinite(self.hours) and self.hours > 0):
            raise ValidationError("arrhenius.hours", f"must be above 0, got {self.hours}")

    def lifetime_us(self, temperature_c: float) -> float:
        """How long the whole budget lasts at a steady *temperature_c*."""
        exponent = (self.activation_kj_mol / GAS_CONSTANT_KJ_MOL_K) * (
            1 / (temperature_c + KELVIN) - 1 / (self.reference_c + KELVIN)
        )
        return self.hours * HOUR * math.exp(min(exponent, 700.0))


@dataclass(frozen=True)
class StabilityModel:
    """A product's stability data, as its signed profile states it."""

    bands: tuple[Band, ...] = ()
    arrhenius: Arrhenius | None = None
    vvm: str | None = None
    source: str | None = None  # where the figures come from, as the producer wrote it

    def __post_init__(self) -> None:
        if not self.bands and self.arrhenius is None and self.vvm is None:
            raise ValidationError(
                "stability", "needs at least one of bands, arrhenius or vvm to judge by"
            )
        if self.vvm is not None and self.vvm not in VVM_CATEGORIES:
            raise ValidationError(
                "vvm", f"must be one of {', '.join(VVM_CATEGORIES)}; got {self.vvm!r}"
            )
        ordered = sorted(self.bands, key=lambda band: band.low_c)
        for below, above in itertools.pairwise(ordered):
            if above.low_c < below.high_c:
                raise ValidationError(
                    "bands",
                    f"{below.text} and {above.text} overlap: bands may share an edge only",
                )

    def to_json(self) -> dict[str, Any]:
        """The model's parameters as its profile states them."""
        out: dict[str, Any] = {}
        if self.bands:
            out["bands"] = [
                {"low_c": band.low_c, "high_c": band.high_c, "hours": band.hours}
                for band in self.bands
            ]
        if self.arrhenius is not None:
            out["arrhenius"] = {
                "activation_kj_mol": self.arrhenius.activation_kj_mol,
                "reference_c": self.arrhenius.reference_c,
                "hours": self.arrhenius.hours,
            }
        if self.vvm is not None:
            out["vvm"] = self.vvm
        if self.source is not None:
            out["source"] = self.source
        return out


@dataclass(frozen=True)
class Part:
    """What one part of the model says about the readings."""

    name: str  # BANDS, ARRHENIUS or VVM
    used: float  # share of its budget used: 0 fresh, 1 spent (may exceed 1)
    storage: str  # the condition its remaining life is told at, e.g. "2–8 °C"
    storage_life_us: int  # the whole budget at that condition
    band_time_us: tuple[int, ...] = ()  # BANDS: time counted in each band, in model order
    outside_us: int = 0  # BANDS: time counted outside every band

    @property
    def remaining_us(self) -> int:
        return max(0, int((1 - self.used) * self.storage_life_us))


@dataclass(frozen=True)
class StabilityBudget:
    """A lot's stability budget as its readings show it."""

    used: float  # the most spent part's share (0 when there is nothing to count)
    parts: tuple[Part, ...]
    readings: int
    first_us: int | None
    last_us: int | None  # the budget is as of this reading
    counted_us: int  # time between readings that was counted
    gaps: tuple[tuple[int, int], ...]  # silences longer than the gap limit: not counted
    outside: tuple[tuple[int, float], ...]  # (time, °C) of readings outside every band
    spent_at_us: int | None  # when the budget ran out, if it did

    @property
    def spent(self) -> bool:
        """Discard: the budget is used up, or the product was outside every band."""
        return self.used >= 1 or bool(self.outside)

    @property
    def left_pct(self) -> int:
        """Whole per cent of the budget left, rounded down (so 0 only when spent or
        nearly, and never more than is left)."""
        if self.spent:
            return 0
        return max(0, min(100, math.floor((1 - self.used) * 100 + 1e-9)))

    @property
    def unmonitored_us(self) -> int:
        return sum(end - start for start, end in self.gaps)

    @property
    def limiting(self) -> Part | None:
        """The most spent part: the one the remaining life is told by."""
        return max(self.parts, key=lambda part: part.used, default=None)

    @property
    def remaining_us(self) -> int | None:
        """Remaining shelf life at the limiting part's storage condition (0 when
        spent; None without readings)."""
        if self.readings == 0:
            return None
        if self.spent:
            return 0
        part = self.limiting
        return part.remaining_us if part is not None else None

    @property
    def use_by_us(self) -> int | None:
        """The last reading plus the remaining shelf life: when the budget runs out
        if the lot is kept at the storage condition from then on."""
        remaining = self.remaining_us
        if remaining is None or self.last_us is None:
            return None
        return self.last_us + remaining


def model_from_data(data: Mapping[str, Any]) -> StabilityModel:
    """The model a `stability` event's data states (docs/protocol.md §3)."""
    try:
        bands = tuple(
            Band(float(item["low_c"]), float(item["high_c"]), float(item["hours"]))
            for item in data.get("bands") or ()
        )
        found = data.get("arrhenius")
        arrhenius = (
            Arrhenius(
                float(found["activation_kj_mol"]),
                float(found["reference_c"]),
                float(found["hours"]),
            )
            if found is not None
            else None
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError("stability", f"is not a stability model: {exc}") from None
    return StabilityModel(bands, arrhenius, data.get("vvm"), data.get("source"))


def assess(readings: Readings, model: StabilityModel, max_gap_us: int) -> StabilityBudget:
    """How much of *model*'s budget the readings used. An interval between readings
    longer than *max_gap_us* is a gap: listed, not counted."""
    if isinstance(max_gap_us, bool) or not isinstance(max_gap_us, int) or max_gap_us <= 0:
        raise ValidationError("max_gap_us", f"must be a positive whole number, got {max_gap_us}")
    data = series(readings)
    times, temps = data.times, data.temps
    too_far = (
        {temp for temp in set(temps) if _outside(model, temp)}  # values repeat
        if not _all_inside(model, data.lowest, data.highest)
        else set()
    )
    outside = (
        tuple((t, temp) for t, temp in zip(times, temps, strict=True) if temp in too_far)
        if too_far
        else ()
    )
    intervals: list[tuple[int, int, float]] = []
    gaps: list[tuple[int, int]] = []
    exposure: dict[float, int] = {}  # °C -> time counted at it (readings repeat values)
    for position in range(1, len(times)):
        start, end = times[position - 1], times[position]
        if end == start:
            continue
        if end - start > max_gap_us:
            gaps.append((start, end))
            continue
        temp = _step_up(max(temps[position - 1], temps[position]))
        intervals.append((start, end, temp))
        exposure[temp] = exposure.get(temp, 0) + (end - start)
    parts = tuple(_parts(model, exposure))
    used = max((part.used for part in parts), default=0.0)
    spent = used >= 1 or bool(outside)
    return StabilityBudget(
        used=used,
        parts=parts,
        readings=len(times),
        first_us=times[0] if times else None,
        last_us=times[-1] if times else None,
        counted_us=sum(exposure.values()),
        gaps=tuple(gaps),
        outside=outside,
        spent_at_us=_spent_at(model, intervals, outside) if spent else None,
    )


# --- the parts -------------------------------------------------------------------------------


def _parts(model: StabilityModel, exposure: Mapping[float, int]) -> list[Part]:
    """Each part of the model over the time counted at each temperature."""
    parts = []
    if model.bands:
        storage = max(model.bands, key=lambda band: band.hours)
        in_band = [0] * len(model.bands)
        outside_us = 0
        for temp, spent_us in exposure.items():
            index = _band_of(model.bands, temp)
            if index is None:
                outside_us += spent_us
            else:
                in_band[index] += spent_us
        used = sum(t / (b.hours * HOUR) for t, b in zip(in_band, model.bands, strict=True))
        if outside_us:
            used = max(used, 1.0)
        parts.append(
            Part(BANDS, used, storage.text, int(storage.hours * HOUR), tuple(in_band), outside_us)
        )
    if model.arrhenius is not None:
        kinetics = model.arrhenius
        used = sum(t / kinetics.lifetime_us(temp) for temp, t in exposure.items())
        parts.append(
            Part(ARRHENIUS, used, f"{_c(kinetics.reference_c)} °C", int(kinetics.hours * HOUR))
        )
    if model.vvm is not None:
        anchors = VVM_CATEGORIES[model.vvm]
        used = sum(t / vvm_lifetime_us(anchors, temp) for temp, t in exposure.items())
        parts.append(
            Part(VVM, used, f"{_c(VVM_STORAGE_C)} °C", int(vvm_lifetime_us(anchors, VVM_STORAGE_C)))
        )
    return parts


def vvm_lifetime_us(anchors: Sequence[tuple[float, int]], temperature_c: float) -> float:
    """Time to a VVM's end point at a steady *temperature_c*: the category's own
    figures at its anchor temperatures, log-linear in 1/T (Arrhenius) between two
    anchors, and beyond the outer ones along the nearest segment."""
    points = sorted(anchors)  # coldest first
    inverse = 1 / (temperature_c + KELVIN)
    segment = len(points) - 2
    for index in range(len(points) - 1):
        if temperature_c <= points[index + 1][0]:
            segment = index
            break
    (cold_c, cold_us), (warm_c, warm_us) = points[segment], points[segment + 1]
    x0, x1 = 1 / (cold_c + KELVIN), 1 / (warm_c + KELVIN)
    slope = (math.log(cold_us) - math.log(warm_us)) / (x0 - x1)
    return math.exp(min(math.log(warm_us) + slope * (inverse - x1), 700.0))


def _band_of(bands: Sequence[Band], temp: float) -> int | None:
    """The band a temperature counts in: on a shared edge, the one that allows
    longer (the manufacturer's "2–8 °C" includes 8 °C)."""
    found = [index for index, band in enumerate(bands) if band.low_c <= temp <= band.high_c]
    return max(found, key=lambda index: bands[index].hours, default=None)


STEP_C = 0.01  # the budget counts temperatures to this step, rounded up (the warmer side)


def _step_up(temp: float) -> float:
    """*temp* rounded up to STEP_C (a reading already on the step stays as it is):
    thousands of distinct values cost as much as a hundred."""
    stepped = math.ceil(round(temp / STEP_C, 6)) * STEP_C
    return round(stepped, 2)


def _all_inside(model: StabilityModel, lowest: float | None, highest: float | None) -> bool:
    """Whether every temperature from *lowest* to *highest* lies in some band (no
    bands: nothing is outside)."""
    if not model.bands or lowest is None or highest is None:
        return True
    reach = None
    for band in sorted(model.bands, key=lambda band: band.low_c):
        if reach is None:
            if band.low_c > lowest:
                return False
            reach = band.high_c
        elif band.low_c > reach:
            break  # a hole in the bands
        else:
            reach = max(reach, band.high_c)
        if reach >= highest:
            return True
    return False


def _outside(model: StabilityModel, temp: float) -> bool:
    return bool(model.bands) and _band_of(model.bands, temp) is None


def _spent_at(
    model: StabilityModel,
    intervals: Sequence[tuple[int, int, float]],
    outside: Sequence[tuple[int, float]],
) -> int | None:
    """When the first part's budget ran out (an interval's share is spread evenly
    over it), or the first reading outside every band, whichever came first."""
    first_outside = outside[0][0] if outside else None
    totals = {BANDS: 0.0, ARRHENIUS: 0.0, VVM: 0.0}
    known: dict[float, dict[str, float]] = {}
    for start, end, temp in intervals:
        if first_outside is not None and start >= first_outside:
            break
        shares = known.get(temp)
        if shares is None:
            shares = known[temp] = _shares(model, temp)
        for name, rate in shares.items():
            before = totals[name]
            totals[name] = before + (end - start) * rate
            if totals[name] >= 1 and before < 1:
                at = start + math.ceil((1 - before) / rate) if rate != math.inf else start
                return min(at, first_outside) if first_outside is not None else at
    return first_outside


def _shares(model: StabilityModel, temp: float) -> dict[str, float]:
    shares = {}
    if model.bands:
        index = _band_of(model.bands, temp)
        shares[BANDS] = math.inf if index is None else 1 / (model.bands[index].hours * HOUR)
    if model.arrhenius is not None:
        shares[ARRHENIUS] = 1 / model.arrhenius.lifetime_us(temp)
    if model.vvm is not None:
        shares[VVM] = 1 / vvm_lifetime_us(VVM_CATEGORIES[model.vvm], temp)
    return shares


def _c(value: float) -> str:
    return f"{value:g}"
