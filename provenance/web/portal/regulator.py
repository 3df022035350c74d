"""The regulator's portal: search lots, trace them, recall and lift, active
recalls and recall reports, EPCIS and FSMA 204 exports, ledger integrity, and
the audit trail. Every query and action here is written to the audit trail
(who, what, when, parameters)."""

from __future__ import annotations

import hashlib
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext

from provenance.core.errors import ValidationError
from provenance.ledger.decisions import active_holds, open_decisions, recent_flags
from provenance.ledger.lineage import DIRECTIONS
from provenance.store.queries import search_lots

from ..params import optional_int_arg
from ..state import store as read_store
from . import actions, common, exports, forms, integrity, long_work, queries
from .actions import audit
from .browser_keys import when_signed
from .guard import PortalError, needs, principal
from .producer import lot_page
from .reports import RecallPreview, lot_place, recall_preview, recall_report
from .state import portal

bp = Blueprint("regulator", __name__, url_prefix="/regulator")

SEARCH_PAGE = 50
OVERVIEW_PAGE = 50
RECALL_CLASSES = ("I", "II", "III")
MAX_RECALL_LOTS = 200  # lots one recall form may name (each is looked up for the preview)


def _log_key() -> bytes | None:
    return current_app.config.get("LOG_PUBLIC_KEY")


def _attachment(data: bytes | str, mimetype: str, name: str) -> Response:
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-._") else "_" for c in name)
    return Response(
        data,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{safe}"'},
    )


@bp.get("/")
@needs("search")
def home():
    store = read_store()
    return render_template(
        "portal/regulator_home.html",
        recalls=queries.active_recall_events(store, limit=20),
        form={},
    )


