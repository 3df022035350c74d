"""Command-line options that several commands declare alike, written once.

Each is a decorator that adds the option exactly as the commands documented it (docs/cli.md):
``--json`` as JSON lines (:data:`json_lines_option`) or as one JSON object
(:data:`json_object_option`); the ``--from``/``--reason`` pair of the `revoke` commands
(:func:`revoke_options`); the ``--from``/``--to`` date range, the ``--product`` filter and
the ``--out`` file of the exports (:func:`time_range_options`, :data:`product_option`,
:data:`out_option`); and ``--password-stdin`` (:data:`password_stdin_option`). The MQTT
options are in `provenance.cli.mqtt_options`, those of the services that follow the ledger
in `provenance.cli.service_options`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

FROM_HELP = "Only events at or after this date (YYYY-MM-DD, UTC) or RFC 3339 UTC time."
TO_HELP = "Only events up to this date (the whole day, UTC) or RFC 3339 UTC time, inclusive."

json_lines_option = click.option("--json", "as_json", is_flag=True, help="JSON lines.")
"""--json (`as_json`): print one JSON object a line."""

json_object_option = click.option("--json", "as_json", is_flag=True, help="One JSON object.")
"""--json (`as_json`): print one JSON object."""

password_stdin_option = click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input."
)
"""--password-stdin: read the password from standard input, not the terminal."""

product_option = click.option(
    "--product", metavar="TEXT", help="Only lots whose product contains TEXT."
)
"""--product TEXT: only lots whose product contains TEXT."""

out_option = click.option("--out", metavar="FILE", help="Write here (default: standard output).")
"""--out FILE: where an export goes (default: standard output)."""


def revoke_options(command: F) -> F:
    """--from (`from_`, RFC 3339 UTC, default now) and --reason of a key revocation."""
    command = click.option("--reason")(command)
    return click.option(
        "--from", "from_", help="RFC 3339 UTC time the key is distrusted from (default: now)."
    )(command)


def time_range_options(command: F) -> F:
    """--from DATE (`since`) and --to DATE (`until`): dates are whole UTC days, or RFC 3339
    UTC times (`provenance.cli.exchange.time_range` reads them)."""
    command = click.option("--to", "until", metavar="DATE", help=TO_HELP)(command)
    return click.option("--from", "since", metavar="DATE", help=FROM_HELP)(command)
