"""The click groups of the command line: lazily loaded commands, and the main group's errors.

:class:`LazyGroup` imports a command ("name" -> "module:attribute") only when it is first
asked for, so `provenance --help` does not load Flask or paho and a command module can
import the shared CLI modules freely; :class:`MainGroup`, the `provenance` group, turns a
command's uncaught ``ProvenanceError``, ``OSError``, ``UnicodeDecodeError`` or
``DATABASE_ERRORS`` into `Error: …` with exit status 1, and a usage error into
`Error: …` first with exit status 2.
"""

from __future__ import annotations

import importlib
from typing import Any

import click

from provenance.cli.context import Context
from provenance.cli.errors import ErrorFirstUsage, error_message
from provenance.core.errors import ProvenanceError
from provenance.store.errors import DATABASE_ERRORS


class LazyGroup(click.Group):
    """A group whose commands in `lazy` ("name" -> "module:attribute") are
    imported when first asked for, so that `provenance --help` does not load
    Flask, paho or the exporters of every service command."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


class MainGroup(LazyGroup):
    """The `provenance` group: a command's uncaught ProvenanceError, OSError,
    UnicodeDecodeError or DATABASE_ERRORS becomes `Error: …`, exit 1,
    never a traceback; usage errors say `Error: …` first too (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.NoArgsIsHelpError:
            raise
        except ErrorFirstUsage:
            raise
        except click.UsageError as exc:
            raise ErrorFirstUsage(exc) from exc
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except (ProvenanceError, OSError, UnicodeDecodeError, *DATABASE_ERRORS) as exc:
            obj = ctx.obj if isinstance(ctx.obj, Context) else None
            raise click.ClickException(error_message(exc, obj) or str(exc)) from exc


class DefaultGroup(click.Group):
    """A group whose first argument, when it is not one of its subcommands' names
    (nor --help), goes to its *default* subcommand: `provenance recall URI…` is
    `provenance recall sign URI…`, `provenance notify --broker …` is
    `provenance notify run --broker …`."""

    def __init__(self, *args: Any, default: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default = default

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default, *args]
        return super().parse_args(ctx, args)
