"""The EPCIS 2.0 REST query interface, ``/epcis/…`` (the standard's OpenAPI
binding, read side; docs/epcis.md, "Query interface").

A partner's system asks the ledger the standard's questions — ``GET
/epcis/events?EQ_bizStep=shipping&GE_eventTime=…``, ``/epcis/epcs/{epc}/events``,
``/epcis/eventTypes``, ``/epcis/bizSteps`` … — and gets an EPCISQueryDocument
that validates against the official schema, its events exactly as `provenance
export epcis` writes them (each with its CBV 2.0 event hash and its ledger
event id, so every answer can be tied to a signed envelope and its proof).

Who may read what: every request carries an API token (``Authorization:
Bearer pvt_…``, as for ``/api/v1``). A regulator's token reads every lot's
events; any other party's, the events of the lots it made or held at any time.
Paging: ``perPage`` (default 30, at most 1,000); when more remain, a ``Link:
<…>; rel="next"`` header carries ``nextPageToken``. Errors are RFC 7807
problem details with the binding's exception types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import WebsocketMismatch

from provenance.core.errors import ProvenanceError
from provenance.core.timefmt import format_time, now_micros
from provenance.exchange.epcis_query import (
    EVENT_TYPES,
    EventQuery,
    QueryParameterError,
    page_token,
    parse_query,
    read_page_token,
)
from provenance.exchange.epcis_vocabulary import SCHEMA_VERSION, context
from provenance.store.accounts.models import TokenRefused

from .epcis_events import NotEnrolled, answerable, scope_of
from .portal.guard import bearer_principal
from .state import store as read_store

bp = Blueprint("epcis", __name__, url_prefix="/epcis")

VERSION_HEADERS = {"GS1-EPCIS-Version": "2.0.0", "GS1-CBV-Version": "2.0.0"}


class EpcisProblem(Exception):
    """An RFC 7807 answer with an EPCIS exception type."""

    def __init__(self, status: int, kind: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.kind, self.detail = status, kind, detail
        self.headers = headers or {}


@bp.app_errorhandler(EpcisProblem)
def _problem(exc: EpcisProblem) -> Response:
    body = {
        "type": f"epcisException:{exc.kind}",
        "title": exc.kind,
        "status": exc.status,
        "detail": exc.detail,
    }
    response = jsonify(body)
    response.status_code = exc.status
    response.mimetype = "application/problem+json"
    response.headers.update(VERSION_HEADERS)
    response.headers.update(exc.headers)
    return response


@bp.after_request
def _discovery(response: Response) -> Response:
    """OPTIONS answers as the binding's discovery: 204, the methods and versions."""
    if request.method == "OPTIONS" and response.status_code == 200:
        response.status_code = 204
        response.set_data(b"")
        response.headers.update(VERSION_HEADERS)
    return response


_KIND_OF_STATUS = {
    401: "SecurityException",
    403: "SecurityException",
    404: "NoSuchNameException",
    406: "NotAcceptableException",
    413: "QueryTooLargeException",
    414: "URITooLongException",
    415: "UnsupportedMediaTypeException",
}


@bp.before_app_request
def _unrouted() -> None:
    """A path under /epcis that no route takes (or a WebSocket upgrade, which
    this server does not offer) is answered as a problem, not a page."""
    failed = request.routing_exception
    if not isinstance(failed, HTTPException) or not (
        request.path == "/epcis" or request.path.startswith("/epcis/")
    ):
        return
    if isinstance(failed, WebsocketMismatch):
        raise EpcisProblem(
            400,
            "SubscriptionControlsException",
            "WebSocket subscriptions are not offered here: subscribe with a webhook "
            "(POST /epcis/queries/{name}/subscriptions, docs/epcis.md)",
        )
    _raise_http(failed)


def _raise_http(exc: HTTPException) -> None:
    status = exc.code or 500
    kind = _KIND_OF_STATUS.get(
        status, "ImplementationException" if status >= 500 else "ValidationException"
    )
    detail = exc.description or exc.name
    headers = {}
    if status == 404:
        detail = f"no EPCIS resource {request.path[:200]} here (docs/epcis.md lists them)"
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))
    raise EpcisProblem(status, kind, detail, headers)


@bp.errorhandler(HTTPException)
def _http(exc: HTTPException) -> Response:
    """Whatever Flask or a guard refuses under /epcis is a problem too, never a page."""
    try:
        _raise_http(exc)
    except EpcisProblem as problem:
        return _problem(problem)
    raise AssertionError("unreachable")


@bp.errorhandler(QueryParameterError)
def _bad_parameter(exc: QueryParameterError) -> Response:
    return _problem(EpcisProblem(400, "QueryParameterException", str(exc)))


@bp.errorhandler(ProvenanceError)
def _refused(exc: ProvenanceError) -> Response:
    return _problem(EpcisProblem(400, "ValidationException", str(exc)))


