"""The EPCIS 2.0 capture interface, ``/epcis/capture`` (the REST binding's
write side; docs/epcis.md, "Capture").

A partner's system POSTs an EPCISDocument (or an EPCISQueryDocument); every
event becomes one signed envelope of kind ``epcis``, as `provenance import
epcis` makes them (`provenance.exchange.epcis_import`). Who signs:

- a **custodial** party (the operator holds its key): this server signs each
  event as that party, under the caller's API token;
- a party that **holds its own key** signs each event itself and sends the
  envelopes with the document, as the member ``provenance:envelopes`` (one per
  event, in order, each ``{"v": 1, "kind": "epcis", "data": {"event": …}}``
  with the event as it will be stored: `capture_events` says what that is).
  The server never signs for it, and an event without its envelope is refused.

The job runs to its end inside the request (at most `MAX_CAPTURE_EVENTS`
events, `MAX_CAPTURE_BYTES`), so the 202's job is already finished; it is
written to the accounts database before the first event is appended and again
with its outcome, so ``GET /epcis/capture/{id}`` always tells what became of
an accepted document. `GS1-Capture-Error-Behaviour: rollback` (the default)
stores all or nothing; ``proceed`` stores every event that passes.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from provenance.core.errors import ProvenanceError, ValidationError
from provenance.core.jcs import canonicalize
from provenance.exchange.epcis_import import (
    EpcisInputError,
    Prepared,
    epcis_validator,
    find_schema,
    import_events,
    parse_document,
    prepare,
    schema_problems,
)
from provenance.exchange.epcis_vocabulary import IMPORTED
from provenance.store.accounts.epcis_records import CaptureJob
from provenance.store.accounts.models import KeyUnavailable

from .epcis_api import VERSION_HEADERS, EpcisProblem, bp
from .params import parse_int
from .portal.actions import audit
from .portal.guard import allowed
from .portal.state import portal
from .portal.writer import WriteUnavailable
from .state import store as read_store

MAX_CAPTURE_EVENTS = 1000  # GS1-EPCIS-Capture-Limit
MAX_CAPTURE_BYTES = 4 * 1024 * 1024  # GS1-EPCIS-Capture-File-Size-Limit
MAX_DEPTH = 64  # nesting levels of the JSON document
ENVELOPES = "provenance:envelopes"
BEHAVIOURS = ("rollback", "proceed")
MAX_JOBS_PER_PAGE = 100
MEDIA_TYPES = ("application/json", "application/ld+json")
CAPTURE_HEADERS = {
    "GS1-EPCIS-Capture-Limit": str(MAX_CAPTURE_EVENTS),
    "GS1-EPCIS-Capture-File-Size-Limit": str(MAX_CAPTURE_BYTES),
    "GS1-Capture-Error-Behaviour": "rollback",  # the default; proceed is taken too
}


def owner_of(who: Any) -> str:
    """Whose records (jobs, named queries): the token's party, else its actor."""
    return who.party_did or f"actor:{who.actor}"


def capture_events(document: Any) -> list[Prepared]:
    """The events of a capture document as they will be stored (what a party
    holding its own key signs: ``data = {"event": item.event}``)."""
    return prepare(document)


def _validator() -> Any:
    found = current_app.extensions.get("provenance.epcis_validator")
    if found is None:
        schema = json.loads(find_schema().read_text(encoding="utf-8"))
        found = current_app.extensions["provenance.epcis_validator"] = epcis_validator(schema)
    return found


def _problem(status: int, kind: str, detail: str, position: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": f"epcisException:{kind}",
        "title": kind,
        "status": status,
        "detail": detail,
    }
    if position is not None:
        body["instance"] = f"#/epcisBody/eventList/{position}"
    return body


@bp.route("/capture", methods=["OPTIONS"], provide_automatic_options=False)
def capture_options() -> Response:
    response = Response(status=204)
    response.headers.update(VERSION_HEADERS)
    response.headers.update(CAPTURE_HEADERS)
    response.headers["Allow"] = "OPTIONS, POST, GET"
    return response


