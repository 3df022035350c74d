"""Helpers the portal's views share: loading a lot the caller may see,
lot views and alerts, pages of results, and labels."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import quote

from flask import Response, current_app, request
from flask_babel import gettext as _

from provenance.barcodes import labels, pdf
from provenance.core.disclosure import DisclosureError
from provenance.core.errors import NotFound, ProvenanceError, ValidationError
from provenance.core.timefmt import format_time
from provenance.domain.stability import VVM_CATEGORIES
from provenance.ledger.disclosures import lot_disclosures
from provenance.ledger.lot_model import DISCARD, EXCURSION, EXPIRED, GAP, OK, UNMONITORED, LotView
from provenance.ledger.stability import LotStability, expiry_end_us
from provenance.store.accounts.models import Principal
from provenance.store.db import Store
from provenance.store.rows import Lot

from .. import wording
from ..params import int_arg
from ..state import scanner
from ..state import store as read_store
from . import queries
from .actions import audit, party_identity
from .guard import PortalError, allowed, forbidden
from .state import portal

MAX_LABELS = 500
MAX_PAGE = 999_999

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LotRow:
    """A lot with what its page would say about it (its alerts)."""

    lot: Lot
    view: LotView | None
    holder: str
    in_transit_to: str | None

    @property
    def state(self) -> str:
        if self.view is None:
            return "recalled" if self.lot.recalled else "unknown"
        return self.view.state

    @property
    def alerts(self) -> list[str]:
        if self.view is None:
            return ["recalled"] if self.lot.recalled else []
        if self.view.state == OK:
            return []
        return [*self.view.reasons, *self.view.warnings]

    @property
    def said(self) -> list[str]:
        """The alerts as a person reads them (`status_sentences`); the API's
        `alerts` stay the ledger's own sentences."""
        if self.view is None:
            return [state_word("recalled")] if self.lot.recalled else []
        if self.view.state == OK:
            return []
        also = [state_word(w) for w in self.view.warnings]
        return [*status_sentences(self.view), *also]

    @property
    def stability(self) -> LotStability | None:
        return self.view.stability if self.view is not None else None

    @property
    def use_by_us(self) -> int | None:
        """When its life ends at the earliest: its stability budget run out at the
        storage condition, or its expiry day over; what FEFO orders by."""
        end = expiry_end_us(self.view.expiry if self.view is not None else self.lot.expiry)
        if self.stability is None:
            return end
        if self.stability.spent:
            return self.stability.budget.spent_at_us or self.stability.budget.last_us or 0
        return self.stability.use_by_us(end)

    def to_json(self) -> dict[str, Any]:
        found = self.stability
        use_by = self.use_by_us
        return {
            "lot": self.lot.uri,
            "id": self.lot.id,
            "gtin": self.lot.gtin,
            "lot_code": self.lot.lot,
            "product": self.lot.product,
            "expiry": self.lot.expiry,
            "holder": self.holder,
            "in_transit_to": self.in_transit_to,
            "recalled": self.lot.recalled,
            "state": self.state,
            "alerts": self.alerts,
            "use_by": format_time(use_by) if use_by is not None else None,
            "stability": (
                {
                    "left_pct": found.budget.left_pct,
                    "discard": found.spent,
                    "at_most": bool(found.budget.gaps),
                    "profile": found.profile.event_id,
                }
                if found is not None
                else None
            ),
        }


FEFO = "fefo"


def vvm_anchors(category: str) -> tuple[tuple[float, int], ...]:
    """A VVM category's figures, warmest first: (°C, time to its end point)."""
    return tuple(sorted(VVM_CATEGORIES.get(category, ()), reverse=True))


def fefo(rows: list[LotRow]) -> list[LotRow]:
    """First expired, first out: the rows with the least life left first (a spent
    budget before all), then those whose life is not known, as they were."""
    known = sorted((row for row in rows if row.use_by_us is not None), key=_use_by)
    return [*known, *(row for row in rows if row.use_by_us is None)]


