"""The portal for parties that handle lots: producers, processors, carriers,
distributors, retailers and clinics. Each action signs with the party's
server-held key; the ledger checks custody and roles again."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext

from provenance.core.errors import ValidationError
from provenance.domain.coldchain import PROFILES
from provenance.ledger.lineage import active_recalls, held, quantity
from provenance.ledger.lot_model import NOTES

from ..params import int_arg
from ..state import store as read_store
from . import actions, common, forms, queries
from .actions import audit, party_identity
from .browser_keys import when_signed
from .guard import PortalError, forbidden, login_required, needs, principal
from .reports import lot_place
from .state import portal

bp = Blueprint("producer", __name__)

INPUT_ROWS = 3
OUTPUT_ROWS = 2


def _redirect_lot(lot_id: int) -> Response:
    return redirect(url_for("portal.producer.lot", lot_id=lot_id), code=303)


@bp.get("/")
@login_required
def home():
    who = principal()
    if who.is_admin:
        return redirect(url_for("portal.admin.home"))
    if who.role == "regulator":
        return redirect(url_for("portal.regulator.home"))
    store = read_store()
    me = party_identity(store, who)
    page, size, offset = common.page_args(portal().config["PORTAL_PAGE_SIZE"])
    lots, total = queries.party_lots(store, me.id, limit=size, offset=offset)
    rows = [common.lot_row(store, lot) for lot in lots]
    order = common.FEFO if request.args.get("order") == common.FEFO else None
    incoming = queries.open_shipments(store, me.id, incoming=True)
    return render_template(
        "portal/home.html",
        rows=common.fefo(rows) if order else rows,
        ranks=common.fefo_ranks(rows),
        order=order,
        total=total,
        page=page,
        pages=max(1, -(-total // size)),
        incoming=incoming,
        can_sign=portal().accounts.has_party_key(who.party_did or ""),
    )


@bp.get("/lots/<int:lot_id>")
@login_required
def lot(lot_id: int):
    return lot_page(lot_id)


def lot_page(
    lot_id: int, failed: str = "", errors: dict[str, str] | None = None, form: Any = None
) -> str:
    """The lot's page; after a refused form (*failed*: ship, document, lift)
    that form again with its values and a message by each field."""
    who = principal()
    store = read_store()
    found = common.lot_for(store, who, lot_id)
    view = common.view_of(store, found)
    me = store.identity_by_did(who.party_did) if who.party_did else None
    transit = queries.shipments_of_lot(store, found.id)
    incoming = next(  # a split lot may have several open shipments: the one to me
        (s for s in transit if me and s.receiver and s.receiver.id == me.id), None
    )
    state = queries.lot_state(store, found.id)
    documents = portal().accounts.lot_documents(found.uri)
    on_disk = {d.sha256 for d, _ in documents if portal().documents.exists(d.sha256)}
    return render_template(
        "portal/lot.html",
        lot=found,
        view=view,
        holder=store.identity_by_id(found.custodian),
        mine=me is not None and found.custodian == me.id,
        me=me,
        transit=transit[0] if transit else None,
        incoming=incoming,
        parties=queries.ship_destinations(store, found, me, request.args.get("to_q")),
        to_q=(request.args.get("to_q") or "").strip()[:100],
        documents=documents,
        held=on_disk,
        state=state,
        place=lot_place(store, found.id, found.custodian),
        left=held(state) if state else None,
        made=quantity(state.quantity, state.unit) if state else None,
        recalls=active_recalls(store, found.uri),
        may_ack=me is not None and (found.custodian == me.id or store.held_by(found.id, me.id)),
        serials=store.serial_count(found.id),  # docs/protocol.md §19
        time_notes=NOTES,
        disclosed=common.disclosed_fields(store, who, found),
        failed=failed,
        errors=errors or {},
        form=form or {},
    )


def _again(page: Callable[[dict[str, str]], str]) -> Callable[[Exception], Any]:
    """How a refused form answers, now or when the browser's signature comes:
    *page* with the refusal in the reader's words by its field. A server-side
    trouble (5xx: no key, read-only) stays a refusal page."""

    def answer(exc: Exception) -> Any:
        if isinstance(exc, PortalError) and exc.status >= 500:
            raise exc
        status, errors = forms.action_refusal(exc)
        return page(errors), status

    return answer


@bp.route("/lots/new", methods=["GET", "POST"])
@needs("commission")
def new_lot():
    who = principal()
    if request.method == "GET":
        return render_template("portal/new_lot.html", profiles=list(PROFILES), form={}, errors={})
    form = request.form
    errors = forms.lot_form_errors(form)
    if errors:
        return _lot_form_again(form, errors)
    try:
        with when_signed(url_for("portal.producer.home"), _lot_made(_("Lot registered"))):
            done = actions.commission(
                who,
                gtin=form.get("gtin", ""),
                lot=form.get("lot", ""),
                product=form.get("product", ""),
                category=form.get("category") or None,
                expiry=form.get("expiry") or None,
                profile=form.get("profile") or None,
                quantity=actions.form_quantity(form.get("quantity"), form.get("unit"), "quantity"),
                origin=actions.form_location(form.get("origin"), form.get("country")),
                produced=_form_utc(form.get("produced")),
            )
    except ValidationError as exc:
        field = forms.field_of(exc)
        return _lot_form_again(form, {field: forms.refusal_message(field, exc)})
    made = read_store().lot_by_uri(done.lot_uri or "")
    flash(
        _(
            "Lot registered: %(product)s, lot %(lot)s",
            product=form.get("product", "").strip(),
            lot=form.get("lot", "").strip(),
        )
    )
    return _redirect_lot(made.id) if made else redirect(url_for("portal.producer.home"), code=303)


def _lot_form_again(form: Any, errors: dict[str, str]) -> tuple[str, int]:
    """The form again, each message next to its field and every value kept."""
    page = render_template("portal/new_lot.html", profiles=list(PROFILES), form=form, errors=errors)
    return page, 400


def _lot_made(message: str) -> Callable[[list[Any]], str | None]:
    """Once a browser-signed commission or transform is recorded: say so, and
    go to the lot it made (a transform's first output), as the route would."""

    def then(results: list[Any]) -> str | None:
        flash(message + ".")
        index = results[0].index if results else None
        stored = read_store().event_at(index) if index is not None else None
        if stored is None:
            return None
        data, lots = stored.envelope.data, stored.envelope.lots or ()
        uri = data["outputs"][0]["batch"] if "outputs" in data else lots[0]
        made = read_store().lot_by_uri(uri)
        return url_for("portal.producer.lot", lot_id=made.id) if made else None

    return then


def _say(message: str) -> Callable[[list[Any]], None]:
    def then(_results: list[Any]) -> None:
        flash(message)

    return then


_FORM_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2})?")


