"""Consumer-scan counts: by lot, and by serial for the counterfeit rule
(docs/rules.md). Counts only — lot, hour, coarse place; never an address."""

from __future__ import annotations

import re

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.store.accounts.db import AccountsDatabase

_PLACE = re.compile(r"[A-Z][A-Z0-9]")


def check_place(value: str | None) -> str:
    """A coarse place for scan counts: an ISO 3166 alpha-2 code (or a CDN's
    two-character pseudo-code such as T1), else ``unknown``. Never an address."""
    if value and _PLACE.fullmatch(value.strip().upper()):
        return value.strip().upper()
    return "unknown"


class ScanCounts(AccountsDatabase):
    """Consumer-scan counts in the accounts database."""

    def record_scan(self, lot_uri: str, at_us: int, place: str | None) -> None:
        hour = format_time(at_us)[:13]
        with self._write() as conn:
            conn.execute(
                "INSERT INTO scans (lot, hour, place, count) VALUES (?, ?, ?, 1) "
                "ON CONFLICT (lot, hour, place) DO UPDATE SET count = count + 1",
                (lot_uri, hour, check_place(place)),
            )

    def record_serial_scan(self, lot_uri: str, serial: str, at_us: int, place: str | None) -> None:
        """Count one scan of item *serial* of *lot_uri* (hour and coarse place only)."""
        if not isinstance(serial, str) or not 0 < len(serial) <= 20:
            raise ValidationError("serial", "must be 1-20 characters (GS1 AI 21)")
        hour = format_time(at_us)[:13]
        with self._write() as conn:
            conn.execute(
                "INSERT INTO serial_scans (lot, serial, hour, place, count) VALUES (?, ?, ?, ?, 1) "
                "ON CONFLICT (lot, serial, hour, place) DO UPDATE SET count = count + 1",
                (lot_uri, serial, hour, check_place(place)),
            )

    def serial_scans_since(self, since_us: int) -> list[tuple[str, str, str, str, int]]:
        """(lot URI, serial, hour ``YYYY-MM-DDTHH``, place, count) of serial scans from
        the hour of *since_us* on, by lot, serial and hour."""
        since = format_time(max(since_us, 0))[:13]
        return [
            (row[0], row[1], row[2], row[3], row[4])
            for row in self._read(
                "SELECT lot, serial, hour, place, count FROM serial_scans WHERE hour >= ? "
                "ORDER BY lot, serial, hour, place",
                (since,),
            )
        ]

    def scans(self, lot_uris: list[str], since_us: int) -> list[tuple[str, str, int]]:
        """(day, place, count) for the lots from the hour of *since_us* on."""
        if not lot_uris:
            return []
        since = format_time(since_us)[:13]
        found: dict[tuple[str, str], int] = {}
        for start in range(0, len(lot_uris), 500):
            chunk = lot_uris[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for day, place, count in self._read(
                f"SELECT substr(hour, 1, 10), place, sum(count) FROM scans "
                f"WHERE lot IN ({marks}) AND hour >= ? GROUP BY 1, 2",
                (*chunk, since),
            ):
                found[(day, place)] = found.get((day, place), 0) + count
        return sorted(((day, place, n) for (day, place), n in found.items()))
