"""Named queries and their subscriptions, ``/epcis/queries/…`` (the REST
binding; docs/epcis.md, "Named queries and subscriptions").

A named query is a saved set of query parameters (the binding's
``{"name", "query"}``, the query as query-schema.json spells it), kept per
owner — the token's party — in the accounts database; ``/queries/{name}/events``
answers it as ``/events`` would, within what the caller may read now. A
subscription sends its answers to a webhook (`epcis_deliveries`), within what
the subscriber may read at each delivery.
"""

from __future__ import annotations

import http.client
import os
import re
import threading
from typing import Any

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from provenance.core.jcs import parse_json
from provenance.exchange.epcis_query import QueryParameterError, parse_query
from provenance.exchange.epcis_vocabulary import context
from provenance.store.accounts.db import DATABASE_FILE
from provenance.store.record_times import RecordTimes

from . import epcis_deliveries as deliveries
from .epcis_api import VERSION_HEADERS, EpcisProblem, _answer, bp
from .epcis_capture import owner_of
from .epcis_events import NotEnrolled, answerable, scope_of
from .portal.state import EXTENSION as PORTAL
from .portal.state import portal
from .state import store as read_store

QUERY_NAME = re.compile(r"[A-Za-z0-9._~-]{1,64}")
MAX_BODY = 64 * 1024
MAX_VALUES = 100  # values of one parameter in a stored query
PAGE_PARAMETERS = ("perPage", "nextPageToken")
EXTENSION = "provenance.epcis_deliveries"
PRIVATE_ENV = "PROVENANCE_EPCIS_PRIVATE_DESTINATIONS"


def query_params(query: Any) -> dict[str, list[str]]:
    """A stored query (query-schema.json: lists of strings, times and numbers
    as strings or numbers) as request parameters; `QueryParameterError`."""
    if not isinstance(query, dict) or not query:
        raise QueryParameterError("query", "must be a non-empty object of query parameters")
    params: dict[str, list[str]] = {}
    for name, value in query.items():
        if name in ("nextPageToken",):
            raise QueryParameterError(name, "has no place in a named query")
        values = value if isinstance(value, list) else [value]
        if not values or len(values) > MAX_VALUES:
            raise QueryParameterError(name, f"give 1 to {MAX_VALUES} values")
        text = []
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (str, int, float)):
                raise QueryParameterError(name, "values must be strings or numbers")
            text.append(str(item) if not isinstance(item, str) else item)
        params[name] = text if isinstance(value, list) else text[:1]
    parse_query(params)  # refuses what /events would refuse
    return params


