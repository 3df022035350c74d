"""Long work in the portal: whole-ledger verification and exports run as
background jobs (`jobs.JobRunner`), each with a page that shows its progress
and refreshes itself (no script), then the verdict or the download.

``GET /portal/jobs/`` (the caller's jobs), ``GET /portal/jobs/<id>`` (one job;
``?format=json`` or ``Accept: application/json`` for its state as JSON) and
``GET /portal/jobs/<id>/download``. A job is its starter's alone: anyone else,
a regulator of the same party included, gets 404 as for a job that never was.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, render_template, send_file

from provenance.store.accounts.models import Principal
from provenance.store.db import Store
from provenance.store.location import database_location

from ..errors import wants_json
from . import exports, integrity
from .actions import audit, lot_uri_of
from .guard import PortalError, login_required, principal
from .jobs import Job, JobResult, JobsFull
from .state import portal

bp = Blueprint("jobs", __name__, url_prefix="/jobs")

REFRESH_SECONDS = 2


def _submit(who: Principal, kind: str, title: dict[str, Any], work) -> Job:
    try:
        return portal().jobs.submit(who.actor, kind, title, work)
    except JobsFull as exc:
        raise PortalError(
            429,
            "too many requests",
            f"the server is busy with other long work ({exc}): try again when one is done",
            reason="busy",
            headers={"Retry-After": "30"},
        ) from None


def start_verify(who: Principal, configured: bytes | None) -> Job:
    """Verify the whole ledger in the background; the outcome goes to the audit trail."""
    database = database_location(current_app.config["DATABASE"])
    workers = portal().config["VERIFY_WORKERS"]
    accounts = portal().accounts

    def work(progress, _path: Path) -> JobResult:
        store = Store(database, create=False, readonly=True)
        try:
            result = integrity.verify_all(store, configured, workers, progress=progress)
        finally:
            store.close()
        outcome = "ok" if result["ok"] else f"problems: {result['problem_count']}"
        accounts.audit(
            who.actor,
            "verify",
            {"lot": None, "background": True},
            role=who.role,
            party=who.party_name,
            outcome=outcome,
        )
        return JobResult(result=result)

    return _submit(who, "verify", {}, work)


def start_export(who: Principal, form: Mapping[str, str]) -> Job:
    """Check the export asked for in *form* (a bad field is refused now, 400),
    then write it in the background to a file the job's page offers."""
    lot = (form.get("lot") or "").strip()
    params: dict[str, Any] = {
        "format": form.get("format") or "",
        "lot": lot_uri_of(lot, "lot") if lot else None,
        "product": (form.get("product") or "").strip()[:200] or None,
        "from": form.get("from") or None,
        "to": form.get("to") or None,
    }
    asked = exports.plan(
        params["format"],
        lot=params["lot"],
        product=params["product"],
        since=params["from"],
        until=params["to"],
    )
    database = database_location(current_app.config["DATABASE"])
    accounts = portal().accounts

    def work(progress, path: Path) -> JobResult:
        store = Store(database, create=False, readonly=True)
        try:
            with open(path, "wb") as out:
                count = exports.write(store, asked, out, progress)
        finally:
            store.close()
        accounts.audit(
            who.actor,
            "export",
            {**params, "count": count, "background": True},
            role=who.role,
            party=who.party_name,
        )
        return JobResult(mimetype=asked.mimetype, filename=asked.filename, count=count)

    audit(who, "export-start", params)
    return _submit(who, "export", {k: v for k, v in params.items() if v}, work)


def _mine(job_id: str) -> Job:
    job = portal().jobs.get(job_id, principal().actor) if len(job_id) <= 64 else None
    if job is None:
        raise PortalError(
            404,
            "not found",
            "no such job: it was never started by you, or it was cleared to make room "
            "for newer ones (start it again)",
            reason="unknown-job",
        )
    return job


@bp.get("/")
@login_required
def jobs():
    return render_template("portal/jobs.html", jobs=portal().jobs.of(principal().actor))


@bp.get("/<job_id>")
@login_required
def job(job_id: str):
    found = _mine(job_id)
    if wants_json():
        return jsonify(found.to_json())
    response = Response(render_template("portal/job.html", job=found, refresh=REFRESH_SECONDS))
    if found.state not in ("done", "failed"):
        response.headers["Refresh"] = str(REFRESH_SECONDS)
    return response


@bp.get("/<job_id>/download")
@login_required
def download(job_id: str):
    found = _mine(job_id)
    outcome = found.outcome
    if not found.has_file or outcome is None or found.path is None:
        detail = (
            "this job has no file: it failed, or it checks rather than exports"
            if found.state in ("done", "failed")
            else "the file is not ready yet: wait until the job's page says it is done"
        )
        raise PortalError(409, "conflict", detail, reason="not-ready")
    response = send_file(
        found.path, mimetype=outcome.mimetype, as_attachment=True, download_name=outcome.filename
    )
    response.headers["Content-Disposition"] = f'attachment; filename="{outcome.filename}"'
    response.headers["Cache-Control"] = "no-store"
    return response
