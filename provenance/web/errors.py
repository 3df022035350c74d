"""One place that turns errors into answers: a page for browsers, JSON for
programs, always with the status code and a reason that says what to do."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException

from ..errors import NotFound, ValidationError

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The ledger cannot be read (missing file, not a ledger): 503."""


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(
        ["text/html", "application/json", "application/ld+json", "application/linkset+json"]
    )
    return best is not None and best != "text/html"


def answer(status: int, title: str, detail: str, *, hint: str | None = None):
    if wants_json():
        body = {"error": title, "detail": detail}
        if hint:
            body["hint"] = hint
        return body, status
    page = render_template("error.html", status=status, title=title, detail=detail, hint=hint)
    return page, status


def init_app(app: Flask) -> None:
    @app.errorhandler(ValidationError)
    def bad_input(exc: ValidationError):
        return answer(400, "bad request", str(exc))

    @app.errorhandler(NotFound)
    def not_found(exc: NotFound):
        return answer(404, "not found", str(exc))

    @app.errorhandler(Unavailable)
    def unavailable(exc: Unavailable):
        log.error("ledger unavailable: %s", exc)
        return answer(503, "ledger unavailable", str(exc))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return answer(exc.code or 500, exc.name.lower(), exc.description or exc.name)
