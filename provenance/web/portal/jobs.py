"""Long work off the request: whole-ledger verification and big exports run as
background jobs, each with its progress, its result and one owner.

A `JobRunner` per app keeps at most *keep* jobs (the oldest finished one is
dropped to make room; when every kept job is still unfinished a new one is
refused) and runs them on at most *workers* daemon threads, started when there
is work and gone after *idle* seconds without any, so an app that is never
asked for long work has none and a stopped server leaves none behind. A job's
work is a function of its `progress(done, total)` callback
(`provenance.core.progress`) and of a file path it may write its download to,
in the runner's temporary folder; the file goes when the job is dropped or the
runner is closed (`close`, called when the server stops, and at interpreter
exit). Closing also stops running work at its next progress report.

docs/portal.md, "Long work", says what a person sees.
"""

from __future__ import annotations

import logging
import queue
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
FINISHED = (DONE, FAILED)
DEFAULT_WORKERS = 1
DEFAULT_KEEP = 20
IDLE_SECONDS = 10.0
JOIN_SECONDS = 5.0


class JobsFull(Exception):
    """Every kept job is still unfinished: try again when one is done."""


class JobStopped(Exception):
    """The runner was closed while the job ran."""


@dataclass(frozen=True)
class JobResult:
    """What finished work hands back: a result to show (a verify report) or a
    download (its media type, file name and how many events or rows it holds)."""

    result: dict[str, Any] | None = None
    mimetype: str | None = None
    filename: str | None = None
    count: int | None = None


Work = Callable[[Callable[[int, int], None], Path], JobResult]


@dataclass
class Job:
    id: str
    owner: str  # the principal's actor ("user alice"): only they see it
    kind: str  # "verify" or "export"
    title: dict[str, Any]  # what was asked (format, lot, dates), for the page
    work: Work
    created: float = field(default_factory=time.time)
    state: str = QUEUED
    done: int = 0
    total: int = 0
    started: float | None = None  # time.monotonic()
    finished: float | None = None
    outcome: JobResult | None = None
    error: str | None = None
    path: Path | None = None
    _over: threading.Event = field(default_factory=threading.Event, repr=False)

    def wait(self, timeout: float) -> bool:
        """Wait until the job is done or failed, at most *timeout* seconds."""
        return self._over.wait(timeout)

    @property
    def percent(self) -> int:
        if self.state == DONE:
            return 100
        return 100 * self.done // self.total if self.total else 0

    @property
    def seconds_left(self) -> int | None:
        """A linear guess from the pace so far; None before there is any pace."""
        if self.state != RUNNING or self.started is None or not self.done or not self.total:
            return None
        elapsed = time.monotonic() - self.started
        return max(0, round(elapsed * (self.total - self.done) / self.done))

    @property
    def has_file(self) -> bool:
        return self.state == DONE and self.path is not None and self.path.exists()

    def to_json(self) -> dict[str, Any]:
        outcome = self.outcome
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "done": self.done,
            "total": self.total,
            "percent": self.percent,
            "seconds_left": self.seconds_left,
            "error": self.error,
            "result": outcome.result if outcome else None,
            "count": outcome.count if outcome else None,
        }


