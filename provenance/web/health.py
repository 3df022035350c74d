"""Health endpoints for supervisors, load balancers and `provenance status`:

- ``GET /healthz``: the process answers (liveness); never touches the ledger.
- ``GET /readyz``: the ledger can be read (readiness): 200 with the log's
  size, or 503 with the reason (no ledger yet, a newer schema, a broken file),
  so a balancer sends scans elsewhere until it is fixed.

Both are tiny, uncached (``Cache-Control: no-store``) and carry no ledger data
beyond the log size, which the transparency log publishes anyway.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from . import state
from .errors import Unavailable

bp = Blueprint("health", __name__)


def _no_store(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    return _no_store(jsonify({"status": "ok"}))


@bp.get("/readyz")
def readyz() -> Response:
    try:
        size = state.store().log_size()
    except Unavailable as exc:
        response = jsonify({"status": "unavailable", "reason": str(exc)})
        response.status_code = 503
        return _no_store(response)
    return _no_store(jsonify({"status": "ready", "log_size": size}))
