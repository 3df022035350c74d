"""The condition types a rule may name, with their parameters, and the durations they use.

A :class:`Condition` subclass per type — ``coldchain-tolerance`` (:class:`ColdchainTolerance`:
excursions and MKT against the lot's cold-chain profile), ``logger-silent``
(:class:`LoggerSilent`) and ``serial-scanned-far-apart`` (:class:`SerialScannedFarApart`) —
parses and checks its parameters (saying exactly which is wrong), describes itself and
returns its findings for one lot's facts; :data:`CONDITIONS` registers them by type, so
adding one touches this module. :func:`parse_duration` reads ``"1h"``, ``"90 min"``,
``"2d 4h"``. Pure: values in, values out (docs/rules.md).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from provenance.core.errors import ValidationError
from provenance.core.fields import MAX_TEXT
from provenance.core.timefmt import format_time
from provenance.domain import coldchain, coldchain_excursions, coldchain_life, coldchain_status
from provenance.domain.rule_facts import Finding, Logger, LotFacts, Reading, SerialScan

__all__ = [
    "CONDITIONS",
    "ColdchainTolerance",
    "Condition",
    "LoggerSilent",
    "SerialScannedFarApart",
    "parse_duration",
]

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR


MAX_LISTED = 10  # excursions, silences or scans listed in one action's evidence


_DURATION_PART = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(d|h|min|s)")
_UNITS = {"d": DAY, "h": HOUR, "min": MINUTE, "s": SECOND}
_COUNTRY = re.compile(r"[A-Z]{2}")
_NOT_A_COUNTRY = frozenset({"XX", "ZZ"})  # CDN codes for "unknown"; T1 (Tor) fails the pattern


# --- durations


def parse_duration(value: Any, field: str) -> int:
    """A duration written like ``90s``, ``30min``, ``2h``, ``1h30min`` or ``1d``, in µs."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(field, f"must be a duration such as 30min, 2h or 1d; got {value!r}")
    total, position, text = 0.0, 0, value.strip()
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValidationError(
                field,
                f"must be a duration such as 30min, 2h or 1h30min (units d, h, min, s); "
                f"got {value!r}",
            )
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    if total <= 0:
        raise ValidationError(field, f"must be longer than zero; got {value!r}")
    return int(total)


# --- conditions


class Condition:
    """A condition type: its parameters, which events wake it, and what it finds."""

    type: ClassVar[str]
    signal: ClassVar[str]  # the flag's signal type
    on_events: ClassVar[frozenset[str]] = frozenset()  # event kinds that wake it
    on_timer: ClassVar[bool] = False  # also evaluated every timer round
    params: ClassVar[tuple[str, ...]] = ()
    category: str | None
    profile: str | None

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        raise NotImplementedError

    def applies(self, facts: LotFacts) -> bool:
        if self.category is not None and facts.category != self.category:
            return False
        return self.profile is None or facts.profile_name == self.profile

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


def _filters(params: dict[str, Any], field: str) -> tuple[str | None, str | None]:
    category = params.get("category")
    if category is not None and category not in ("food", "vaccine"):
        raise ValidationError(f"{field}.category", f"must be food or vaccine; got {category!r}")
    profile = params.get("profile")
    if profile is not None:
        try:
            coldchain.profile(profile)
        except ValidationError as exc:
            raise ValidationError(f"{field}.profile", exc.rule) from None
    return category, profile


def scan_window(params: dict[str, Any], field: str, example: str) -> int:
    """A scan rule's required `window` (µs): at least an hour, as scans are
    counted per hour."""
    if "window" not in params:
        raise ValidationError(f"{field}.window", f'is required, e.g. window = "{example}"')
    window = parse_duration(params["window"], f"{field}.window")
    if window < HOUR:
        raise ValidationError(f"{field}.window", "must be at least 1h: scans are counted per hour")
    return window


def _check_params(cls: type[Condition], params: dict[str, Any], field: str) -> None:
    for name in params:
        if name not in cls.params:
            raise ValidationError(
                f"{field}.{name}",
                f"is not a parameter of {cls.type} (allowed: {', '.join(cls.params)})",
            )


def _scope(condition: Condition) -> str:
    words = []
    if condition.category:
        words.append(f"{condition.category} lots")
    if condition.profile:
        words.append(f"profile {condition.profile}")
    return " of ".join(words) if words else "every lot"


