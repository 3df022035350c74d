"""A `LotView` as JSON: the page's twin, the recall status, and the RFC 9264
linkset a GS1 resolver answers with. Pure functions of the view."""

from __future__ import annotations

from typing import Any

from provenance.core.timefmt import format_time
from provenance.domain.coldchain_excursions import Excursion
from provenance.domain.coldchain_life import LifeVerdict
from provenance.domain.custody import Party, Step
from provenance.domain.holdings import number
from provenance.ledger.lot_model import NOTES, Ingredient, LegRecord, LotView
from provenance.ledger.stability import LotStability

# Link relation types of the GS1 Web Vocabulary that this resolver serves.
GS1_VOC = "https://gs1.org/voc/"
PAGE_LINK = "gs1:pip"  # product information page: the consumer page
# Our own relation (RFC 8288 §2.1.2: an extension relation type is a URI), in
# the project's w3id.org namespace like the EPCIS extensions (docs/epcis.md).
BUNDLE_RELATION = "https://w3id.org/provenance-ledger/rel#proof-bundle"
LINK_TYPES = {
    "gs1:pip": "Product information page",
    "gs1:traceability": "Traceability events (GS1 EPCIS 2.0 JSON-LD)",
    "gs1:recallStatus": "Recall status",
}


def party(value: Party | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"did": value.did, "name": value.name, "role": value.role}


def recall_status(view: LotView) -> dict[str, Any]:
    """`?linkType=gs1:recallStatus`: is the lot recalled, by whom and why
    (its own recalls and those cascaded from lots it was made from)."""
    active = view.active_recalls
    return {
        "lot": view.lot.uri,
        "recalled": view.lot.recalled or bool(active),
        "recalls": [record.to_json() for record in active],
        "history": [record.to_json() for record in view.recalls],
        "checked_at": format_time(view.now_us),
    }


