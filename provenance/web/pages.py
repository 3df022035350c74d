"""Rendering the consumer page, with caches of finished pages and charts.

A view (`provenance.ledger.lot_view.LotView`) is immutable and replaced whenever the lot
changes, so a page rendered from it can be kept until then: the key is the view
object itself plus the reader's language and text size. A leg's chart depends
only on its `LegRecord` (kept by the Scanner while the leg is unchanged), the
chart's end and the language, so one new reading redraws one chart.

A page never fails on what the ledger accepted: a leg whose times are odd is
drawn over the span its readings and its times cover, and a chart that cannot
be drawn at all is logged and replaced by a sentence saying so.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import render_template, request
from flask_babel import get_locale, ngettext
from flask_babel import gettext as _
from markupsafe import Markup

from provenance.core.errors import ProvenanceError
from provenance.ledger.lot_model import LegRecord, LotView
from provenance.ledger.serial_status import SerialStatus
from provenance.ledger.stability import expiry_comes_first
from provenance.store.cosignatures import shown_checkpoint
from provenance.store.key_custody import is_custodial
from provenance.web.chart import render_svg

from . import wording
from .cache import LRU
from .state import store as read_store

log = logging.getLogger(__name__)

_pages: LRU[str] = LRU(512)
_charts: LRU[Markup] = LRU(4096)


def render_lot(
    view: LotView,
    prefs: tuple[str, ...],  # language, text size, time zone (i18n.cached_key)
    page_url: str,
    label_expiry: str | None,
    serial: str | None,
    bundle_bytes: int | None = None,  # the proof bundle's size, when known
    serial_status: SerialStatus | None = None,  # the scanned serial, checked against the lot's
) -> str:
    def render() -> str:
        return render_template(
            "lot.html",
            view=view,
            lot=view.lot,
            custody=view.custody,
            integrity=view.integrity,
            page_url=page_url,
            label_expiry=label_expiry if label_expiry != view.expiry else None,
            serial=serial,
            serial_status=serial_status,
            charts=[_chart(view, record, n) for n, record in enumerate(view.legs)],
            # the charts of the lots it was made from (templates/_ingredients.html)
            ingredient_chart=_chart,
            custodial=custodial_signers(view),
            expiry_first=view.stability is not None
            and expiry_comes_first(view.stability, view.expiry),
            witnessed=witnessed,
            # The proof bundle's size, said before a phone downloads it
            # (resolver._bundle_size).
            bundle_bytes=bundle_bytes,
        )

    # Who cosigned the log's shown checkpoint (docs/protocol.md, "Witnessing"): it can
    # change without the lot's view changing, so it is part of the key — but only
    # when the page names it. Without cosigners the page says nothing of the
    # checkpoint, and a key on its size would re-render (and rebuild the proof
    # bundle for its size) on every commit to the log.
    witnessed = shown_checkpoint(read_store())
    # The page's own links (language, text size) keep the request's query: part of the key.
    query = tuple(request.args.items(multi=True))
    cosigned = (witnessed.size, witnessed.cosigners) if witnessed and witnessed.cosigners else None
    key = (
        id(view),
        prefs,
        page_url,
        label_expiry,
        serial,
        query,
        cosigned,
        bundle_bytes,
        serial_status,
    )
    return _pages.get_or_make(key, render, view)


def custodial_signers(view: LotView) -> frozenset[str]:
    """The dids among the lot's signers whose keys the operator holds for them
    (docs/protocol.md §3, "Keys"): their steps say "signed by the operator on
    behalf of …". Enrolments never change, so the cached page stays true."""
    store = read_store()
    found = set()
    for did in {step.actor.did for step in view.custody.steps}:
        identity = store.identity_by_did(did)
        if identity is not None and is_custodial(store, identity):
            found.add(did)
    return frozenset(found)


def chart_labels() -> dict[str, Any]:
    return {
        "title": _("Temperature"),
        "band": _("allowed band"),
        "excursion": _("excursion"),
        "no_data": _("no data"),
        "no_readings": _("no readings"),
        "summary": _("min {min}, max {max}"),
        "excursions": lambda n: ngettext("%(num)d excursion", "%(num)d excursions", n),
        "gaps": lambda n: ngettext("%(num)d gap without data", "%(num)d gaps without data", n),
    }


def _chart(view: LotView, record: LegRecord, position: int, name: str = "leg") -> Markup | None:
    """The chart of one leg; *name* makes its ids unique on the page (an ingredient's
    legs are drawn on the page of what was made from it)."""
    status = record.status
    if status is None or not record.buckets or view.profile is None:
        return None
    leg = record.leg
    end = leg.end_us
    if end is None:  # still going: up to now while a logger is attached
        end = view.now_us if view.custody.attached else (status.last_us or leg.start_us)
    end = max(end, leg.start_us)  # readings before the leg (the first) widen the chart instead
    profile = view.profile

    def draw() -> Markup:
        try:
            return Markup(
                render_svg(
                    record.buckets,
                    profile,
                    start_us=leg.start_us,
                    end_us=end,
                    excursions=status.excursions,
                    gaps=status.gaps,
                    labels=chart_labels(),
                    chart_id=f"{name}{position}",
                    zone=wording.zone_name(),
                )
            )
        except ProvenanceError:
            log.exception("lot %s: the chart of leg %d could not be drawn", view.lot.uri, position)
            return Markup('<p class="note">%s</p>') % _("The chart of this leg could not be drawn.")

    key = (id(record), end, name, position, str(get_locale()), wording.zone_name())
    return _charts.get_or_make(key, draw, record)
