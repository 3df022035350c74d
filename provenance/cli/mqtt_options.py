"""Command-line options shared by every command that talks to an MQTT broker,
the check of what they were given, and the retained-notice publisher they
describe."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import click

from provenance.core.errors import ValidationError

if TYPE_CHECKING:
    from provenance.infra.broker_url import BrokerURL
    from provenance.services.notifier import RetainedPublisher

F = TypeVar("F", bound=Callable[..., object])

_BROKER = click.option(
    "--broker",
    "broker_url",
    required=True,
    metavar="mqtt://HOST:PORT",
    help="The broker; mqtts://HOST:PORT for TLS.",
)

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


client_id_option = click.option(
    "--client-id", metavar="ID", help="MQTT client id (default: per host)."
)
"""--client-id ID: the MQTT client id (default: one per host, see `retained_publisher`)."""


def credential_options(command: F) -> F:
    """--username, --password (env PROVENANCE_MQTT_PASSWORD) and --tls-ca."""
    for option in reversed(_CREDENTIALS):
        command = option(command)
    return command


def broker_options(command: F) -> F:
    """A required --broker (mqtt:// or mqtts://), then the credential options."""
    return _BROKER(credential_options(command))


def parse_broker(broker_url: str, tls_ca: str | None) -> BrokerURL:
    """The --broker URL; a usage error (exit 2) when it is malformed, or when
    --tls-ca goes with a broker that is not mqtts://."""
    from provenance.infra.broker_url import BrokerURL

    try:
        broker = BrokerURL.parse(broker_url)
    except ValidationError as exc:
        raise click.BadParameter(exc.rule, param_hint="--broker") from None
    if tls_ca is not None and not broker.tls:
        raise click.BadParameter("--tls-ca needs an mqtts:// broker URL", param_hint="--tls-ca")
    return broker


def retained_publisher(
    service: str,
    broker: BrokerURL,
    *,
    client_id: str | None,
    username: str | None,
    password: str | None,
    tls_ca: str | None,
) -> RetainedPublisher:
    """A started publisher of retained notices on *broker*, with the credential
    options; its client id is --client-id, else `provenance-SERVICE-HOST` (one
    per host)."""
    from provenance.services.notifier import ACK_TIMEOUT_S, RetainedPublisher

    return RetainedPublisher(
        broker,
        client_id or f"provenance-{service}-{socket.gethostname()}"[:64],
        username=username,
        password=password,
        tls_ca=tls_ca,
        ack_timeout=ACK_TIMEOUT_S,
    ).start()