def _step(step: Step, bad: frozenset[str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "kind": step.kind,
        "time": format_time(step.time_us),
        "by": party(step.actor),
        "event_id": step.event_id,
        "log_index": step.index,
        "signature_valid": step.event_id not in bad,
    }
    if step.counterpart:
        out["counterpart"] = party(step.counterpart)
    if step.location:
        out["location"] = step.location
    if step.details:
        out["details"] = step.details
    return out


def _excursion(excursion: Excursion) -> dict[str, Any]:
    return {
        "start": format_time(excursion.start_us),
        "end": format_time(excursion.end_us),
        "duration_s": excursion.duration_us // 1_000_000,
        "direction": excursion.direction,
        "peak_c": excursion.peak_c,
        "readings": excursion.readings,
        "open_start": excursion.open_start,
        "open_end": excursion.open_end,
    }


def _leg(record: LegRecord) -> dict[str, Any]:
    leg = record.leg
    out: dict[str, Any] = {
        "start": format_time(leg.start_us),
        "end": None if leg.end_us is None else format_time(leg.end_us),
        "holder": party(leg.holder),
        "in_transit_to": party(leg.receiver),
        "loggers": [party(p) for p in record.loggers],
        "readings": record.readings,
    }
    status = record.status
    if status is not None:
        out["cold_chain"] = {
            "state": status.state,
            "reasons": list(status.reasons),
            "min_c": status.min_c,
            "max_c": status.max_c,
            "mkt_c": None if status.mkt_c is None else round(status.mkt_c, 2),
            "time_out_of_range_s": status.time_out_of_range_us // 1_000_000,
            "excursions": [_excursion(e) for e in status.excursions],
            "gaps": [[format_time(a), format_time(b)] for a, b in status.gaps],
        }
    return out


def life_json(life: LifeVerdict | None) -> dict[str, Any] | None:
    """The cold chain over the lot's whole life (`coldchain_life.judge_life`): the same
    verdict the headline, the portal and the rules engine use."""
    if life is None:
        return None
    longest = life.longest
    return {
        "state": life.state,
        "profile": life.profile,
        "band": life.band,
        "reasons": list(life.reasons),
        "readings": life.readings,
        "loggers": [record.name for record, _ in life.records],
        "time_out_of_range_s": life.time_out_of_range_us // 1_000_000,
        "longest_excursion": None if longest is None else _excursion(longest),
        "peak_c": None if life.peak is None else life.peak.peak_c,
        "min_c": life.min_c,
        "max_c": life.max_c,
        "mkt_c": None if life.mkt_c is None else round(life.mkt_c, 2),
        "excursions": [_excursion(e) for e in life.excursions],
        "gaps": [[format_time(a), format_time(b)] for a, b in life.gaps],
        "unmonitored_legs": [
            {
                "holder": leg.holder,
                "in_transit_to": leg.receiver,
                "start": format_time(leg.start_us),
                "end": None if leg.end_us is None else format_time(leg.end_us),
            }
            for leg in life.unmonitored_legs
        ],
    }


def _ingredient(ingredient: Ingredient) -> dict[str, Any]:
    """A lot it was made from, as its own page's twin says it (bounded like the page)."""
    sub = ingredient.view
    return {
        "lot": ingredient.uri,
        "product": sub.lot.product,
        "quantity": ingredient.quantity,
        "state": sub.state,
        "reasons": list(sub.reasons),
        "origin": sub.custody.origin.get("origin") or sub.custody.origin.get("location"),
        "producer": party(sub.custody.producer),
        "cold_chain": life_json(sub.life),
        "legs": [_leg(record) for record in sub.legs],
        "ingredients": [_ingredient(deeper) for deeper in sub.ingredients],
        "ingredients_not_shown": sub.ingredients_not_shown,
    }


def lot_json(view: LotView) -> dict[str, Any]:
    """The consumer page's content as JSON (`Accept: application/json`)."""
    lot = view.lot
    integrity = view.integrity
    return {
        "lot": lot.uri,
        "gtin": lot.gtin,
        "batch": lot.lot,
        "product": lot.product,
        "category": lot.category,
        "expiry": view.expiry,
        "profile": view.profile.name if view.profile else None,
        "state": view.state,
        "reasons": list(view.reasons),
        "also": list(view.warnings),
        "origin": view.custody.origin.get("origin") or view.custody.origin.get("location"),
        "producer": party(view.custody.producer),
        "custodian": party(view.custodian),
        "holders": holders_json(view),
        "made_from": list(view.custody.inputs),
        "cold_chain": life_json(view.life),
        "ingredients": [_ingredient(ingredient) for ingredient in view.ingredients],
        "ingredients_not_shown": view.ingredients_not_shown,
        "inherited": [item.to_json() for item in view.inherited],
        "used_in": list(view.custody.outputs),
        "recall": recall_status(view),
        "holds": [hold.to_json() for hold in view.holds],
        "flags": [flag.to_json() for flag in view.flags],
        "notes": [{"note": note, "text": NOTES[note]} for note in view.notes],
        "custody": [_step(step, view.integrity.bad_signatures) for step in view.custody.steps],
        "legs": [_leg(record) for record in view.legs],
        "stability": stability_json(view.stability),
        "integrity": {
            "verified": integrity.verified,
            "events": integrity.events,
            "signatures_valid": integrity.signatures_valid,
            "signatures_vouched": integrity.signatures_vouched,
            "chain_intact": integrity.chain_intact,
            "checkpoint_size": integrity.checkpoint_size,
            "included_in_log": integrity.included,
            "log": integrity.log_origin,
            "problems": list(integrity.problems),
        },
        "checked_at": format_time(view.now_us),
    }


def holders_json(view: LotView) -> list[dict[str, Any]]:
    """Who holds how much of the lot now: one entry per party holding some
    (several once the lot is split across shipments); quantities in the lot's
    unit, or `unit` null when it is counted in wholes."""
    shares = view.holdings
    if shares is None:
        return []
    return [
        {
            "party": party(holder.party),
            "quantity": {"value": number(holder.held), "unit": shares.unit},
            "in_transit": number(holder.in_transit),
        }
        for holder in shares.current
    ]


def stability_json(found: LotStability | None) -> dict[str, Any] | None:
    """A lot's stability budget and the profile it is judged by (docs/coldchain.md,
    "Stability budget"); None when its product states no profile."""
    if found is None:
        return None
    budget, profile = found.budget, found.profile
    limiting = budget.limiting

    def when(time_us: int | None) -> str | None:
        return format_time(time_us) if time_us is not None else None

    return {
        "profile": {
            "event": profile.event_id,
            "signer": {"did": profile.signer, "name": profile.signer_name},
            "time": profile.time,
            "versions": profile.versions,
            "model": profile.model.to_json(),
        },
        "discard": budget.spent,
        "used": round(budget.used, 6),
        "left_pct": budget.left_pct,
        "at_most": bool(budget.gaps),  # time without readings was not counted
        "remaining_hours": (
            round(budget.remaining_us / 3_600_000_000, 3)
            if budget.remaining_us is not None
            else None
        ),
        "storage": limiting.storage if limiting is not None else None,
        "use_by": when(budget.use_by_us),
        "spent_at": when(budget.spent_at_us),
        "as_of": when(budget.last_us),
        "readings": budget.readings,
        "unmonitored_hours": round(budget.unmonitored_us / 3_600_000_000, 3),
        "gaps": [{"from": format_time(a), "to": format_time(b)} for a, b in budget.gaps[:50]],
        "outside": [{"time": format_time(t), "temperature_c": c} for t, c in budget.outside[:50]],
        "parts": [
            {"model": part.name, "used": round(part.used, 6), "storage": part.storage}
            for part in budget.parts
        ],
    }


def linkset(anchor: str, links: dict[str, str], title: str) -> dict[str, Any]:
    """RFC 9264 JSON linkset for *anchor*: one target per GS1 link type."""
    entry: dict[str, Any] = {"anchor": anchor}
    for link_type, href in links.items():
        relation = GS1_VOC + link_type.removeprefix("gs1:")
        entry[relation] = [
            {"href": href, "title": f"{LINK_TYPES[link_type]}: {title}", "type": _media(link_type)}
        ]
    entry[GS1_VOC + "defaultLink"] = [{"href": links[PAGE_LINK], "title": title}]
    return {"linkset": [entry]}


def _media(link_type: str) -> str:
    return {
        "gs1:pip": "text/html",
        "gs1:traceability": "application/ld+json",
    }.get(link_type, "application/json")
