"""Long work in the portal as background jobs (docs/portal.md, "Long work"):
whole-ledger verification and exports start a job, its page shows progress and
refreshes itself without script, then the verdict or the download; a job is
its starter's alone; the runner keeps a bounded number of jobs and stops its
threads and removes its files when closed."""

from __future__ import annotations

import json
import re
import sqlite3
import threading

import pytest
from click.testing import CliRunner
from support.portal import Portal, make_app
from support.world import LOT

from provenance.cli.context import Context
from provenance.cli.exchange import export_epcis, export_fsma204
from provenance.web.portal import integrity
from provenance.web.portal.jobs import DONE, FAILED, RUNNING, JobResult, JobRunner, JobsFull

DEADLINE = 60.0  # seconds a job of the small test ledger may take, under load


def text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def site(file_world, tmp_path):
    world = file_world
    world.ship_and_receive("farm", "packer", [LOT], 2)
    app = make_app(world, tmp_path)
    portal = Portal(world, app, tmp_path)
    portal.user("reg1", "regulator")
    portal.user("reg2", "regulator")
    portal.user("farm1", "farm")
    yield portal
    runner(portal).close()


def runner(portal: Portal) -> JobRunner:
    return portal.app.extensions["provenance.portal"].jobs


def job_id(response) -> str:
    assert response.status_code == 303, text(response)
    found = re.fullmatch(r".*/portal/jobs/([A-Za-z0-9_-]+)", response.headers["Location"])
    assert found, response.headers["Location"]
    return found.group(1)


def finished(portal: Portal, user: str, ident: str):
    """The job once it is done or failed (waited for on its event, bounded)."""
    job = runner(portal).get(ident, f"user {user}")
    assert job is not None
    assert job.wait(DEADLINE), f"job {ident} still {job.state} after {DEADLINE} s"
    return job


def page(portal: Portal, user: str, ident: str, suffix: str = ""):
    """The job's page (or its download, read whole and closed: a file is streamed)."""
    response = portal.client(user).get(f"/portal/jobs/{ident}{suffix}")
    response.get_data()
    response.close()
    return response


def test_verify_job_gives_the_synchronous_verdict(site):
    started = site.post("reg1", "/portal/regulator/integrity/verify", {"lot": ""})
    ident = job_id(started)
    job = finished(site, "reg1", ident)
    assert job.state == DONE, job.error
    expected = integrity.verify_all(site.world.store, site.world.log_public_key, 1)
    assert job.outcome.result == expected and expected["ok"]
    assert job.total == expected["log_size"] > 0 and job.done == job.total  # progress moved
    shown = page(site, "reg1", ident)
    assert shown.status_code == 200
    body = text(shown)
    assert "The whole ledger verifies" in body
    assert 'http-equiv="refresh"' not in body and "Refresh" not in shown.headers  # finished
    state = site.client("reg1").get(f"/portal/jobs/{ident}", headers={"Accept": "application/json"})
    assert state.json["state"] == "done" and state.json["percent"] == 100
    assert page(site, "reg1", ident, "/download").status_code == 409  # a verdict, no file
    listed = text(site.client("reg1").get("/portal/jobs/"))
    assert ident in listed
    entry = site.accounts.audit_entries(action="verify")[0]
    assert entry.params["background"] is True and entry.outcome == "ok"


def test_a_job_is_its_starters_alone(site):
    ident = job_id(site.post("reg1", "/portal/regulator/integrity/verify", {"lot": ""}))
    finished(site, "reg1", ident)
    for user in ("reg2", "farm1"):  # another regulator of the same party too
        for suffix in ("", "/download"):
            refused = page(site, user, ident, suffix)
            assert refused.status_code == 404 and "no such job" in text(refused)
    assert ident not in text(site.client("reg2").get("/portal/jobs/"))
    anonymous = site.client().get(f"/portal/jobs/{ident}")
    assert anonymous.status_code == 302 and "/portal/login" in anonymous.headers["Location"]
    for bad in ("nope", "x" * 300, "..%2F..%2Fetc"):
        assert page(site, "reg1", bad).status_code == 404
    # only a regulator may start one
    assert site.post("farm1", "/portal/regulator/integrity/verify", {"lot": ""}).status_code == 403