def _use_by(row: LotRow) -> int:
    return row.use_by_us or 0


# States in which a lot may still be used (an excursion within tolerance or a gap
# is for the holder to judge); recalled, held, unverified, spent or expired lots
# get no FEFO number.
_USABLE = frozenset({OK, EXCURSION, GAP})


def fefo_ranks(rows: list[LotRow]) -> dict[int, int]:
    """Lot id -> its place in FEFO order among *rows* (1 = use first), for the rows
    whose life is known and that may still be used."""
    usable = [
        row
        for row in fefo(rows)
        if row.use_by_us is not None
        and row.state in _USABLE
        and not (row.stability is not None and row.stability.spent)
    ]
    return {row.lot.id: place for place, row in enumerate(usable, 1)}


def view_of(store: Store, lot: Lot) -> LotView | None:
    """The scan page's view of the lot (None when it cannot be built: logged,
    and the portal shows the lot without it)."""
    try:
        return scanner().view(store, lot.uri)
    except ProvenanceError:
        log.exception("the view of %s could not be built", lot.uri)
        return None


def lot_row(store: Store, lot: Lot) -> LotRow:
    holder = store.identity_by_id(lot.custodian)
    transit = queries.shipments_of_lot(store, lot.id)
    receiver = transit[0].receiver if transit else None
    return LotRow(
        lot,
        view_of(store, lot),
        holder.name if holder else "?",
        receiver.name if receiver else None,
    )


def page_args(size: int) -> tuple[int, int, int]:
    """(page number, limit, offset) from ``?page=``."""
    page = int_arg("page", 1, low=1, high=MAX_PAGE)
    return page, size, (page - 1) * size


def lot_for(store: Store, who: Principal, lot_id: int) -> Lot:
    """The lot if the caller may see it in the portal: regulators see every lot;
    a party sees the lots it holds, held (made or received) or is being sent."""
    lot = queries.lot_by_id(store, lot_id)
    if lot is None:
        raise PortalError(404, "not found", f"no lot {lot_id} in this ledger", reason="unknown-lot")
    return check_lot_access(store, who, lot)


def lot_by_uri_for(store: Store, who: Principal, uri: str) -> Lot:
    lot = store.lot_by_uri(uri)
    if lot is None:
        raise PortalError(404, "not found", f"no lot {uri} in this ledger", reason="unknown-lot")
    return check_lot_access(store, who, lot)


def check_lot_access(store: Store, who: Principal, lot: Lot) -> Lot:
    if allowed(who, "search"):
        audit(who, "view-lot", {"lot": lot.uri})
        return lot
    me = party_identity(store, who)
    if not queries.involved(store, lot, me.id):
        raise forbidden(
            f"{lot.uri} was never held by your party ({who.party_name}), nor is it being "
            "sent to it",
            "other-party",
        )
    return lot


def label_bytes(store: Store, who: Principal, lot: Lot, kind: str, count: int) -> tuple[bytes, str]:
    """A label (PNG) or an A4 sheet of *count* labels (PDF) for the lot, for the
    party that made or holds it."""
    me = party_identity(store, who)
    if me.id not in (lot.custodian, lot.commissioned_by):
        raise forbidden(
            f"labels for {lot.uri} are printed by the party that made or holds it", "other-party"
        )
    if lot.recalled:
        raise PortalError(
            409, "recalled", f"{lot.uri} is recalled: no new labels for it", reason="recalled"
        )
    base = current_app.config.get("BASE_URL") or request.host_url.rstrip("/")
    try:
        expiry = date.fromisoformat(lot.expiry) if lot.expiry else None
        label = labels.Label.from_uri(
            lot.uri, base=base, product=lot.product, expiry=expiry, keys=_keys()
        )
        if kind == "png":
            return labels.label_png(label), "image/png"
        if not 1 <= count <= MAX_LABELS:
            raise ValidationError("count", f"must be between 1 and {MAX_LABELS}")
        return pdf.sheet_pdf([label] * count), "application/pdf"
    except (ValidationError, NotFound) as exc:
        raise PortalError(422, "cannot make the label", str(exc), reason="label") from exc


