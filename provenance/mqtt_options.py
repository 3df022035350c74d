"""Command-line options shared by every command that talks to an MQTT broker."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

F = TypeVar("F", bound=Callable[..., object])

_CREDENTIALS = (
    click.option("--username", help="MQTT user name."),
    click.option(
        "--password",
        envvar="PROVENANCE_MQTT_PASSWORD",
        help="MQTT password (better: env PROVENANCE_MQTT_PASSWORD).",
    ),
    click.option(
        "--tls-ca",
        type=click.Path(exists=True, dir_okay=False),
        help="CA certificate file to trust for mqtts:// (default: the system's).",
    ),
)


def credential_options(command: F) -> F:
    """--username, --password (env PROVENANCE_MQTT_PASSWORD) and --tls-ca."""
    for option in reversed(_CREDENTIALS):
        command = option(command)
    return command