def test_tampered_ledger_gives_a_failed_verdict(site):
    path = site.world.store.path
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE events SET data = replace(data, 'Kale', 'Kalo')")
    ident = job_id(site.post("reg1", "/portal/regulator/integrity/verify", {"lot": ""}))
    job = finished(site, "reg1", ident)
    assert job.state == DONE and job.outcome.result["ok"] is False
    assert job.outcome.result["problems"]
    body = text(page(site, "reg1", ident))
    assert "The ledger does NOT verify" in body and "<li>" in body
    assert site.accounts.audit_entries(action="verify")[0].outcome.startswith("problems")


def cli_export(site: Portal, tmp_path, command, *args: str) -> bytes:
    out = tmp_path / "cli.out"
    result = CliRunner().invoke(
        command,
        [*args, "--out", str(out)],
        obj=Context(str(site.world.store.path), str(tmp_path / "keys")),
    )
    assert result.exit_code == 0, (result.output, result.exception)
    return out.read_bytes()


def export_job(site: Portal, form: dict[str, str]):
    ident = job_id(site.post("reg1", "/portal/regulator/exports", form))
    job = finished(site, "reg1", ident)
    assert job.state == DONE, job.error
    body = text(page(site, "reg1", ident))
    assert "Your export is ready" in body and f"/portal/jobs/{ident}/download" in body
    return page(site, "reg1", ident, "/download")


def test_export_job_download_equals_the_cli_export(site, tmp_path):
    sheet = export_job(site, {"format": "fsma204-csv", "from": "2026-01-01", "to": "2026-12-31"})
    assert sheet.status_code == 200 and sheet.mimetype == "text/csv"
    assert 'filename="provenance-fsma204.csv"' in sheet.headers["Content-Disposition"]
    assert sheet.headers["Cache-Control"] == "no-store"
    cli = cli_export(site, tmp_path, export_fsma204, "--from", "2026-01-01", "--to", "2026-12-31")
    assert sheet.data == cli and sheet.data.startswith(b"\xef\xbb\xbf")

    document = export_job(site, {"format": "epcis", "lot": LOT})
    assert document.mimetype == "application/ld+json"
    mine, theirs = (
        json.loads(document.data),
        json.loads(cli_export(site, tmp_path, export_epcis, "--batch", LOT)),
    )
    mine.pop("creationDate"), theirs.pop("creationDate")  # the moment each was made
    assert mine == theirs and mine["epcisBody"]["eventList"]

    xlsx = export_job(site, {"format": "fsma204-xlsx", "product": "Kale"})
    assert xlsx.data.startswith(b"PK") and xlsx.headers["Content-Disposition"].endswith('.xlsx"')
    entry = site.accounts.audit_entries(action="export")[0]
    assert entry.params["format"] == "fsma204-xlsx" and entry.params["background"] is True


@pytest.mark.parametrize(
    "form, words",
    [
        ({"format": "zip"}, "must be one of"),
        ({"format": "fsma204-csv", "from": "2026-02-01", "to": "2026-01-01"}, "before"),
        ({"format": "fsma204-csv", "lot": LOT}, "by product and date range"),
        ({"format": "epcis", "from": "yesterday"}, "from"),
        ({"format": "epcis", "lot": "not a lot"}, "lot"),
    ],
)
def test_bad_export_forms_are_refused_before_any_job(site, form, words):
    refused = site.post("reg1", "/portal/regulator/exports", form)
    assert refused.status_code == 400 and words in text(refused)
    forged = site.client("reg1").post("/portal/regulator/exports", data={"format": "epcis"})
    assert 400 <= forged.status_code < 500  # no CSRF token: no job
    assert len(runner(site)) == 0


class Gate:
    """Work that reports 1 of 4 done, then waits for the test to let it go."""

    def __init__(self):
        self.started, self.go = threading.Event(), threading.Event()

    def __call__(self, progress, path):
        progress(1, 4)
        self.started.set()
        assert self.go.wait(DEADLINE)
        path.write_bytes(b"done")
        progress(4, 4)
        return JobResult(mimetype="text/plain", filename="x.txt", count=1)