@bp.post("/capture")
def capture() -> Response:
    who = g.epcis_principal
    if not allowed(who, "envelopes") or not who.party_did:
        raise EpcisProblem(
            403, "SecurityException", f"a {who.role} may not capture events: it signs none"
        )
    if who.scope != "write":
        raise EpcisProblem(
            403, "SecurityException", "this API token is read-only: capture needs a write token"
        )
    behaviour = request.headers.get("GS1-Capture-Error-Behaviour", "rollback").strip().lower()
    if behaviour not in BEHAVIOURS:
        raise EpcisProblem(
            400,
            "ValidationException",
            f"GS1-Capture-Error-Behaviour {behaviour[:40]!r} is not supported here: "
            "give rollback (all or nothing, the default) or proceed",
        )
    if request.mimetype not in MEDIA_TYPES:
        raise EpcisProblem(
            415,
            "UnsupportedMediaTypeException",
            f"send the EPCIS document as {' or '.join(MEDIA_TYPES)}, not "
            f"{request.mimetype or 'no Content-Type'}",
        )
    if not portal().writer.available():
        raise EpcisProblem(
            503,
            "ImplementationException",
            "this server cannot write to the ledger (no log key in its --keys folder): "
            "nothing was captured",
        )
    document = _read_document()
    envelopes = document.pop(ENVELOPES, None) if isinstance(document, dict) else None
    prepared = _checked(document)
    if envelopes is None and not _server_signs(who):
        raise EpcisProblem(
            403,
            "SecurityException",
            f"{who.party_name} holds its own key, so this server does not sign for it: sign "
            f"each event and send the envelopes as {ENVELOPES!r} (docs/epcis.md, Capture)",
        )
    if envelopes is not None:
        _check_envelopes(envelopes, prepared, who)
    job = portal().accounts.start_capture(owner_of(who), behaviour)
    try:
        success, errors, outcomes = _run(who, prepared, envelopes, behaviour)
    except (WriteUnavailable, KeyUnavailable) as exc:
        success, errors, outcomes = False, [_problem(503, "ImplementationException", str(exc))], []
    except BaseException:  # the job must not stay "running" if the request dies here
        problem = _problem(500, "ImplementationException", "the capture stopped unexpectedly")
        portal().accounts.finish_capture(job.id, success=False, errors=[problem], events=[])
        raise
    portal().accounts.finish_capture(job.id, success=success, errors=errors, events=outcomes)
    stored = sum(1 for o in outcomes if o["status"] == "stored")
    audit(
        who,
        "epcis-capture",
        {"job": job.id, "events": len(prepared), "stored": stored, "behaviour": behaviour},
        "ok" if success else f"{len(errors)} errors",
    )
    if stored:
        from .epcis_named import worker  # stream subscriptions go now, not at the next poll

        worker(current_app._get_current_object()).wake()  # type: ignore[attr-defined]
    finished = portal().accounts.capture_job(owner_of(who), job.id)
    response = jsonify(finished.to_json() if finished else {"captureID": job.id})
    response.status_code = 202
    response.headers.update(VERSION_HEADERS)
    response.headers["Location"] = f"/epcis/capture/{job.id}"
    return response


def _read_document() -> Any:
    if (request.content_length or 0) > MAX_CAPTURE_BYTES:
        raise _too_large(f"the document is {request.content_length} bytes")
    request.max_content_length = MAX_CAPTURE_BYTES
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raise _too_large("the document is larger") from None
    if not raw:
        raise EpcisProblem(400, "ValidationException", "send an EPCISDocument as the body")
    try:
        document, _repeats = parse_document(raw, MAX_DEPTH)
    except (EpcisInputError, ValidationError) as exc:
        raise EpcisProblem(400, "ValidationException", str(exc)) from exc
    return document


