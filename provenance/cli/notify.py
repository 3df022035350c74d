"""`provenance notify`: publish retained recall notices over MQTT while the
ledger grows (or once, with --once), and send them to the subscribers by
signed webhook and e-mail (`notify subscribe`; provenance/cli/notify_channels.py).
`provenance notify --broker …` is `provenance notify run --broker …`.

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
from provenance.cli.groups import DefaultGroup
from provenance.cli.inputs import check_cursor_file, check_tls_ca
from provenance.cli.mqtt_options import (
    broker_options,
    client_id_option,
    parse_broker,
    retained_publisher,
)
from provenance.cli.notify_channels import (
    channels,
    subscribe_command,
    subscriptions_command,
    subscriptions_option,
)
from provenance.cli.service_options import cursor_option, interval_option, stop_on_signals
from provenance.services.notifier import (
    POLL_INTERVAL_S,
    Cursor,
    RecallNotifier,
    default_cursor_path,
)

log = logging.getLogger(__name__)
DRAIN_S = 120.0  # how long --once waits for its webhooks and e-mails (retries included)


@click.command("run")
@broker_options
@cursor_option("DB.notify-cursor")
@interval_option(POLL_INTERVAL_S, "Seconds between looks at the database.")
@click.option("--once", is_flag=True, help="Publish what is due, wait for the acks, and exit.")
@client_id_option
@subscriptions_option
@click.option(
    "--deliveries",
    "deliveries_path",
    type=click.Path(dir_okay=False),
    help="Where each webhook and e-mail outcome is recorded (default DB.notify-deliveries.jsonl).",
)
@pass_context
@friendly
def run(
    ctx: Context,
    broker_url: str,
    username: str | None,
    password: str | None,
    tls_ca: str | None,
    cursor_path: str | None,
    interval: float,
    once: bool,
    client_id: str | None,
    subscriptions_path: str | None,
    deliveries_path: str | None,
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
    outgoing = channels(ctx, subscriptions_path, deliveries_path)
    publisher = retained_publisher(
        "notify",
        broker,
        client_id=client_id,
        username=username,
        password=password,
        tls_ca=tls_ca,
    )
    notifier = RecallNotifier(store, publisher, cursor, outgoing)
    outgoing.queue.start()
    try:
        if once:
            notifier.poll()
            if notifier.behind:
                raise click.ClickException(
                    f"the broker at {broker} did not acknowledge the notices"
                )
            click.echo(f"published {notifier.published} recall notices; cursor {cursor.load()}")
            drained = outgoing.queue.drain(DRAIN_S)
            outcomes = [line["outcome"] for line in outgoing.queue.record.recent]
            if outcomes or not drained:
                click.echo(
                    f"webhooks and e-mails: {outcomes.count('delivered')} delivered, "
                    f"{outcomes.count('failed')} failed, {outcomes.count('dropped')} dropped"
                    + ("" if drained else f", {outgoing.queue.pending()} still waiting")
                )
            return
        with stop_on_signals() as stop:
            notifier.run(stop, interval)
        click.echo(f"stopped; published {notifier.published} recall notices", err=True)
    finally:
        publisher.stop()
        outgoing.queue.stop()
    sys.stdout.flush()


@click.group("notify", cls=DefaultGroup, default="run")
def command() -> None:
    """Recall notices: publish them on MQTT and send them to subscribers
    (`notify run`, also `notify --broker …`); manage who gets them by webhook
    and e-mail (`notify subscribe`, `notify subscriptions`).

    Example: provenance notify --broker mqtt://127.0.0.1:1883
    """


command.add_command(run)
command.add_command(subscribe_command)
command.add_command(subscriptions_command)