def _keys() -> str | None:
    """The fingerprint of the policy the scan page checks against, for the label's
    KEYS line (docs/scan.md, "Trust root"); None before the ledger has a log key."""
    from provenance.core.policy import policy_fingerprint
    from provenance.web.transparency import trust_policy

    try:
        return policy_fingerprint(trust_policy())
    except NotFound:
        return None


def send_document(who: Principal, sha256: str) -> Response:
    """An uploaded document, as a download. Regulators and admins may fetch any;
    a party the ones it uploaded itself or that concern lots it holds or held."""
    state = portal()
    found = state.accounts.document(sha256) if len(sha256) == 64 else None
    if found is None or not state.documents.exists(sha256):
        raise PortalError(404, "not found", "no such document on this server", reason="unknown")
    if not (allowed(who, "search") or who.is_admin or found.party_did == who.party_did):
        store = read_store()
        me = party_identity(store, who)
        lots = [store.lot_by_uri(uri) for uri in state.accounts.document_lots(sha256)]
        if not any(lot is not None and queries.involved(store, lot, me.id) for lot in lots):
            raise forbidden("this document belongs to lots your party never held", "other-party")
    if allowed(who, "search"):
        audit(who, "view-document", {"sha256": sha256})
    name = found.name.replace('"', "'")
    response = Response(
        state.documents.path(sha256).read_bytes(),  # at most DOCUMENT_MAX_BYTES
        mimetype=found.media_type,
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}",
            "Cache-Control": "no-store",
        },
    )
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def state_word(state: str) -> str:
    """A lot's state in the page's language (as the portal's state badge)."""
    words = {
        "ok": _("fine"),
        "recalled": _("recalled"),
        "held": _("on hold"),
        "unverified": _("record does not check out"),
        "excursion": _("temperature problem"),
        "expired": _("expired"),
        "gap": _("temperature not known"),
        "unmonitored": _("temperature not recorded"),
        "discard": _("discard: stability budget spent"),
    }
    return words.get(state, state)


def status_sentences(view: LotView) -> list[str]:
    """Why the lot is in its state, in the page's language and the reader's
    zone: the cold chain over its whole life as the scan page says it (the same
    verdict, `coldchain_life.judge_life`), what it inherits from the lots it was
    made from, with the path; a recall's or hold's reason as its signer wrote it."""
    said: list[str] = []
    if view.state in (EXCURSION, GAP, UNMONITORED):
        life = view.life
        if life is not None and life.state != "ok":
            said += wording.life_sentences(life)
        said += [wording.inherited_sentence(item) for item in view.inherited]
    elif view.state == EXPIRED and view.expiry:
        said.append(_("Expired on %(day)s", day=view.expiry))
    elif view.state == DISCARD and view.stability is not None:
        budget = view.stability.budget
        if budget.outside:
            when_us, temperature = budget.outside[0]
            said.append(
                _(
                    "At %(c)s °C on %(t)s: outside every band of its stability data",
                    c=f"{temperature:g}",
                    t=wording.moment(when_us),
                )
            )
        else:
            said.append(_("Stability budget spent"))
    return said or list(view.reasons)


def disclosed_fields(store: Store, who: Principal, lot: Lot) -> dict[str, dict[str, Any]]:
    """The private fields of the lot's events that *who* may see (a regulator,
    the signer, a party it granted: provenance/ledger/disclosures.py), each
    checked against the digest its event signed: event id -> name -> value.
    A disclosure that no longer matches is left out (the page then says the
    field is kept private) and logged: never shown as verified."""
    try:
        seen = lot_disclosures(store, lot.uri, who.party_did, regulator=who.role == "regulator")
    except DisclosureError as exc:
        log.error("disclosures of %s do not verify: %s", lot.uri, exc)
        return {}
    return {d.envelope.event_id: d.fields for d in seen}