def _too_large(what: str) -> EpcisProblem:
    return EpcisProblem(
        413,
        "CaptureLimitExceededException",
        f"{what}; at most {MAX_CAPTURE_BYTES} bytes and {MAX_CAPTURE_EVENTS} events per "
        "capture (GS1-EPCIS-Capture-File-Size-Limit): split it",
    )


def _checked(document: Any) -> list[Prepared]:
    if not isinstance(document, dict) or document.get("type") not in (
        "EPCISDocument",
        "EPCISQueryDocument",
    ):
        raise EpcisProblem(
            400, "ValidationException", "the body must be an EPCISDocument or EPCISQueryDocument"
        )
    count, problems = schema_problems(_validator(), document)
    if count:
        raise EpcisProblem(
            400,
            "ValidationException",
            f"the document does not validate against the EPCIS 2.0 schema ({count} problems): "
            + "; ".join(problems),
        )
    body = document.get("epcisBody") or {}
    listed = body.get("eventList")
    if listed is None:
        listed = ((body.get("queryResults") or {}).get("resultsBody") or {}).get("eventList")
    if isinstance(listed, list) and len(listed) > MAX_CAPTURE_EVENTS:
        raise _too_large(f"the document has {len(listed)} events")
    try:
        prepared = prepare(document)
    except ProvenanceError as exc:
        raise EpcisProblem(400, "ValidationException", str(exc)) from exc
    if not prepared:
        raise EpcisProblem(400, "ValidationException", "the document has no events")
    return prepared


def _server_signs(who: Any) -> bool:
    """Whether this server signs the caller's events: a custodial party (not a
    regulator) whose key it holds; 403 for a custodial party whose key it lacks."""
    from provenance.store.key_custody import is_custodial

    identity = read_store().identity_by_did(who.party_did)
    if identity is None:
        raise EpcisProblem(
            403, "SecurityException", f"{who.party_name} is not enrolled in this ledger"
        )
    if identity.role == "regulator" or not is_custodial(read_store(), identity):
        return False  # as the portal: a regulator signs for itself, always
    try:
        portal().accounts.party_key(who.party_did)
    except KeyUnavailable as exc:
        raise EpcisProblem(
            403, "SecurityException", f"{exc}; or sign the events yourself (docs/epcis.md)"
        ) from exc
    return True


def _check_envelopes(envelopes: Any, prepared: list[Prepared], who: Any) -> None:
    """Each event has its envelope, signed by the caller's party (or one of its
    devices), kind epcis, carrying exactly the event as it will be stored. The
    signatures themselves are checked by the ledger on append."""
    if not isinstance(envelopes, list) or len(envelopes) != len(prepared):
        raise EpcisProblem(
            400,
            "ValidationException",
            f"{ENVELOPES} must list one signed envelope per event ({len(prepared)})",
        )
    store = read_store()
    me = store.identity_by_did(who.party_did)
    for item, envelope in zip(prepared, envelopes, strict=True):
        where = f"event {item.position} ({item.event_id})"
        if not isinstance(envelope, dict) or not isinstance(envelope.get("sig"), str):
            raise EpcisProblem(400, "ValidationException", f"{where}: its envelope is not signed")
        signer = store.identity_by_did(str(envelope.get("signer")))
        mine = (
            me is not None
            and signer is not None
            and (signer.id == me.id or (signer.type == "device" and signer.owner == me.id))
        )
        if not mine:
            raise EpcisProblem(
                403,
                "SecurityException",
                f"{where}: signed by {str(envelope.get('signer'))[:80]}, which is neither your "
                "party nor one of its devices",
            )
        if envelope.get("kind") != IMPORTED or _canonical(envelope.get("data")) != _canonical(
            {"event": item.event}
        ):
            raise EpcisProblem(
                400,
                "ValidationException",
                f"{where}: its envelope must be of kind {IMPORTED} and carry exactly this event "
                "as stored (with its eventID)",
            )


