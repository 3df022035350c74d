"""What the rules service's timer round reads for the counterfeit conditions
(docs/rules.md, "Serial scans"): consumer scans of serials by hour and country, the same
by minute and coarse position (sightings), and which scanned serials the lot's maker
issued. The scans live in the accounts database, written by the scan page; this module
reads them and turns them into facts (`provenance.domain.rule_facts`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from provenance.core.timefmt import parse_time
from provenance.domain.rule_conditions import DAY, SerialScannedFarApart
from provenance.domain.rule_facts import SerialScan, Sighting
from provenance.domain.rule_serials import SERIAL_CONDITIONS
from provenance.domain.rules import RuleSet
from provenance.store.db import Store

log = logging.getLogger(__name__)

SERIAL_TYPES = (SerialScannedFarApart.type, *SERIAL_CONDITIONS)


class SightingSource(Protocol):
    """Serial sightings from the minute of *since_us* on:
    (lot URI, serial, minute ``YYYY-MM-DDTHH:MM``, lat, lon, count)."""

    def __call__(self, since_us: int) -> list[tuple[str, str, str, float, float, int]]: ...


@dataclass
class ScannedLot:
    scans: list[SerialScan] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)
    issued: frozenset[str] | None = None  # None: the lot has no serials issued


def serial_rules(rules: RuleSet) -> list[Any]:
    return [rule for kind in SERIAL_TYPES for rule in rules.of_type(kind)]


def look_back_us(rules: RuleSet) -> int:
    """How far before the scan cursor a round reads: the longest window of a rule."""
    return max((getattr(r.condition, "window_us", DAY) for r in serial_rules(rules)), default=DAY)


def scanned_lots(
    store: Store,
    rows: Sequence[tuple[str, str, str, str, int]],
    sighted: Sequence[tuple[str, str, str, float, float, int]],
) -> dict[int, ScannedLot]:
    """The facts about serials of each lot in the ledger that *rows* (hourly scans) or
    *sighted* (sightings) name, by lot id."""
    by_uri: dict[str, ScannedLot] = {}
    for uri, serial, hour, place, count in rows:
        found = by_uri.setdefault(uri, ScannedLot())
        found.scans.append(SerialScan(serial, parse_time(hour + ":00:00Z"), place, count))
    for uri, serial, minute, lat, lon, count in sighted:
        found = by_uri.setdefault(uri, ScannedLot())
        found.sightings.append(Sighting(serial, parse_time(minute + ":00Z"), lat, lon, count))
    lots: dict[int, ScannedLot] = {}
    for uri, found in by_uri.items():
        lot = store.lot_by_uri(uri)
        if lot is None:
            continue
        if store.serial_count(lot.id):
            named = sorted({s.serial for s in found.scans} | {s.serial for s in found.sightings})
            found.issued = frozenset(store.issued_serials(lot.id, named))
        lots[lot.id] = found
    return lots


def accounts_sightings(directory: str | os.PathLike[str]) -> SightingSource:
    """Serial sightings from the accounts database in *directory* (opened on first use;
    none while it does not exist yet)."""
    from provenance.store.accounts.accounts import Accounts
    from provenance.store.accounts.db import DATABASE_FILE
    from provenance.store.accounts.models import HashParams

    folder = Path(directory)
    opened: list[Any] = []

    def read(since_us: int) -> list[tuple[str, str, str, float, float, int]]:
        if not opened:
            if not (folder / DATABASE_FILE).exists():
                return []
            opened.append(Accounts(folder, hash_params=HashParams(1, 8, 1)))  # never hashes
        return opened[0].sightings_since(since_us)

    return read
