"""A scan's headline, judged (pure over the view's parts): the state, its
reasons and the lesser states that also apply (`judge`), what a lot inherits
from the lots it was made from (`with_ingredients`; docs/lineage.md,
"Ingredients on the scan page"), and a state added after the judgement (a spent
stability budget: `with_state`)."""

from __future__ import annotations

from dataclasses import replace

from provenance.core.reason import Reason
from provenance.core.timefmt import parse_date
from provenance.domain import coldchain_life, coldchain_status
from provenance.domain.custody import Custody
from provenance.domain.rule_decisions import Hold
from provenance.ledger.lineage import RecallRecord
from provenance.ledger.lot_model import (
    EXCURSION,
    EXPIRED,
    GAP,
    HELD,
    OK,
    RECALLED,
    STATES,
    UNMONITORED,
    UNVERIFIED,
    Ingredient,
    Inherited,
    Integrity,
    LotView,
)
from provenance.store.rows import Lot

DAY = 86_400_000_000


def judge(
    lot: Lot,
    custody: Custody,
    integrity: Integrity,
    life: coldchain_life.LifeVerdict | None,
    recalls: tuple[RecallRecord, ...],
    holds: tuple[Hold, ...],
    now_us: int,
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """The headline state, its reasons, and the lesser states that also apply.
    *recalls* and *holds* are those in force; the cold chain is *life*'s verdict
    over the whole life, never leg by leg."""
    found: dict[str, list[str]] = {}
    if lot.recalled or recalls:
        found[RECALLED] = [r.reason for r in recalls] or [
            Reason("recalled", "recalled by a regulator")
        ]
    if lot.held or holds:
        found[HELD] = [h.reason for h in holds] or [Reason("held", "held by a rule")]
    if not integrity.verified:
        found[UNVERIFIED] = list(integrity.problems) or [
            Reason("not-checked", "the record could not be checked")
        ]
    if life is not None:
        page_state = _LIFE_STATES.get(life.state)
        if page_state is not None:
            found[page_state] = list(life.reasons)
    expiry = lot.expiry or custody.origin.get("expiry")
    if expiry and _day_of(expiry) < now_us // DAY:
        found[EXPIRED] = [Reason("expired", f"expired on {expiry}", date=expiry)]
    return _headline(found)


# --- ingredients (docs/lineage.md, "Ingredients on the scan page")


def with_ingredients(own: LotView, ingredients: tuple[Ingredient, ...], missing: int) -> LotView:
    """*own* with its ingredients and what it inherits from them; the headline is
    judged again with their holds, excursions and unknown temperatures, each with its
    path (recalls already reach it through the recall table: docs/lineage.md)."""
    inherited = tuple(item for ingredient in ingredients for item in _inherits(ingredient))
    found: dict[str, list[str]] = {}
    if own.state != OK:
        found[own.state] = list(own.reasons)
    for state in own.warnings:
        found.setdefault(state, [])
    for item in inherited:
        if item.state == RECALLED and own.active_recalls:
            continue  # the recall reached this lot itself (cascaded): said once
        found.setdefault(item.state, []).append(item.sentence())
    state, reasons, warnings = _headline(found)
    return replace(
        own,
        state=state,
        reasons=reasons,
        warnings=warnings,
        ingredients=ingredients,
        ingredients_not_shown=missing,
        inherited=inherited,
    )


def _inherits(ingredient: Ingredient) -> list[Inherited]:
    """What this lot inherits from one ingredient: the ingredient's own holds, direct
    recalls and cold-chain verdict, and (one level down) what it inherited itself."""
    view, name, uri = ingredient.view, ingredient.name, ingredient.uri
    out = []
    direct = tuple(r.reason for r in view.active_recalls if r.direct)
    if direct:
        out.append(Inherited(RECALLED, (name,), (uri,), direct))
    if view.holds or view.lot.held:
        reasons = tuple(h.reason for h in view.holds) or (Reason("held", "held by a rule"),)
        out.append(Inherited(HELD, (name,), (uri,), reasons, holds=view.holds))
    life = view.life
    if life is not None and life.state in _LIFE_STATES:
        out.append(Inherited(_LIFE_STATES[life.state], (name,), (uri,), life.reasons, life))
    for deeper in view.inherited:
        out.append(replace(deeper, path=(name, *deeper.path), uris=(uri, *deeper.uris)))
    return out


# The page's state for each whole-life verdict (OK adds nothing).
_LIFE_STATES = {
    coldchain_status.EXCEEDED: EXCURSION,
    coldchain_status.EXCURSION: EXCURSION,
    coldchain_life.UNMONITORED: UNMONITORED,
    coldchain_status.GAP: GAP,
}


def _headline(found: dict[str, list[str]]) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    present = [state for state in STATES if state in found]
    if not present:
        return OK, (), ()
    headline = present[0]
    return headline, tuple(found[headline]), tuple(present[1:])


def with_state(
    added: str,
    state: str,
    reasons: tuple[str, ...],
    warnings: tuple[str, ...],
    why: list[str],
) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
    """*state* and its warnings with *added* (a spent stability budget, DISCARD,
    or a profile that does not verify, UNVERIFIED) among them, the most severe
    first, as `judge` orders them; *why* are its reasons."""
    present = sorted({*([] if state == OK else [state]), *warnings, added}, key=STATES.index)
    headline = present[0]
    if headline == added:
        reasons = tuple(why) if headline != state else (*reasons, *why)
    return headline, reasons, tuple(present[1:])


def _day_of(date_text: str) -> int:
    day = parse_date(date_text, "expiry")
    return day.toordinal() - 719_163  # days since 1970-01-01
