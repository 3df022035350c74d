"""What a scan shows, as data: the page's states, a leg with its temperature
record, the integrity check, the lots it was made from and what they pass on,
and `LotView` itself. Built by `provenance.ledger.lot_view.Scanner`, judged by
`provenance.ledger.lot_verdict`, shown by the web app."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from provenance.domain import coldchain, coldchain_downsample, coldchain_life, coldchain_status
from provenance.domain.custody import NOTE_BEFORE_ORIGIN, NOTE_OUT_OF_ORDER, Custody, Leg, Party
from provenance.domain.holdings import LotHoldings
from provenance.domain.rule_decisions import Flag, Hold
from provenance.ledger.lineage import RecallRecord
from provenance.ledger.stability import LotStability
from provenance.store.rows import Lot

# Page states, most severe first: the first that applies is the headline.
RECALLED = "recalled"
HELD = "held"  # a rule stopped it (e.g. a vaccine out of its band too long) until released
UNVERIFIED = "unverified"  # the record does not check out
DISCARD = "discard"  # its stability budget is spent (docs/coldchain.md, "Stability budget")
EXCURSION = "excursion"  # the cold chain broke (within or beyond tolerance)
EXPIRED = "expired"
UNMONITORED = "unmonitored"  # it needs a temperature, and no logger read on any leg
GAP = "gap"  # loggers fell silent, or a leg had none: not known to be fine
OK = "ok"
STATES = (RECALLED, HELD, UNVERIFIED, DISCARD, EXCURSION, EXPIRED, UNMONITORED, GAP, OK)

# Notes on what a page could not place plainly (codes; the page words them,
# these are the words of the JSON twin).
NOTE_READINGS_BEFORE_ORIGIN = "readings-before-origin"
NOTES = {
    NOTE_BEFORE_ORIGIN: "Some events are dated before the lot was registered; they are listed "
    "by their dates.",
    NOTE_OUT_OF_ORDER: "Some handoffs are dated out of the order in which they happened, so the "
    "times of the journey are approximate.",
    NOTE_READINGS_BEFORE_ORIGIN: "Some temperature readings are dated before the lot was "
    "registered; they are shown with its first leg.",
}

# A lot's category decides its profile when the producer named none.
DEFAULT_PROFILES = {"vaccine": "vaccine"}


@dataclass(frozen=True)
class LegRecord:
    """One leg of the journey with the temperature its loggers recorded."""

    leg: Leg
    loggers: tuple[Party, ...]
    readings: int
    status: coldchain_status.ColdChainStatus | None  # None: no profile or no readings
    buckets: tuple[coldchain_downsample.Bucket, ...]


@dataclass(frozen=True)
class Integrity:
    events: int
    signatures_valid: int
    chain_intact: bool
    checkpoint_size: int | None  # size of the signed checkpoint checked against
    included: bool  # the newest event's inclusion proof matched that checkpoint
    log_origin: str
    problems: tuple[str, ...] = ()
    bad_signatures: frozenset[str] = frozenset()  # event ids whose signature failed
    # Of signatures_valid, how many the signed log vouches for (checked when the
    # ledger appended them, the chain matching the checkpoint's heads tree)
    # rather than checked again here.
    signatures_vouched: int = 0

    @property
    def verified(self) -> bool:
        return (
            not self.problems
            and self.chain_intact
            and self.included
            and self.signatures_valid == self.events
        )


@dataclass(frozen=True)
class Ingredient:
    """A lot this one was made from, as its own scan shows it (with its own ingredients,
    one level less deep)."""

    uri: str
    quantity: dict[str, Any] | None
    view: LotView

    @property
    def name(self) -> str:
        return self.view.lot.product


@dataclass(frozen=True)
class Inherited:
    """A hold, recall, excursion or unknown temperature of a lot this one was made from,
    with the path to it: *path* names the products from this lot's ingredient down to the
    lot it happened to (``("Kale",)``, ``("Dressing", "Olive oil")``)."""

    state: str  # a page state: RECALLED, HELD, EXCURSION, UNMONITORED or GAP
    path: tuple[str, ...]
    uris: tuple[str, ...]  # the lots along the path
    reasons: tuple[str, ...]  # plain English, as that lot's own page gives them
    life: coldchain_life.LifeVerdict | None = None  # for EXCURSION, UNMONITORED, GAP
    holds: tuple[Hold, ...] = ()  # for HELD

    @property
    def uri(self) -> str:
        return self.uris[-1]

    def sentence(self) -> str:
        """Plain English, with the path: "the Kale in it: …"."""
        return f"the {' in the '.join(reversed(self.path))} in it: " + "; ".join(self.reasons)

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "path": list(self.path),
            "lots": list(self.uris),
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class LotView:
    lot: Lot
    custody: Custody
    custodian: Party
    profile: coldchain.Profile | None
    legs: tuple[LegRecord, ...]
    integrity: Integrity
    state: str  # one of STATES
    reasons: tuple[str, ...]  # plain sentences behind the state and the warnings
    warnings: tuple[str, ...]  # lesser states that also apply, e.g. a gap beside an expiry
    now_us: int
    chain_length: int
    recalls: tuple[RecallRecord, ...] = ()  # every recall that reached the lot, oldest first
    holds: tuple[Hold, ...] = ()  # holds in force, oldest first
    flags: tuple[Flag, ...] = ()  # signals rules raised about it (they stop nothing)
    notes: tuple[str, ...] = ()  # keys of NOTES: what could not be placed plainly
    # --- the cold chain over the whole life, and the lots it was made from
    life: coldchain_life.LifeVerdict | None = None  # None: no temperature requirement
    ingredients: tuple[Ingredient, ...] = ()  # lots it was made from, as far as shown
    ingredients_not_shown: int = 0  # inputs beyond MAX_INGREDIENTS or MAX_INGREDIENT_DEPTH
    inherited: tuple[Inherited, ...] = ()  # their holds, excursions… with the path to them
    stability: LotStability | None = None  # None: its product states no stability profile
    holdings: LotHoldings | None = None  # who holds how much of it now (several, once split)

    @property
    def expiry(self) -> str | None:
        return self.lot.expiry or self.custody.origin.get("expiry")

    @property
    def active_recalls(self) -> tuple[RecallRecord, ...]:
        """Recalls in force, its own or cascaded from lots it was made from."""
        return tuple(record for record in self.recalls if record.active)
