"""`provenance product stability`: sign a product's stability profile;
`provenance product show`: the profile in force (docs/coldchain.md, "Stability
budget"; docs/protocol.md §3).

The options are parsed here into a `stability` event's data; the kind's schema
(`provenance.core.kinds`) and the ledger (who may sign: a party holding the GTIN's
company prefix) decide the rest, and their errors come back as `Error: …`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.core import gs1
from provenance.core.kinds import validate_data
from provenance.domain.stability import VVM_CATEGORIES
from provenance.ledger.stability import profile_in_force

_UNSIGNED = r"[0-9]+(?:\.[0-9]+)?"
_NUMBER = rf"[-+]?{_UNSIGNED}"
_BAND = re.compile(rf"({_NUMBER})\.\.({_NUMBER})=(.+)")
_DURATION = re.compile(rf"({_UNSIGNED})\s*(min|h|d)")
_UNITS_H = {"min": 1 / 60, "h": 1.0, "d": 24.0}


def hours_of(text: str, option: str) -> float:
    """`30d`, `12h`, `90min` (or a bare number of hours) as hours."""
    value = text.strip()
    if re.fullmatch(_UNSIGNED, value):
        return float(value)
    found = _DURATION.fullmatch(value)
    if found is None:
        raise click.BadParameter(
            f"{text!r} is not a duration: write it as 30d, 12h or 90min", param_hint=option
        )
    return float(found.group(1)) * _UNITS_H[found.group(2)]


def band_of(text: str) -> dict[str, float]:
    """`2..8=30d` as a band: up to 30 days in all at 2–8 °C."""
    found = _BAND.fullmatch(text.strip())
    if found is None:
        raise click.BadParameter(
            f"{text!r} is not a band: write LOW..HIGH=DURATION, e.g. 2..8=30d or -25..-15=180d",
            param_hint="--band",
        )
    return {
        "low_c": _number(found.group(1)),
        "high_c": _number(found.group(2)),
        "hours": hours_of(found.group(3), "--band"),
    }


def _number(text: str) -> float:
    value = float(text)
    return int(value) if value.is_integer() else value


@click.group()
def product() -> None:
    """Products (GTINs): their stability profiles."""


@product.command("stability")
@click.option("--gtin", required=True, help="The product's GTIN (8, 12, 13 or 14 digits).")
@click.option("--as", "as_", help="The producing party's name (or give its --key FILE).")
@click.option(
    "--band",
    "bands",
    multiple=True,
    metavar="LOW..HIGH=DURATION",
    help="Time allowed in all at LOW–HIGH °C, e.g. 2..8=30d, 8..25=12h (repeatable).",
)
@click.option(
    "--activation-energy",
    type=float,
    help="Arrhenius: activation energy in kJ/mol (83.144 is USP's default for MKT).",
)
@click.option("--reference", type=float, help="Arrhenius: the reference temperature in °C.")
@click.option("--reference-life", help="Arrhenius: the whole budget at --reference, e.g. 30d.")
@click.option(
    "--vvm",
    type=click.Choice(list(VVM_CATEGORIES)),
    help="Heat exposure as a WHO vaccine vial monitor of this category.",
)
@click.option("--source", help="Where the figures come from, e.g. 'SmPC section 6.3, 2024-05'.")
@click.option("--time", "time_", help="Time of the event (RFC 3339 UTC); default now.")
@click.option("--json", "as_json", is_flag=True, help="Print the signed profile's data as JSON.")
@KEY_OPTION
@pass_context
@friendly
def product_stability(
    ctx: Context,
    gtin: str,
    as_: str | None,
    bands: tuple[str, ...],
    activation_energy: float | None,
    reference: float | None,
    reference_life: str | None,
    vvm: str | None,
    source: str | None,
    time_: str | None,
    as_json: bool,
    key_file: str | None,
) -> None:
    """Sign a product's stability profile: how long it stays good at which
    temperature, by bands as manufacturers publish them, Arrhenius, a WHO VVM
    category, or several (the most spent one decides). Only a party holding the
    GTIN's GS1 company prefix may sign it; the newest profile is in force.

    Example: provenance product stability --gtin 09506000134352 --as Farm
    --band 2..8=30d --band 8..25=12h --source "SmPC 6.3"

    Arrhenius: … --activation-energy 83.144 --reference 5 --reference-life 30d
    """
    gtin14 = gs1.normalize_gtin(gtin, field="--gtin")
    data: dict[str, Any] = {"gtin": gtin14}
    if bands:
        data["bands"] = [band_of(text) for text in bands]
    arrhenius = (activation_energy, reference, reference_life)
    if any(value is not None for value in arrhenius):
        if any(value is None for value in arrhenius):
            raise click.UsageError(
                "Arrhenius needs all three of --activation-energy, --reference and "
                "--reference-life (e.g. 83.144, 5 and 30d)"
            )
        data["arrhenius"] = {
            "activation_kj_mol": activation_energy,
            "reference_c": reference,
            "hours": hours_of(reference_life or "", "--reference-life"),
        }
    if vvm:
        data["vvm"] = vvm
    if source:
        data["source"] = source
    if len(data) == 1 + bool(source):
        raise click.UsageError(
            "say how long it keeps: --band LOW..HIGH=DURATION, the Arrhenius options, "
            "or --vvm (e.g. --band 2..8=30d)"
        )
    validate_data("stability", data, None)  # its own words before a key is opened
    key = signing_key(ctx, as_, key_file)
    result = append_signed(ctx.ledger(), key, "stability", None, data, time=time_)
    if as_json:
        click.echo(json.dumps({"event": result.event_id, "data": data}, ensure_ascii=False))
    else:
        click.echo(f"{result.event_id}  stability profile of {gtin14} signed")


@product.command("show")
@click.option("--gtin", required=True)
@pass_context
@friendly
def product_show(ctx: Context, gtin: str) -> None:
    """Print the stability profile in force for a product, as JSON.

    Example: provenance product show --gtin 09506000134352
    """
    gtin14 = gs1.normalize_gtin(gtin, field="--gtin")
    found = profile_in_force(ctx.reader(), gtin14)
    if found is None:
        raise click.ClickException(
            f"no stability profile for {gtin14}: its maker signs one with "
            "`provenance product stability`"
        )
    click.echo(
        json.dumps(
            {
                "gtin": gtin14,
                "event": found.event_id,
                "signer": {"did": found.signer, "name": found.signer_name},
                "time": found.time,
                "versions": found.versions,
                "model": found.model.to_json(),
            },
            ensure_ascii=False,
            indent=2,
        )
    )