@dataclass(frozen=True)
class ColdchainTolerance(Condition):
    """The lot's temperature records over its whole life exceed the lot's profile
    tolerance (`coldchain_life.judge_life` says tolerance-exceeded), optionally with a stricter
    longest single excursion or total time out of range than the profile's."""

    type: ClassVar[str] = "coldchain-tolerance"
    signal: ClassVar[str] = "coldchain"
    on_events: ClassVar[frozenset[str]] = frozenset({"reading"})
    params: ClassVar[tuple[str, ...]] = (
        "type",
        "category",
        "profile",
        "max_excursion",
        "max_total",
    )
    category: str | None = None
    profile: str | None = None
    max_excursion_us: int | None = None
    max_total_us: int | None = None

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        _check_params(cls, params, field)
        category, profile = _filters(params, field)
        limits = {
            name: parse_duration(params[name], f"{field}.{name}")
            for name in ("max_excursion", "max_total")
            if name in params
        }
        return cls(category, profile, limits.get("max_excursion"), limits.get("max_total"))

    def applies(self, facts: LotFacts) -> bool:
        return super().applies(facts) and self._profile(facts) is not None

    def _profile(self, facts: LotFacts) -> coldchain.Profile | None:
        name = facts.profile_name
        if name is None:
            return None
        try:
            base = coldchain.profile(name)
        except ValidationError:
            return None  # a profile this version does not know: nothing to judge against
        changes = {}
        if self.max_excursion_us is not None:
            changes["max_excursion_us"] = self.max_excursion_us
        if self.max_total_us is not None:
            changes["max_total_us"] = self.max_total_us
        return dataclasses.replace(base, **changes) if changes else base

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        """The lot's whole life judged at once (`coldchain_life.judge_life`, as the scan
        page and the portal judge it): every logger's record, each read on its own, the
        tolerance applied to their union — two legs of 3 h out of range are 6 h in all."""
        profile = self._profile(facts)
        if profile is None:
            return []
        # keyed by the logger's place in the facts: hashing a Logger hashes its readings
        by_place: dict[tuple[int, str | None], list[Reading]] = {}
        for place, logger in enumerate(facts.loggers):
            for reading in logger.readings:
                if reading.temperature_c is None:
                    continue
                if since_us is not None and reading.time_us <= since_us:
                    continue
                by_place.setdefault((place, reading.sensor), []).append(reading)
        records = [
            (facts.loggers[place], sensor, found) for (place, sensor), found in by_place.items()
        ]
        judged = [
            coldchain_life.Record(
                logger.name + (f" ({sensor})" if sensor else ""),
                [(r.time_us, r.temperature_c) for r in readings],  # type: ignore[misc]
                logger.device + (f"/{sensor}" if sensor else ""),
                live=logger.detached_us is None,
            )
            for logger, sensor, readings in records
        ]
        life = coldchain_life.judge_life(judged, profile, now_us=now_us)
        if not life.exceeded or not life.excursions:
            return []
        finding = self._finding(life, records, profile)
        return [finding]

    def _finding(
        self,
        life: coldchain_life.LifeVerdict,
        records: Sequence[tuple[Logger, str | None, Sequence[Reading]]],
        profile: coldchain.Profile,
    ) -> Finding:
        first, worst = life.excursions[0], life.longest
        assert worst is not None
        loggers = [(logger, sensor) for logger, sensor, _ in records]
        names = [logger.name + (f" ({sensor})" if sensor else "") for logger, sensor in loggers]
        if len(names) == 1:
            whose = f"temperature record of logger {names[0]} exceeds"
        else:
            whose = f"temperature records of loggers {', '.join(names)} together exceed"
        reason = f"{whose} the {profile.name} tolerance ({profile.band}): " + "; ".join(
            life.breaches
        )
        readings = [r for _, _, found in records for r in found]
        at = {}
        for reading in readings:
            at.setdefault(reading.time_us, reading.index)
        peak = next(
            (
                r.index
                for r in readings
                if r.temperature_c == worst.peak_c
                and worst.first_out_us <= r.time_us <= worst.last_out_us
            ),
            None,
        )
        events = tuple(
            dict.fromkeys(
                i
                for i in (at.get(worst.first_out_us), peak, at.get(worst.last_out_us))
                if i is not None
            )
        )
        (logger, sensor) = loggers[0]
        evidence: dict[str, Any] = {
            "code": "coldchain-exceeded",  # how a page words it (docs/rules.md)
            "logger": logger.device,
            "logger_name": logger.name,
            "profile": profile.name,
            "band": profile.band,
            "tolerated": {
                "max_excursion_s": _seconds(profile.max_excursion_us),
                "max_total_s": _seconds(profile.max_total_us),
            },
            "excursions": [_excursion_json(e) for e in life.excursions[:MAX_LISTED]],
            "time_out_of_range_s": life.time_out_of_range_us // SECOND,
            "longest_excursion_s": worst.duration_us // SECOND,
            "readings": life.readings,
            "min_c": life.min_c,
            "max_c": life.max_c,
        }
        if sensor:
            evidence["sensor"] = sensor
        if len(loggers) > 1:
            evidence["loggers"] = [
                {"logger": lg.device, "logger_name": lg.name, **({"sensor": s} if s else {})}
                for lg, s in loggers
            ]
        if len(life.excursions) > MAX_LISTED:
            evidence["excursions_not_listed"] = len(life.excursions) - MAX_LISTED
        # One logger: its did (and probe); several: the lot's whole life. Then the start
        # of the first excursion, so a hold or flag is raised once for it.
        who = logger.device + (f"/{sensor}" if sensor else "") if len(loggers) == 1 else "life"
        return Finding(f"{who}@{format_time(first.start_us)}", _text(reason), evidence, events)

    def describe(self) -> str:
        limits = []
        if self.max_excursion_us is not None:
            limits.append(
                f"one excursion over {coldchain_status.format_duration(self.max_excursion_us)}"
            )
        if self.max_total_us is not None:
            limits.append(
                f"over {coldchain_status.format_duration(self.max_total_us)} out of range in all"
            )
        extra = f" (stricter: {', '.join(limits)})" if limits else ""
        return f"{_scope(self)}: its temperature over its whole life exceeds the tolerance{extra}"


