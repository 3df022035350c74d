"""`provenance notify`: publish retained recall notices over MQTT while the
ledger grows (or once, with --once).

Listed in `provenance.cli.SERVICE_COMMANDS` (imported when first run). Exit status: 0
after a clean stop (SIGTERM/SIGINT) or a completed --once round, 1 when it
cannot run or --once could not get its notices acknowledged, 2 usage error.
"""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from typing import Any

import click

from .cli import Context, friendly, pass_context
from .errors import ValidationError
from .ingest import BrokerURL
from .mqtt_options import credential_options
from .notify import (
    ACK_TIMEOUT_S,
    POLL_INTERVAL_S,
    Cursor,
    RecallNotifier,
    RetainedPublisher,
    default_cursor_path,
)

log = logging.getLogger(__name__)


@click.command("notify")
@click.option(
    "--broker",
    "broker_url",
    required=True,
    metavar="mqtt://HOST:PORT",
    help="The broker; mqtts://HOST:PORT for TLS.",
)
@credential_options
@click.option(
    "--cursor",
    "cursor_path",
    type=click.Path(dir_okay=False),
    help="File keeping the next log index to look at (default: DB.notify-cursor).",
)
@click.option(
    "--interval",
    type=click.FloatRange(min=0.05),
    default=POLL_INTERVAL_S,
    show_default=True,
    help="Seconds between looks at the database.",
)
@click.option("--once", is_flag=True, help="Publish what is due, wait for the acks, and exit.")
@click.option("--client-id", metavar="ID", help="MQTT client id (default: per host).")
@pass_context
@friendly
def command(
    ctx: Context,
    broker_url: str,
    username: str | None,
    password: str | None,
    tls_ca: str | None,
    cursor_path: str | None,
    interval: float,
    once: bool,
    client_id: str | None,
) -> None:
    """Publish a retained recall notice (QoS 1) on provenance/v1/recalls/{gtin}/{lot}
    for every lot a recall or a lift reaches, cascaded lots included; a lift
    publishes the lot's new state. Follows the ledger until SIGTERM or Ctrl-C.

    Example: provenance notify --broker mqtt://127.0.0.1:1883
    """
    try:
        broker = BrokerURL.parse(broker_url)
    except ValidationError as exc:
        raise click.BadParameter(exc.rule, param_hint="--broker") from None
    if tls_ca is not None and not broker.tls:
        raise click.BadParameter("--tls-ca needs an mqtts:// broker URL", param_hint="--tls-ca")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    store = ctx.store()
    cursor = Cursor(cursor_path or default_cursor_path(ctx.db_path))
    publisher = RetainedPublisher(
        broker,
        client_id or f"provenance-notify-{socket.gethostname()}"[:64],
        username=username,
        password=password,
        tls_ca=tls_ca,
        ack_timeout=ACK_TIMEOUT_S,
    ).start()
    notifier = RecallNotifier(store, publisher, cursor)
    try:
        if once:
            notifier.poll()
            if notifier.behind:
                raise click.ClickException(
                    f"the broker at {broker} did not acknowledge the notices"
                )
            click.echo(f"published {notifier.published} recall notices; cursor {cursor.load()}")
            return
        stop = threading.Event()

        def on_signal(_signum: int, _frame: Any) -> None:
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            notifier.run(stop, interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        click.echo(f"stopped; published {notifier.published} recall notices", err=True)
    finally:
        publisher.stop()
    sys.stdout.flush()
