"""What the service commands that follow the ledger (`notify`, `rules run`)
share on the command line: the --cursor and --interval options, and a clean
stop on SIGTERM or Ctrl-C."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])


def cursor_option(default_name: str) -> Callable[[F], F]:
    """--cursor FILE (`cursor_path`): where the service keeps the next log index
    to look at; *default_name* (e.g. `DB.notify-cursor`) is what the help names
    as the default."""
    return click.option(
        "--cursor",
        "cursor_path",
        type=click.Path(dir_okay=False),
        help=f"File keeping the next log index to look at (default: {default_name}).",
    )


def interval_option(default: float, help_text: str) -> Callable[[F], F]:
    """--interval S: seconds between the service's looks for new events (at
    least 0.05), *default* shown in the help."""
    return click.option(
        "--interval",
        type=click.FloatRange(min=0.05),
        default=default,
        show_default=True,
        help=help_text,
    )


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets, for a service's run loop to watch;
    the previous handlers are back once the block ends."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
