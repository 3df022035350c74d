"""Who may do what, and the checks every request goes through.

- Sessions: Flask's signed cookie (``provenance_session``, path ``/portal``,
  HttpOnly, SameSite=Lax, Secure on HTTPS or when forced) carries only a random
  session id and the CSRF token; the session itself is in the accounts
  database, so signing out, a password change or disabling a user ends it.
  Requests outside ``/portal`` get no session at all.
- CSRF: a synchroniser token in the session, required on every POST, PUT,
  PATCH and DELETE to the portal (form field ``csrf_token`` or header
  ``X-CSRF-Token``): missing → 400, wrong → 403. The API takes only bearer
  tokens, never cookies, so it needs none.
- Rate limits per client address on the public endpoints, sign-in and the API
  (429 with ``Retry-After`` and a reason).
- Every refusal is a `PortalError` with a status and a reason that says what to do.
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from flask import (
    Flask,
    Response,
    current_app,
    g,
    has_request_context,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _

from provenance.core.identity import PARTY_ROLES
from provenance.store.accounts.models import ADMIN, Principal, TokenRefused, User

from ..errors import answer, wants_json
from ..state import store as read_store
from .state import portal

UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# What each role may do in the portal and the API. The ledger checks the
# protocol's rules again (custody, signer roles) when it appends.
PERMISSIONS: dict[str, frozenset[str]] = {
    "commission": frozenset({"producer", "processor"}),
    "transform": frozenset({"producer", "processor"}),
    "ship": frozenset(PARTY_ROLES),
    "receive": frozenset(PARTY_ROLES),
    "document": frozenset(PARTY_ROLES),
    "label": frozenset(PARTY_ROLES) - {"regulator"},
    "envelopes": frozenset(PARTY_ROLES),
    "recall": frozenset({"regulator"}),
    "search": frozenset({"regulator"}),
    "report": frozenset({"regulator"}),
    "integrity": frozenset({"regulator"}),
    "audit": frozenset({"regulator", ADMIN}),
    "users": frozenset({ADMIN}),
    "recall-ack": frozenset(PARTY_ROLES),  # a holder of the lot: the ledger checks
}
WRITES = frozenset(
    {"commission", "transform", "ship", "receive", "document", "envelopes", "recall"}
) | {"recall-ack"}
WHY_NOT = {
    "recall": "only a regulator signs recalls and lifts",
    "commission": "only producers and processors register lots",
    "transform": "only producers and processors record transformations",
    "search": "searching every lot is for regulators",
    "report": "recall reports are for regulators",
    "integrity": "ledger integrity checks are for regulators",
    "audit": "the audit trail is for regulators and admins",
    "users": "managing users is for admins",
    "label": "labels are printed by the parties that make or hold a lot",
}


class PortalError(Exception):
    """A refusal: HTTP status, a short title and a reason that says what to do."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        reason: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        self.status = status
        self.title = title
        self.detail = detail
        self.reason = reason
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(f"{status} {title}: {detail}")


def forbidden(detail: str, reason: str = "forbidden") -> PortalError:
    return PortalError(403, "forbidden", detail, reason=reason)


# --- sessions


