"""The witnessing service: the ledger's side of C2SP tlog-witness.

At a fixed cadence it takes the log's newest signed checkpoint and submits it to
every configured witness (``POST <url>/add-checkpoint``) with a consistency proof
from the size that witness last cosigned; it verifies each cosignature it gets
back (cosignature/v1, Ed25519, over exactly that checkpoint) before it stores it.
What the ledger then shows is `provenance.store.cosignatures.shown_checkpoint`.

One thread per witness, each with its own read-write store connection, so a
witness that is slow or down delays only its own cosignature: the ingest never
waits for a witness (a round writes two short rows). A failure is retried with
capped exponential backoff; every request has a timeout. A 409 teaches the size
the witness last cosigned (its ``text/x.tlog.size`` body), which is then kept in
the database and the request made again at once, once.

A witness that cosigned a size larger than the log's newest checkpoint, or that
refuses a consistency proof (422), has seen a different history of this log
than ours or a larger one: logged as an error, counted, never papered over.
"""

from __future__ import annotations

import base64
import http.client
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from provenance.core.checkpoint import Checkpoint
from provenance.core.cosignature import (
    CosignatureError,
    cosigner_key_id,
    parse_cosignature_line,
    parse_cosigner_key,
    verify_cosignature,
)
from provenance.core.errors import ValidationError, VerificationError
from provenance.core.merkle import consistency_proof
from provenance.store.cosignatures import (
    WitnessRow,
    configured_witnesses,
    cosignatures_of,
    record_cosignature,
    set_cosigned_size,
)
from provenance.store.db import Store
from provenance.store.location import database_location

log = logging.getLogger(__name__)

CADENCE_S = 10.0  # default seconds between witnessing rounds
REQUEST_TIMEOUT_S = 10.0  # per add-checkpoint request (connect and read)
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 60.0
MAX_RESPONSE_BYTES = 64 * 1024  # a cosignature response is a few lines
MAX_PROOF_LINES = 63  # tlog-witness: no more consistency proof lines than this
CLOCK_SKEW_S = 300  # a cosignature dated further ahead of our clock than this is refused
SIZE_CONTENT_TYPE = "text/x.tlog.size"
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


class WitnessError(VerificationError):
    """A witness answered something that is not a valid cosignature of our checkpoint."""


# --- cosignatures in a witness's answer ------------------------------------------------------


def cosignature_of(response: str, name: str, public_key: bytes, body: str) -> tuple[str, int]:
    """The (line, timestamp) of the cosignature by (*name*, *public_key*) of checkpoint
    *body* in an add-checkpoint response; lines by other keys are ignored, as the
    spec requires. Raises WitnessError if the response is malformed or holds no
    cosignature by this key that verifies (one that does not verify is never
    skipped over)."""
    if not response.endswith("\n"):
        raise WitnessError("the response does not end with a newline")
    want = cosigner_key_id(name, public_key)
    now = int(time.time()) + CLOCK_SKEW_S
    found: tuple[str, int] | None = None
    for number, line in enumerate(response[:-1].split("\n"), start=1):
        try:
            cosignature = parse_cosignature_line(line)
        except CosignatureError as exc:
            raise WitnessError(f"response line {number}: {exc}") from None
        if cosignature.name != name or cosignature.key_id != want:
            continue  # another key: ignored
        try:
            timestamp = verify_cosignature(body, cosignature, name, public_key, now=now)
        except CosignatureError as exc:
            raise WitnessError(str(exc)) from None
        found = (line, timestamp)
    if found is None:
        raise WitnessError(f"the response holds no cosignature by {name} ({want.hex()})")
    return found


# --- configuration ----------------------------------------------------------------------------


def parse_witness(text: str) -> WitnessRow:
    """``NAME=URL=VKEY`` (the URL must not contain '=') → a WitnessRow; ValidationError."""
    name, sep, rest = text.partition("=")
    url, sep2, vkey = rest.partition("=")
    if not sep or not sep2 or not name.strip():
        raise ValidationError("--witness", f"must be NAME=URL=VKEY, got {text[:80]!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise ValidationError(
            "--witness", f"{url!r} is not an http:// or https:// URL (the submission prefix)"
        )
    parse_cosigner_key(vkey)
    return WitnessRow(name.strip(), url.rstrip("/"), vkey.strip())


