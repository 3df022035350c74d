"""Consumer-scan counts: by lot, and by serial for the counterfeit rules
(docs/rules.md). Counts only — lot, hour, coarse place (a country; for a serial also a
position rounded to 0.1°, about 11 km, by minute); never an address. Serial scans are
kept RETENTION_DAYS and at most MAX_SERIAL_ROWS rows a table: past that a scan is not
counted (logged), so a flood of made-up serials cannot fill the disk."""

from __future__ import annotations

import re

from provenance.core.errors import ValidationError
from provenance.core.timefmt import format_time
from provenance.store.accounts.db import AccountsDatabase

_PLACE = re.compile(r"[A-Z][A-Z0-9]")
RETENTION_DAYS = 90  # serial scans older than this are deleted
MAX_SERIAL_ROWS = 1_000_000  # rows per serial-scan table; beyond, new scans are not counted
_DAY_US = 86_400_000_000
_PURGE_EVERY_US = 3_600_000_000  # at most one purge an hour


def check_place(value: str | None) -> str:
    """A coarse place for scan counts: an ISO 3166 alpha-2 code (or a CDN's
    two-character pseudo-code such as T1), else ``unknown``. Never an address."""
    if value and _PLACE.fullmatch(value.strip().upper()):
        return value.strip().upper()
    return "unknown"


def coarse_position(lat: str | None, lon: str | None) -> tuple[float, float] | None:
    """A position rounded to 0.1° from two header values (decimal degrees), or None
    when either is missing or not a number in range."""
    try:
        found = float(lat or ""), float(lon or "")
    except ValueError:
        return None
    if not (-90 <= found[0] <= 90 and -180 <= found[1] <= 180):  # also refuses nan
        return None
    return round(found[0], 1), round(found[1], 1)


class ScanCounts(AccountsDatabase):
    """Consumer-scan counts in the accounts database."""

    _purged_at: int | None = None
    _full: dict[str, bool]

    def purge_serial_scans(self, now_us: int) -> int:
        """Delete serial scans older than RETENTION_DAYS; how many rows went."""
        cutoff = format_time(max(now_us - RETENTION_DAYS * _DAY_US, 0))
        with self._write() as conn:
            gone = conn.execute("DELETE FROM serial_scans WHERE hour < ?", (cutoff[:13],))
            gone_too = conn.execute("DELETE FROM serial_sightings WHERE minute < ?", (cutoff[:16],))
            return gone.rowcount + gone_too.rowcount

    def _room(self, table: str, at_us: int) -> bool:
        """Purge and count the tables at most hourly (a count reads the whole table);
        False while *table* was full at the last count (the scan is not counted)."""
        if self._purged_at is None or at_us - self._purged_at >= _PURGE_EVERY_US:
            self._purged_at = at_us
            self.purge_serial_scans(at_us)
            self._full = {
                name: self._read(f"SELECT count(*) FROM {name}")[0][0] >= MAX_SERIAL_ROWS
                for name in ("serial_scans", "serial_sightings")
            }
        return not self._full[table]

    def record_sighting(
        self, lot_uri: str, serial: str, at_us: int, position: tuple[float, float]
    ) -> bool:
        """Count one scan of *serial* at a coarse *position* in its minute; False when
        the table is full."""
        if not isinstance(serial, str) or not 0 < len(serial) <= 20:
            raise ValidationError("serial", "must be 1-20 characters (GS1 AI 21)")
        if not self._room("serial_sightings", at_us):
            return False
        lat, lon = position
        with self._write() as conn:
            conn.execute(
                "INSERT INTO serial_sightings (lot, serial, minute, lat, lon, count) "
                "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (lot, serial, minute, lat, lon) "
                "DO UPDATE SET count = count + 1",
                (lot_uri, serial, format_time(at_us)[:16], round(lat, 1), round(lon, 1)),
            )
        return True

    def sightings_since(self, since_us: int) -> list[tuple[str, str, str, float, float, int]]:
        """(lot URI, serial, minute ``YYYY-MM-DDTHH:MM``, lat, lon, count) from the
        minute of *since_us* on, by lot, serial and minute."""
        since = format_time(max(since_us, 0))[:16]
        return [
            (row[0], row[1], row[2], row[3], row[4], row[5])
            for row in self._read(
                "SELECT lot, serial, minute, lat, lon, count FROM serial_sightings "
                "WHERE minute >= ? ORDER BY lot, serial, minute, lat, lon",
                (since,),
            )
        ]

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
        if not self._room("serial_scans", at_us):
            raise ValidationError("serial", "scans are not counted: the table is full")
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
