"""What the rules may look at for one lot, and what a condition finds in it.

:class:`LotFacts` holds a lot's loggers (:class:`Logger`, each with its readings,
:class:`Reading`), its serial scans (:class:`SerialScan`), its category and profile (by
default the one its category implies) and the holds and flags already in force; a condition
returns findings (:class:`Finding`), each with the reason and the evidence an action will
carry. `provenance.services.rules` gathers these from the store.
Frozen values only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

__all__ = [
    "Finding",
    "Logger",
    "LotFacts",
    "Reading",
    "SerialScan",
    "Sighting",
]

# A lot's category decides its profile when the producer named none (as on the scan page).
DEFAULT_PROFILES = MappingProxyType({"vaccine": "vaccine"})


# --- what is known about a lot


class Reading(NamedTuple):
    """One reading of a logger, filed under the lot."""

    time_us: int
    temperature_c: float | None  # None: the reading measured something else
    index: int  # log index of the reading event
    sensor: str | None = None  # the probe, when a gateway signs for keyless sensors


@dataclass(frozen=True)
class Logger:
    """One attachment of a logger (a device) to the lot."""

    device: str  # did
    name: str
    attached_us: int
    detached_us: int | None = None
    readings: tuple[Reading, ...] = ()  # loaded for event rounds; may be empty on the timer
    last_us: int | None = None  # the latest reading known (any measure), readings or not

    @property
    def last_reading_us(self) -> int | None:
        times = [r.time_us for r in self.readings]
        if self.last_us is not None:
            times.append(self.last_us)
        return max(times, default=None)


@dataclass(frozen=True)
class SerialScan:
    """Consumer scans of one serial of the lot in one hour and place (a count)."""

    serial: str
    hour_us: int  # start of the hour
    place: str  # ISO 3166 alpha-2, or "unknown"
    count: int = 1


@dataclass(frozen=True)
class Sighting:
    """Consumer scans of one serial in one minute at one coarse position (0.1°)."""

    serial: str
    minute_us: int  # start of the minute
    lat: float
    lon: float
    count: int = 1


@dataclass(frozen=True)
class LotFacts:
    """What the rules may look at for one lot."""

    uri: str
    product: str = ""
    category: str | None = None
    profile: str | None = None  # as registered; see `profile_name`
    loggers: tuple[Logger, ...] = ()
    scans: tuple[SerialScan, ...] = ()
    holding_rules: frozenset[str] = frozenset()  # rules with a hold in force on the lot
    released: Mapping[str, int] = field(default_factory=dict)  # rule -> last release time µs
    flagged: frozenset[tuple[str, str]] = frozenset()  # (rule, key) of flags raised
    sightings: tuple[Sighting, ...] = ()  # serial scans with a coarse position
    # The scanned serials the lot's maker issued; None: the lot has no serials issued.
    issued: frozenset[str] | None = None

    @property
    def profile_name(self) -> str | None:
        """The lot's cold-chain profile: as registered, else its category's default."""
        return self.profile or DEFAULT_PROFILES.get(self.category or "")


@dataclass(frozen=True)
class Finding:
    """One thing a condition found: *key* names it so it is acted on once."""

    key: str
    reason: str
    evidence: dict[str, Any]
    events: tuple[int, ...] = ()  # log indexes of the events that show it
