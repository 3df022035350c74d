"""The counterfeit conditions on a lot's serials, beside ``serial-scanned-far-apart``
(provenance/domain/rule_conditions.py): ``serial-never-issued``
(:class:`SerialNeverIssued`), ``serial-over-scanned`` (:class:`SerialOverScanned`) and
``serial-impossible-travel`` (:class:`SerialImpossibleTravel`). :data:`SERIAL_CONDITIONS`
registers them; `provenance.domain.rules` reads both registries. Scans are not ledger
events: all three run on the timer. Pure: values in, values out (docs/rules.md).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.domain import coldchain_status
from provenance.domain.rule_conditions import (
    DAY,
    HOUR,
    MAX_LISTED,
    MINUTE,
    SECOND,
    Condition,
    _check_params,
    _filters,
    _scope,
    _text,
    scan_window,
)
from provenance.domain.rule_facts import Finding, LotFacts, SerialScan, Sighting

__all__ = [
    "SERIAL_CONDITIONS",
    "SerialImpossibleTravel",
    "SerialNeverIssued",
    "SerialOverScanned",
    "distance_km",
]

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance (haversine) between two positions in degrees."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _whole(params: dict[str, Any], name: str, field: str, low: int, high: int, default: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValidationError(
            f"{field}.{name}", f"must be a whole number {low}-{high}; got {value!r}"
        )
    return value


def _recent(facts: LotFacts, since_us: int | None) -> list[SerialScan]:
    return [s for s in facts.scans if since_us is None or s.hour_us + HOUR > since_us]


@dataclass(frozen=True)
class SerialNeverIssued(Condition):
    """A serial of the lot that its maker never issued (`serials` events) was scanned:
    a label made up by a counterfeiter. Only for lots with serials issued (a maker that
    does not serialise in this ledger has nothing to compare with). One flag per lot
    and day at most, naming up to 10 serials: made-up serials cannot flood the ledger."""

    type: ClassVar[str] = "serial-never-issued"
    signal: ClassVar[str] = "counterfeit"
    on_timer: ClassVar[bool] = True
    params: ClassVar[tuple[str, ...]] = ("type", "category", "profile")
    category: str | None = None
    profile: str | None = None

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        _check_params(cls, params, field)
        return cls(*_filters(params, field))

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        if facts.issued is None:
            return []
        by_day: dict[str, dict[str, int]] = {}
        for scan in _recent(facts, since_us):
            if scan.serial not in facts.issued:
                day = format_time(scan.hour_us)[:10]
                serials = by_day.setdefault(day, {})
                serials[scan.serial] = serials.get(scan.serial, 0) + scan.count
        found = []
        for day, serials in sorted(by_day.items()):
            names = sorted(serials)
            listed = ", ".join(names[:MAX_LISTED]) + (", …" if len(names) > MAX_LISTED else "")
            reason = (
                f"{len(names)} serial(s) never issued for this lot were scanned on {day} "
                f"({listed}): possible counterfeit labels"
            )
            evidence = {
                "code": "serial-never-issued",
                "day": day,
                "serials": names[:MAX_LISTED],
                "count": len(names),
                "scans": sum(serials.values()),
            }
            found.append(Finding(f"never-issued:{day}", _text(reason), evidence))
        return found

    def describe(self) -> str:
        return f"{_scope(self)}: a serial its maker never issued is scanned"


@dataclass(frozen=True)
class SerialOverScanned(Condition):
    """One serial of the lot was scanned more than `max_scans` times within `window`:
    a pack is scanned a few times, a copied label many. Hourly counts: scans in hours
    whose starts lie at most `window` apart count together. Every place counts."""

    type: ClassVar[str] = "serial-over-scanned"
    signal: ClassVar[str] = "counterfeit"
    on_timer: ClassVar[bool] = True
    params: ClassVar[tuple[str, ...]] = ("type", "window", "max_scans", "category", "profile")
    window_us: int = 7 * DAY
    max_scans: int = 20
    category: str | None = None
    profile: str | None = None

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        _check_params(cls, params, field)
        window = scan_window(params, field, "7d")
        limit = _whole(params, "max_scans", field, 2, 1_000_000, 20)
        return cls(window, limit, *_filters(params, field))

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        by_serial: dict[str, dict[int, int]] = {}
        for scan in _recent(facts, since_us):
            hours = by_serial.setdefault(scan.serial, {})
            hours[scan.hour_us] = hours.get(scan.hour_us, 0) + scan.count
        found = []
        for serial, hours in sorted(by_serial.items()):
            stretch = self._stretch(sorted(hours.items()))
            if stretch is not None:
                found.append(self._finding(serial, stretch))
        return found

    def _stretch(self, hours: Sequence[tuple[int, int]]) -> list[tuple[int, int]] | None:
        """The first stretch of hours within the window holding over max_scans scans."""
        start, total = 0, 0
        for end, (hour, count) in enumerate(hours):
            total += count
            while hour - hours[start][0] > self.window_us:
                total -= hours[start][1]
                start += 1
            if total > self.max_scans:
                return list(hours[start : end + 1])
        return None

    def _finding(self, serial: str, stretch: list[tuple[int, int]]) -> Finding:
        total = sum(count for _, count in stretch)
        span = coldchain_status.format_duration(stretch[-1][0] - stretch[0][0] + HOUR)
        reason = (
            f"serial {serial} was scanned {total} times within {span} (limit {self.max_scans}"
            f" in {coldchain_status.format_duration(self.window_us)}): possible copied labels"
        )
        evidence = {
            "code": "serial-over-scanned",
            "serial": serial,
            "scans": total,
            "max_scans": self.max_scans,
            "window_s": self.window_us // SECOND,
            "from_hour": format_time(stretch[0][0])[:13],
        }
        return Finding(f"serial:{serial}", _text(reason), evidence)

    def describe(self) -> str:
        window = coldchain_status.format_duration(self.window_us)
        return f"{_scope(self)}: one serial scanned over {self.max_scans} times within {window}"


@dataclass(frozen=True)
class SerialImpossibleTravel(Condition):
    """Two scans of one serial whose distance over the time between them means a speed
    above `max_speed_kmh` (default 900, an airliner): one pack cannot be in both places,
    so one label is a copy. Positions are the CDN's geolocation of the scanning address
    rounded to 0.1°; geolocation can be off by hundreds of km (a mobile carrier's
    gateway), so pairs closer than `min_distance_km` (default 300) never count. Times are
    minutes, and the time between two scans is taken at its longest (+1 min). Consecutive
    scans suffice: if no step between neighbours is too fast, no pair is."""

    type: ClassVar[str] = "serial-impossible-travel"
    signal: ClassVar[str] = "counterfeit"
    on_timer: ClassVar[bool] = True
    params: ClassVar[tuple[str, ...]] = (
        "type",
        "max_speed_kmh",
        "min_distance_km",
        "category",
        "profile",
    )
    max_speed_kmh: int = 900
    min_distance_km: int = 300
    category: str | None = None
    profile: str | None = None
    window_us: ClassVar[int] = DAY  # how far back a round reads sightings

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        _check_params(cls, params, field)
        speed = _whole(params, "max_speed_kmh", field, 100, 20_000, 900)
        floor = _whole(params, "min_distance_km", field, 0, 20_000, 300)
        return cls(speed, floor, *_filters(params, field))

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        by_serial: dict[str, list[Sighting]] = {}
        for seen in facts.sightings:
            if since_us is None or seen.minute_us + MINUTE > since_us:
                by_serial.setdefault(seen.serial, []).append(seen)
        found = []
        for serial, seen in sorted(by_serial.items()):
            ordered = sorted(seen, key=lambda s: (s.minute_us, s.lat, s.lon))
            for first, then in itertools.pairwise(ordered):
                km = distance_km(first.lat, first.lon, then.lat, then.lon)
                hours = (then.minute_us - first.minute_us + MINUTE) / HOUR
                if km >= max(self.min_distance_km, 1) and km / hours > self.max_speed_kmh:
                    found.append(self._finding(serial, first, then, km, hours))
                    break
        return found

    def _finding(self, serial: str, a: Sighting, b: Sighting, km: float, hours: float) -> Finding:
        minutes = round(hours * 60)
        reason = (
            f"serial {serial} was scanned {km:.0f} km apart within {minutes} min "
            f"({km / hours:.0f} km/h, limit {self.max_speed_kmh}): possible copied labels"
        )
        evidence = {
            "code": "serial-impossible-travel",
            "serial": serial,
            "from": {"minute": format_time(a.minute_us)[:16], "lat": a.lat, "lon": a.lon},
            "to": {"minute": format_time(b.minute_us)[:16], "lat": b.lat, "lon": b.lon},
            "km": round(km),
            "minutes": minutes,
            "max_speed_kmh": self.max_speed_kmh,
        }
        return Finding(f"travel:{serial}", _text(reason), evidence)

    def describe(self) -> str:
        return (
            f"{_scope(self)}: one serial scanned in two places {self.min_distance_km}+ km "
            f"apart, faster than {self.max_speed_kmh} km/h"
        )


SERIAL_CONDITIONS: Mapping[str, type[Condition]] = MappingProxyType(
    {c.type: c for c in (SerialNeverIssued, SerialOverScanned, SerialImpossibleTravel)}
)