def _seconds(us: int | None) -> int | None:
    return None if us is None else us // SECOND


def _excursion_json(excursion: coldchain_excursions.Excursion) -> dict[str, Any]:
    out: dict[str, Any] = {
        "start": format_time(excursion.start_us),
        "end": format_time(excursion.end_us),
        "duration_s": excursion.duration_us // SECOND,
        "direction": excursion.direction,
        "peak_c": excursion.peak_c,
    }
    if excursion.open_start or excursion.open_end:
        out["open"] = True  # data or a gap began or ended inside it: maybe longer
    return out


@dataclass(frozen=True)
class LoggerSilent(Condition):
    """A logger attached to the lot sent no reading for longer than `max_silence`:
    now (on the timer), or between two of its readings (seen as readings arrive,
    e.g. after the service was down). One finding per silence, named by the
    logger and the time the silence began, so it is flagged once."""

    type: ClassVar[str] = "logger-silent"
    signal: ClassVar[str] = "logger-silent"
    on_events: ClassVar[frozenset[str]] = frozenset({"reading", "detach"})
    on_timer: ClassVar[bool] = True
    params: ClassVar[tuple[str, ...]] = ("type", "max_silence", "category", "profile")
    max_silence_us: int = HOUR
    category: str | None = None
    profile: str | None = None

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        _check_params(cls, params, field)
        if "max_silence" not in params:
            raise ValidationError(f"{field}.max_silence", 'is required, e.g. max_silence = "1h"')
        category, profile = _filters(params, field)
        return cls(parse_duration(params["max_silence"], f"{field}.max_silence"), category, profile)

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        found: dict[str, Finding] = {}
        for logger in facts.loggers:
            for begin, end, index in self._silences(logger, now_us):
                if since_us is not None and begin < since_us:
                    continue
                finding = self._finding(logger, begin, end, index)
                found.setdefault(finding.key, finding)
        return list(found.values())

    def _silences(
        self, logger: Logger, now_us: int
    ) -> Iterable[tuple[int, int | None, int | None]]:
        """(begin, end or None while it lasts, log index of the reading it began at)."""
        limit = self.max_silence_us
        end = logger.detached_us
        points = sorted(
            (r.time_us, r.index)
            for r in logger.readings
            if r.time_us >= logger.attached_us and (end is None or r.time_us <= end)
        )
        previous: tuple[int, int | None] = (logger.attached_us, None)
        for time_us, index in points:
            if time_us - previous[0] > limit:
                yield previous[0], time_us, previous[1]
            if time_us >= previous[0]:
                previous = (time_us, index)
        if end is not None:
            if end - previous[0] > limit:
                yield previous[0], end, previous[1]
            return
        last = logger.last_reading_us
        if last is not None and last > previous[0]:
            previous = (last, None)  # known from the timer's summary, not loaded
        if now_us - previous[0] > limit:
            yield previous[0], None, previous[1]

    def _finding(self, logger: Logger, begin: int, end: int | None, index: int | None) -> Finding:
        limit = coldchain_status.format_duration(self.max_silence_us)
        since = format_time(begin)
        if end is None:
            reason = f"logger {logger.name} has sent no reading since {since} (limit {limit})"
        else:
            silence = coldchain_status.format_duration(end - begin)
            reason = (
                f"logger {logger.name} sent no reading for {silence} from {since} (limit {limit})"
            )
        evidence: dict[str, Any] = {
            "code": "logger-silent",  # how a page words it (docs/rules.md)
            "logger": logger.device,
            "logger_name": logger.name,
            "silent_from": since,
            "silent_until": None if end is None else format_time(end),
            "limit_s": self.max_silence_us // SECOND,
        }
        return Finding(
            f"{logger.device}@{since}", reason, evidence, () if index is None else (index,)
        )

    def describe(self) -> str:
        limit = coldchain_status.format_duration(self.max_silence_us)
        return f"{_scope(self)}: an attached logger sends no reading for over {limit}"


