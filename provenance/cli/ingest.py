"""`provenance ingest`: run the MQTT ingest service until SIGTERM or SIGINT.

The command is listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run).
Exit status: 0 after a clean stop (SIGTERM/SIGINT: in-flight messages were
committed and acknowledged), 1 when it cannot run (no ledger, bad key, the
broker refused our subscriptions…), 2 on a usage error, 3 when the broker
refused our credentials. `--ready-file PATH` tells a supervisor (or the demo)
when it is subscribed: see `ReadyFile`.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from provenance.cli.context import LOG_KEY, Context
from provenance.cli.inputs import check_tls_ca
from provenance.cli.mqtt_options import broker_options, parse_broker
from provenance.core.errors import ProvenanceError
from provenance.core.signing import did_of
from provenance.core.timefmt import format_time, now_micros
from provenance.ingest.errors import CredentialsRefused
from provenance.ingest.service import STOP_TIMEOUT_S, IngestService, IngestStats

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CREDENTIALS = 3
PROGRESS_EVERY_S = 10.0
WAKE_EVERY_S = 0.1  # how soon the main loop notices a signal


@click.command("ingest")
@broker_options
@click.option(
    "--shared-group",
    metavar="NAME",
    help="Share the work with other ingest processes of this group (MQTT 5 $share/NAME/…); "
    "give each its own --client-id. An envelope whose lot, shipment or attachment another "
    "node is still committing waits for it up to 2 s.",
)
@click.option(
    "--mqtt-version",
    type=click.Choice(["auto", "5", "3.1.1"]),
    default="auto",
    show_default=True,
    help="auto: MQTT 5 when the broker speaks it. 3.1.1 costs less per message (no "
    "properties to parse) but loses the broker's flow control by Receive Maximum and the "
    "publish-to-commit latency of `sent_at`; shared groups need 5 (docs/ingest.md).",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    metavar="N",
    help="Serve Prometheus metrics on http://127.0.0.1:N/metrics.",
)
@click.option(
    "--client-id",
    metavar="ID",
    help="MQTT client id; the broker keeps our session under it (default: per host).",
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="PATH",
    help="Once connected and subscribed, write JSON {pid, broker, topics, started} here "
    "(atomically); removed when the command exits.",
)
@click.option(
    "--tiles",
    "tiles",
    type=click.Path(file_okay=False),
    metavar="DIR",
    help="Also write the log as C2SP tlog-tiles into DIR, caught up after commits "
    "(publish DIR with any static web server).",
)
@click.pass_context
def command(
    click_ctx: click.Context,
    broker_url: str,
    username: str | None,
    password: str | None,
    tls_ca: str | None,
    shared_group: str | None,
    mqtt_version: str,
    metrics_port: int | None,
    client_id: str | None,
    ready_file: Path | None,
    tiles: str | None,
) -> None:
    """Append what devices, gateways and parties publish over MQTT to the ledger.

    Subscribes to provenance/v1/{gateways,devices,parties}/+/events with a
    persistent session, commits in groups and acknowledges each message only
    after its commit; refusals are stored and published on the publisher's
    rejects topic. Stops cleanly on SIGTERM or Ctrl-C (exit 0); exits 3 when
    the broker refuses the credentials.

    Example: provenance ingest --broker mqtt://127.0.0.1:1883 --metrics-port 9108
    """
    ctx = click_ctx.find_object(Context)
    if ctx is None:
        raise click.UsageError("run it as `provenance [--db PATH] [--keys DIR] ingest …`")
    _configure_logging()
    broker = parse_broker(broker_url, tls_ca)
    check_tls_ca(tls_ca)
    if ready_file is not None and not ready_file.parent.is_dir():
        message = f"{ready_file.parent} is not a folder"
        raise click.BadParameter(message, param_hint="--ready-file")
    try:
        store = ctx.store()
        log_key = ctx.root_keys.load(LOG_KEY)
        if store.get_meta("log_key") != did_of(log_key):
            raise click.ClickException(
                f"{ctx.keys_dir}/{LOG_KEY}.pem is not the log key of {ctx.db_shown}: "
                "use the --keys folder the ledger was made with"
            )
        follower = None  # its folder made before the service, which may start processes
        if tiles is not None:
            from provenance.infra.tile_files import TileDirectory
            from provenance.ledger.tiles import TileFollower

            follower = TileFollower(ctx.db_path, TileDirectory(tiles))
        service = IngestService(
            db_path=ctx.db_location,
            log_key=log_key,
            broker=broker,
            username=username,
            password=password,
            tls_ca=tls_ca,
            shared_group=shared_group,
            client_id=client_id,
            protocol=mqtt_version,
        )
    except ProvenanceError as exc:
        raise click.ClickException(str(exc)) from exc
    server = None
    if metrics_port is not None:
        from provenance.ingest.metrics import serve

        try:
            server = serve(service.metrics, metrics_port)
        except OSError as exc:
            message = f"cannot serve metrics on port {metrics_port}: {exc}"
            raise click.ClickException(message) from None
    if follower is not None:
        follower.start()
    try:
        code = run(service, ready_file)
    finally:
        if follower is not None:
            follower.stop()  # one last round: the tiles end at the last commit
        if server is not None:
            server.close()
    if code != EXIT_OK:
        click.echo(f"Error: {service.error}", err=True)
    sys.exit(code)


def run(service: IngestService, ready_file: Path | None = None) -> int:
    """Run *service* until SIGTERM/SIGINT or a fatal error; the exit status.
    With *ready_file*: see `ReadyFile`."""
    signalled: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        signalled.append(signum)  # no locks in a signal handler: the main loop notices

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    ready = ReadyFile(ready_file, service) if ready_file is not None else None
    try:
        if ready is not None:
            ready.clear()  # a stale one (a killed run) must not say we are ready
        service.start()
        last: IngestStats | None = None
        next_progress = time.monotonic() + PROGRESS_EVERY_S
        while not signalled and not service.stopping.is_set():
            service.stopping.wait(WAKE_EVERY_S)
            if ready is not None and not ready.written and service.ready.is_set():
                ready.write()
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                now = service.stats()
                if now != last:
                    log.info("ingest: %s", _progress(now, last))
                last = now
        if signalled:
            log.info("ingest: %s: finishing what is in flight", signal.Signals(signalled[0]).name)
        service.stop(STOP_TIMEOUT_S)
    finally:
        if ready is not None:
            ready.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if isinstance(service.error, CredentialsRefused):
        return EXIT_CREDENTIALS
    return EXIT_ERROR if service.error is not None else EXIT_OK


class ReadyFile:
    """`--ready-file`: written (temp file + rename, so a reader never sees half
    of it) once the service is connected and subscribed, removed on exit.

        {"pid": 4242, "broker": "mqtt://127.0.0.1:1883",
         "topics": ["provenance/v1/gateways/+/events", …], "started": "2026-11-22T10:15:00.123456Z"}

    It says the service came up; whether it is connected now is the metric
    `provenance_ingest_connected`. A kill -9 leaves it behind: check its pid.
    """

    def __init__(self, path: Path, service: IngestService):
        self.path = path
        self.service = service
        self.started = format_time(now_micros())
        self.written = False

    def write(self) -> None:
        content = {
            "pid": os.getpid(),
            "broker": str(self.service.broker),
            "topics": list(self.service.filters),
            "started": self.started,
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(content) + "\n")
            os.replace(temporary, self.path)
        except OSError as exc:
            log.error("ingest: cannot write the ready file %s: %s", self.path, exc)
            temporary.unlink(missing_ok=True)
        self.written = True  # once: a failure is logged, not retried every tick

    def clear(self) -> None:
        try:
            self.path.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("ingest: cannot remove the ready file %s: %s", self.path, exc)


def _progress(now: IngestStats, last: IngestStats | None) -> str:
    rate = (now.accepted - (last.accepted if last else 0)) / PROGRESS_EVERY_S
    rejected = ", ".join(f"{reason} {n}" for reason, n in sorted(now.rejected.items()))
    return (
        f"{now.accepted} accepted ({rate:,.0f}/s), {now.duplicates} duplicates, "
        f"{now.rejected_total} rejected{f' ({rejected})' if rejected else ''}, "
        f"{now.in_flight} in flight, {'connected' if now.connected else 'NOT connected'}"
        f"{f' (MQTT {now.protocol})' if now.protocol else ''}"
    )


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            format="%(asctime)s %(levelname)s %(message)s",
            stream=sys.stderr,
        )
