"""The refusals of one `Ledger.append`, written to the ledger's reject log
as `RejectBudget.plan` decides (provenance/ledger/rejects.py, pure): the first
ones of a message and of a source one by one, the rest counted in an
aggregate row per source and reason (docs/ingest.md, "Rejects")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from provenance.core.timefmt import format_time
from provenance.ledger.intake import raw_bytes
from provenance.ledger.rejects import (
    MAX_AGGREGATE_RAW,
    MAX_PER_MESSAGE,
    SOURCE_BURST,
    SOURCE_ROWS_PER_MINUTE,
    Refusal,
    RejectBudget,
)
from provenance.store.db import Store

if TYPE_CHECKING:
    from provenance.ledger.append import Appended

_AGGREGATE_DETAIL = (
    "{reason}: more refusals from this source than are stored one by one (the first "
    f"{MAX_PER_MESSAGE} of a message; a source's {SOURCE_BURST}, then "
    f"{SOURCE_ROWS_PER_MINUTE} a minute); this row counts them (`count`). First: {{first}}"
)


def record_rejects(
    store: Store,
    budget: RejectBudget,
    now: int,
    results: Sequence[Appended],
    raws: list[Any],
    sources: Sequence[str | None],
    messages: Sequence[int] | None = None,
) -> None:
    """Record the refusals: each counted, the first ones of a message and
    of a source stored one by one, the rest added to an aggregate row per
    source and reason (provenance/ledger/rejects.py)."""
    rejected = [
        (position, result) for position, result in enumerate(results) if result.status == "rejected"
    ]
    if not rejected:
        return
    at = format_time(now)
    plan = budget.plan(
        [
            Refusal(0 if messages is None else messages[p], sources[p], r.reason or "")
            for p, r in rejected
        ],
        now,
    )
    try:
        with store.transaction():
            for index in plan.stored:
                position, result = rejected[index]
                store.insert_reject(
                    at,
                    result.reason or "",
                    result.message or "",
                    sources[position],
                    result.event_id,
                    raw_bytes(raws[position]),
                )
            for counted in plan.counted:
                if counted.row is not None and store.count_rejects(counted.row, counted.count, at):
                    continue
                position, first = rejected[counted.first]
                row = store.insert_reject(
                    at,
                    counted.reason,
                    _AGGREGATE_DETAIL.format(reason=counted.reason, first=first.message or ""),
                    counted.source,
                    None,
                    (raw_bytes(raws[position]) or b"")[:MAX_AGGREGATE_RAW],
                    count=counted.count,
                )
                budget.opened(counted.source, counted.reason, row, now)
    except BaseException:
        budget.forget()
        raise
