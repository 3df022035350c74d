"""`provenance log witness`: collect witness cosignatures of the log's checkpoints
at a fixed cadence (provenance/services/witnessing.py).

Registered lazily in `provenance.cli.main`'s `log` group. Exit status: 0 after a
clean stop (SIGTERM/SIGINT), 1 when it cannot run, 2 usage error.
"""

from __future__ import annotations

import logging

import click

from provenance.cli.context import Context, pass_context
from provenance.cli.errors import friendly
from provenance.cli.service_options import stop_on_signals
from provenance.core.errors import ValidationError
from provenance.services.witnessing import (
    CADENCE_S,
    REQUEST_TIMEOUT_S,
    WitnessingService,
    parse_witness,
)
from provenance.store.cosignatures import configure_witnesses, configured_witnesses


@click.command("witness")
@click.option(
    "--witness",
    "witnesses",
    multiple=True,
    metavar="NAME=URL=VKEY",
    help="A witness: its name (as the scan page shows it), its submission prefix "
    "(http:// or https://, no '='), and its cosignature/v1 verifier key. Repeat for "
    "each. Given: replaces the configured set; omitted: the configured set is used.",
)
@click.option(
    "--every",
    type=click.FloatRange(min=0.1),
    default=CADENCE_S,
    show_default=True,
    help="Seconds between witnessing rounds (the cadence).",
)
@click.option(
    "--quorum",
    type=click.IntRange(min=1),
    help="How many witnesses must cosign a checkpoint before it is shown (default: all).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=REQUEST_TIMEOUT_S,
    show_default=True,
    help="Seconds to wait for a witness's answer.",
)
@pass_context
@friendly
def command(
    ctx: Context,
    witnesses: tuple[str, ...],
    every: float,
    quorum: int | None,
    timeout: float,
) -> None:
    """Submit the newest checkpoint to every witness at the cadence, with a
    consistency proof from the size each last cosigned; keep each verified
    cosignature. The log then shows (/log/v1/checkpoint, the retained MQTT
    checkpoint, bundles) the newest checkpoint the quorum cosigned. Runs until
    SIGTERM or Ctrl-C; a witness that is down only delays its own cosignature.

    Example: provenance --db ledger.db log witness --every 10
    --witness regulator=http://127.0.0.1:7380=regulator.example/w+1a2b3c4d+BA…
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        rows = [parse_witness(text) for text in witnesses]
    except ValidationError as exc:
        raise click.BadParameter(exc.rule, param_hint="--witness") from None
    names = [row.name for row in rows]
    if len(set(names)) != len(names):
        raise click.BadParameter("two witnesses share a name", param_hint="--witness")
    store = ctx.store()
    if rows:
        if quorum is not None and quorum > len(rows):
            raise click.BadParameter(
                f"{quorum} is more than the {len(rows)} witnesses given", param_hint="--quorum"
            )
        configure_witnesses(store, rows, quorum or len(rows))
    else:
        rows = configured_witnesses(store)
        if not rows:
            raise click.ClickException(
                "no witnesses configured: give at least one --witness NAME=URL=VKEY"
            )
        if quorum is not None:
            if quorum > len(rows):
                raise click.BadParameter(
                    f"{quorum} is more than the {len(rows)} configured witnesses",
                    param_hint="--quorum",
                )
            configure_witnesses(store, rows, quorum)
    service = WitnessingService(ctx.db_location, every, timeout=timeout)
    click.echo(f"witnessing every {every:g}s with {', '.join(r.name for r in rows)}", err=True)
    with stop_on_signals() as stop:
        service.run(stop)
    total = sum(w.stats.cosigned for w in service.workers)
    click.echo(f"stopped; {total} cosignatures collected", err=True)
