"""`provenance simulate`: enrol a scenario's parties and gateways through the
registrar, then run the fleet simulator (simulator/fleet.py) against a broker."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import click

from provenance.cli.main import Context, friendly, key_name, pass_context, registrar_sign
from provenance.core.identity import COMMISSIONING_ROLES
from provenance.core.kinds import CUSTODIAL_FIELD, PREFIXES_FIELD


def enrol_plan(ctx: Context, scenario: Any, gateways: int, devices: int, run_id: str) -> Any:
    """Enrol (once) every party and gateway the plan needs; returns the plan."""
    from simulator.fleet import plan

    store = ctx.store()

    def party_key(name: str) -> Any:
        key = ctx.party_keys.load_or_create(key_name(name))
        if store.identity_by_name("party", name) is None:
            from provenance.core.signing import did_of

            role = next(s.role for s in scenario.stages if s.party == name)
            data = {"subject": did_of(key), "type": "party", "name": name, "role": role}
            data[CUSTODIAL_FIELD] = True  # its key is made and kept here, by the operator
            if role in COMMISSIONING_ROLES:  # it may commission the scenario's GTIN
                data[PREFIXES_FIELD] = [scenario.company_prefix]
            registrar_sign(ctx, "enrol", data)
        return key

    made = plan(
        scenario,
        gateways=gateways,
        devices=devices,
        party_key=party_key,
        gateway_key=lambda gid: ctx.device_keys.load_or_create(key_name(gid)),
        run_id=run_id,
    )
    from provenance.core.signing import did_of

    for spec in made.gateways:
        if store.identity_by_name("device", spec.gateway_id) is None:
            owner = scenario.stages[spec.stage].party
            registrar_sign(
                ctx,
                "enrol",
                {
                    "subject": did_of(spec.key),
                    "type": "device",
                    "name": spec.gateway_id,
                    "owner": did_of(made.party_keys[owner]),
                },
            )
    return made


@click.command("simulate")
@click.option("--broker", "broker_url", required=True, help="mqtt://HOST:PORT of the broker.")
@click.option(
    "--scenario", type=click.Choice(["produce", "vaccine"]), default="produce", show_default=True
)
@click.option(
    "--gateways",
    type=click.IntRange(1, 500),
    default=5,
    show_default=True,
    help="Simulated gateways (at least one per site of the scenario).",
)
@click.option(
    "--devices",
    type=click.IntRange(1, 100_000),
    default=20,
    show_default=True,
    help="Keyless sensors, spread over the gateways.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.1),
    default=50.0,
    show_default=True,
    help="Readings per second (wall clock), all sensors together.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=60.0,
    show_default=True,
    help="Seconds to run.",
)
@click.option(
    "--accelerate",
    type=click.FloatRange(min=1),
    default=3600.0,
    show_default=True,
    help="Simulated seconds per wall second (3600: an hour a second).",
)
@click.option(
    "--excursions",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Chance that a stage has a temperature excursion.",
)
@click.option(
    "--offline",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Chance that a gateway goes offline during a stage (its outbox fills).",
)
@click.option("--seed", type=int, help="Random seed, for a repeatable run.")
@click.option(
    "--state",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for the gateways' outboxes and seq files (default: beside --db).",
)
@pass_context
@friendly
def command(
    ctx: Context,
    broker_url: str,
    scenario: str,
    gateways: int,
    devices: int,
    rate: float,
    duration: float,
    accelerate: float,
    excursions: float,
    offline: float,
    seed: int | None,
    state: Path | None,
) -> None:
    """Simulate a fleet of gateways and sensors on realistic journeys, publishing
    through the real gateway code to the broker; prints a progress line.

    Example: provenance simulate --broker mqtt://127.0.0.1:1883 --scenario vaccine --rate 100
    """
    from devices.uplink import parse_broker_url
    from simulator.fleet import SCENARIOS, Fleet, lot_uris

    parse_broker_url(broker_url)
    chosen = SCENARIOS[scenario]
    run_id = f"S{int(time.time()):x}".upper()
    made = enrol_plan(ctx, chosen, gateways, devices, run_id)
    folder = state or ctx.db_path.with_name(ctx.db_path.name + ".fleet")
    fleet = Fleet(
        made,
        broker_url,
        folder,
        rate=rate,
        duration=duration,
        accelerate=accelerate,
        excursions=excursions,
        offline=offline,
        seed=seed,
    )
    click.echo(
        f"simulating {len(made.lots)} {chosen.name} journeys through "
        f"{len(made.gateways)} gateways and {sum(len(g.sensors) for g in made.gateways)} "
        f"sensors for {duration:g}s ({duration * accelerate / 3600:.1f} simulated hours)"
    )
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        final = fleet.run(stop, progress=lambda s: click.echo(s.line()))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo(f"done: {final.line()}")
    if final.reject_reasons:
        click.echo(f"rejected by the ledger: {final.reject_reasons}")
    for uri in lot_uris(made):
        click.echo(f"lot {uri}")
