"""GS1 Digital Link resolver: what a phone camera opens after scanning a label.

``GET /01/{gtin}/10/{lot}`` (with optional ``/21/{serial}`` and query AIs such as
``?17=261231``) answers, by ``linkType``:

- none or ``gs1:pip``: the consumer page (HTML), or its JSON twin when the
  client prefers ``application/json``;
- ``gs1:traceability``: the lot's events as GS1 EPCIS 2.0 JSON-LD;
- ``gs1:recallStatus``: whether the lot is recalled, as JSON;
- ``all`` (or ``Accept: application/linkset+json``): an RFC 9264 linkset.

A link type this resolver does not serve is a 404 listing the ones it does.
``GET /bundle/01/{gtin}/10/{lot}`` downloads the lot's proof bundle; with
``?form=page`` it is the scan page's compact form, and ``?form=page&at=3,17``
the lot chain's events at those places, the sample a phone draws
(`provenance.ledger.page_bundle`, docs/protocol.md §12).

Only a code that does not parse is "not valid" (`InvalidCode`, 400). Once the
code names a lot, what the ledger holds for it is shown whatever its shape
(docs/scan.md); should building a page or export still fail, that is our bug:
a 500 that says so, the cause logged and never shown (`PageFailure`).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
)

from provenance.barcodes import digital_link
from provenance.core import gs1
from provenance.core.errors import NotFound, ProvenanceError, ValidationError
from provenance.exchange.epcis import lot_document
from provenance.ledger import page_bundle
from provenance.ledger.lot_model import LotView
from provenance.ledger.proofs import build_bundle
from provenance.ledger.serial_status import SerialStatus, serial_status
from provenance.store.cosignatures import shown_checkpoint

from . import i18n, links, present
from .cache import LRU
from .errors import InvalidCode, PageFailure, answer, wants_json
from .pages import render_lot
from .state import scanner as get_scanner
from .state import store as get_store

bp = Blueprint("resolver", __name__)
log = logging.getLogger(__name__)

LINKSET_TYPE = "application/linkset+json"

_exports: LRU[str] = LRU(64)  # EPCIS documents and proof bundles, as JSON text
# The lot chain's events of a bundle, each as JSON text, for the samples phones draw
# (text: ~0.4 KB an event, where parsed dicts would be several times that).
_chain_events: LRU[list[str]] = LRU(16)

# A lot with more events than this has its proof bundle (and so the size the
# page states) made in the background after its first scan, not during it: a
# 20,000-event bundle costs ~0.25 s, the whole first-scan budget. The page
# offers the download without its size until the size is known.
BUNDLE_INLINE_EVENTS = 2_000


def _link() -> digital_link.DigitalLink:
    path = links.raw_target()
    if path.startswith(links.BUNDLE_PREFIX + "/"):
        path = path.removeprefix(links.BUNDLE_PREFIX)
    try:
        return digital_link.parse_digital_link(path)
    except ValidationError as exc:
        raise InvalidCode(exc.field, exc.rule) from None


@contextmanager
def _building(what: str) -> Iterator[None]:
    """Around making a page or export of a lot the code named: a failure here
    is ours, not the code's (NotFound still means no such lot)."""
    try:
        yield
    except NotFound:
        raise
    except ProvenanceError as exc:
        raise PageFailure(what) from exc


def _lot_uri(link: digital_link.DigitalLink) -> str:
    lot_id = link.lot_id
    if lot_id is None:
        what = f"item serial {link.serial}" if link.serial else "a product"
        raise NotFound(
            f"this code names {what} of GTIN {link.gtin} but not its batch/lot (AI 10); "
            "this resolver answers for lots: scan the code on the pack, or add /10/{lot}"
        )
    return lot_id.uri


@bp.app_template_filter("lot_path")
def lot_path(lot_uri: str) -> str:
    """A ledger lot URI as a path on this resolver (see `links`)."""
    return links.lot_path(lot_uri)


bp.add_app_template_filter(links.bundle_path, "bundle_path")
bp.add_app_template_filter(links.lot_url, "lot_url")


@bp.app_template_filter("lot_code")
def lot_code(lot_uri: str) -> str:
    """The lot code a person reads on the pack (AI 10), decoded."""
    return gs1.parse_lot_uri(lot_uri)[1]


@bp.get("/")
def home():
    return render_template("home.html")


@bp.get("/lookup")
def lookup():
    """The home page's form: GTIN + lot typed by hand, for when a camera fails."""
    gtin = (request.args.get("gtin") or "").strip()
    lot = (request.args.get("lot") or "").strip()
    if not gtin or not lot:
        raise InvalidCode("lookup", "enter both the GTIN and the lot printed on the pack")
    try:
        uri = gs1.lot_uri(gtin, lot)
    except ValidationError as exc:
        raise InvalidCode(exc.field, exc.rule) from None
    return redirect(links.lot_path(uri), code=303)


