"""`provenance recall ack URI --as PARTY --recall EVENT_ID`: a holder's signed
acknowledgement of a recall, with what it returned and destroyed; and
`provenance recall report RECALL`: per holder of every lot the recall reached,
whether it was notified, when it acknowledged, what came back and what is
still out (docs/lineage.md, "Recall acknowledgements").

Exit status: 0 done, 1 refused (the reason is printed) or not found, 2 usage error.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.keys import KEY_OPTION
from provenance.cli.options import json_object_option
from provenance.core.errors import ValidationError
from provenance.core.kinds import QUANTITY
from provenance.infra.delivery_record import default_delivery_log, notified_parties
from provenance.ledger.lineage import active_recalls
from provenance.ledger.recall_report import HolderLine, RecallEffectiveness, recall_report


class QuantityType(click.ParamType):
    """A quantity as `VALUE UNIT`, e.g. `30 KGM` or `12EA` (UN/CEFACT Rec 20 unit)."""

    name = "QUANTITY"

    def convert(self, value: Any, param: Any, ctx: Any) -> dict[str, Any]:
        if isinstance(value, dict):
            return value
        match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z0-9]{2,3})\s*", str(value))
        if match is None:
            self.fail(f"{value!r} is not a quantity: give VALUE UNIT, e.g. '30 KGM'", param, ctx)
        number = float(match.group(1))
        quantity = {"value": int(number) if number.is_integer() else number}
        quantity["unit"] = match.group(2).upper()
        try:
            QUANTITY(quantity, param.name if param else "quantity")
        except ValidationError as exc:
            self.fail(str(exc), param, ctx)
        return quantity


@click.command("ack")
@click.argument("uri", metavar="URI")
@click.option("--as", "as_", required=True, metavar="PARTY", help="The holder's name.")
@click.option(
    "--recall",
    "recall_id",
    metavar="EVENT_ID",
    help="The recall's event id (the notice shows it); default: the newest in force on the lot.",
)
@click.option("--returned", type=QuantityType(), help="Returned since the last acknowledgement.")
@click.option("--destroyed", type=QuantityType(), help="Destroyed since the last one.")
@click.option("--notes", metavar="TEXT", help="Anything the regulator should know.")
@json_object_option
@KEY_OPTION
@pass_context
@friendly
def ack(
    ctx: Context,
    uri: str,
    as_: str,
    recall_id: str | None,
    returned: dict[str, Any] | None,
    destroyed: dict[str, Any] | None,
    notes: str | None,
    as_json: bool,
    key_file: str | None,
) -> None:
    """Acknowledge the recall EVENT_ID (default: the newest in force) of lot URI
    as PARTY, a holder of the lot (now or before), signed; with what was
    returned or destroyed since the last acknowledgement. Send one again as
    more comes back.

    Example: provenance recall ack https://id.gs1.org/01/09506000134352/10/LOT42 --as "Corner
    Shop" --recall 3f…a9 --returned "12 KGM" --destroyed "3 KGM"
    """
    if recall_id is None:
        in_force = active_recalls(ctx.store(), uri)
        if not in_force:
            raise click.ClickException(f"{uri} is not recalled: there is nothing to acknowledge")
        recall_id = in_force[-1].event_id
    data: dict[str, Any] = {"recall": recall_id.strip().lower()}
    for name, value in (("returned", returned), ("destroyed", destroyed), ("notes", notes)):
        if value is not None:
            data[name] = value
    key = signing_key(ctx, as_, key_file)
    result = append_signed(ctx.ledger(), key, "recall-ack", [uri], data, source="cli")
    if as_json:
        out = {"kind": "recall-ack", "event_id": result.event_id, "log_index": result.index}
        click.echo(json.dumps(out | {"lot": uri, "data": data}, ensure_ascii=False, indent=1))
        return
    said = [
        f"{word} {value['value']:g} {value['unit']}"
        for word, value in (("returned", returned), ("destroyed", destroyed))
        if value
    ]
    click.echo(
        f"acknowledged recall {data['recall'][:12]}… of {uri}"
        + (f" ({', '.join(said)})" if said else "")
        + f"; event {result.event_id} at log index {result.index}"
    )


@click.command("report")
@click.argument("ref", metavar="RECALL")
@click.option(
    "--deliveries",
    type=click.Path(dir_okay=False),
    help="The notifier's delivery record (default DB.notify-deliveries.jsonl): who was notified.",
)
@json_object_option
@pass_context
@friendly
def report(ctx: Context, ref: str, deliveries: str | None, as_json: bool) -> None:
    """The report of recall RECALL (its event id, or a recalled lot's URI: its
    newest recall in force): per holder of each lot it reached, notified,
    acknowledged when, returned, destroyed and still out.

    Example: provenance recall report https://id.gs1.org/01/09506000134352/10/LOT42 --json
    """
    path = Path(deliveries) if deliveries else default_delivery_log(ctx.db_path)
    result = recall_report(
        ctx.store(), ref, notified=lambda event_id: notified_parties(path, event_id)
    )
    if as_json:
        click.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=1))
        return
    for line in report_lines(result):
        click.echo(line)


def report_lines(result: RecallEffectiveness) -> list[str]:
    """The report as text, one holder a line."""
    recall = result.recall
    out = [
        f"recall {recall.event_id} · class {recall.recall_class} · {recall.time} · "
        f"{recall.regulator.name}: {recall.reason}" + ("" if recall.active else " · LIFTED"),
    ]
    for lot in result.lots:
        through = f" (through {lot.through})" if lot.through else ""
        out.append(f"{lot.uri} · {lot.product}{through}")
        for line in lot.holders:
            out.append("  " + _holder(line))
    totals = result.totals()
    recovered = ", ".join(f"{q['value']:g} {q['unit']}" for q in totals["recovered"]) or "nothing"
    still = ", ".join(f"{q['value']:g} {q['unit']}" for q in totals["still_out"]) or "nothing known"
    out.append(
        f"{totals['acknowledged']} of {totals['holders']} holders acknowledged; recovered "
        f"{recovered}; still out {still}"
        + (
            f" ({totals['still_out_unknown']} holders' quantity unknown)"
            if totals["still_out_unknown"]
            else ""
        )
    )
    return out


def _q(value: Any) -> str:
    return "unknown" if value is None else str(value)


def _holder(line: HolderLine) -> str:
    state = "holds it" if line.holds_now else "in transit to it" if line.in_transit else "held it"
    words = [f"{line.party.name} ({line.party.role or '?'}, {state})"]
    words.append(f"notified {line.notified}" if line.notified else "not notified")
    words.append(
        f"acknowledged {line.acknowledged} ({len(line.acks)})"
        if line.acknowledged
        else "NOT ACKNOWLEDGED"
    )
    words.append(f"returned {_q(line.returned) if line.returned else 0}")
    words.append(f"destroyed {_q(line.destroyed) if line.destroyed else 0}")
    words.append(f"still out {_q(line.still_out)}")
    return " · ".join(words)
