"""`provenance recall URI… --as REGULATOR`: sign a recall (or, with --lift, its
lift) with a regulator's key and append it; print every lot it reached. The
same command is `provenance recall sign`; `recall ack` and `recall report`
(provenance/cli/recall_ack.py) are a holder's acknowledgement and the recall's
report per holder.

A recall cascades: every lot made from a recalled lot, transitively, is
recalled in the same transaction (docs/lineage.md). A lift ends what the named
lots' recalls caused; a lot recalled through another source stays recalled.

Listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run). Exit status: 0
appended, 1 refused (the reason is printed, e.g. `unauthorised` for a signer
who is not a regulator) or unknown lot, 2 usage error.
"""

from __future__ import annotations

import json
from typing import Any

import click

from provenance.cli.context import Context, append_signed, pass_context, signing_key
from provenance.cli.errors import friendly
from provenance.cli.groups import DefaultGroup
from provenance.cli.keys import KEY_OPTION
from provenance.cli.options import json_object_option
from provenance.cli.recall_ack import ack, report
from provenance.ledger.lineage import held
from provenance.ledger.pallet_view import describe_units, open_pallets
from provenance.store.db import Store
from provenance.store.rows import LotState

CLASSES = ("I", "II", "III")
DEFAULT_CLASS = "I"  # the most serious until classified: fail safe


@click.command("sign")
@click.argument("uris", nargs=-1, required=True, metavar="URI...")
@click.option("--as", "as_", required=True, metavar="REGULATOR", help="The regulator's name.")
@click.option("--reason", required=True, metavar="TEXT", help="Why (shown on every scan page).")
@click.option(
    "--class",
    "class_",
    type=click.Choice(CLASSES),
    help=f"Recall class (default {DEFAULT_CLASS}: the most serious until classified).",
)
@click.option("--instructions", metavar="TEXT", help="What holders and consumers should do.")
@click.option("--lift", is_flag=True, help="Lift the recall of these lots instead.")
@json_object_option
@KEY_OPTION
@pass_context
@friendly
def sign(
    ctx: Context,
    uris: tuple[str, ...],
    as_: str,
    reason: str,
    class_: str | None,
    instructions: str | None,
    lift: bool,
    as_json: bool,
    key_file: str | None,
) -> None:
    """Recall lots URI... (and everything made from them), signed by REGULATOR;
    or lift their recall with --lift. Prints every lot affected.

    `provenance recall URI...` is the same command.

    Example: provenance recall https://id.gs1.org/01/09506000134352/10/LOT42 --as "Food Agency"
    --reason "Listeria monocytogenes" --class I --instructions "Do not eat; return to store"
    """
    if lift and (class_ or instructions):
        raise click.UsageError("--class and --instructions belong to a recall, not a lift")
    kind = "recall-lift" if lift else "recall"
    data: dict[str, Any] = {"reason": reason}
    if not lift:
        data["class"] = class_ or DEFAULT_CLASS
        if instructions:
            data["instructions"] = instructions
    key = signing_key(ctx, as_, key_file)
    lots = list(dict.fromkeys(uris))
    result = append_signed(ctx.ledger(), key, kind, lots, data, source="cli")
    assert result.index is not None
    store = ctx.store()
    affected = effects(store, result.index)
    if as_json:
        out = {"kind": kind, "event_id": result.event_id, "log_index": result.index}
        out |= {"class": data.get("class"), "lots": affected}
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    verb = "lifted the recall of" if lift else f"recalled (class {data['class']})"
    click.echo(f"{verb} {len(affected)} lots; event {result.event_id} at log index {result.index}")
    for item in affected:
        click.echo("  " + _line(item, lift))


def effects(store: Store, event_index: int) -> list[dict[str, Any]]:
    """Each lot a recall (or lift) at *event_index* reached: the lot, the named lot
    it came through, who holds it, how much, and whether it is recalled now."""
    with store.snapshot():
        rows = store.recall_effects(event_index)
        ids = sorted({lot for lot, _ in rows} | {source for _, source in rows})
        states = {state.id: state for state in store.lot_states(ids)}
        sources: dict[int, list[str]] = {}
        for lot, source in rows:
            sources.setdefault(lot, []).append(states[source].uri)
        found = [_effect(states[lot], sorted(names)) for lot, names in sorted(sources.items())]
        # The cases and pallets each lot is on (docs/protocol.md, "Pallets and cases").
        units = open_pallets(store, [item["uri"] for item in found])
        for item in found:
            item["pallets"] = units.get(item["uri"], [])
        return found


def _effect(state: LotState, sources: list[str]) -> dict[str, Any]:
    remaining = held(state)
    return {
        "uri": state.uri,
        "product": state.product,
        "through": [uri for uri in sources if uri != state.uri],
        "direct": state.uri in sources,
        "custodian": {
            "did": state.custodian_did,
            "name": state.custodian_name,
            "role": state.custodian_role,
        },
        "location": state.location,
        "held": None if remaining is None else remaining.to_json(),
        "recalled": state.recalled,
    }


def _line(item: dict[str, Any], lift: bool) -> str:
    words = [item["uri"], item["product"], f"held by {item['custodian']['name']}"]
    if item["held"] is not None:
        words.append(f"{item['held']['value']:g} {item['held']['unit']}")
    if item["through"]:
        words.append("through " + ", ".join(item["through"]))
    if item.get("pallets"):
        words.append(describe_units(item["pallets"]))
    if lift and item["recalled"]:
        words.append("STILL RECALLED through another recall")
    return " · ".join(words)


@click.group("recall", cls=DefaultGroup, default="sign")
def command() -> None:
    """Recalls: sign one (`recall URI... --as REGULATOR`, the same as `recall sign`),
    acknowledge one as a holder (`recall ack`), or report who acknowledged, what
    came back and what is still out (`recall report`).

    Example: provenance recall report https://id.gs1.org/01/09506000134352/10/LOT42
    """


command.add_command(sign)
command.add_command(ack)
command.add_command(report)