@bp.get("/01/<path:_rest>")
def resolve(_rest: str):
    link = _link()
    lot_uri = _lot_uri(link)
    link_type = request.args.get("linkType")
    if link_type is None and request.accept_mimetypes.best == LINKSET_TYPE:
        link_type = "all"
    if link_type == "all":
        return _linkset(lot_uri)
    if link_type not in (None, present.PAGE_LINK, *present.LINK_TYPES):
        available = ", ".join(["all", *present.LINK_TYPES])
        return answer(
            404,
            "link type not available",
            f"this resolver has no {link_type!r} link for this lot; available: {available}",
        )
    with _building("page"):
        view = get_scanner().view(get_store(), lot_uri)
        if link_type == "gs1:recallStatus":
            return _json(present.recall_status(view), view)
        if link_type == "gs1:traceability":
            return _traceability(lot_uri, view)
        status = serial_status(get_store(), view.lot, link.serial) if link.serial else None
        if wants_json():
            body = present.lot_json(view)
            if link.serial:  # issued: null when the lot has no serials to check against
                body["serial"] = (
                    status.to_json() if status else {"serial": link.serial, "issued": None}
                )
            return _json(body, view, _serial_key(status))
        return _page(view, link, status)


def _serial_key(status: SerialStatus | None) -> str:
    """What the page says of the serial, for its ETag."""
    if status is None:
        return ""
    return f"{status.serial}:{status.event_id or 'never'}:{status.issued_count}"


def _etag(view: LotView, *extra: Any) -> str:
    integrity = view.integrity
    return "-".join(
        str(part)
        for part in (
            view.chain_length,
            integrity.checkpoint_size,
            int(view.lot.recalled),
            view.lot.custodian,
            view.now_us // 60_000_000,
            view.stability.profile.event_id[:16] if view.stability else "",
            *extra,
        )
    )


def _conditional(response: Response, etag: str) -> Response:
    response.set_etag(etag, weak=True)
    response.headers["Cache-Control"] = "no-cache"  # always revalidate: recalls show at once
    return response.make_conditional(request)


def _json(body: dict[str, Any], view: LotView, *extra: Any) -> Response:
    return _conditional(jsonify(body), _etag(view, "json", request.args.get("linkType"), *extra))


def _page(
    view: LotView, link: digital_link.DigitalLink, status: SerialStatus | None = None
) -> Response:
    prefs = i18n.cached_key()
    label_expiry = None
    try:
        found = digital_link.expiry(link)
        label_expiry = found.isoformat() if found else None
    except ValidationError:
        label_expiry = None
    lot = view.lot
    g.page_path = gs1.gtin_uri(lot.gtin, lot=lot.lot, serial=link.serial, base="")
    bundle_bytes = _bundle_size(lot.uri, view.chain_length)
    html = render_lot(
        view, prefs, links.lot_url(lot.uri), label_expiry, link.serial, bundle_bytes, status
    )
    response = Response(html, mimetype="text/html")
    etag = _etag(view, "html", *prefs, label_expiry, link.serial, bundle_bytes, _serial_key(status))
    return _conditional(response, etag)


def _traceability(lot_uri: str, view: LotView) -> Response:
    """EPCIS costs ~0.1 ms per reading to build (mostly event hashes), so the
    document is kept until the lot's chain grows."""
    document = _exports.get_or_make(
        ("epcis", lot_uri, view.chain_length),
        lambda: json.dumps(lot_document(get_store(), lot_uri)),
    )
    response = Response(document, mimetype="application/ld+json")
    return _conditional(response, _etag(view, "epcis"))


def _linkset(lot_uri: str) -> Response:
    lot = get_store().lot_by_uri(lot_uri)
    if lot is None:
        raise NotFound(f"no lot {lot_uri} in this ledger")
    page = links.lot_url(lot_uri)
    targets = {link_type: links.lot_url(lot_uri, link_type) for link_type in present.LINK_TYPES}
    targets[present.PAGE_LINK] = page
    body = present.linkset(page, targets, f"{lot.product}, lot {lot.lot}")
    body["linkset"][0][present.BUNDLE_RELATION] = [
        {"href": links.bundle_url(lot_uri), "type": "application/json"}
    ]
    response = jsonify(body)
    response.mimetype = LINKSET_TYPE
    return response


@bp.get("/bundle/01/<path:_rest>")
def bundle(_rest: str):
    lot_uri = _lot_uri(_link())
    form = request.args.get("form")
    if form not in (None, "page"):
        raise ValidationError("form", "is `page` (the scan page's form) or absent (the bundle)")
    if form == "page":
        return _page_bundle(lot_uri, request.args.get("at"))
    with _building("proof bundle"):
        body = _bundle_json(lot_uri)
    response = Response(body, mimetype="application/json", headers={"Cache-Control": "no-cache"})
    gtin14, code = gs1.parse_lot_uri(lot_uri)
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in code)
    name = f"provenance-bundle-{gtin14}-{safe}.json"
    response.headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{quote(name)}"
    return response