@bp.before_request
def authenticate() -> None:
    try:
        g.epcis_principal = bearer_principal(request.headers.get("Authorization", ""))
    except TokenRefused as exc:
        raise EpcisProblem(401, "SecurityException", str(exc)) from exc


def _scope() -> frozenset[str]:
    """The lots the caller may read: EVERYTHING for a regulator."""
    who = g.epcis_principal
    try:
        return scope_of(read_store(), who.role, who.party_did)
    except NotEnrolled as exc:
        raise EpcisProblem(403, "SecurityException", str(exc)) from exc


def _events(scope: frozenset[str]) -> list[dict[str, Any]]:
    """Every EPCIS event the scope may read, in eventTime order."""
    return answerable(current_app.extensions, read_store(), scope).events


def _query(extra: dict[str, str] | None = None) -> EventQuery:
    params = {name: request.args.getlist(name) for name in request.args}
    for name, value in (extra or {}).items():
        params.setdefault(name, []).append(value)
    return parse_query(params)


def _answer(query: EventQuery, also: Callable[[dict[str, Any]], bool] | None = None) -> Response:
    """One page of the events that match *query* (and *also*, when given)."""
    token = request.args.get("nextPageToken")
    offset = read_page_token(query, token) if token else 0
    found = answerable(current_app.extensions, read_store(), _scope()).matching(query)
    matching = query.order([e for e in found if also is None or also(e)])
    if query.limit is not None:
        matching = matching[: query.limit]
    document = {
        "@context": context(),
        "type": "EPCISQueryDocument",
        "schemaVersion": SCHEMA_VERSION,
        "creationDate": format_time(now_micros()),
        "epcisBody": {
            "queryResults": {
                "queryName": "SimpleEventQuery",
                "resultsBody": {"eventList": matching[offset : offset + query.per_page]},
            }
        },
    }
    response = jsonify(document)
    response.mimetype = "application/ld+json"
    response.headers.update(VERSION_HEADERS)
    response.headers["Cache-Control"] = "private, no-store"
    if offset + query.per_page < len(matching):
        args = [(k, v) for k in request.args for v in request.args.getlist(k)]
        args = [(k, v) for k, v in args if k != "nextPageToken"]
        args.append(("nextPageToken", page_token(query, offset + query.per_page)))
        response.headers["Link"] = f'<{request.base_url}?{urlencode(args)}>; rel="next"'
    return response


def _names(values: Iterable[str]) -> Response:
    response = jsonify(sorted(set(values)))
    response.headers.update(VERSION_HEADERS)
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _values(field: str) -> Iterable[str]:
    for event in _events(_scope()):
        value = event.get(field)
        if isinstance(value, dict):
            value = value.get("id")
        if isinstance(value, str):
            yield value


# --- the routes (docs/epcis.md lists them)


@bp.get("/events")
def events() -> Response:
    return _answer(_query())


@bp.get("/events/<path:event_id>")
def event(event_id: str) -> Response:
    """One event by its eventID (percent-encode it: it holds `:`, `/` and `?`)."""
    if not any(e.get("eventID") == event_id for e in _events(_scope())):
        raise EpcisProblem(404, "NoSuchNameException", f"no event {event_id} that you may read")
    return _answer(_query({"EQ_eventID": event_id}))


@bp.get("/eventTypes")
def event_types() -> Response:
    return _names(EVENT_TYPES)


@bp.get("/eventTypes/<event_type>/events")
def events_of_type(event_type: str) -> Response:
    if event_type not in EVENT_TYPES:
        raise EpcisProblem(404, "NoSuchNameException", f"no event type {event_type}")
    return _answer(_query({"eventType": event_type}))


@bp.get("/epcs/<path:epc>/events")
def events_of_epc(epc: str) -> Response:
    """Events that name *epc* anywhere: as an instance (epcList, childEPCs, input
    and output lists, parentID) or as a class (a lot is a class: GTIN and lot,
    in the quantity lists), with the binding's trailing `*` wildcard."""
    instance, lot = EventQuery(any_epcs=(epc,)), EventQuery(any_epc_classes=(epc,))
    return _answer(_query(), lambda e: instance.matches(e) or lot.matches(e))


_VOCABULARIES = {
    "bizSteps": ("bizStep", "EQ_bizStep"),
    "dispositions": ("disposition", "EQ_disposition"),
    "bizLocations": ("bizLocation", "EQ_bizLocation"),
    "readPoints": ("readPoint", "EQ_readPoint"),
}


@bp.get("/<any(bizSteps, dispositions, bizLocations, readPoints):kind>")
def vocabulary(kind: str) -> Response:
    return _names(_values(_VOCABULARIES[kind][0]))


@bp.get("/<any(bizSteps, dispositions, bizLocations, readPoints):kind>/<path:value>/events")
def events_of_vocabulary(kind: str, value: str) -> Response:
    return _answer(_query({_VOCABULARIES[kind][1]: value}))


# the rest of the binding: capture, named queries and subscriptions (their routes join `bp`)
from . import epcis_capture, epcis_named  # noqa: E402,F401