@dataclass(frozen=True)
class SerialScannedFarApart(Condition):
    """The same serial of the lot (`/01/{gtin}/10/{lot}/21/{serial}`) was scanned
    by consumers in at least `min_places` different countries within `window`:
    a counterfeit signal (copied labels). Scans are counted per hour, so times
    compare in whole hours: scans in hours whose starts lie at most `window`
    apart are within the window. Unknown places never count."""

    type: ClassVar[str] = "serial-scanned-far-apart"
    signal: ClassVar[str] = "counterfeit"
    on_timer: ClassVar[bool] = True  # scans are not ledger events: they are polled
    params: ClassVar[tuple[str, ...]] = ("type", "window", "min_places", "category", "profile")
    window_us: int = DAY
    min_places: int = 2
    category: str | None = None
    profile: str | None = None

    @classmethod
    def parse(cls, params: dict[str, Any], field: str) -> Condition:
        _check_params(cls, params, field)
        window = scan_window(params, field, "24h")
        places = params.get("min_places", 2)
        if isinstance(places, bool) or not isinstance(places, int) or not 2 <= places <= 50:
            raise ValidationError(
                f"{field}.min_places", f"must be a whole number 2-50; got {places!r}"
            )
        category, profile = _filters(params, field)
        return cls(window, places, category, profile)

    def findings(self, facts: LotFacts, now_us: int, since_us: int | None) -> list[Finding]:
        by_serial: dict[str, list[SerialScan]] = {}
        for scan in facts.scans:
            if not _COUNTRY.fullmatch(scan.place) or scan.place in _NOT_A_COUNTRY:
                continue
            if since_us is not None and scan.hour_us + HOUR <= since_us:
                continue
            by_serial.setdefault(scan.serial, []).append(scan)
        found = []
        for serial, scans in sorted(by_serial.items()):
            window = self._window(sorted(scans, key=lambda s: (s.hour_us, s.place)))
            if window is not None:
                found.append(self._finding(serial, window))
        return found

    def _window(self, scans: Sequence[SerialScan]) -> list[SerialScan] | None:
        """The first stretch of scans within the window that spans enough places."""
        start = 0
        for end in range(len(scans)):
            while scans[end].hour_us - scans[start].hour_us > self.window_us:
                start += 1
            inside = scans[start : end + 1]
            if len({s.place for s in inside}) >= self.min_places:
                return list(inside)
        return None

    def _finding(self, serial: str, scans: list[SerialScan]) -> Finding:
        places = sorted({s.place for s in scans})
        first, last = scans[0].hour_us, scans[-1].hour_us
        span = coldchain_status.format_duration(last - first + HOUR)
        reason = (
            f"serial {serial} was scanned in {', '.join(places)} within {span} "
            f"(from the hour of {format_time(first)}): possible counterfeit labels"
        )
        evidence = {
            "code": "serial-far-apart",  # how a page words it (docs/rules.md)
            "serial": serial,
            "places": places,
            "scans": [
                {"hour": format_time(s.hour_us)[:13], "place": s.place, "count": s.count}
                for s in scans[: 2 * MAX_LISTED]
            ],
            "window_s": self.window_us // SECOND,
        }
        return Finding(f"serial:{serial}", _text(reason), evidence)

    def describe(self) -> str:
        window = coldchain_status.format_duration(self.window_us)
        return f"{_scope(self)}: one serial scanned in {self.min_places}+ countries within {window}"


CONDITIONS: Mapping[str, type[Condition]] = MappingProxyType(
    {c.type: c for c in (ColdchainTolerance, LoggerSilent, SerialScannedFarApart)}
)


def _text(value: str) -> str:
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"
