"""How groups get committed, seen from the ingest process: on the committer
thread (`ThreadBackend`, given a `Ledger` factory) or in the commit worker
process (`WorkerBackend`, given a database path; the worker's own side is
ingest_worker).

Both take a group with `submit` and settle it — acknowledge, notify, count,
release — through the service's *settle* callback once it is committed, or
without a result (nothing acknowledged; the broker redelivers) when they give
up on it. `busy` says whether groups are on their way; `drain` waits for them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from provenance.infra import lifeline
from provenance.ingest.commit import (
    COMMIT_RETRY_MAX_S,
    COMMIT_RETRY_MIN_S,
    BatchResult,
    commit_batch,
    latest_checkpoint,
    request_of,
)
from provenance.ingest.errors import IngestError, TransientError, WorkerDied
from provenance.ingest.inbox import Message
from provenance.ingest.worker import MODULE, read_frame, write_frame
from provenance.ledger.append import Ledger
from provenance.store.db import Store

log = logging.getLogger(__name__)

WORKER_RESTARTS = 2  # a group that kills more workers in a row is a fatal error

Settle = Callable[[list[Message], BatchResult | None], None]


# --- on the committer thread


def ledger_factory(db_path: Path, log_key: Ed25519PrivateKey) -> Callable[[], Ledger]:
    def make() -> Ledger:
        return Ledger(Store(db_path, create=False), log_key)

    return make


class ThreadBackend:
    """Commits on the committer thread itself (a `Ledger` factory was given):
    each group synchronously, retried with backoff while the database
    refuses, then settled. *abandon* (set by a stop that gave up) ends the
    retries; the group is then settled unacknowledged."""

    def __init__(
        self,
        factory: Callable[[], Ledger],
        settle: Settle,
        abandon: threading.Event,
        owns_store: bool = False,
    ):
        self._factory = factory
        self._settle = settle
        self._abandon = abandon
        self._owns_store = owns_store
        self._ledger: Ledger | None = None

    def open(self) -> str | None:
        """Open the ledger; its latest checkpoint note."""
        self._ledger = self._factory()
        return latest_checkpoint(self._ledger)

    def submit(self, batch: list[Message]) -> None:
        assert self._ledger is not None
        request = request_of(batch)
        delay = COMMIT_RETRY_MIN_S
        while not self._abandon.is_set():
            try:
                result = commit_batch(self._ledger, request)
            except TransientError as exc:  # the database, not the input: keep the messages
                log.error("ingest: %s; retrying %d messages in %.2fs", exc, len(batch), delay)
                self._abandon.wait(delay)
                delay = min(COMMIT_RETRY_MAX_S, delay * 2)
            else:
                self._settle(batch, result)
                return
        self._settle(batch, None)  # abandoned at shutdown: not acknowledged, redelivered later

    def busy(self) -> bool:
        """Every group is settled when `submit` returns."""
        return False

    def drain(self) -> None:
        """Every group is settled when `submit` returns."""

    def abort(self) -> None:
        """Nothing to interrupt: a blocked append ends with its busy timeout."""

    def close(self, timeout: float) -> None:
        if self._ledger is not None:
            self._ledger.close()
            if self._owns_store:
                self._ledger.store.close()


# --- in the commit worker process


class WorkerBackend:
    """Commits in a child process. `submit` sends a group and returns; a
    reply thread settles each group when its reply arrives (in order)."""

    def __init__(
        self,
        db_path: Path,
        log_key: Ed25519PrivateKey,
        settle: Settle,
        abandon: threading.Event,
        fail: Callable[[IngestError], None],
        prep_processes: int | None = None,
        *,
        idle: Callable[[], None] | None = None,
    ):
        self.db_path = db_path
        self._key = log_key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        self._settle = settle
        self._abandon = abandon
        self._fail = fail
        self._idle = idle  # called when the last group sent was answered
        self.prep_processes = prep_processes
        self.process: subprocess.Popen[bytes] | None = None
        self._send_lock = threading.Lock()  # one writer of frames at a time, in order
        self._lock = threading.Lock()  # guards _outstanding
        self._outstanding: deque[list[Message]] = deque()  # sent, not answered, in order
        self._settled = threading.Condition(self._lock)
        self._closing = False  # close() or abort(): an ending child is no death
        self._broken = False  # the worker cannot go on: groups are released unacknowledged
        self._deaths = 0  # in a row, without a reply in between
        self._reader: threading.Thread | None = None

    def open(self) -> str | None:
        """Start the child; the ledger's latest checkpoint note."""
        note = self._start()
        self._reader = threading.Thread(target=self._replies, name="ingest-replies", daemon=True)
        self._reader.start()
        return note

    def _start(self) -> str | None:
        env = lifeline.child_env()  # the worker dies with us, whatever kills us
        here = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (here, env.get("PYTHONPATH")) if p)
        # Its pipes are ours alone: created close-on-exec, and close_fds keeps
        # any other descriptor of ours out of it (docs/ingest.md, "Process lifecycle").
        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULE],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        config = {
            "db": str(self.db_path),
            "key": self._key,
            "level": logging.getLogger("provenance").getEffectiveLevel(),
            "prep_processes": self.prep_processes,
        }
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            write_frame(self.process.stdin, config)
            reply = read_frame(self.process.stdout)
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            code = self.process.poll()
            self._kill()
            raise WorkerDied(
                f"the commit worker died at start ({exc!r}, exit status {code})"
            ) from None
        if reply[0] != "ready":
            self._kill()
            raise IngestError(f"cannot open the ledger: {reply[1]}")
        log.info("ingest: commit worker %d ready", self.process.pid)
        return reply[1]

    def submit(self, batch: list[Message]) -> None:
        request = request_of(batch)
        with self._send_lock:
            with self._lock:
                if self._broken or self._closing:
                    broken = True
                else:
                    broken = False
                    self._outstanding.append(batch)
            if broken:
                self._settle(batch, None)  # not acknowledged: redelivered to a later session
                return
            process = self.process
            assert process is not None and process.stdin is not None
            # If it died, the reply thread starts another and sends this group again.
            with contextlib.suppress(OSError):
                write_frame(process.stdin, ("commit", request))

    def _replies(self) -> None:
        """The reply thread: settle groups as their replies arrive; restart a
        child that died and send it what is still unanswered."""
        try:
            self._answer()
        except Exception as exc:  # a bug here must not leave a silent, dead service
            log.exception("ingest: the reply thread failed")
            self._give_up(IngestError(f"the reply thread failed: {exc!r}"))

    def _answer(self) -> None:
        while True:
            process = self.process
            assert process is not None and process.stdout is not None
            try:
                while True:
                    reply = read_frame(process.stdout)
                    with self._lock:
                        batch = self._outstanding.popleft()
                        self._deaths = 0
                    if reply[0] != "ok":
                        self._give_up(IngestError(reply[1]))
                        return
                    self._settle(batch, reply[1])
                    with self._lock:
                        self._settled.notify_all()
                        idle = not self._outstanding
                    if idle and self._idle is not None:
                        self._idle()
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                code = process.poll()
                death = f"the commit worker died ({exc!r}, exit status {code})"
            if self._closing or self._abandon.is_set():
                self._release_all()
                return
            if not self._restart(death):
                return

    def _restart(self, death: str) -> bool:
        with self._send_lock:
            with self._lock:
                self._deaths += 1
                deaths, pending = self._deaths, list(self._outstanding)
            if deaths > WORKER_RESTARTS:
                self._give_up(IngestError(f"{death}; it died {deaths} times on one group"))
                return False
            log.error("ingest: %s; starting a new one", death)
            self._kill()
            try:
                self._start()
                assert self.process is not None and self.process.stdin is not None
                for batch in pending:
                    write_frame(self.process.stdin, ("commit", request_of(batch)))
            except OSError:
                return True  # died again at once: the loop counts it
            except IngestError as exc:
                self._give_up(exc)
                return False
        return True

    def _give_up(self, error: IngestError) -> None:
        with self._lock:
            self._broken = True
        self._fail(error)
        self._release_all()

    def _release_all(self) -> None:
        with self._lock:
            pending = list(self._outstanding)
            self._outstanding.clear()
        for batch in pending:
            self._settle(batch, None)  # not acknowledged: redelivered to a later session
        with self._lock:
            self._settled.notify_all()

    def busy(self) -> bool:
        """Are groups sent and not yet answered?"""
        with self._lock:
            return bool(self._outstanding)

    def drain(self) -> None:
        """Wait until every group sent was answered (or given up on)."""
        with self._lock:
            while self._outstanding and not self._abandon.is_set() and not self._broken:
                self._settled.wait(0.25)

    def abort(self) -> None:
        """Kill the child (a stop that gave up waiting): what it did not
        answer stays unacknowledged."""
        self._closing = True
        self._kill()
        with self._lock:
            self._settled.notify_all()

    def _kill(self) -> None:
        process = self.process
        if process is not None:
            if process.poll() is None:
                process.kill()
                process.wait(10)
            _close_pipes(process)

    def close(self, timeout: float) -> None:
        self._closing = True
        process = self.process
        if process is not None and process.poll() is None:
            try:
                with self._send_lock:
                    assert process.stdin is not None
                    write_frame(process.stdin, ("stop",))
                    process.stdin.close()
            except OSError:
                pass  # it is gone already
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("ingest: commit worker did not stop in %gs; killing it", timeout)
        self._kill()
        if self._reader is not None:
            self._reader.join(timeout)
        self._release_all()


def _close_pipes(process: subprocess.Popen[bytes]) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None and not stream.closed:
            with contextlib.suppress(OSError):  # a broken pipe: nothing left to flush
                stream.close()