def _form_utc(value: str | None) -> str | None:
    """A date, or the browser's date-and-time field (``YYYY-MM-DDTHH:MM``, read
    as UTC), as the protocol writes it; anything else goes on as typed, for the
    action to refuse with the rule."""
    text = (value or "").strip()
    if _FORM_TIME.fullmatch(text):
        return text + (":00Z" if len(text) == 16 else "Z")
    return text or None


@bp.post("/lots/<int:lot_id>/ship")
@needs("ship")
def ship(lot_id: int):
    who = principal()
    store = read_store()
    found = common.lot_for(store, who, lot_id)
    form = request.form
    kept = form.to_dict()
    errors = forms.ship_form_errors(form)
    if errors:
        return lot_page(lot_id, "ship", errors, kept), 400
    purpose = form.get("purpose") or None
    if purpose:
        said = _(
            "Sent back lot %(lot)s: custody moves when the receiver confirms receipt.",
            lot=found.lot,
        )
    else:
        said = _(
            "Shipped lot %(lot)s: custody moves when the receiver confirms receipt.", lot=found.lot
        )
    again = _again(lambda errors: lot_page(lot_id, "ship", errors, kept))
    try:
        with when_signed(url_for("portal.producer.lot", lot_id=lot_id), _say(said), again):
            actions.ship(
                who,
                lots=[found.uri],
                to=form.get("to", ""),
                where=actions.form_location(form.get("location"), form.get("country")),
                purpose=purpose,
            )
    except (ValidationError, PortalError) as exc:
        return again(exc)
    flash(said)
    return _redirect_lot(lot_id)