class PortalSessionInterface(SecureCookieSessionInterface):
    """Signed-cookie sessions for ``/portal`` only, keyed by a key derived from
    the server secret, with the Secure flag on whenever the request is HTTPS."""

    def open_session(self, app: Flask, request: Any) -> Any:
        if not request.path.startswith("/portal"):
            return self.make_null_session(app)
        return super().open_session(app, request)

    def get_signing_serializer(self, app: Flask) -> Any:
        if not app.secret_key:
            app.secret_key = app.extensions["provenance.portal"].session_key()
        return super().get_signing_serializer(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        forced = bool(app.config.get("SESSION_COOKIE_SECURE"))
        return forced or (has_request_context() and request.is_secure)


def csrf_token() -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def check_csrf() -> None:
    if request.method not in UNSAFE:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token")
    if not sent:
        raise PortalError(
            400,
            "missing CSRF token",
            "this form was sent without its CSRF token: reload the page and send it again",
            reason="csrf-missing",
        )
    expected = session.get("csrf")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        raise PortalError(
            403,
            "bad CSRF token",
            "this form's CSRF token does not match your session (it expired, or the form came "
            "from another site): reload the page and send it again",
            reason="csrf-mismatch",
        )


def user_principal(user: User) -> Principal:
    return Principal(f"user {user.name}", user.role, user.party_did, user.party_name, user.id)


NO_TOKEN = (
    "send an API token: Authorization: Bearer pvt_… (create one in the portal under "
    "API tokens, or with `provenance token create`)"
)


def bearer_principal(header: str) -> Principal:
    """Who an ``Authorization: Bearer pvt_…`` header names, acting for its
    party's current key; `TokenRefused` (with why) for a missing or bad token.
    The JSON API and the EPCIS query interface both authenticate this way."""
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        raise TokenRefused(NO_TOKEN)
    return with_current_key(portal().accounts.token_principal(credentials.strip()))


def with_current_key(found: Principal) -> Principal:
    """*found* acting for its party's current key: an account or token made
    before the party's key was rotated (docs/protocol.md, "Key rotation") acts
    for the new key, never the old one, which the ledger refuses; the accounts
    database follows (its users, tokens and documents move to the new did)."""
    if not found.party_did:
        return found
    current = read_store().current_did(found.party_did)
    if current == found.party_did:
        return found
    portal().accounts.follow_rotation(found.party_did, current)
    return replace(found, party_did=current)


def load_principal() -> None:
    """Set ``g.principal`` from the session (None when signed out)."""
    g.principal = None
    sid = session.get("sid")
    if sid:
        user = portal().accounts.session_user(sid)
        if user is None:
            session.pop("sid", None)
        else:
            g.principal = with_current_key(user_principal(user))
            g.user = user


def principal() -> Principal:
    found = g.get("principal")
    if found is None:
        raise PortalError(401, "sign in", "sign in first", reason="unauthenticated")
    return found


def allowed(who: Principal, action: str) -> bool:
    return who.role in PERMISSIONS[action]


def require(who: Principal, action: str) -> None:
    """403 unless *who*'s role may do *action* (and, for writes, the token may write)."""
    if not allowed(who, action):
        why = WHY_NOT.get(action, f"a {who.role} may not {action}")
        raise forbidden(f"a {who.role} may not do this: {why}", "role")
    if action in WRITES and who.scope != "write":
        raise forbidden("this API token is read-only: create a write token to act", "scope")
    if action in WRITES and not who.party_did:
        raise forbidden("this account belongs to no party, so it cannot sign events", "no-party")


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("principal") is None:
            if request.method in ("GET", "HEAD"):
                return redirect(url_for("portal.auth.login", next=request.full_path.rstrip("?")))
            raise PortalError(401, "sign in", "your session ended: sign in again", reason="session")
        return view(*args, **kwargs)

    return wrapper


def needs(action: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: signed in, and the role may do *action*."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            require(principal(), action)
            return view(*args, **kwargs)

        return login_required(wrapper)

    return decorate


def safe_next(target: str | None) -> str | None:
    """Only our own portal paths (no open redirects)."""
    if (
        target
        and target.startswith("/portal/")
        and not target.startswith("//")
        and not any(c in target for c in "\\\r\n")
    ):
        return target
    return None


# --- rate limits

# endpoint -> limit name (the portal's own endpoints are mapped in `limit_for`)
PUBLIC_LIMITS = {
    "resolver.resolve": "scan",
    "resolver.bundle": "scan",
    "resolver.home": "lookup",
    "resolver.lookup": "lookup",
    "camera.code": "scan",  # one per camera scan, before the page
    "camera.scan": "lookup",
}


def limit_for(endpoint: str | None, method: str, path: str) -> str | None:
    if endpoint in PUBLIC_LIMITS:
        return PUBLIC_LIMITS[endpoint]
    if endpoint and endpoint.startswith("transparency."):
        return "log"
    if endpoint == "portal.auth.login" and method == "POST":
        return "login"
    if path.startswith("/api/"):
        return "api"
    return None


def client_address() -> str:
    return request.remote_addr or "unknown"


def rate_limit() -> Response | None:
    """App-wide before_request: 429 when this client is over its limit."""
    name = limit_for(request.endpoint, request.method, request.path)
    if name is None:
        return None
    limiter = portal().limiters.get(name)
    if limiter is None:
        return None
    wait = limiter.take(client_address(), time.monotonic())
    if not wait:
        return None
    what = {
        "scan": "scans",
        "lookup": "lookups",
        "log": "log requests",
        "login": "sign-in attempts",
        "api": "API requests",
    }.get(name, "requests")
    raise PortalError(
        429,
        "too many requests",
        f"too many {what} from your address: try again in {wait} s",
        reason="rate-limited",
        headers={"Retry-After": str(wait)},
    )


# --- answering refusals


def is_api() -> bool:
    return request.path.startswith("/api/")


def is_portal() -> bool:
    return request.path.startswith("/portal")


def render_refusal(status: int, title: str, detail: str, reason: str | None = None, **extra: Any):
    if is_api():
        body: dict[str, Any] = {"error": title, "detail": detail}
        if reason:
            body["reason"] = reason
        body.update(extra)
        response = jsonify(body)
        response.status_code = status
        return response
    if is_portal():
        if wants_json():
            return render_refusal_json(status, title, detail, reason)
        page = render_template(
            "portal/error.html",
            status=status,
            title=_titles().get(title, title),
            detail=detail,
            reason=reason,
        )
        return page, status
    return answer(status, title, detail)


def _titles() -> dict[str, str]:
    """A refusal's title as a person reads it; the API keeps the English code."""
    return {
        "not found": _("not found"),
        "forbidden": _("not allowed"),
        "bad request": _("this cannot be done as asked"),
        "conflict": _("this clashes with what is already recorded"),
        "sign in": _("please sign in"),
        "unauthorised": _("please sign in"),
        "too large": _("too large"),
        "cannot sign": _("cannot sign now"),
        "unavailable": _("not available now"),
        "cannot make the label": _("cannot make the label"),
        "too many requests": _("too many requests: wait a moment"),
        "method not allowed": _("not possible here"),
        "request entity too large": _("too large"),
    }


def render_refusal_json(status: int, title: str, detail: str, reason: str | None):
    body = {"error": title, "detail": detail}
    if reason:
        body["reason"] = reason
    response = jsonify(body)
    response.status_code = status
    return response


def handle_portal_error(exc: PortalError):
    response = current_app.make_response(
        render_refusal(exc.status, exc.title, exc.detail, exc.reason, **exc.extra)
    )
    for name, value in exc.headers.items():
        response.headers[name] = value
    if exc.status == 401 and is_api():
        response.headers.setdefault("WWW-Authenticate", 'Bearer realm="provenance"')
    return response
