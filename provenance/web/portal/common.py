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
from provenance.core.errors import NotFound, ProvenanceError, ValidationError
from provenance.ledger.lot_view import EXCURSION, EXPIRED, GAP, OK, LotView
from provenance.store.accounts.models import Principal
from provenance.store.db import Store
from provenance.store.rows import Lot

from .. import i18n, wording
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

    def to_json(self) -> dict[str, Any]:
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
        }


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
    }
    return words.get(state, state)


def status_sentences(view: LotView) -> list[str]:
    """Why the lot is in its state, in the page's language and the reader's
    zone: the excursions and gaps of its legs as the scan page says them; a
    recall's or hold's reason as its signer wrote it."""
    said: list[str] = []
    if view.state in (EXCURSION, GAP):
        for record in view.legs:
            status = record.status
            if status is None:
                continue
            if view.state == EXCURSION:
                for e in status.excursions:
                    way = {"high": _("warm"), "low": _("cold")}.get(e.direction)
                    said.append(
                        _(
                            "%(d)s too %(dir)s from %(t)s, peak %(p)s °C",
                            d=i18n.duration(e.duration_us),
                            dir=way or _("far out of range"),
                            t=wording.moment(e.start_us),
                            p=f"{e.peak_c:.1f}",
                        )
                    )
            else:
                for start, end in status.gaps:
                    said.append(
                        _(
                            "No readings for %(d)s from %(t)s",
                            d=i18n.duration(end - start),
                            t=wording.moment(start),
                        )
                    )
    elif view.state == EXPIRED and view.expiry:
        said.append(_("Expired on %(day)s", day=view.expiry))
    return said or list(view.reasons)