# --- one witness ------------------------------------------------------------------------------


@dataclass
class WitnessStats:
    """What happened with one witness (for logs, tests and the benchmark)."""

    cosigned: int = 0
    conflicts: int = 0
    failures: int = 0
    bad_cosignatures: int = 0
    last_error: str | None = None
    cosigned_at: dict[int, float] = field(default_factory=dict)  # size -> monotonic time


class WitnessClient:
    """Talks to one witness: one keep-alive HTTP connection, add-checkpoint."""

    def __init__(self, row: WitnessRow, timeout: float = REQUEST_TIMEOUT_S):
        self.row = row
        self.key_name, self.public_key = parse_cosigner_key(row.vkey)
        self.timeout = timeout
        parts = urlsplit(row.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._path = (parts.path.rstrip("/") or "") + "/add-checkpoint"
        self._conn: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def add_checkpoint(self, old: int, proof: list[bytes], note: str) -> tuple[int, str, str]:
        """POST add-checkpoint; (status, content type, body). OSError on the network."""
        lines = [f"old {old}"] + [base64.b64encode(h).decode() for h in proof]
        body = ("\n".join(lines) + "\n\n" + note).encode()
        for attempt in (1, 2):  # a keep-alive connection the witness closed: once more
            if self._conn is None:
                cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
                self._conn = cls(self._host, self._port, timeout=self.timeout)
            try:
                self._conn.request(
                    "POST", self._path, body, {"Content-Type": "text/plain; charset=utf-8"}
                )
                response = self._conn.getresponse()
                data = response.read(MAX_RESPONSE_BYTES + 1)
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise OSError(str(exc) or type(exc).__name__) from exc
                continue
            if len(data) > MAX_RESPONSE_BYTES or response.will_close:
                self.close()
            ctype = (response.getheader("Content-Type") or "").split(";")[0].strip()
            return response.status, ctype, data[:MAX_RESPONSE_BYTES].decode("utf-8", "replace")
        raise OSError("unreachable")


class WitnessWorker:
    """Keeps one witness's cosignature of the newest checkpoint: a thread."""

    def __init__(
        self,
        db_path: Path,
        row: WitnessRow,
        cadence: float,
        stop: threading.Event,
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        on_cosigned: Callable[[str, int], None] | None = None,
    ):
        self.db_path = db_path
        self.row = row
        self.cadence = cadence
        self.stop = stop
        self.client = WitnessClient(row, timeout)
        self.stats = WitnessStats()
        self.on_cosigned = on_cosigned
        self.wake = threading.Event()  # a round is due now (tests, the benchmark)
        self._thread = threading.Thread(target=self._main, name=f"witness-{row.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _main(self) -> None:
        store = Store(self.db_path, create=False)
        delay = 0.0
        try:
            while not self.stop.is_set():
                self.wake.clear()
                started = time.monotonic()
                try:
                    done = self.round(store)
                except OSError as exc:
                    done = False
                    self._failed(f"{self.row.url} is unreachable: {exc}")
                except VerificationError as exc:
                    done = False
                    self._failed(str(exc))
                if done:  # rounds start on the cadence, however long this one took
                    delay = 0.0
                    wait = max(0.0, started + self.cadence - time.monotonic())
                else:  # capped exponential backoff, never longer than needed
                    delay = min(BACKOFF_MAX_S, max(BACKOFF_MIN_S, delay * 2))
                    wait = delay
                self.wake.wait(wait)
        finally:
            self.client.close()
            store.close()

    def _failed(self, message: str) -> None:
        self.stats.failures += 1
        if message != self.stats.last_error:
            log.warning("witness %s: %s", self.row.name, message)
        self.stats.last_error = message

    def round(self, store: Store) -> bool:
        """Submit the newest checkpoint if this witness has not cosigned it.
        True when it is cosigned (now or already)."""
        note = store.latest_checkpoint()
        if note is None:
            return True
        body = note[: note.index("\n\n") + 1]
        size = Checkpoint.from_text(body).size
        row = self._row(store)
        if row.cosigned_size == size and row.name in cosignatures_of(store, size):
            return True
        for _attempt in (1, 2):  # a 409 teaches the size: then once more
            old = row.cosigned_size or 0
            if old > size:
                self.stats.conflicts += 1
                raise WitnessError(
                    f"the witness cosigned size {old} of this log, larger than our newest "
                    f"checkpoint ({size}): it saw another history, or the log was rolled back"
                )
            proof = consistency_proof(store, old, size) if 0 < old < size else []
            if len(proof) > MAX_PROOF_LINES:
                raise WitnessError(f"a consistency proof of {len(proof)} hashes is too long")
            status, ctype, text = self.client.add_checkpoint(old, proof, note)
            if status == 200:
                try:
                    line, timestamp = cosignature_of(
                        text, self.client.key_name, self.client.public_key, body
                    )
                except WitnessError as exc:
                    self.stats.bad_cosignatures += 1
                    log.error("witness %s: cosignature refused, not stored: %s", row.name, exc)
                    raise
                record_cosignature(store, size, row.name, line, timestamp)
                self.stats.cosigned += 1
                self.stats.cosigned_at[size] = time.monotonic()
                self.stats.last_error = None
                if self.on_cosigned is not None:
                    self.on_cosigned(row.name, size)
                return True
            if status == 409 and ctype == SIZE_CONTENT_TYPE:
                self.stats.conflicts += 1
                theirs = text.strip("\n")
                if not text.endswith("\n") or not _DECIMAL.fullmatch(theirs):
                    raise WitnessError(f"409 with a malformed size body {text[:40]!r}")
                log.info("witness %s: it last cosigned %s (we sent old %d)", row.name, theirs, old)
                set_cosigned_size(store, row.name, int(theirs))
                row = self._row(store)
                continue
            raise WitnessError(
                f"{row.url}/add-checkpoint answered {status}: {text.strip()[:200]!r}"
                + (" (a consistency proof it refused: a fork?)" if status == 422 else "")
            )
        raise WitnessError("the witness answered 409 twice in a row")

    def _row(self, store: Store) -> WitnessRow:
        for row in configured_witnesses(store):
            if row.name == self.row.name:
                return row
        raise WitnessError(f"witness {self.row.name} is no longer configured")


class WitnessingService:
    """Every configured witness, each on its own thread, until *stop* is set."""

    def __init__(
        self,
        db_path: Path,
        cadence: float = CADENCE_S,
        *,
        timeout: float = REQUEST_TIMEOUT_S,
        on_cosigned: Callable[[str, int], None] | None = None,
    ):
        self.db_path = database_location(db_path)
        self.stop_event = threading.Event()
        store = Store(self.db_path, create=False)
        try:
            rows = configured_witnesses(store)
        finally:
            store.close()
        self.workers = [
            WitnessWorker(
                self.db_path,
                row,
                cadence,
                self.stop_event,
                timeout=timeout,
                on_cosigned=on_cosigned,
            )
            for row in rows
        ]

    def start(self) -> WitnessingService:
        for worker in self.workers:
            worker.start()
        return self

    def nudge(self) -> None:
        """Start a round now on every witness (tests, the benchmark)."""
        for worker in self.workers:
            worker.wake.set()

    def stop(self, timeout: float = REQUEST_TIMEOUT_S + 1) -> None:
        self.stop_event.set()
        self.nudge()
        deadline = time.monotonic() + timeout
        for worker in self.workers:
            worker.join(max(0.0, deadline - time.monotonic()))

    def run(self, stop: threading.Event) -> None:
        """Run until *stop* (SIGTERM, Ctrl-C) is set."""
        self.start()
        try:
            while not stop.wait(1.0):
                pass
        finally:
            self.stop()
