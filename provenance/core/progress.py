"""Progress of long work, reported without I/O.

A long function (whole-ledger verification, an export, an import, a sheet of
labels) takes ``progress: Progress | None = None`` and calls it with
``(done, total)`` in its own units (events, labels): first ``(0, total)``, then
as it goes, last ``(total, total)`` once it has finished that part. What to do
with it (a bar on a terminal, nothing in a pipe) is the caller's business:
`provenance.cli.progress` draws click's progress bar on standard error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Progress = Callable[[int, int], None]
"""``progress(done, total)``: *done* of *total* units of work are finished."""

EVERY = 256  # report at most once per this many units: a call per event costs time

T = TypeVar("T")


def report(progress: Progress | None, done: int, total: int) -> None:
    """``progress(done, total)`` when there is a *progress*."""
    if progress is not None:
        progress(done, total)


def counted(
    items: Iterable[T],
    total: int,
    progress: Progress | None,
    *,
    every: int = EVERY,
    position: Callable[[T], int] | None = None,
) -> Iterator[T]:
    """*items* unchanged, reporting how far they have been taken: ``(0, total)``
    first, then every *every* items, and ``(total, total)`` once they are all
    taken. How far is the count of items taken, or with *position* the
    position of the last one taken plus one (for items that skip some of the
    *total*, such as rows of some kinds out of the whole log by their index)."""
    if progress is None:
        yield from items
        return
    progress(0, total)
    for taken, item in enumerate(items, start=1):
        yield item
        if taken % every == 0:
            done = taken if position is None else position(item) + 1
            progress(min(done, total), total)
    progress(total, total)
