"""How many refusals are stored one by one, and which are only counted.

Every refusal is counted, but one source must not grow the ledger's reject
log without bound (one 1 MiB array of bad elements used to add 2.6 MB).
`RejectBudget.plan` decides, for the refusals of one `Ledger.append`, which
are stored as rows of their own (reason, detail, the first 4 KiB of the raw
bytes) and which are added to an aggregate row that holds only a count:

- per message: the first MAX_PER_MESSAGE refusals of a message are stored;
- per source: a token bucket of SOURCE_BURST rows, refilled at
  SOURCE_ROWS_PER_MINUTE, for rows of its own;
- the rest go to the source's aggregate row for their reason, one row per
  (source, reason) for AGGREGATE_WINDOW_S, whose `count` grows.

So a source adds at most SOURCE_BURST + SOURCE_ROWS_PER_MINUTE a minute
individual rows, plus one aggregate row per reason per window; the sum of
`count` over the rows is exactly the number of refusals. Pure: the caller
gives the time and applies the plan to its store. Accepted envelopes are
never affected.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from typing import NamedTuple

MAX_PER_MESSAGE = 16  # refusals of one message stored one by one; the rest are counted
SOURCE_BURST = 100  # rows of their own a source may add at once
SOURCE_ROWS_PER_MINUTE = 6  # ... and then at this rate
AGGREGATE_WINDOW_S = 600  # one aggregate row per source and reason for this long
MAX_SOURCES = 10_000  # sources remembered (least recently seen forgotten first)
MAX_AGGREGATE_RAW = 256  # bytes of the first counted refusal kept with an aggregate row


class Refusal(NamedTuple):
    """One refusal, as the budget sees it."""

    message: Hashable  # which message of the append it came in
    source: str | None  # e.g. the MQTT topic
    reason: str


class Count(NamedTuple):
    """Refusals to add to the aggregate row of (source, reason)."""

    source: str | None
    reason: str
    count: int
    first: int  # index (into the refusals planned) of the first of them
    row: int | None  # the open aggregate row to add to; None: start one


class RefusalPlan(NamedTuple):
    stored: list[int]  # indexes of the refusals stored one by one
    counted: list[Count]


class _Source:
    __slots__ = ("seen_us", "tokens")

    def __init__(self, now_us: int):
        self.tokens = float(SOURCE_BURST)
        self.seen_us = now_us

    def take(self, now_us: int) -> bool:
        elapsed = max(0, now_us - self.seen_us) / 60e6
        self.tokens = min(float(SOURCE_BURST), self.tokens + elapsed * SOURCE_ROWS_PER_MINUTE)
        self.seen_us = now_us
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class RejectBudget:
    """The per-message and per-source bounds on stored refusals (module doc).
    Not thread-safe: one per ledger."""

    def __init__(
        self,
        per_message: int = MAX_PER_MESSAGE,
        window_us: int = AGGREGATE_WINDOW_S * 1_000_000,
        max_sources: int = MAX_SOURCES,
    ):
        self.per_message = per_message
        self.window_us = window_us
        self.max_sources = max_sources
        self._sources: OrderedDict[str | None, _Source] = OrderedDict()
        # (source, reason) -> (row id, window start) of the open aggregate row
        self._open: OrderedDict[tuple[str | None, str], tuple[int, int]] = OrderedDict()

    def plan(self, refusals: Sequence[Refusal], now_us: int) -> RefusalPlan:
        stored: list[int] = []
        per_message: dict[Hashable, int] = {}
        counted: dict[tuple[str | None, str], list[int]] = {}
        for index, (message, source, reason) in enumerate(refusals):
            seen = per_message.get(message, 0)
            per_message[message] = seen + 1
            if seen < self.per_message and self._source(source, now_us).take(now_us):
                stored.append(index)
            else:
                found = counted.setdefault((source, reason), [index, 0])
                found[1] += 1
        counts = []
        for (source, reason), (first, count) in counted.items():
            row = self._open.get((source, reason))
            live = row is not None and now_us - row[1] < self.window_us
            counts.append(Count(source, reason, count, first, row[0] if live and row else None))
        return RefusalPlan(stored, counts)

    def opened(self, source: str | None, reason: str, row: int, now_us: int) -> None:
        """The caller started aggregate row *row* for (source, reason)."""
        self._open[(source, reason)] = (row, now_us)
        self._open.move_to_end((source, reason))
        while len(self._open) > self.max_sources:
            self._open.popitem(last=False)

    def forget(self) -> None:
        """The rows opened may not exist (a rolled back transaction): start new ones."""
        self._open.clear()

    def _source(self, source: str | None, now_us: int) -> _Source:
        state = self._sources.get(source)
        if state is None:
            state = self._sources[source] = _Source(now_us)
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)
        else:
            self._sources.move_to_end(source)
        return state
