"""`provenance trace URI`: a lot's lineage, back to its origins and forward to
everything made from it, with who holds each lot now.

Listed in `provenance.cli.main.SERVICE_COMMANDS` (imported when first run). Exit status: 0
traced, 1 unknown lot or bad input, 2 usage error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

from provenance.cli.context import Context, pass_context
from provenance.cli.errors import friendly
from provenance.domain.holdings import LotHoldings
from provenance.exchange.places import Registry, describe_location, nowhere, store_registry
from provenance.ledger.lineage import BACK, BOTH, DIRECTIONS, FORWARD, Trace, TracedLot, trace
from provenance.ledger.pallet_view import describe_units, open_pallets
from provenance.store import places as place_store

if TYPE_CHECKING:
    from provenance.store.db import Store


@dataclass(frozen=True)
class Places:
    """How a trace names places and parties by GS1 key (docs/protocol.md §15): the
    places registry, and a party's PGLN by did."""

    registry: Registry = nowhere
    pgln: Callable[[str], str | None] = lambda _did: None


def _store_places(store: Store) -> Places:
    def pgln(did: str) -> str | None:
        identity = store.identity_by_did(did)
        return place_store.party_details(store, identity.id).pgln if identity else None

    return Places(store_registry(store), pgln)


INDENT = "   "


@click.command("trace")
@click.argument("uri")
@click.option(
    "--direction",
    type=click.Choice(DIRECTIONS),
    default=BOTH,
    show_default=True,
    help="back: where it came from; forward: what was made from it.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a tree.")
@pass_context
@friendly
def command(ctx: Context, uri: str, direction: str, as_json: bool) -> None:
    """Trace lot URI through transforms: its origins, every lot made from it,
    and for each who holds it now, where, how much, and whether it is recalled.

    Example: provenance trace https://id.gs1.org/01/09506000134352/10/LOT42 --direction forward
    """
    store = ctx.reader()
    result = trace(store, uri, direction)
    units = open_pallets(store, list(result.lots))  # docs/protocol.md, "Pallets and cases"
    if as_json:
        out = result.to_json() | {"pallets": units}
        click.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for line in render(result, _store_places(store)):
        click.echo(line)
    if units:
        click.echo("")
        click.echo("on cases and pallets now:")
        for lot_uri, found in units.items():
            click.echo(f"{INDENT}{_short(lot_uri)} {describe_units(found)}")


def render(result: Trace, places: Places = Places()) -> Iterator[str]:
    """The trace as a readable tree: upstream (←) and downstream (→) of the lot.
    A lot reached twice (a diamond) is shown in full once and named after."""
    yield describe(result.lot, places)
    yield from who_holds(result.lot.holdings)
    if result.direction in (BACK, BOTH):
        parents = result.lot.parents
        origins = ", ".join(_short(uri) for uri in result.origins) or "none"
        yield ""
        if not parents:
            yield "made from: nothing (commissioned, not made from other lots)"
        else:
            yield f"made from ({len(result.upstream)} lots upstream; origins: {origins})"
        yield from _branch(result, parents, up=True, prefix=INDENT, seen=set(), places=places)
    if result.direction in (FORWARD, BOTH):
        children = result.lot.children
        yield ""
        if not children:
            yield "went into: nothing yet"
        else:
            yield f"went into ({len(result.downstream)} lots downstream)"
        yield from _branch(result, children, up=False, prefix=INDENT, seen=set(), places=places)


def _branch(
    result: Trace,
    uris: tuple[str, ...],
    *,
    up: bool,
    prefix: str,
    seen: set[str],
    places: Places,
) -> Iterator[str]:
    for position, uri in enumerate(uris):
        last = position == len(uris) - 1
        lot = result.lots[uri]
        arrow = "←" if up else "→"
        joint = "└─ " if last else "├─ "
        if uri in seen:
            yield f"{prefix}{joint}{arrow} {_short(uri)} (shown above)"
            continue
        seen.add(uri)
        yield f"{prefix}{joint}{arrow} {describe(lot, places)}"
        deeper = prefix + ("   " if last else "│  ")
        yield from _branch(
            result,
            lot.parents if up else lot.children,
            up=up,
            prefix=deeper,
            seen=seen,
            places=places,
        )


def _short(uri: str) -> str:
    """GTIN/lot, enough to tell lots apart on a terminal."""
    parts = uri.split("/")
    return f"{parts[-3]}/{parts[-1]}" if len(parts) >= 4 else uri


def who_holds(held: LotHoldings | None) -> Iterator[str]:
    """Who holds how much of the lot now, what is in transit to whom, what
    each dispensed or used, and every shipment received short or damaged."""
    if held is None or not held.movements:
        return  # never shipped: the line above says it all
    yield ""
    yield "who holds how much now:"
    for holder in held.holders:
        party = holder.party.name + (f" ({holder.party.role})" if holder.party.role else "")
        words = [f"holds {held.text(holder.held)}"]
        for out in holder.shipments:
            words.append(f"{held.text(out.quantity)} of it in transit to {out.receiver.name}")
        if holder.dispensed:
            words.append(f"dispensed {held.text(holder.dispensed)}")
        if holder.used:
            words.append(f"used {held.text(holder.used)} in transforms")
        yield f"{INDENT}{party}: " + ", ".join(words)
    for move in held.movements:
        if move.received is not None and (move.shortfall or move.damaged):
            yield (
                f"{INDENT}{move.sender.name} → {move.receiver.name}: shipped "
                f"{held.text(move.shipped)}, received {held.text(move.received)}, damaged "
                f"{held.text(move.damaged or 0)}, short {held.text(move.shortfall)}"
            )


def describe(lot: TracedLot, places: Places = Places()) -> str:
    """One line: the lot, its product, who holds it (with its PGLN), where (a
    place's name, address and GLN) and how much."""
    words = [f"{_short(lot.uri)} {lot.product}"]
    current = lot.holdings.current if lot.holdings is not None else ()
    if len(current) > 1 and lot.holdings is not None:
        shares = ", ".join(f"{h.party.name} {lot.holdings.text(h.held)}" for h in current)
        holder = f"held by {shares}"
    else:
        holder = f"held by {lot.custodian.name}"
        if lot.custodian.role:
            holder += f" ({lot.custodian.role})"
        pgln = places.pgln(lot.custodian.did)
        if pgln:
            holder += f", GLN {pgln}"
        if lot.in_transit_to is not None:
            holder += f", in transit to {lot.in_transit_to.name}"
    words.append(holder)
    if lot.location and (lot.location.get("name") or lot.location.get("gln")):
        words.append(f"last seen at {describe_location(lot.location, places.registry)}")
    if lot.registered is not None:
        if lot.held is not None:
            words.append(f"{lot.held} of {lot.registered} left")
        else:
            words.append(f"{lot.registered} registered")
    line = " · ".join(words)
    return line + "  RECALLED" if lot.recalled else line