def _canonical(value: Any) -> bytes | None:
    try:
        return canonicalize(value)
    except (TypeError, ValueError, ProvenanceError):
        return None


def _run(
    who: Any, prepared: list[Prepared], envelopes: list[Any] | None, behaviour: str
) -> tuple[bool, list[dict[str, Any]], list[dict[str, Any]]]:
    """Append the events; (success, errors as problems, what became of each)."""
    source = f"epcis capture:{who.actor}"
    if envelopes is not None:
        results = portal().writer.append(envelopes, atomic=behaviour == "rollback", source=source)
        outcomes = [
            {
                "eventID": item.event_id,
                "status": "stored" if r.status == "accepted" else r.status,
                "ledgerEventId": r.event_id if r.ok else None,
                **({"reason": f"{r.reason}: {r.message}"} if not r.ok else {}),
            }
            for item, r in zip(prepared, results, strict=True)
        ]
    else:
        outcomes = _sign_and_append(who, prepared, behaviour, source)
    errors = [
        _problem(400, "ValidationException", f"event {i} ({o['eventID']}): {o['reason']}", i)
        for i, o in enumerate(outcomes)
        if o["status"] in ("rejected", "aborted") and o.get("reason")
    ]
    return not errors, errors, outcomes


def _sign_and_append(
    who: Any, prepared: list[Prepared], behaviour: str, source: str
) -> list[dict[str, Any]]:
    """Sign as the caller's custodial party. With proceed, the events refused
    are left out and the rest appended again (at most three rounds)."""
    key = portal().accounts.party_key(who.party_did or "")
    final: dict[int, Any] = {}
    remaining = list(prepared)
    for _ in range(3):
        report = portal().writer.run(
            lambda ledger, todo=remaining: import_events(ledger, key, todo, source=source)
        )
        for outcome in report.outcomes:
            final[outcome.position] = outcome
        if report.ok or behaviour == "rollback":
            break
        refused = {o.position for o in report.outcomes if o.status == "rejected"}
        remaining = [item for item in remaining if item.position not in refused]
        if not remaining or not refused:
            break
    return [
        {
            "eventID": item.event_id,
            "status": final[item.position].status,
            "ledgerEventId": final[item.position].ledger_id,
            **({"reason": final[item.position].message} if final[item.position].message else {}),
        }
        for item in prepared
    ]


@bp.get("/capture")
def capture_jobs() -> Response:
    who = g.epcis_principal
    per_page = _per_page()
    offset = _offset()
    jobs = portal().accounts.capture_jobs(owner_of(who), limit=per_page + 1, offset=offset)
    response = jsonify([job.to_json() for job in jobs[:per_page]])
    response.headers.update(VERSION_HEADERS)
    response.headers["Cache-Control"] = "private, no-store"
    if len(jobs) > per_page:
        response.headers["Link"] = (
            f'<{request.base_url}?perPage={per_page}&nextPageToken={offset + per_page}>; rel="next"'
        )
    return response


@bp.get("/capture/<capture_id>")
def capture_job(capture_id: str) -> Response:
    job: CaptureJob | None = portal().accounts.capture_job(
        owner_of(g.epcis_principal), capture_id[:64]
    )
    if job is None:
        raise EpcisProblem(404, "NoSuchNameException", f"no capture job {capture_id[:64]} of yours")
    response = jsonify(job.to_json())
    response.headers.update(VERSION_HEADERS)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _per_page() -> int:
    try:
        return parse_int(
            request.args.get("perPage", "30"), "perPage", low=1, high=MAX_JOBS_PER_PAGE
        )
    except ValidationError as exc:
        raise EpcisProblem(400, "QueryParameterException", str(exc)) from None


def _offset() -> int:
    try:
        return parse_int(request.args.get("nextPageToken", "0"), "nextPageToken", high=10**9)
    except ValidationError:
        raise EpcisProblem(
            400, "QueryParameterException", "nextPageToken: not one this server gave"
        ) from None