class JobRunner:
    def __init__(
        self,
        *,
        workers: int = DEFAULT_WORKERS,
        keep: int = DEFAULT_KEEP,
        idle: float = IDLE_SECONDS,
    ):
        self.workers = max(1, workers)
        self.keep = max(1, keep)
        self.idle = idle
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._queue: queue.Queue[Job | None] = queue.Queue()  # None: wake up and stop
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._folder: Path | None = None

    # --- asking

    def submit(self, owner: str, kind: str, title: dict[str, Any], work: Work) -> Job:
        """Queue *work* for *owner*; raises JobsFull when there is no room."""
        with self._lock:
            if self._stop.is_set():
                raise JobsFull("the server is stopping")
            while len(self._jobs) >= self.keep:
                oldest = next((j for j in self._jobs.values() if j.state in FINISHED), None)
                if oldest is None:
                    raise JobsFull(f"{len(self._jobs)} jobs are still running or waiting")
                self._drop(oldest)
            job = Job(secrets.token_urlsafe(12), owner, kind, title, work)
            self._jobs[job.id] = job
            self._queue.put(job)
            if len(self._threads) < self.workers:
                thread = threading.Thread(target=self._serve, name="portal-job", daemon=True)
                self._threads.add(thread)
                thread.start()
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job if it is kept and *owner* started it; else None (as if it never was)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and secrets.compare_digest(job.owner, owner) else None

    def of(self, owner: str) -> list[Job]:
        """*owner*'s kept jobs, newest first."""
        with self._lock:
            return [j for j in reversed(self._jobs.values()) if j.owner == owner]

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    # --- stopping

    def close(self) -> None:
        """Stop: no new jobs, running work stops at its next progress report,
        the threads are joined (bounded) and every file is removed."""
        self._stop.set()
        with self._lock:
            threads = list(self._threads)
        for _ in threads:  # wake the idle ones now, not after their idle timeout
            self._queue.put(None)
        deadline = time.monotonic() + JOIN_SECONDS
        for thread in threads:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            for job in list(self._jobs.values()):
                if job.state == QUEUED:  # never started: say so to whoever waits
                    job.error = "the server stopped before the work was started"
                    job.state = FAILED
                    job._over.set()
                self._drop(job)
            if self._folder is not None:
                shutil.rmtree(self._folder, ignore_errors=True)
                self._folder = None

    # --- inside

    def _drop(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        if job.path is not None:
            job.path.unlink(missing_ok=True)

    def _file_for(self, job: Job) -> Path:
        with self._lock:
            if self._folder is None:
                self._folder = Path(tempfile.mkdtemp(prefix="provenance-jobs-"))
                weakref.finalize(self, shutil.rmtree, str(self._folder), True)
            return self._folder / f"{job.id}.out"

    def _serve(self) -> None:
        me = threading.current_thread()
        while not self._stop.is_set():
            try:
                job = self._queue.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._threads.discard(me)
                        return
                continue
            if job is not None:
                self._run(job)
        with self._lock:
            self._threads.discard(me)

    def _run(self, job: Job) -> None:
        if self._stop.is_set():
            return  # close() marks it

        def progress(done: int, total: int) -> None:
            if self._stop.is_set():
                raise JobStopped()
            job.done, job.total = done, total

        job.started = time.monotonic()
        job.state = RUNNING
        path = self._file_for(job)
        try:
            outcome = job.work(progress, path)
        except JobStopped:
            job.error = "the server stopped before the work was done"
            job.state = FAILED
            path.unlink(missing_ok=True)
        except Exception as exc:  # a job's failure is shown on its page, never lost
            log.exception("portal job %s (%s) failed", job.id, job.kind)
            job.error = describe(exc)
            job.state = FAILED
            path.unlink(missing_ok=True)
        else:
            job.outcome = outcome
            if path.exists():
                job.path = path
            if job.total and job.done < job.total:
                job.done = job.total
            job.state = DONE
        finally:
            job.finished = time.monotonic()
            job._over.set()
        with self._lock:
            if job.id not in self._jobs and job.path is not None:  # dropped meanwhile
                job.path.unlink(missing_ok=True)


def describe(exc: Exception) -> str:
    """What failed, in words a person reads (our errors say it themselves)."""
    from provenance.core.errors import ProvenanceError, ValidationError
    from provenance.store.db import StoreError

    if isinstance(exc, ProvenanceError | ValidationError | StoreError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"the file could not be written: {exc.strerror or exc}"
    return f"an unexpected error ({type(exc).__name__}); the server's log has the details"


__all__ = [
    "DONE",
    "FAILED",
    "QUEUED",
    "RUNNING",
    "Job",
    "JobResult",
    "JobRunner",
    "JobsFull",
]