def test_progress_page_refreshes_itself_without_script(site):
    gate = Gate()
    job = runner(site).submit("user reg1", "export", {"format": "epcis"}, gate)
    assert gate.started.wait(DEADLINE)
    shown = page(site, "reg1", job.id)
    body = text(shown)
    assert shown.status_code == 200 and job.state == RUNNING
    assert '<meta http-equiv="refresh" content="2">' in body and shown.headers["Refresh"] == "2"
    assert "25%" in body and "1 of 4" in body
    assert "<script>" not in body and "script-src 'unsafe-inline'" not in shown.headers.get(
        "Content-Security-Policy", ""
    )
    early = page(site, "reg1", job.id, "/download")
    assert early.status_code == 409 and "not ready yet" in text(early)
    chinese = site.client("reg1").get(f"/portal/jobs/{job.id}?lang=zh")
    assert "Preparing an export" not in text(chinese)
    gate.go.set()
    assert job.wait(DEADLINE) and job.state == DONE and job.percent == 100
    assert page(site, "reg1", job.id, "/download").data == b"done"


def test_a_full_runner_refuses_with_a_reason(file_world, tmp_path):
    app = make_app(file_world, tmp_path, JOBS_KEPT=1)
    site = Portal(file_world, app, tmp_path)
    site.user("reg1", "regulator")
    gate = Gate()
    try:
        runner(site).submit("user reg1", "export", {}, gate)
        assert gate.started.wait(DEADLINE)
        busy = site.post("reg1", "/portal/regulator/integrity/verify", {"lot": ""})
        assert busy.status_code == 429 and "busy with other long work" in text(busy)
        assert busy.headers["Retry-After"] == "30"
    finally:
        gate.go.set()
        runner(site).close()


def quick(progress, path):
    progress(0, 1)
    path.write_bytes(b"x")
    progress(1, 1)
    return JobResult(mimetype="text/plain", filename="x.txt", count=1)


def test_the_runner_keeps_a_bounded_number_of_jobs(tmp_path):
    jobs = JobRunner(workers=2, keep=3)
    try:
        made = []
        for _ in range(7):
            job = jobs.submit("user a", "export", {}, quick)
            assert job.wait(DEADLINE) and job.state == DONE
            made.append(job)
        assert len(jobs) == 3
        assert [j.id for j in jobs.of("user a")] == [j.id for j in reversed(made[-3:])]
        assert all(jobs.get(j.id, "user a") is None for j in made[:4])
        assert not any(j.path.exists() for j in made[:4])  # dropped with its file
        assert all(j.path.exists() for j in made[-3:])
        assert jobs.get(made[-1].id, "user b") is None
    finally:
        jobs.close()
    assert not any(j.path.exists() for j in made) and len(jobs) == 0


def test_a_job_that_breaks_says_what_failed(tmp_path):
    from provenance.core.errors import NotFound

    def missing(progress, path):
        raise NotFound("the ledger names no log key: run `provenance init`")

    def crash(progress, path):
        raise ZeroDivisionError("division by zero")

    jobs = JobRunner()
    try:
        plain = jobs.submit("user a", "verify", {}, missing)
        odd = jobs.submit("user a", "verify", {}, crash)
        assert plain.wait(DEADLINE) and odd.wait(DEADLINE)
        assert plain.state == FAILED and "names no log key" in plain.error
        assert odd.state == FAILED and "unexpected error" in odd.error and "log" in odd.error
    finally:
        jobs.close()


def test_failed_job_page_says_it_in_plain_words(site):
    def missing(progress, path):
        raise OSError(28, "No space left on device")

    job = runner(site).submit("user reg1", "export", {}, missing)
    assert job.wait(DEADLINE) and job.state == FAILED
    body = text(page(site, "reg1", job.id))
    assert "This could not be finished" in body and "No space left on device" in body


def test_closing_stops_running_work_and_leaves_no_thread_or_file():
    jobs = JobRunner(workers=2, keep=5)
    reporting = threading.Event()

    def endless(progress, path):
        path.write_bytes(b"partial")
        for done in range(10**9):  # stops at the first report after close
            progress(done, 10**9)
            reporting.set()
        return JobResult()

    job = jobs.submit("user a", "export", {}, endless)
    assert reporting.wait(DEADLINE)
    waiting = jobs.submit("user a", "export", {}, quick)
    folder = jobs._folder
    threads = list(jobs._threads)
    jobs.close()
    assert job.wait(DEADLINE) and job.state == FAILED and "stopped" in job.error
    assert waiting.wait(DEADLINE) and waiting.state == FAILED
    assert threads and not any(t.is_alive() for t in threads) and not jobs._threads
    assert folder is not None and not folder.exists()
    with pytest.raises(JobsFull):
        jobs.submit("user a", "export", {}, quick)
