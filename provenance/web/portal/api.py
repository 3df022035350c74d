"""The JSON API, ``/api/v1/…``, for partner systems and scripts.

Every request carries ``Authorization: Bearer pvt_…``, a token scoped to one
party (with its role, and a ``write`` or ``read`` scope). Cookies are never
looked at, so there is no CSRF to guard against. The same actions as the
portal, plus ``POST /api/v1/events`` for envelopes the client signed itself.
Errors are ``{"error", "detail", "reason"}`` with a 4xx status that says
whose fault it is (docs/portal.md lists them).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from provenance.core.errors import NotFound, ProvenanceError, ValidationError
from provenance.core.identity import COMMISSIONING_ROLES
from provenance.core.jcs import parse_json
from provenance.store.accounts.models import TokenRefused
from provenance.store.queries import search_lots

from ..params import int_arg, optional_int_arg
from ..present import lot_json
from ..state import store as read_store
from . import actions, common, integrity, queries
from .actions import audit, party_identity
from .guard import NO_TOKEN, PortalError, bearer_principal, principal, render_refusal, require
from .reports import recall_report
from .state import portal

bp = Blueprint("api", __name__, url_prefix="/api/v1")

MAX_ENVELOPES = 1000
MAX_AUDIT_LIMIT = 1000
MAX_ENVELOPE_BODY = 4 * 1024 * 1024
LARGE_BODIES = {"api.envelopes": MAX_ENVELOPE_BODY}


def unrouted() -> None:
    """App-wide before_request: unknown API paths and methods answer JSON."""
    if not request.path.startswith("/api/"):
        return
    failed = request.routing_exception
    if isinstance(failed, HTTPException) and failed.code in (404, 405):
        detail = (
            f"no API route {request.method} {request.path}: see docs/portal.md"
            if failed.code == 404
            else f"{request.path} does not take {request.method}"
        )
        title = "not found" if failed.code == 404 else "method not allowed"
        raise PortalError(failed.code, title, detail, reason="route")


@bp.before_request
def authenticate() -> None:
    if request.endpoint in LARGE_BODIES:
        request.max_content_length = LARGE_BODIES[request.endpoint]
    elif request.endpoint == "api.documents":
        request.max_content_length = portal().config["DOCUMENT_MAX_BYTES"] + 64 * 1024
    try:
        g.principal = bearer_principal(request.headers.get("Authorization", ""))
    except TokenRefused as exc:
        reason = "no-token" if str(exc) == NO_TOKEN else "bad-token"
        raise PortalError(401, "unauthorised", str(exc), reason=reason) from exc


@bp.errorhandler(ValidationError)
def _bad(exc: ValidationError):
    return render_refusal(400, "bad request", str(exc), "schema")


@bp.errorhandler(NotFound)
def _missing(exc: NotFound):
    return render_refusal(404, "not found", str(exc), "not-found")


@bp.errorhandler(ProvenanceError)
def _refused(exc: ProvenanceError):
    return render_refusal(400, "bad request", str(exc), "refused")


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException):
    return render_refusal(exc.code or 500, exc.name.lower(), exc.description or exc.name)


def _body() -> dict[str, Any]:
    """The request's JSON object, parsed strictly (no duplicate keys)."""
    raw = request.get_data(cache=True)
    if not raw:
        raise ValidationError("body", "send a JSON object (Content-Type: application/json)")
    value = parse_json(raw)
    if not isinstance(value, dict):
        raise ValidationError("body", "must be a JSON object")
    return value


