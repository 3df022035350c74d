"""A product's stability profile in force and a lot's stability budget by it
(docs/coldchain.md, "Stability budget").

The profile is the newest `stability` event on the product's chain
(`core.kinds.stability_chain`); its signature is checked here, as the scan
checks the lot's own events, so the page never judges by a profile the log's
word alone vouches for. The budget itself is `domain.stability.assess`.
"""

from __future__ import annotations

from dataclasses import dataclass

from provenance.core.errors import SignatureError, ValidationError
from provenance.core.kinds import stability_chain
from provenance.core.timefmt import parse_date
from provenance.domain import stability
from provenance.domain.coldchain import Profile, Readings
from provenance.store.db import Store

# Silence longer than this is a gap when the lot has no cold-chain profile to
# say how often its logger reads (docs/coldchain.md: a gap is four missed
# readings of a 15-minute logger).
DEFAULT_MAX_GAP_US = 60 * 60 * 1_000_000
DAY_US = 86_400_000_000


@dataclass(frozen=True)
class StabilityProfile:
    """The stability model in force for a product, and who stated it when."""

    gtin: str
    model: stability.StabilityModel
    event_id: str
    signer: str  # did
    signer_name: str
    time: str  # the event's own time (RFC 3339)
    index: int  # its log index
    versions: int  # how many profiles the product's chain holds (the newest is this)


def profile_in_force(store: Store, gtin14: str) -> StabilityProfile | None:
    """The newest stability profile of a product, or None when it has none.
    Raises SignatureError when its signature does not verify (an edited
    database): then no profile can be trusted, and the scan says so."""
    found = store.chain_by_subject(stability_chain(gtin14))
    if found is None or found[3] == 0:
        return None
    chain_id, _, _, length = found
    (stored,) = store.chain_events(chain_id, from_pos=length - 1)
    envelope = stored.envelope
    envelope.verify_signature()
    try:
        model = stability.model_from_data(envelope.data)
    except ValidationError as exc:  # signed, so the schema let it in: a bug, not input
        raise SignatureError(
            f"the stability profile {envelope.event_id} is unreadable: {exc}"
        ) from None
    identity = store.identity_by_did(envelope.signer)
    return StabilityProfile(
        gtin14,
        model,
        envelope.event_id,
        envelope.signer,
        identity.name if identity is not None else envelope.signer,
        envelope.time,
        stored.index,
        length,
    )


def lot_budget(
    readings: Readings, profile: StabilityProfile, coldchain: Profile | None
) -> stability.StabilityBudget:
    """The lot's budget by *profile*; the lot's cold-chain profile says how long a
    silence is a gap."""
    max_gap = coldchain.max_gap_us if coldchain is not None else DEFAULT_MAX_GAP_US
    return stability.assess(readings, profile.model, max_gap)


@dataclass(frozen=True)
class LotStability:
    """A lot's stability budget by its product's profile in force."""

    profile: StabilityProfile
    budget: stability.StabilityBudget

    @property
    def spent(self) -> bool:
        return self.budget.spent

    def reasons(self) -> list[str]:
        """Why the lot is to be discarded, in the ledger's own words (the JSON
        twin's; the pages word it in the reader's language)."""
        if not self.budget.spent:
            return []
        if self.budget.outside:
            _, temperature = self.budget.outside[0]
            return [
                f"outside every temperature band of its stability data ({temperature:g} °C): "
                "discard it, or ask the manufacturer"
            ]
        return ["its stability budget is spent: discard it"]

    def use_by_us(self, expiry_end_us: int | None) -> int | None:
        """The earlier of the budget's use-by and the end of the expiry day: what
        first-expired-first-out orders by."""
        found = [t for t in (self.budget.use_by_us, expiry_end_us) if t is not None]
        return min(found) if found else None


def expiry_end_us(expiry: str | None) -> int | None:
    """The end of a lot's expiry day (UTC), or None without one (or one that does
    not parse: the page says the date as registered either way)."""
    if not expiry:
        return None
    try:
        day = parse_date(expiry, "expiry")
    except ValidationError:
        return None
    return (day.toordinal() - 719_162) * DAY_US  # the next midnight since 1970-01-01


def expiry_comes_first(found: LotStability, expiry: str | None) -> bool:
    """Whether the expiry date ends the lot's life before its stability budget."""
    end, use_by = expiry_end_us(expiry), found.budget.use_by_us
    return end is not None and use_by is not None and end < use_by