@bp.post("/lots/<int:lot_id>/recall-ack")
@needs("recall-ack")
def recall_ack(lot_id: int):
    """A holder acknowledges a recall of the lot, with what it returned and
    destroyed; signed by the server for a custodial party, else in the browser."""
    who = principal()
    found = common.lot_for(read_store(), who, lot_id)
    form = request.form
    kept = form.to_dict()
    said = _("Recall acknowledged for lot %(lot)s.", lot=found.lot)
    page = _again(lambda errors: lot_page(lot_id, "recall-ack", errors, kept))

    def again(exc: Exception) -> Any:
        if isinstance(exc, PortalError) and exc.status == 409:  # the ledger's reason says why
            errors = {"": _("The ledger refused this: %(rule)s", rule=exc.detail)}
            return lot_page(lot_id, "recall-ack", errors, kept), 409
        return page(exc)

    try:
        returned, destroyed = (
            actions.form_quantity(form.get(name), form.get(f"{name}_unit"), name)
            if (form.get(name) or "").strip()
            else None
            for name in ("returned", "destroyed")
        )
        with when_signed(url_for("portal.producer.lot", lot_id=lot_id), _say(said), again):
            actions.recall_ack(
                who,
                lot=found.uri,
                recall=form.get("recall", ""),
                returned=returned,
                destroyed=destroyed,
                notes=form.get("notes"),
            )
    except (ValidationError, PortalError) as exc:
        return again(exc)
    flash(said)
    return _redirect_lot(lot_id)


@bp.get("/shipments")
@login_required
def shipments():
    return _shipments_page()


def _shipments_page(
    failed: str = "", errors: dict[str, str] | None = None, form: Any = None
) -> str:
    """The shipments page; after a refused receipt (*failed*: the shipment's
    id) its form again with the values kept and the message by its field, or
    at the top when the shipment is no longer waiting."""
    store = read_store()
    me = party_identity(store, principal())
    incoming = queries.open_shipments(store, me.id, incoming=True)
    errors = dict(errors or {})
    if failed and not any(s.event_id == failed for s in incoming):
        errors = {"": " ".join(errors.values())}  # no form to put them by
    return render_template(
        "portal/shipments.html",
        incoming=incoming,
        outgoing=queries.open_shipments(store, me.id, incoming=False),
        failed=failed,
        errors=errors,
        form=form or {},
    )


@bp.post("/shipments/<event_id>/receive")
@needs("receive")
def receive(event_id: str):
    who = principal()
    form = request.form
    kept = form.to_dict()
    errors = forms.receive_form_errors(form)
    if errors:
        return _shipments_page(event_id, errors, kept), 400
    said = _("Receipt confirmed: your party now holds the shipment's lots.")
    again = _again(lambda errors: _shipments_page(event_id, errors, kept))
    try:
        with when_signed(url_for("portal.producer.shipments"), _say(said), again):
            actions.receive(
                who,
                shipment=event_id,
                where=actions.form_location(form.get("location"), form.get("country")),
                condition=form.get("condition") or None,
            )
    except (ValidationError, PortalError) as exc:
        return again(exc)
    flash(said)
    return redirect(url_for("portal.producer.shipments"), code=303)


@bp.route("/transform", methods=["GET", "POST"])
@needs("transform")
def transform():
    who = principal()
    store = read_store()
    me = party_identity(store, who)
    if request.method == "GET":
        return _transform_form(store, me.id, {}, {})
    form = request.form
    errors = forms.transform_form_errors(form, INPUT_ROWS, OUTPUT_ROWS)
    if errors:
        return _transform_form(store, me.id, form, errors), 400
    try:
        return _record_transform(who, form)
    except ValidationError as exc:
        field = forms.transform_field_of(exc)
        message = forms.refusal_message(field.split("_", 1)[-1] if field else "", exc)
        return _transform_form(store, me.id, form, {field: message}), 400


def _transform_form(store: Any, party_id: int, form: Any, errors: dict[str, str]) -> str:
    return render_template(
        "portal/transform.html",
        held=queries.held_lots(store, party_id),
        inputs=range(INPUT_ROWS),
        outputs=range(OUTPUT_ROWS),
        profiles=list(PROFILES),
        form=form,
        errors=errors,
    )


def _record_transform(who: Any, form: Any) -> Response:
    inputs: list[dict[str, Any]] = []
    for n in range(INPUT_ROWS):
        input_uri = form.get(f"in{n}_batch")
        if input_uri:
            inputs.append(
                {
                    "batch": input_uri,
                    "quantity": actions.form_quantity(
                        form.get(f"in{n}_quantity"),
                        form.get(f"in{n}_unit"),
                        f"inputs[{n}].quantity",
                    ),
                }
            )
    outputs: list[dict[str, Any]] = []
    for n in range(OUTPUT_ROWS):
        if form.get(f"out{n}_lot"):
            outputs.append(
                {
                    "gtin": form.get(f"out{n}_gtin", ""),
                    "lot": form.get(f"out{n}_lot", ""),
                    "product": (form.get(f"out{n}_product") or "").strip() or None,
                    "quantity": actions.form_quantity(
                        form.get(f"out{n}_quantity"),
                        form.get(f"out{n}_unit"),
                        f"outputs[{n}].quantity",
                    ),
                    "category": form.get(f"out{n}_category") or None,
                    "expiry": form.get(f"out{n}_expiry") or None,
                    "profile": form.get(f"out{n}_profile") or None,
                }
            )
    said = ngettext(
        "Transformation recorded: %(num)d lot in, %(out)d out",
        "Transformation recorded: %(num)d lots in, %(out)d out",
        len(inputs),
        out=len(outputs),
    )
    with when_signed(url_for("portal.producer.home"), _lot_made(said)):
        done = actions.transform(
            who,
            inputs=inputs,
            outputs=outputs,
            where=actions.form_location(form.get("location"), form.get("country")),
        )
    flash(said + ".")
    made = read_store().lot_by_uri(done.lot_uri or "")
    return _redirect_lot(made.id) if made else redirect(url_for("portal.producer.home"), code=303)


