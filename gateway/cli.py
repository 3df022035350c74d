"""`provenance gateway`: run the edge gateway (registered in provenance/cli/main.py)."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import Any

import click

from provenance.core.errors import ProvenanceError

from .config import ConfigError, check_broker_url, load_config

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@click.command("gateway")
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The gateway's TOML configuration (see gateway/example.toml).",
)
@click.option("--broker", help="MQTT broker URL, mqtt://HOST:PORT; overrides broker.url.")
@click.option(
    "--identity",
    is_flag=True,
    help="Print the gateway's and the site's did:key (creating the gateway key if it is "
    "missing) and exit: what `provenance device add --public-key` needs.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def command(config_path: Path, broker: str | None, identity: bool, log_level: str) -> None:
    """Collect local readings and dock scans, sign them, keep them in a
    persistent outbox and publish them to the broker (QoS 1).

    Runs until SIGTERM or Ctrl-C, then drains the outbox for up to
    gateway.drain_timeout_s and exits 0; what is not delivered yet stays in the
    outbox for the next start.

    Example: provenance gateway --config gateway.toml --broker mqtt://127.0.0.1:1883
    """
    from .service import Gateway, identities  # imported late: keeps --help fast

    _setup_logging(log_level)
    try:
        if broker is not None:
            check_broker_url(broker, "--broker")
        config = load_config(config_path, broker_url=broker, environ=None)
        if identity:
            for label, did in identities(config, create=True):
                click.echo(f"{label}\t{did}")
            return
        gateway = Gateway(config)
    except (ConfigError, ProvenanceError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    stop = threading.Event()
    previous = _on_signals(stop)
    try:
        gateway.run(stop)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set *stop* (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, lambda *_: stop.set())
    return previous


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(format=LOG_FORMAT)
    logging.getLogger("gateway").setLevel(level.upper())
    logging.getLogger("devices").setLevel(level.upper())