def _json_body() -> Any:
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        raw = b"x" * (MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise EpcisProblem(413, "QueryTooLargeException", f"at most {MAX_BODY} bytes")
    if request.mimetype not in ("application/json", "application/ld+json"):
        raise EpcisProblem(415, "UnsupportedMediaTypeException", "send application/json")
    try:
        value = parse_json(raw)
    except Exception as exc:
        raise EpcisProblem(400, "ValidationException", f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise EpcisProblem(400, "ValidationException", "the body must be a JSON object")
    return value


def _named(name: str) -> Any:
    found = portal().accounts.named_query(owner_of(g.epcis_principal), name[:64])
    if found is None:
        raise EpcisProblem(404, "NoSuchNameException", f"you have no named query {name[:64]!r}")
    return found


def _json(value: Any, status: int = 200) -> Response:
    response = jsonify(value)
    response.status_code = status
    response.headers.update(VERSION_HEADERS)
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/queries")
def create_query() -> Response:
    body = _json_body()
    name = body.get("name")
    if not isinstance(name, str) or not QUERY_NAME.fullmatch(name):
        raise EpcisProblem(
            400, "ValidationException", "name: 1-64 letters, digits or . _ ~ - (it goes in URLs)"
        )
    unknown = set(body) - {"name", "query"}
    if unknown:
        raise EpcisProblem(
            400, "ValidationException", f"unknown members: {', '.join(sorted(unknown))[:200]}"
        )
    query_params(body.get("query"))
    try:
        added = portal().accounts.add_query(owner_of(g.epcis_principal), name, body["query"])
    except ValueError as exc:
        raise EpcisProblem(413, "QueryTooLargeException", str(exc)) from exc
    if not added:
        raise EpcisProblem(
            409, "ResourceAlreadyExistsException", f"you already have a named query {name!r}"
        )
    response = _json({"name": name, "query": body["query"]}, 201)
    response.headers["Location"] = f"/epcis/queries/{name}"
    return response


@bp.get("/queries")
def list_queries() -> Response:
    found = portal().accounts.named_queries(owner_of(g.epcis_principal))
    return _json([{"name": q.name, "query": q.query} for q in found])


@bp.get("/queries/<name>")
def show_query(name: str) -> Response:
    found = _named(name)
    return _json({"name": found.name, "query": found.query})


@bp.delete("/queries/<name>")
def delete_query(name: str) -> Response:
    if not portal().accounts.delete_query(owner_of(g.epcis_principal), name[:64]):
        raise EpcisProblem(404, "NoSuchNameException", f"you have no named query {name[:64]!r}")
    return Response(status=204, headers=VERSION_HEADERS)


@bp.get("/queries/<name>/events")
def query_events(name: str) -> Response:
    found = _named(name)
    extra = set(request.args) - set(PAGE_PARAMETERS)
    if extra:
        raise QueryParameterError(
            sorted(extra)[0], "a named query takes only perPage and nextPageToken"
        )
    params = query_params(found.query)
    for key in PAGE_PARAMETERS:
        if key in request.args:
            params[key] = request.args.getlist(key)
    return _answer(parse_query(params))


# --- subscriptions


@bp.post("/queries/<name>/subscriptions")
def subscribe(name: str) -> Response:
    found = _named(name)
    body = _json_body()
    who = g.epcis_principal
    known = {"dest", "signatureToken", "reportIfEmpty", "stream", "schedule", "initialRecordTime"}
    unknown = set(body) - known
    if unknown:
        raise EpcisProblem(
            400, "ValidationException", f"unknown members: {', '.join(sorted(unknown))[:200]}"
        )
    try:
        dest = deliveries.check_destination(
            body.get("dest"),
            allow_private=allow_private(current_app),
        )
    except deliveries.DestinationRefused as exc:
        raise EpcisProblem(400, "ValidationException", str(exc)) from exc
    secret = body.get("signatureToken")
    if not isinstance(secret, str) or not (
        deliveries.MIN_SECRET_LENGTH <= len(secret) <= deliveries.MAX_SECRET_LENGTH
    ):
        raise EpcisProblem(
            400,
            "ValidationException",
            f"signatureToken: {deliveries.MIN_SECRET_LENGTH}-{deliveries.MAX_SECRET_LENGTH} "
            "characters, required here: every delivery is signed with it (GS1-Signature: "
            "sha256=<HMAC-SHA256 of the body>)",
        )
    stream, schedule = body.get("stream"), body.get("schedule")
    if (stream is True) == (schedule is not None) or stream not in (None, True, False):
        raise EpcisProblem(
            400,
            "ValidationException",
            'give either "stream": true or a "schedule" (not both, not neither)',
        )
    report_if_empty = body.get("reportIfEmpty", False)
    if not isinstance(report_if_empty, bool):
        raise EpcisProblem(400, "ValidationException", "reportIfEmpty must be true or false")
    clock = portal().clock
    due = None
    if schedule is not None:
        try:
            schedule = deliveries.parse_schedule(schedule)
        except ValueError as exc:
            raise EpcisProblem(400, "ValidationException", str(exc)) from exc
        due = deliveries.next_due(schedule, clock())
        if due is None:
            raise EpcisProblem(400, "ValidationException", "the schedule names no time in a year")
    try:
        created = portal().accounts.add_subscription(
            owner_of(who),
            found.name,
            dest=dest,
            secret=secret,
            stream=stream is True,
            schedule=schedule,
            report_if_empty=report_if_empty,
            delivered_size=_first_index(body.get("initialRecordTime")),
            next_due_us=due,
            principal={"role": who.role, "party_did": who.party_did, "token_id": who.token_id},
        )
    except ValueError as exc:
        raise EpcisProblem(413, "QueryTooLargeException", str(exc)) from exc
    _start(current_app._get_current_object())  # type: ignore[attr-defined]
    response = _json(created.to_json(), 201)
    response.headers["Location"] = f"/epcis/queries/{found.name}/subscriptions/{created.id}"
    return response


def _first_index(initial: Any) -> int:
    """Where a subscription starts: the events appended from now on, or with
    ``initialRecordTime``, those recorded from that time on (the first of them;
    events from before record times were kept are never sent)."""
    size = read_store().log_size()
    if initial is None:
        return size
    if not isinstance(initial, str):
        raise EpcisProblem(400, "ValidationException", "initialRecordTime: an RFC 3339 time")
    try:
        since = parse_query({"GE_recordTime": [initial]}).ge_record
    except QueryParameterError as exc:
        raise EpcisProblem(400, "ValidationException", f"initialRecordTime: {exc}") from exc
    return RecordTimes.read(read_store()).first_from(since or 0, size)


@bp.get("/queries/<name>/subscriptions")
def list_subscriptions(name: str) -> Response:
    found = _named(name)
    subs = portal().accounts.subscriptions(owner_of(g.epcis_principal), found.name)
    return _json([s.to_json() for s in subs])


@bp.get("/queries/<name>/subscriptions/<sub_id>")
def show_subscription(name: str, sub_id: str) -> Response:
    found = portal().accounts.subscription(owner_of(g.epcis_principal), name[:64], sub_id[:64])
    if found is None:
        raise EpcisProblem(404, "NoSuchNameException", f"no subscription {sub_id[:64]}")
    return _json(found.to_json())


@bp.delete("/queries/<name>/subscriptions/<sub_id>")
def unsubscribe(name: str, sub_id: str) -> Response:
    if not portal().accounts.delete_subscription(
        owner_of(g.epcis_principal), name[:64], sub_id[:64]
    ):
        raise EpcisProblem(404, "NoSuchNameException", f"no subscription {sub_id[:64]}")
    return Response(status=204, headers=VERSION_HEADERS)


def allow_private(app: Flask) -> bool:
    """Whether webhooks may go to private, loopback or reserved addresses: the
    app's EPCIS_PRIVATE_DESTINATIONS, else PROVENANCE_EPCIS_PRIVATE_DESTINATIONS=1
    in the environment (a closed network); by default they may not (SSRF)."""
    configured = app.config.get("EPCIS_PRIVATE_DESTINATIONS")
    if configured is not None:
        return bool(configured)
    return os.environ.get(PRIVATE_ENV, "") == "1"


# --- the worker


def worker(app: Flask) -> deliveries.Deliveries:
    """The app's delivery worker (made on first use; `start()` starts it)."""
    found = app.extensions.get(EXTENSION)
    if found is None:
        found = app.extensions.setdefault(
            EXTENSION,
            deliveries.Deliveries(
                lambda: deliver_due(app),
                app.config.get("EPCIS_POLL_SECONDS", deliveries.POLL_SECONDS),
            ),
        )
    return found


def _start(app: Flask) -> None:
    """Start the worker thread, unless the operator (or a test driving
    `deliver_due` itself) turned it off: EPCIS_DELIVERY_THREAD = False."""
    if app.config.get("EPCIS_DELIVERY_THREAD", True):
        worker(app).start()


@bp.before_app_request
def _resume() -> None:
    """After a restart, the first request starts the worker if anyone subscribed."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    if app.extensions.get(EXTENSION) is None and PORTAL in app.extensions:
        if (portal().accounts_dir / DATABASE_FILE).exists() and portal().accounts.subscriptions():
            _start(app)
        else:
            worker(app)  # checked once


_passes = threading.Lock()  # one delivery pass at a time (the thread, a test, a CLI)


def deliver_due(app: Flask) -> None:
    """One pass: every subscription that is due gets its new events."""
    with _passes, app.app_context():
        accounts = portal().accounts
        store = read_store()
        private = allow_private(app)
        for sub in accounts.subscriptions():
            now = portal().clock()
            size = store.log_size()
            if sub.failures >= deliveries.MAX_FAILURES:
                continue
            if sub.next_due_us is not None and sub.next_due_us > now:
                continue
            if sub.stream and size <= sub.delivered_size:
                continue
            if accounts.token_revoked(sub.principal.get("token_id")):
                continue
            _deliver(app, sub, size, now, private)


def _deliver(app: Flask, sub: Any, size: int, now: int, private: bool) -> None:
    accounts = portal().accounts
    scheduled = None if sub.stream else deliveries.next_due(sub.schedule or {}, now)
    try:
        named = accounts.named_query(sub.owner, sub.query_name)
        if named is None:
            return
        scope = scope_of(
            read_store(), sub.principal.get("role", ""), sub.principal.get("party_did")
        )
        query = parse_query(query_params(named.query))
        found = answerable(app.extensions, read_store(), scope).matching(
            query, since_index=sub.delivered_size
        )
        found = sorted(found, key=lambda e: str(e.get("eventTime", "")))
        if not found and not sub.report_if_empty:
            accounts.subscription_delivered(sub.id, delivered_size=size, next_due_us=scheduled)
            return
        step = deliveries.MAX_EVENTS_PER_DELIVERY
        for start in range(0, max(len(found), 1), step):
            body = deliveries.query_document(
                found[start : start + step], sub.query_name, sub.id, context()
            )
            headers = {
                "Content-Type": "application/ld+json",
                "GS1-Signature": deliveries.signature(sub.secret or "", body),
                **VERSION_HEADERS,
            }
            deliveries.post(sub.dest, body, headers, allow_private=private)
    except (
        OSError,
        http.client.HTTPException,
        deliveries.SubscriptionDeliveryFailed,
        deliveries.DestinationRefused,
        NotEnrolled,
        QueryParameterError,
    ) as exc:
        accounts.subscription_failed(
            sub.id, str(exc), now + deliveries.retry_delay_us(sub.failures)
        )
        return
    accounts.subscription_delivered(sub.id, delivered_size=size, next_due_us=scheduled)