@bp.get("/search")
@needs("search")
def search():
    who = principal()
    form = {k: (request.args.get(k) or "").strip()[:200] for k in ("q", "gtin", "lot")}
    page, size, offset = common.page_args(SEARCH_PAGE)
    store = read_store()
    lots, total = search_lots(
        store, text=form["q"], gtin=form["gtin"], lot=form["lot"], limit=size, offset=offset
    )
    audit(who, "search", {**form, "page": page, "found": total})
    rows = [common.lot_row(store, lot) for lot in lots]
    order = common.FEFO if request.args.get("order") == common.FEFO else None
    return render_template(
        "portal/search.html",
        form=form,
        rows=common.fefo(rows) if order else rows,
        ranks=common.fefo_ranks(rows),
        order=order,
        total=total,
        page=page,
        pages=max(1, -(-total // size)),
    )


@bp.get("/trace")
@needs("search")
def trace_page():
    """Where a lot came from and every lot made from it, with who holds each now."""
    store = read_store()
    found = actions.audited_trace(principal(), store)
    places = {}
    ids = {}
    for traced in (found.lot, *found.upstream, *found.downstream):
        lot = store.lot_by_uri(traced.uri)
        if lot is not None:
            ids[traced.uri] = lot.id
            places[traced.uri] = lot_place(store, lot.id, lot.custodian)
    return render_template(
        "portal/trace.html", trace=found, ids=ids, places=places, directions=DIRECTIONS
    )


def _lot_id(store, uri: str) -> int | None:
    lot = store.lot_by_uri(uri)
    return None if lot is None else lot.id


def _lots_from_form() -> list[str]:
    raw = request.form.getlist("lot") or []
    text = request.form.get("lots", "")
    raw += [line for line in text.replace(",", "\n").splitlines() if line.strip()]
    return [item.strip() for item in raw if item.strip()]


def _back(lots: list[str]) -> Response:
    store = read_store()
    found = store.lot_by_uri(actions.lot_uri_of(lots[0])) if lots else None
    if found is not None:
        return redirect(url_for("portal.producer.lot", lot_id=found.id), code=303)
    return redirect(url_for("portal.regulator.recalls"), code=303)


def _recall_form() -> tuple[dict[str, str], list[str], dict[str, str]]:
    """The recall form's values (kept as typed), its lots as canonical URIs, and
    an inline message per field that is missing or wrong. No field has a
    default: the class in particular is the regulator's choice."""
    form = {k: (request.form.get(k) or "").strip() for k in ("reason", "class", "instructions")}
    raw = _lots_from_form()
    errors: dict[str, str] = {}
    if len(raw) > MAX_RECALL_LOTS:
        errors["lots"] = _(
            "Name at most %(n)d lots in one recall; the lots made from them are recalled too.",
            n=MAX_RECALL_LOTS,
        )
        raw = raw[:MAX_RECALL_LOTS]
    form["lots"] = "\n".join(raw)
    uris = []
    for item in raw:
        try:
            uris.append(actions.lot_uri_of(item, "lots"))
        except ValidationError:
            errors["lots"] = _("Not a lot's URI: %(text)s", text=item[:200])
    if not raw:
        errors["lots"] = _("Name the lot to recall.")
    if not form["reason"]:
        errors["reason"] = _("Say why the lot is recalled: every scan page shows it.")
    if form["class"] not in RECALL_CLASSES:
        errors["class"] = _("Choose the recall class: I, II or III.")
    return form, uris, errors


def _reach_key(found: RecallPreview) -> str:
    """A short digest of what a recall would reach, to notice a change between
    the preview and the signature."""
    text = "\n".join(sorted(a.uri for a in found.affected))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _preview_page(form, found: RecallPreview, errors: dict[str, str], status: int = 200):
    for uri in found.unknown:
        errors.setdefault("lots", _("No lot %(uri)s in this ledger.", uri=uri))
    page = render_template(
        "portal/recall_preview.html",
        form=form,
        preview=found,
        errors=errors,
        reach=_reach_key(found),
    )
    return page, 400 if errors else status


@bp.post("/recall/preview")
@needs("recall")
def recall_preview_page():
    """What a recall would reach, before anything is signed: the named lots and
    every lot made from them, holders, quantities, open shipments."""
    who = principal()
    form, uris, errors = _recall_form()
    found = recall_preview(read_store(), uris)
    audit(
        who,
        "recall-preview",
        {"lots": list(found.named), "reaches": len(found.affected), "class": form["class"]},
    )
    return _preview_page(form, found, errors)


@bp.post("/recall")
@needs("recall")
def recall():
    who = principal()
    form, uris, errors = _recall_form()
    lots = uris
    found = recall_preview(read_store(), uris)
    if request.form.get("confirm") != "yes":
        errors["confirm"] = _("Tick the box to confirm the recall: it is signed and public.")
    shown = request.form.get("reach")
    if shown and shown != _reach_key(found) and not errors:
        errors["reach"] = _(
            "What the recall reaches changed since you looked (a lot was made from it): "
            "check the lots below again, then sign."
        )
    if errors or found.unknown:
        return _preview_page(form, found, errors)

    def signed(results: list[Any]) -> None:
        reached = len(read_store().lots_of_recall_event(results[0].index or 0))
        named = ngettext(
            "Recall signed for %(num)d lot.", "Recall signed for %(num)d lots.", len(lots)
        )
        total = ngettext(
            "With the lots made from it, %(num)d lot is recalled and its scan page shows it now.",
            "With the lots made from them, %(num)d lots are recalled and every one of their "
            "scan pages shows it now.",
            reached,
        )
        flash(f"{named} {total}")

    with when_signed(_back(lots).location, signed):
        done = actions.recall(
            who,
            lots=lots,
            reason=form["reason"],
            recall_class=form["class"],
            instructions=form["instructions"],
        )
    signed(list(done.results))
    return _back(lots)


@bp.post("/lift")
@needs("recall")
def lift():
    who = principal()
    lots = _lots_from_form()
    errors = forms.reason_form_errors(request.form)

    def signed(_results: list[Any]) -> None:
        flash(
            ngettext(
                "Recall lifted for %(num)d lot and the lots made from it.",
                "Recall lifted for %(num)d lots and the lots made from them.",
                len(lots),
            )
        )

    form = request.form.to_dict()

    def again(exc: Exception) -> Any:
        if isinstance(exc, PortalError) and exc.status >= 500:
            raise exc
        status, errors = forms.action_refusal(exc)
        return _lift_again(lots, errors, form, status)

    if errors:
        return _lift_again(lots, errors, form, 400)
    try:
        with when_signed(_back(lots).location, signed, again):
            actions.lift(who, lots=lots, reason=form.get("reason", ""))
    except (ValidationError, PortalError) as exc:
        return again(exc)
    signed([])
    return _back(lots)


def _lift_again(lots: list[str], errors: dict[str, str], form: Any, status: int) -> Any:
    """The lot page with the lift form again (its reason kept, the message by it)."""
    try:
        uri = actions.lot_uri_of(lots[0]) if len(lots) == 1 else ""
    except ValidationError:
        uri = ""
    found = read_store().lot_by_uri(uri) if uri else None
    if found is None:  # no lot page to show the form on
        raise PortalError(status, _("refused"), " ".join(errors.values()), reason="form")
    return lot_page(found.id, "lift", errors, form), status


@bp.get("/holds")
@needs("report")
def holds():
    """Lots stopped by rules, and the newest signals the rules raised."""
    who = principal()
    store = read_store()
    held, flags = active_holds(store), recent_flags(store, limit=100)
    audit(who, "holds", {"holds": len(held), "flags": len(flags)})
    return render_template("portal/holds.html", holds=held, flags=flags, failed="", errors={})


def _holds_page(failed: str, errors: dict[str, str], form: Any) -> str:
    """The holds page after a refused release: that row's form again with the
    reason kept and the message by it, or at the top when the hold is gone."""
    store = read_store()
    held, flags = active_holds(store), recent_flags(store, limit=100)
    if not any(h.event_id == failed for h in held):
        errors = {"": " ".join(errors.values())}
    return render_template(
        "portal/holds.html", holds=held, flags=flags, failed=failed, errors=errors, form=form
    )


@bp.get("/overview")
@needs("report")
def overview():
    """Open excursions, holds and flags across all lots, newest first, a page at a time."""
    who = principal()
    page, size, offset = common.page_args(OVERVIEW_PAGE)
    store = read_store()
    items, total = open_decisions(store, limit=size, offset=offset)
    audit(who, "overview", {"page": page, "found": total})
    return render_template(
        "portal/overview.html",
        items=items,
        total=total,
        page=page,
        pages=max(1, -(-total // size)),
    )


@bp.post("/holds/release")
@needs("recall")
def release():
    who = principal()
    lots = _lots_from_form()
    errors = forms.reason_form_errors(request.form)

    def signed(_results: list[Any]) -> None:
        flash(
            ngettext("Hold released for %(num)d lot.", "Hold released for %(num)d lots.", len(lots))
        )

    form = request.form.to_dict()
    hold = form.get("hold") or ""

    def again(exc: Exception) -> Any:
        if isinstance(exc, PortalError) and exc.status >= 500:
            raise exc
        status, errors = forms.action_refusal(exc)
        return _holds_page(hold, errors, form), status

    if errors:
        return _holds_page(hold, errors, form), 400
    try:
        with when_signed(url_for("portal.regulator.holds"), signed, again):
            actions.release(who, lots=lots, reason=form.get("reason", ""), hold=hold or None)
    except (ValidationError, PortalError) as exc:
        return again(exc)
    signed([])
    return redirect(url_for("portal.regulator.holds"), code=303)


@bp.get("/recalls")
@needs("report")
def recalls():
    who = principal()
    found = queries.active_recall_events(read_store())
    audit(who, "active-recalls", {"count": len(found)})
    return render_template("portal/recalls.html", recalls=found)


def _report(lot_id: int):
    who = principal()
    store = read_store()
    lot = queries.lot_by_id(store, lot_id)
    if lot is None:
        raise PortalError(
            404, "not found", _("No lot %(id)d in this ledger.", id=lot_id), reason="unknown-lot"
        )
    event = optional_int_arg("event")
    return who, recall_report(store, portal().accounts, lot, event)


@bp.get("/recalls/<int:lot_id>")
@needs("report")
def report(lot_id: int):
    who, found = _report(lot_id)
    audit(who, "recall-report", {"lot": found.lot.uri, "event": found.recall.event_id})
    return render_template("portal/report.html", report=found)


@bp.get("/recalls/<int:lot_id>/<part>.csv")
@needs("report")
def report_csv(lot_id: int, part: str):
    if part not in ("lots", "scans"):
        raise PortalError(404, "not found", "the report comes as lots.csv and scans.csv")
    who, found = _report(lot_id)
    audit(
        who,
        "recall-report",
        {"lot": found.lot.uri, "event": found.recall.event_id, "format": f"{part}.csv"},
    )
    body = found.lots_csv() if part == "lots" else found.scans_csv()
    name = f"recall-{found.lot.gtin}-{found.lot.lot}-{part}.csv"
    return _attachment(body, "text/csv", name)


@bp.route("/exports", methods=["GET"])
@needs("report")
def exports_page():
    """The form; with ``?format=`` the download itself (EPCIS or FSMA 204),
    made inside the request (the form itself starts a background job)."""
    who = principal()
    kind = request.args.get("format")
    if not kind:
        return render_template("portal/exports.html", kinds=exports.KINDS)
    made = actions.audited_export(who, kind, "lot")
    return _attachment(made.data, made.mimetype, made.filename)


@bp.post("/exports")
@needs("report")
def export_job():
    """Start the export as a background job and show its progress page."""
    job = long_work.start_export(principal(), request.form)
    return redirect(url_for("portal.jobs.job", job_id=job.id), code=303)


@bp.get("/integrity")
@needs("integrity")
def integrity_page():
    who = principal()
    store = read_store()
    found = integrity.latest(store, _log_key())
    audit(who, "integrity", {"size": found.get("size")})
    return render_template("portal/integrity.html", latest=found, result=None)


@bp.post("/integrity/verify")
@needs("integrity")
def verify():
    who = principal()
    store = read_store()
    uri = (request.form.get("lot") or "").strip()
    if not uri:  # the whole ledger: a background job with a progress page
        job = long_work.start_verify(who, _log_key())
        return redirect(url_for("portal.jobs.job", job_id=job.id), code=303)
    result = integrity.verify_one(store, _log_key(), actions.lot_uri_of(uri, "lot"))
    audit(
        who,
        "verify",
        {"lot": uri or None},
        "ok" if result["ok"] else f"problems: {len(result['problems'])}",
    )
    return render_template(
        "portal/integrity.html", latest=integrity.latest(store, _log_key()), result=result
    )


@bp.post("/integrity/consistency")
@needs("integrity")
def consistency():
    who = principal()
    store = read_store()
    note = request.form.get("checkpoint", "")
    result = integrity.consistency(store, _log_key(), note)
    result["scope"] = "consistency"
    audit(
        who,
        "consistency",
        {"old_size": result.get("old_size"), "new_size": result.get("new_size")},
        "ok" if result["ok"] else f"failed: {result.get('problem')}",
    )
    return render_template(
        "portal/integrity.html", latest=integrity.latest(store, _log_key()), result=result
    )


@bp.get("/audit")
@needs("audit")
def audit_trail():
    who = principal()
    accounts = portal().accounts
    before = optional_int_arg("before")
    action = (request.args.get("action") or "").strip()[:40] or None
    actor = (request.args.get("actor") or "").strip()[:100] or None
    entries = accounts.audit_entries(limit=100, before=before, action=action, actor=actor)
    report = integrity.audit_trail(accounts, read_store())  # the chain, and its anchors
    checked, problem = report.checked, report.problem
    audit(who, "audit-view", {"before": before, "action": action, "actor": actor})
    return render_template(
        "portal/audit.html",
        entries=entries,
        checked=checked,
        problem=problem,
        action=action or "",
        actor=actor or "",
    )