@bp.post("/lots/<int:lot_id>/documents")
@needs("document")
def upload_document(lot_id: int):
    who = principal()
    store = read_store()
    found = common.lot_for(store, who, lot_id)
    upload = request.files.get("file")
    kept = request.form.to_dict()
    errors = forms.document_form_errors(kept, upload is not None and bool(upload.filename))
    if errors or upload is None:
        return lot_page(lot_id, "document", errors, kept), 400
    said = _("Attached %(name)s in a signed inspection.", name=upload.filename)
    again = _again(lambda errors: lot_page(lot_id, "document", errors, kept))
    try:
        with when_signed(url_for("portal.producer.lot", lot_id=lot_id), _say(said), again):
            _event, document = actions.attach_document(
                who,
                lots=[found.uri],
                stream=upload.stream,
                filename=upload.filename,
                declared_type=upload.mimetype,
                result=kept.get("result", ""),
                notes=kept.get("notes"),
            )
    except (ValidationError, PortalError) as exc:
        return again(exc)
    flash(
        _(
            "Attached %(name)s (SHA-256 %(hash)s…) in a signed inspection.",
            name=document.name,
            hash=document.sha256[:16],
        )
    )
    return _redirect_lot(lot_id)


@bp.get("/documents/<sha256>")
@login_required
def document(sha256: str):
    return common.send_document(principal(), sha256)


@bp.get("/lots/<int:lot_id>/label.<kind>")
@needs("label")
def label(lot_id: int, kind: str):
    who = principal()
    if kind not in ("png", "pdf"):
        raise PortalError(
            404, "not found", "labels come as label.png or label.pdf", reason="format"
        )
    store = read_store()
    found = common.lot_for(store, who, lot_id)
    count = int_arg("count", 24, low=1, high=common.MAX_LABELS)
    data, mimetype = common.label_bytes(store, who, found, kind, count)
    audit(
        who,
        "label",
        {"lot": found.uri, "format": kind, "count": 1 if kind == "png" else count},
    )
    name = f"label-{found.gtin}-{found.lot}.{kind}"
    return Response(
        data,
        mimetype=mimetype,
        headers={"Content-Disposition": f'attachment; filename="{_ascii(name)}"'},
    )


def _ascii(name: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-._") else "_" for c in name)


@bp.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens():
    """API tokens of the caller's party: list, create (shown once), revoke."""
    who = principal()
    if not who.party_did:
        raise forbidden("API tokens act for a party; an admin manages them under Admin", "no-party")
    accounts = portal().accounts
    secret = None
    if request.method == "POST":
        scope = request.form.get("scope", "write")
        token, secret = accounts.create_token(
            who.party_did,
            who.party_name or "",
            who.role,
            scope=scope,
            label=request.form.get("label", ""),
            created_by=who.actor,
        )
        audit(who, "token-create", {"token": token.id, "scope": token.scope, "label": token.label})
    return render_template(
        "portal/tokens.html", tokens=accounts.tokens(who.party_did), secret=secret
    )


@bp.post("/tokens/<int:token_id>/revoke")
@login_required
def revoke_token(token_id: int):
    who = principal()
    accounts = portal().accounts
    token = accounts.token(token_id)
    if token is None:
        raise PortalError(404, "not found", f"no token {token_id}", reason="unknown-token")
    if token.party_did != who.party_did:
        raise forbidden("that token belongs to another party", "other-party")
    accounts.revoke_token(token_id)
    audit(who, "token-revoke", {"token": token_id})
    flash(_("Token %(id)s revoked.", id=token_id))
    return redirect(url_for("portal.producer.tokens"), code=303)
