"""One place that turns errors into answers: a page for browsers, JSON for
programs, always with the status code and a reason that says what to do."""

from __future__ import annotations

import logging

from flask import Flask, render_template, request
from werkzeug.exceptions import HTTPException

from provenance.core.errors import NotFound, ValidationError

log = logging.getLogger(__name__)


class Unavailable(Exception):
    """The ledger cannot be read (missing file, not a ledger): 503."""


class InvalidCode(ValidationError):
    """A scanned or typed code that is not a GS1 Digital Link of a lot: 400,
    and the page says "This code is not valid". Only the resolver's parsing of
    the code raises it; any other ValidationError is not about the code."""


class PageFailure(Exception):
    """A page or export of a lot the ledger holds could not be built: our bug,
    not the shopper's code. 500; the cause is logged, never shown."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(what)


def wants_json() -> bool:
    best = request.accept_mimetypes.best_match(
        ["text/html", "application/json", "application/ld+json", "application/linkset+json"]
    )
    return best is not None and best != "text/html"


def answer(
    status: int, title: str, detail: str, *, hint: str | None = None, invalid_code: bool = False
):
    if wants_json():
        body = {"error": title, "detail": detail}
        if hint:
            body["hint"] = hint
        return body, status
    page = render_template(
        "error.html",
        status=status,
        title=title,
        detail=detail,
        hint=hint,
        invalid_code=invalid_code,
    )
    return page, status


def init_app(app: Flask) -> None:
    @app.errorhandler(InvalidCode)
    def invalid_code(exc: InvalidCode):
        return answer(400, "invalid code", str(exc), invalid_code=True)

    @app.errorhandler(ValidationError)
    def bad_input(exc: ValidationError):
        return answer(400, "bad request", str(exc))

    @app.errorhandler(PageFailure)
    def page_failure(exc: PageFailure):
        log.error("could not build %s", exc.what, exc_info=exc.__cause__ or exc)
        return answer(
            500,
            "server error",
            f"This lot is in the ledger, but its {exc.what} could not be made here. Try again "
            "later; if it keeps failing, tell the operator of this site.",
        )

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