def _text(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ValidationError(name, "is required")
        return None
    if not isinstance(value, str):
        raise ValidationError(name, "must be a string")
    return value


def _list(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list) or not value:
        raise ValidationError(name, "must be a non-empty list")
    return value


def _created(done: actions.Done, **extra: Any) -> tuple[Response, int]:
    return jsonify({**done.to_json(), **extra}), 201


def _uri_arg() -> str:
    return actions.lot_uri_of(request.args.get("uri"), "uri")


def _shipment(s: queries.Shipment) -> dict[str, Any]:
    return {
        "shipment": s.event_id,
        "from": s.sender.name if s.sender else None,
        "to": s.receiver.name if s.receiver else None,
        "lots": [lot.uri for lot in s.lots],
        "time": s.time,
        "location": s.location,
    }


# --- who am I


@bp.get("/me")
def me():
    who = principal()
    party: dict[str, Any] = {"name": who.party_name, "did": who.party_did}
    identity = read_store().identity_by_did(who.party_did) if who.party_did else None
    if identity is not None and identity.role in COMMISSIONING_ROLES:
        # the GS1 company prefixes it may commission lots under (docs/protocol.md §3)
        party["gs1_company_prefixes"] = read_store().prefixes(identity.id)
    return {"actor": who.actor, "role": who.role, "scope": who.scope, "party": party}


@bp.get("/parties")
def parties():
    return {
        "parties": [
            {"name": p.name, "role": p.role, "did": p.did, "revoked_from": p.revoked_from}
            for p in queries.parties(read_store())
        ]
    }


# --- lots


@bp.get("/lots")
def lots():
    who = principal()
    store = read_store()
    me_ = party_identity(store, who)
    page, size, offset = common.page_args(portal().config["PORTAL_PAGE_SIZE"])
    found, total = queries.party_lots(store, me_.id, limit=size, offset=offset)
    return {
        "lots": [common.lot_row(store, lot).to_json() for lot in found],
        "total": total,
        "page": page,
    }


@bp.get("/lots/lookup")
def lot():
    who = principal()
    store = read_store()
    found = common.lot_by_uri_for(store, who, _uri_arg())
    view = common.view_of(store, found)
    if view is None:
        raise PortalError(503, "unavailable", f"{found.uri} cannot be read now", reason="view")
    return {"id": found.id, **lot_json(view)}


@bp.post("/lots")
def commission():
    require(principal(), "commission")  # the role first, then the body
    body = _body()
    done = actions.commission(
        principal(),
        gtin=_text(body, "gtin") or "",
        lot=_text(body, "lot") or "",
        product=_text(body, "product") or "",
        category=_text(body, "category", required=False),
        expiry=_text(body, "expiry", required=False),
        profile=_text(body, "profile", required=False),
        produced=_text(body, "produced", required=False),
        quantity=body.get("quantity"),
        origin=body.get("origin"),
    )
    return _created(done)


@bp.get("/lots/label")
def label():
    who = principal()
    require(who, "label")
    store = read_store()
    found = common.lot_by_uri_for(store, who, _uri_arg())
    kind = request.args.get("format", "png")
    if kind not in ("png", "pdf"):
        raise ValidationError("format", "must be png or pdf")
    count = int_arg("count", 24, low=1, high=common.MAX_LABELS)
    data, mimetype = common.label_bytes(store, who, found, kind, count)
    audit(who, "label", {"lot": found.uri, "format": kind, "count": 1 if kind == "png" else count})
    return Response(data, mimetype=mimetype)


# --- custody


@bp.get("/shipments")
def shipments():
    who = principal()
    store = read_store()
    me_ = party_identity(store, who)
    return {
        "incoming": [_shipment(s) for s in queries.open_shipments(store, me_.id, incoming=True)],
        "outgoing": [_shipment(s) for s in queries.open_shipments(store, me_.id, incoming=False)],
    }


@bp.post("/shipments")
def ship():
    require(principal(), "ship")  # the role first, then the body
    body = _body()
    done = actions.ship(
        principal(),
        lots=_list(body, "batches"),
        to=_text(body, "to") or "",
        where=body.get("location"),
        purpose=_text(body, "purpose", required=False),
        quantities=body.get("quantities"),
    )
    return _created(done, shipment=done.event_ids[0])


@bp.post("/shipments/<event_id>/receive")
def receive(event_id: str):
    require(principal(), "receive")  # the role first, then the body
    body = _body() if request.get_data(cache=True) else {}
    done = actions.receive(
        principal(),
        shipment=event_id,
        where=body.get("location"),
        condition=_text(body, "condition", required=False),
        quantities=body.get("quantities"),
        damaged=body.get("damaged"),
    )
    return _created(done)


@bp.post("/transforms")
def transform():
    require(principal(), "transform")  # the role first, then the body
    body = _body()
    done = actions.transform(
        principal(),
        inputs=_list(body, "inputs"),
        outputs=_list(body, "outputs"),
        where=body.get("location"),
    )
    return _created(done)


@bp.post("/documents")
def documents():
    """multipart/form-data: ``file``, ``batches`` (one field per lot URI),
    ``result`` (pass/fail), optional ``notes``."""
    require(principal(), "document")
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise ValidationError("file", "attach the document as the multipart field 'file'")
    lots = [b for value in request.form.getlist("batches") for b in value.split(",") if b]
    done, document = actions.attach_document(
        principal(),
        lots=lots,
        stream=upload.stream,
        filename=upload.filename,
        declared_type=upload.mimetype,
        result=request.form.get("result", ""),
        notes=request.form.get("notes"),
    )
    return _created(
        done,
        document={
            "sha256": document.sha256,
            "name": document.name,
            "media_type": document.media_type,
            "size": document.size,
        },
    )


@bp.get("/documents/<sha256>")
def document(sha256: str):
    return common.send_document(principal(), sha256)


@bp.post("/events")
def envelopes():
    """Envelopes the client signed: one JSON object or an array. All or nothing
    unless ``?atomic=false``."""
    who = principal()
    raw = request.get_data(cache=True)
    if not raw:
        raise ValidationError("body", "send a signed envelope, or a JSON array of them")
    value = parse_json(raw, max_depth=33)
    items = value if isinstance(value, list) else [value]
    if not items or len(items) > MAX_ENVELOPES:
        raise ValidationError("body", f"send 1 to {MAX_ENVELOPES} envelopes")
    atomic = request.args.get("atomic", "true").lower() not in ("false", "0", "no")
    results = actions.append_envelopes(who, items, atomic=atomic)
    body = {
        "results": [
            {
                "status": r.status,
                "event_id": r.event_id,
                "log_index": r.index,
                **({"reason": r.reason, "message": r.message} if not r.ok else {}),
            }
            for r in results
        ]
    }
    if all(r.ok for r in results):
        return jsonify(body), 201
    refused = [r for r in results if r.status == "rejected"]
    worst = max((actions.STATUS_OF_REASON.get(r.reason or "", 400) for r in refused), default=409)
    body.update(
        error="refused",
        detail=f"{len(refused)} of {len(results)} envelopes were refused: see results",
    )
    return jsonify(body), 422 if worst in (400, 409) else worst


# --- regulators


@bp.get("/search")
def search():
    who = principal()
    require(who, "search")
    form = {k: (request.args.get(k) or "").strip()[:200] for k in ("q", "gtin", "lot")}
    page, size, offset = common.page_args(50)
    store = read_store()
    found, total = search_lots(
        store, text=form["q"], gtin=form["gtin"], lot=form["lot"], limit=size, offset=offset
    )
    audit(who, "search", {**form, "page": page, "found": total})
    return {"lots": [common.lot_row(store, lot).to_json() for lot in found], "total": total}


@bp.get("/recalls")
def recalls():
    """Recalls in force: each recall event with the lots it named and how many
    lots (named and downstream) it still holds recalled."""
    who = principal()
    require(who, "report")
    out = [
        {
            "event_id": r.envelope.event_id,
            "log_index": r.event_index,
            "time": r.envelope.time,
            "class": r.envelope.data.get("class"),
            "reason": r.envelope.data.get("reason"),
            "instructions": r.envelope.data.get("instructions"),
            "named": [lot.uri for lot in r.sources],
            "lots_recalled": r.lots,
        }
        for r in queries.active_recall_events(read_store())
    ]
    audit(who, "active-recalls", {"count": len(out)})
    return {"recalls": out}


@bp.post("/recalls")
def recall():
    require(principal(), "recall")  # the role first, then the body
    body = _body()
    done = actions.recall(
        principal(),
        lots=_list(body, "batches"),
        reason=_text(body, "reason") or "",
        recall_class=_text(body, "class") or "",
        instructions=_text(body, "instructions", required=False),
    )
    return _created(done)


@bp.post("/recalls/ack")
def recall_ack():
    """A holder acknowledges a recall: {"batch", "recall", "returned"?,
    "destroyed"?, "notes"?} (quantities as {value, unit}); the envelope's rules
    are the ledger's (docs/protocol.md, "Recall acknowledgements")."""
    require(principal(), "recall-ack")  # the role first, then the body
    body = _body()
    quantities = {}
    for name in ("returned", "destroyed"):
        value = body.get(name)
        if value is not None and not isinstance(value, dict):
            raise ValidationError(name, "must be a quantity {value, unit}")
        quantities[name] = value
    done = actions.recall_ack(
        principal(),
        lot=_text(body, "batch") or "",
        recall=_text(body, "recall") or "",
        notes=_text(body, "notes", required=False),
        **quantities,
    )
    return _created(done)


@bp.post("/recalls/lift")
def lift():
    require(principal(), "recall")  # the role first, then the body
    body = _body()
    done = actions.lift(
        principal(), lots=_list(body, "batches"), reason=_text(body, "reason") or ""
    )
    return _created(done)


@bp.get("/recalls/report")
def report():
    who = principal()
    require(who, "report")
    store = read_store()
    uri = _uri_arg()
    found = store.lot_by_uri(uri)
    if found is None:
        raise NotFound(f"no lot {uri} in this ledger")
    event = optional_int_arg("event")
    result = recall_report(store, portal().accounts, found, event)
    audit(who, "recall-report", {"lot": uri, "event": result.recall.event_id})
    return result.to_json()


@bp.get("/trace")
def trace_lot():
    who = principal()
    require(who, "search")
    return actions.audited_trace(who, read_store()).to_json()


@bp.get("/exports/<kind>")
def export(kind: str):
    """``epcis`` (``?batch=&product=&from=&to=``) or ``fsma204``
    (``?product=&from=&to=&format=csv|xlsx``)."""
    who = principal()
    require(who, "report")
    if kind == "fsma204":
        kind = "fsma204-" + request.args.get("format", "csv")
    made = actions.audited_export(who, kind, "batch")
    return Response(
        made.data,
        mimetype=made.mimetype,
        headers={
            "Content-Disposition": f'attachment; filename="{made.filename}"',
            "X-Provenance-Count": str(made.count),
        },
    )


@bp.get("/integrity")
def integrity_latest():
    who = principal()
    require(who, "integrity")
    result = integrity.latest(read_store(), current_app.config.get("LOG_PUBLIC_KEY"))
    audit(who, "integrity", {"size": result.get("size")})
    return result


@bp.post("/integrity/verify")
def verify():
    who = principal()
    require(who, "integrity")
    body = _body() if request.get_data(cache=True) else {}
    uri = _text(body, "lot", required=False)
    store = read_store()
    key = current_app.config.get("LOG_PUBLIC_KEY")
    if uri:
        result = integrity.verify_one(store, key, actions.lot_uri_of(uri, "lot"))
    else:
        result = integrity.verify_all(store, key, portal().config["VERIFY_WORKERS"])
    audit(who, "verify", {"lot": uri}, "ok" if result["ok"] else "problems")
    return result


@bp.post("/integrity/consistency")
def consistency():
    who = principal()
    require(who, "integrity")
    body = _body()
    result = integrity.consistency(
        read_store(), current_app.config.get("LOG_PUBLIC_KEY"), _text(body, "checkpoint") or ""
    )
    audit(
        who,
        "consistency",
        {"old_size": result.get("old_size"), "new_size": result.get("new_size")},
        "ok" if result["ok"] else f"failed: {result.get('problem')}",
    )
    return result


@bp.get("/audit")
def audit_trail():
    who = principal()
    require(who, "audit")
    before = optional_int_arg("before")
    limit = int_arg("limit", 100, low=1, high=MAX_AUDIT_LIMIT)
    accounts = portal().accounts
    entries = accounts.audit_entries(
        limit=limit, before=before, action=request.args.get("action") or None
    )
    report = integrity.audit_trail(accounts, read_store())  # the chain, and its anchors
    audit(who, "audit-view", {"before": before, "limit": limit})
    return {
        "entries": [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "role": e.role,
                "party": e.party,
                "action": e.action,
                "params": e.params,
                "outcome": e.outcome,
            }
            for e in entries
        ],
        "chain": {
            "entries": report.checked,
            "intact": report.ok,
            "problem": report.problem,
            "anchors": report.anchors,
            "anchored": report.anchored,
        },
    }


__all__ = ["bp", "unrouted"]
