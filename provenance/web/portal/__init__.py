"""The producer and regulator portals (``/portal/…``) and the JSON API
(``/api/v1/…``), with accounts, sessions, CSRF, rate limits and the audit
trail. `init_app(app)` wires it all into the app factory; docs/portal.md says
what each route does, who may use it and how the keys are kept.

Blueprints: ``portal`` (a parent that loads the session and checks CSRF) with
``portal.auth``, ``portal.producer``, ``portal.regulator`` and
``portal.admin``; and ``api``.
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from provenance.core.errors import NotFound, ProvenanceError, ValidationError

from . import (
    admin,
    analytics,
    api,
    auth,
    browser_keys,
    common,
    guard,
    long_work,
    producer,
    regulator,
)
from .state import EXTENSION, Portal, defaults, portal

UPLOAD_ENDPOINTS = frozenset({"portal.producer.upload_document"})


def init_app(app: Flask) -> None:
    defaults(app)
    app.extensions[EXTENSION] = Portal(app)
    app.session_interface = guard.PortalSessionInterface()
    hops = int(app.config["TRUSTED_PROXIES"] or 0)
    if hops:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops
        )
    app.before_request(guard.rate_limit)
    app.before_request(api.unrouted)
    app.after_request(analytics.count_consumer_scans)
    app.register_error_handler(guard.PortalError, guard.handle_portal_error)
    app.register_error_handler(browser_keys.SignInBrowser, browser_keys.render_sign_page)
    app.jinja_env.globals.update(
        csrf_token=guard.csrf_token,
        status_sentences=common.status_sentences,
        vvm_anchors=common.vvm_anchors,
        can=lambda action: g.get("principal") is not None and guard.allowed(g.principal, action),
    )
    app.register_blueprint(_portal_blueprint())
    app.register_blueprint(api.bp)


def _portal_blueprint() -> Blueprint:
    bp = Blueprint("portal", __name__, url_prefix="/portal")
    bp.before_request(_before)
    bp.after_request(_harden)
    for exception in (ValidationError, NotFound, ProvenanceError, HTTPException):
        bp.register_error_handler(exception, _refusal)
    bp.register_blueprint(auth.bp)
    bp.register_blueprint(producer.bp)
    bp.register_blueprint(regulator.bp)
    bp.register_blueprint(admin.bp)
    bp.register_blueprint(browser_keys.bp)
    bp.register_blueprint(long_work.bp)
    return bp


def _before() -> None:
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = portal().config["DOCUMENT_MAX_BYTES"] + 64 * 1024
    guard.load_principal()
    guard.check_csrf()


def _harden(response: Response) -> Response:
    """Portal pages: our stylesheet from /static, nothing cached by proxies."""
    csp = current_app.config["CSP"].replace("style-src ", "style-src 'self' ", 1)
    response.headers.setdefault("Content-Security-Policy", csp)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _refusal(exc: Exception):
    if isinstance(exc, HTTPException):
        status = exc.code or 500
        return guard.render_refusal(status, exc.name.lower(), exc.description or exc.name)
    status = 404 if isinstance(exc, NotFound) else 400
    title = "not found" if status == 404 else "bad request"
    return guard.render_refusal(status, title, str(exc))


__all__ = ["init_app"]
