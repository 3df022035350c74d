"""`provenance notify`: publish retained recall notices over MQTT while the
ledger grows (or once, with --once).

Listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run). Exit status: 0
after a clean stop (SIGTERM/SIGINT) or a completed --once round, 1 when it
cannot run or --once could not get its notices acknowledged, 2 usage error.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from provenance.cli.context import Context, pass_context
from provenance.cli.errors import friendly
from provenance.cli.inputs import check_cursor_file, check_tls_ca
from provenance.cli.mqtt_options import (
    broker_options,
    client_id_option,
    parse_broker,
    retained_publisher,
)
from provenance.cli.service_options import cursor_option, interval_option, stop_on_signals
from provenance.services.notifier import (
    POLL_INTERVAL_S,
    Cursor,
    RecallNotifier,
    default_cursor_path,
)

log = logging.getLogger(__name__)


@click.command("notify")
@broker_options
@cursor_option("DB.notify-cursor")
@interval_option(POLL_INTERVAL_S, "Seconds between looks at the database.")
@click.option("--once", is_flag=True, help="Publish what is due, wait for the acks, and exit.")
@client_id_option
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
    broker = parse_broker(broker_url, tls_ca)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    check_tls_ca(tls_ca)
    store = ctx.reader()
    cursor_file = Path(cursor_path) if cursor_path else default_cursor_path(ctx.db_path)
    check_cursor_file(cursor_file)
    cursor = Cursor(cursor_file)
    publisher = retained_publisher(
        "notify",
        broker,
        client_id=client_id,
        username=username,
        password=password,
        tls_ca=tls_ca,
    )
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
        with stop_on_signals() as stop:
            notifier.run(stop, interval)
        click.echo(f"stopped; published {notifier.published} recall notices", err=True)
    finally:
        publisher.stop()
    sys.stdout.flush()