def _page_bundle(lot_uri: str, at: str | None) -> Response:
    """The page form, or with *at* the sample of the lot chain's events there."""
    note = _shown_note()
    if at is None:
        with _building("proof bundle"):
            body = _exports.get_or_make(
                ("page-bundle", lot_uri, note),
                lambda: json.dumps(
                    page_bundle.page_bundle(json.loads(_bundle_json(lot_uri))),
                    separators=(",", ":"),
                ),
            )
    else:
        with _building("proof bundle"):
            events = _chain_events.get_or_make(
                (lot_uri, note),
                lambda: [
                    json.dumps(item, separators=(",", ":"))
                    for item in json.loads(_bundle_json(lot_uri))["chains"][0]["events"]
                ],
            )
        positions = page_bundle.parse_positions(at, len(events))
        chosen = [json.loads(events[position]) for position in positions]
        body = json.dumps(page_bundle.sample(chosen, positions), separators=(",", ":"))
    return Response(body, mimetype="application/json", headers={"Cache-Control": "no-cache"})


def _shown_note() -> str | None:
    shown = shown_checkpoint(get_store())
    return None if shown is None else shown.note


def _bundle_size(lot_uri: str, chain_length: int) -> int | None:
    """Bytes of the lot's proof bundle (None, and logged, if it cannot be made:
    the page then offers the download without its size). Kept while the lot's
    chain keeps its length: a bundle as of a newer checkpoint differs only in a
    few proof nodes and cosignature lines, so a commit elsewhere in the log does
    not cost the page a new bundle just to say about how big it is.

    A big lot's bundle is made on the app's bundle thread instead (None until
    it is there): the first scan does not wait for it, and the download that
    follows finds it made. While such a lot grows by less than 1 % of its
    events since its size was measured, that size stands (the page rounds it
    anyway): a lot that gains a reading a minute does not make a whole bundle a
    minute just to say how big it is."""
    # Per app, as the ledger is: bytes of a lot's bundle by (lot, its chain length).
    sizes: LRU[int] = current_app.extensions.setdefault("provenance.bundle_sizes", LRU(1024))
    key = (lot_uri, chain_length)
    inline = current_app.config.get("BUNDLE_INLINE_EVENTS", BUNDLE_INLINE_EVENTS)
    if chain_length > inline:
        known = sizes.peek(key)
        if known is not None:
            return known
        latest: LRU[tuple[int, int]] = current_app.extensions.setdefault(
            "provenance.bundle_latest", LRU(1024)
        )
        measured = latest.peek(lot_uri)  # (chain length, bytes) last measured
        if measured is not None and 0 <= chain_length - measured[0] <= measured[0] // 100:
            return measured[1]
        _bundles_in_background(current_app._get_current_object()).make(lot_uri, key)
        return None if measured is None else measured[1]
    try:
        return sizes.get_or_make(key, lambda: len(_bundle_json(lot_uri).encode()))
    except ProvenanceError:
        log.exception("the proof bundle of %s could not be made", lot_uri)
        return None


class _BundleThread:
    """One thread per app that makes big lots' proof bundles after their first
    scan (`_bundle_size`); each lot and chain length once at a time, at most
    MAX_WAITING waiting (more are dropped: the next scan asks again)."""

    MAX_WAITING = 16

    def __init__(self, app: Any) -> None:
        self.app = app
        self.lock = threading.Lock()
        self.waiting: dict[tuple[str, int], None] = {}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="bundle")

    def make(self, lot_uri: str, key: tuple[str, int]) -> None:
        with self.lock:
            if key in self.waiting or len(self.waiting) >= self.MAX_WAITING:
                return
            self.waiting[key] = None
        self.pool.submit(self._make, lot_uri, key)

    def _make(self, lot_uri: str, key: tuple[str, int]) -> None:
        try:
            with self.app.app_context():
                sizes: LRU[int] = self.app.extensions.setdefault(
                    "provenance.bundle_sizes", LRU(1024)
                )
                size = sizes.get_or_make(key, lambda: len(_bundle_json(lot_uri).encode()))
                latest: LRU[tuple[int, int]] = self.app.extensions.setdefault(
                    "provenance.bundle_latest", LRU(1024)
                )
                measured = latest.peek(lot_uri)
                if measured is None or measured[0] < key[1]:  # the newest length measured
                    latest.put(lot_uri, (key[1], size))
        except Exception:  # a thread of its own: log, and the page keeps offering the download
            log.exception("the proof bundle of %s could not be made", lot_uri)
        finally:
            with self.lock:
                self.waiting.pop(key, None)


_bundle_threads_lock = threading.Lock()


def _bundles_in_background(app: Any) -> _BundleThread:
    with _bundle_threads_lock:
        thread = app.extensions.get("provenance.bundle_thread")
        if thread is None:
            thread = app.extensions["provenance.bundle_thread"] = _BundleThread(app)
        return thread


def _bundle_json(lot_uri: str) -> str:
    """Kept per checkpoint shown (with its cosignatures, which can arrive without a
    commit): a bundle is as of that checkpoint, its proofs and heads included."""
    shown = shown_checkpoint(get_store())
    note = None if shown is None else shown.note
    return _exports.get_or_make(
        ("bundle", lot_uri, note),
        lambda: json.dumps(build_bundle(get_store(), lot_uri), separators=(",", ":")),
    )
