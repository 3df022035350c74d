"""When the ledger appended its events (EPCIS ``recordTime``): one row per
append, the log index of its first event and the server's clock then
(migration 0017_capture). The events of one append share its time."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provenance.store.db import Store


def record_append(store: Store, first_index: int, at_us: int) -> None:
    """Note that the events from *first_index* on were appended at *at_us*
    (inside the append's transaction)."""
    store.conn.execute(
        "INSERT INTO record_times (first_idx, at_us) VALUES (?, ?) "
        "ON CONFLICT (first_idx) DO UPDATE SET at_us = excluded.at_us",
        (first_index, at_us),
    )


class RecordTimes:
    """The record times of a store, read once: `of(index)` is the time the event
    at *index* was appended (microseconds), None if it was appended before the
    ledger kept them."""

    def __init__(self, rows: Sequence[tuple[int, int]]):
        self._starts = [row[0] for row in rows]
        self._times = [row[1] for row in rows]

    @classmethod
    def read(cls, store: Store) -> RecordTimes:
        rows = store.conn.execute(
            "SELECT first_idx, at_us FROM record_times ORDER BY first_idx"
        ).fetchall()
        return cls([(int(a), int(b)) for a, b in rows])

    def of(self, index: int) -> int | None:
        at = bisect.bisect_right(self._starts, index) - 1
        return self._times[at] if at >= 0 else None

    def first_from(self, moment: int, size: int) -> int:
        """The log index of the first event recorded at or after *moment* (*size*,
        the log's, when none is)."""
        for start, at in zip(self._starts, self._times, strict=True):
            if at >= moment:
                return start
        return size


def indexes_by_key(store: Store) -> dict[int, int]:
    """Every event's lookup key (`rows.event_key` of its id) → its log index, to
    find where a mapped EPCIS event came from."""
    return {
        int(key): int(index) for index, key in store.conn.execute("SELECT idx, key FROM events")
    }
