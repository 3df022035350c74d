"""Progress bars for long commands (`verify`, `export epcis|fsma204`,
`import epcis`, `label --count N`): counts and time left on standard error,
and nothing at all when standard error is not a terminal, so that pipes, logs
and scripts see exactly what they saw before (docs/cli.md, "Progress").

`bar(label)` is a context manager giving the `progress(done, total)` callback
the long functions take (`provenance.core.progress`), or None when there is
no terminal to draw on.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from provenance.core.progress import Progress
from provenance.core.terminal import EscapingStream


def on_terminal() -> bool:
    """Whether standard error is a terminal (a bar there helps, anywhere else it is noise)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _raw_stderr() -> Any:
    """Standard error itself: the bar's carriage returns and cursor codes are
    ours to send (its label and unit are fixed text), so they go past the
    escaping that keeps ledger text from driving the terminal
    (`provenance.core.terminal`)."""
    stream = sys.stderr
    return stream.wrapped if isinstance(stream, EscapingStream) else stream


@contextmanager
def bar(label: str, *, unit: str = "events") -> Iterator[Progress | None]:
    """A `Progress` drawing click's progress bar (label, bar, done/total,
    percentage, time left, *unit*) on standard error while the block runs; a
    new total (the next part of the work) starts a new bar. None off a terminal."""
    if not on_terminal():
        yield None
        return
    state: dict[str, Any] = {"bar": None, "at": 0}

    def progress(done: int, total: int) -> None:
        shown = state["bar"]
        if shown is None or shown.length != total:
            if shown is not None:
                shown.__exit__(None, None, None)
            shown = click.progressbar(
                length=total,
                label=label,
                file=_raw_stderr(),
                show_pos=True,
                show_eta=True,
                show_percent=True,
                item_show_func=lambda _item: unit,
            )
            shown.__enter__()
            state.update(bar=shown, at=0)
        if done > state["at"]:
            shown.update(done - state["at"])
            state["at"] = done

    try:
        yield progress
    finally:
        if state["bar"] is not None:
            state["bar"].__exit__(None, None, None)
