"""How the command line reports errors: `Error: …` and an exit status, never a traceback.

:func:`error_message` is the one place that maps our exceptions (``ProvenanceError``) and
the operating system's and SQLite's to a message that says what to do; :func:`friendly`
wraps a command so that a ``ProvenanceError`` becomes `Error: …` with exit status 1;
:class:`ErrorFirstUsage` shows a usage error as `Error: …` first, then the usage line and
the hint, with exit status 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from provenance.cli.context import Context
from provenance.core.errors import ProvenanceError
from provenance.store.errors import DATABASE_ERRORS


def friendly(function: Callable[..., Any]) -> Callable[..., Any]:
    """Turn our exceptions into `Error: …` and exit status 1."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ProvenanceError as exc:
            raise click.ClickException(str(exc)) from exc

    return wrapper


def error_message(exc: BaseException, ctx: Context | None) -> str | None:
    """`Error: …` text for an exception a command let through, or None for a bug.
    The one place that maps our errors and the OS's to a message."""
    db = ctx.db_shown if ctx is not None else "the ledger"
    if isinstance(exc, ProvenanceError):
        return str(exc)
    if isinstance(exc, DATABASE_ERRORS):
        return f"{db}: the ledger database failed ({exc}): check --db, or run `provenance verify`"
    if isinstance(exc, UnicodeDecodeError):
        return f"input is not UTF-8 text ({exc.reason} at offset {exc.start}): save it as UTF-8"
    if isinstance(exc, IsADirectoryError):
        return f"{exc.filename} is a folder, where a file was expected"
    if isinstance(exc, OSError):
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror or exc}"
    return None


class ErrorFirstUsage(click.UsageError):
    """A usage error shown as `Error: …` first, then the usage line and the hint
    (exit status 2), like every other error of the command line."""

    def __init__(self, error: click.UsageError):
        super().__init__(error.format_message(), error.ctx)

    def show(self, file: Any = None) -> None:
        lines = [f"Error: {self.format_message()}"]
        if self.ctx is not None:
            lines.append(self.ctx.get_usage())
            lines.append(f"Try '{self.ctx.command_path} {self.ctx.help_option_names[0]}' for help.")
        click.echo("\n".join(lines), file=file, err=file is None)
