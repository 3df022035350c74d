"""The commit worker: a child process that decodes, verifies and appends, so
that the ledger's CPU work never holds the GIL that paho's network thread
needs (docs/ingest.md, "Threads and processes"). This is the child's side;
the parent's is ingest_backend.WorkerBackend.

    parent (WorkerBackend)                    child (`python -m provenance.ingest.worker`)
    committer ─("commit", group)─▶ stdin ─▶ reader ─▶ prep pool (processes): decode, schema,
                                                      │                      signatures
    reply reader ◀─("ok", result)─ stdout ◀─ writer ◀─┘ ONE Ledger.append per run of groups
      └─ settle: ack, notices, metrics

- Frames are length-prefixed pickles (our own child, never the network). The
  parent sends a group as soon as it has one, without waiting for earlier
  replies, so the pool prepares the next groups while the writer appends;
  replies come back one per group, in order.
- The writer appends every group that is prepared by then in one call (a
  larger group commit when it falls behind) and retries while the database
  refuses (locked, full), with backoff up to COMMIT_RETRY_MAX_S.
- The child ignores SIGINT/SIGTERM (the parent decides when it stops) and
  stops when its stdin closes — after the append under way, dropping what it
  has not appended: the broker redelivers what was not acknowledged. If the
  parent dies, whatever kills it, the child exits at once, and its prep
  processes with it (provenance.infra.lifeline; docs/ingest.md, "Process
  lifecycle"); only the parent and the child hold the frame pipes.
- If the child dies, the parent (ingest_backend.WorkerBackend) starts another
  and sends it every group still unanswered, in order.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections import deque
from multiprocessing import get_context
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import (
    load_pem_private_key,
)

from provenance.core.envelope import SignatureVouchers
from provenance.infra import lifeline
from provenance.ingest.commit import (
    COMMIT_RETRY_MAX_S,
    COMMIT_RETRY_MIN_S,
    BatchResult,
    Request,
    commit_batch,
    latest_checkpoint,
)
from provenance.ingest.decode import estimate_envelopes
from provenance.ingest.errors import TransientError
from provenance.ingest.prepare import Record, items_of, prepare, serve
from provenance.ledger.append import Ledger
from provenance.store.db import Store

log = logging.getLogger(__name__)

MAX_APPEND = 2000  # envelopes in one Ledger.append when the writer merges groups
MIN_CHUNK = 16  # envelopes: a group is split over the prep processes in chunks of this or more
PIPE_BYTES = 1 << 20  # prep pipes (Linux allows up to /proc/sys/fs/pipe-max-size)
NOTE_EVERY_S = 0.5  # while busy, how often replies carry the newest checkpoint note
MODULE = "provenance.ingest.worker"


# --- frames


def write_frame(stream: Any, value: Any) -> None:
    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(len(data).to_bytes(4, "big") + data)
    stream.flush()


def read_frame(stream: Any) -> Any:
    header = stream.read(4)
    if len(header) < 4:
        raise EOFError("stream closed")
    size = int.from_bytes(header, "big")
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("stream closed mid-frame")
    return pickle.loads(data)  # our own child process, not the network


# --- the child's side


class _Prep:
    """One prep process and its two pipes (requests in, records out)."""

    def __init__(self, context: Any, vouchers: SignatureVouchers):
        # Pipe(duplex=False) is (receiving end, sending end).
        requests_in, self.requests = context.Pipe(duplex=False)
        self.results, results_out = context.Pipe(duplex=False)
        self.process = context.Process(
            target=serve,
            args=(requests_in, results_out, os.getpid(), vouchers),
            name="ingest-prep",
            daemon=True,
        )
        self.process.start()
        requests_in.close()  # the child's ends: its exit is then our EOF
        results_out.close()
        for end in (self.requests, self.results):  # room for whole chunks: fewer stalls
            with contextlib.suppress(OSError, AttributeError):
                fcntl.fcntl(end.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class _PrepPool:
    """Processes that run `prepare` on chunks of a group's messages. Each takes
    chunks in order and answers in order; a group remembers which process got
    which chunk. If one fails, all are replaced and the groups they held are
    decoded and verified by the writer itself (as the ledger always can)."""

    def __init__(self, processes: int):
        self.processes = processes
        self._context = get_context("spawn")
        self._preps: list[_Prep] = []
        self._generation = 0  # bumped whenever the processes are replaced
        self._next = 0  # round robin: where the next group's first chunk goes
        self._closed = False
        self._lock = threading.Lock()
        self.vouchers = SignatureVouchers()  # the key our prep processes vouch with

    def start(self) -> None:
        with self._lock:
            self._preps = [_Prep(self._context, self.vouchers) for _ in range(self.processes)]
            for prep in self._preps:  # a round trip each: started and importable
                prep.requests.send([])
                prep.results.recv()

    def submit(self, payloads: list[bytes]) -> tuple[int, list[int]] | None:
        """Send *payloads* to the prep processes in up to `processes` chunks of
        about equal work: (generation, process index per chunk), or None
        without prep processes. Only one thread submits (the worker's main
        thread), so each process gets its chunks in group order."""
        with self._lock:
            if not self._preps or self._closed:
                return None
            preps, generation = self._preps, self._generation
            chunks = _split(payloads, len(preps))
            used = [(self._next + i) % len(preps) for i in range(len(chunks))]
            self._next = (used[-1] + 1) % len(preps)
        try:  # not under the lock: a full pipe waits for the writer, which needs the lock
            for chunk, index in zip(chunks, used, strict=True):
                preps[index].requests.send(chunk)
        except OSError as exc:
            log.error("ingest: a prep process is gone (%r); starting new ones", exc)
            self.restart(generation)
            return None
        return generation, used

    def ready(self, sent: tuple[int, list[int]]) -> bool:
        """Are the records of a group (the oldest not yet collected) there?"""
        generation, used = sent
        with self._lock:
            if generation != self._generation:
                return True  # collecting fails at once
            try:
                return all(self._preps[index].results.poll(0) for index in used)
            except OSError:
                return True

    def collect(self, sent: tuple[int, list[int]]) -> list[list[Record]] | None:
        """The records of a group, in message order (waits for them); None if
        the processes failed, which replaces them."""
        generation, used = sent
        with self._lock:
            if generation != self._generation:
                return None
            preps = [self._preps[index] for index in used]
        try:
            return [message for prep in preps for message in prep.results.recv()]
        except (OSError, EOFError, pickle.UnpicklingError) as exc:
            log.error("ingest: a prep process failed (%r); starting new ones", exc)
            self.restart(generation)
            return None

    def restart(self, generation: int) -> None:
        with self._lock:
            if generation != self._generation or self._closed:
                return  # replaced already, or closing
            self._generation += 1
            old, self._preps = self._preps, []
            _stop_preps(old)
            try:
                self._preps = [_Prep(self._context, self.vouchers) for _ in range(self.processes)]
            except OSError as exc:
                log.error("ingest: cannot start prep processes (%r); verifying here", exc)

    def close(self) -> None:
        with self._lock:
            old, self._preps = self._preps, []
            self._generation += 1
            self._closed = True
        _stop_preps(old)

    def kill(self) -> None:
        """The worker is leaving without the writer: end the prep processes now,
        so that a send blocked on a full pipe fails instead of waiting forever."""
        with self._lock:
            self._closed = True
            preps = list(self._preps)
        for prep in preps:
            prep.process.kill()


def _stop_preps(preps: list[_Prep]) -> None:
    for prep in preps:
        with contextlib.suppress(OSError):
            prep.requests.close()  # EOF: it exits
    for prep in preps:
        prep.process.join(5)
        if prep.process.is_alive():
            prep.process.kill()
            prep.process.join(5)
        with contextlib.suppress(OSError):
            prep.results.close()


def _split(payloads: list[bytes], parts: int) -> list[list[bytes]]:
    """Consecutive chunks of about equal estimated envelopes (order kept), at
    least MIN_CHUNK envelopes each: a few envelopes are not worth two round
    trips (the next group goes to the other process anyway)."""
    if parts <= 1 or len(payloads) <= 1:
        return [payloads]
    weights = [estimate_envelopes(p) for p in payloads]
    parts = max(1, min(parts, sum(weights) // MIN_CHUNK))
    if parts == 1:
        return [payloads]
    share = sum(weights) / parts
    chunks: list[list[bytes]] = [[]]
    done = 0
    for payload, weight in zip(payloads, weights, strict=True):
        if chunks[-1] and done >= share * len(chunks) and len(chunks) < parts:
            chunks.append([])
        chunks[-1].append(payload)
        done += weight
    return chunks


class _CommitGroup:
    """One commit request, as the writer sees it."""

    def __init__(self, request: Request, pool: _PrepPool):
        self.request = request
        self.pool = pool
        self.envelopes = sum(estimate_envelopes(m[1]) for m in request)
        self.sent = pool.submit(self._payloads())

    def _payloads(self) -> list[bytes]:
        return [m[1] for m in self.request]

    @property
    def ready(self) -> bool:
        return self.sent is None or self.pool.ready(self.sent)

    def prepared(self) -> list[list[Any]]:
        """Ledger items per message: what the prep processes made of them, or
        (without them, or if they failed us) the same work done here."""
        records = None if self.sent is None else self.pool.collect(self.sent)
        if records is not None and len(records) != len(self.request):  # never trust blindly
            log.error("ingest: prep records do not match the group; preparing it here")
            records = None
        vouchers = self.pool.vouchers
        if records is None:
            records = prepare(self._payloads(), vouchers)
        return [items_of(message, vouchers) for message in records]


_STOP = object()


class _Writer:
    """The child's appending thread: groups in order, each run of prepared
    groups in one `commit_batch`, one reply per group."""

    def __init__(self, ledger: Ledger, pool: _PrepPool, replies: Any):
        self.ledger = ledger
        self.pool = pool
        self.replies = replies
        self.groups: queue.Queue[Any] = queue.Queue()
        self.abandon = threading.Event()  # the parent is gone: stop after this append
        self.thread = threading.Thread(target=self._main, name="ingest-writer", daemon=True)
        self.failed = False
        self.stopped_cleanly = False
        self._waiting: deque[_CommitGroup] = deque()  # received, not yet appended
        self._noted = float("-inf")  # when a reply last carried a checkpoint note

    def _main(self) -> None:
        try:
            self._run()
        finally:
            if not self.stopped_cleanly:
                self.pool.kill()  # the main thread may be blocked sending to them

    def _run(self) -> None:
        waiting = self._waiting
        stopping = False
        try:
            while not self.abandon.is_set():
                if not waiting and not stopping:
                    item = self.groups.get()
                    if item is _STOP:
                        stopping = True
                    else:
                        waiting.append(item)
                stopping = self._take_ready(waiting) or stopping
                if not waiting:
                    if stopping:
                        self.stopped_cleanly = True
                        return
                    continue
                run = [waiting.popleft()]
                prepared = [run[0].prepared()]  # waits for its prep processes
                envelopes = run[0].envelopes
                stopping = self._take_ready(waiting) or stopping
                while waiting and waiting[0].ready and envelopes < MAX_APPEND:
                    group = waiting.popleft()
                    run.append(group)
                    prepared.append(group.prepared())
                    envelopes += group.envelopes
                if not self._commit(run, prepared):
                    return
        except OSError:
            return  # our stdout is gone: so is the parent
        except Exception:
            log.exception("commit worker: the writer failed")
            self.failed = True
            with contextlib.suppress(OSError):
                write_frame(self.replies, ("fatal", "commit worker: the writer failed"))

    def _take_ready(self, waiting: deque[_CommitGroup]) -> bool:
        """Move what has arrived since into *waiting*; True if told to stop."""
        while True:
            try:
                item = self.groups.get_nowait()
            except queue.Empty:
                return False
            if item is _STOP:
                return True
            waiting.append(item)

    def _commit(self, run: list[_CommitGroup], prepared: list[list[list[Any]]]) -> bool:
        """Append *run* in one `commit_batch`, retrying while the database
        refuses; reply. False if the parent went away meanwhile."""
        messages = [message for group in run for message in group.request]
        items = [per_message for group in prepared for per_message in group]
        # The newest checkpoint note goes back at most every NOTE_EVERY_S while
        # busy, and with the last commit before a pause (the parent publishes it).
        now = time.monotonic()
        note = now - self._noted >= NOTE_EVERY_S or (self.groups.empty() and not self._waiting)
        delay = COMMIT_RETRY_MIN_S
        while True:
            try:
                result = commit_batch(self.ledger, messages, items, checkpoint=note)
                if result.checkpoint is not None:
                    self._noted = now
                break
            except TransientError as exc:  # the database, not the input: keep the messages
                log.error("ingest: %s; retrying %d messages in %.2fs", exc, len(messages), delay)
                if self.abandon.wait(delay):
                    return False
                delay = min(COMMIT_RETRY_MAX_S, delay * 2)
        self._reply(run, result)
        return True

    def _reply(self, run: list[_CommitGroup], result: BatchResult) -> None:
        """One reply per group; the append's size and time go with the first."""
        position = 0
        for number, group in enumerate(run):
            mine = result.messages[position : position + len(group.request)]
            position += len(group.request)
            envelopes = sum(len(items) for items in mine)
            if len(run) == 1:
                reply = result
            else:
                reply = BatchResult(
                    mine,
                    envelopes,
                    result.seconds,
                    result.envelopes if number == 0 else 0,
                    result.checkpoint,
                )
            write_frame(self.replies, ("ok", reply))


def _own_pipes() -> tuple[Any, Any]:
    """Take the frames pipes off descriptors 0 and 1 onto ones no child of
    ours inherits (`os.dup` makes them non-inheritable): a spawned child gets
    our 0, 1 and 2, and a prep process or multiprocessing's resource tracker
    holding our stdout would keep the parent from seeing EOF when we die
    (docs/ingest.md, "Process lifecycle"). Our 0 becomes /dev/null and our 1
    stderr, so that a stray print goes to the log, never into the frames."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115 - for the process's life
    sys.stdout = sys.stderr
    return requests, replies


def worker_main() -> int:
    """The commit worker process: `python -m provenance.ingest.worker`."""
    lifeline.hold_from_env()  # the ingest process goes, whatever kills it: so do we
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    requests, replies = _own_pipes()
    try:
        config = read_frame(requests)
    except EOFError:
        return 1  # the parent went before it told us anything
    logging.basicConfig(
        level=config["level"], format="%(asctime)s %(levelname)s worker: %(message)s"
    )
    processes = config.get("prep_processes")
    pool = _PrepPool(processes if processes is not None else os.cpu_count() or 1)
    ledger: Ledger | None = None
    # Whatever ends this function, the prep processes are stopped first: they
    # ignore SIGTERM, so multiprocessing's exit handler (SIGTERM, then join
    # without a deadline) would wait for them for ever while we hold their pipes.
    try:
        try:
            key = load_pem_private_key(config["key"], password=None)
            assert isinstance(key, Ed25519PrivateKey)
            # Prepared envelopes are verified already, the rest (rare) inline; without
            # prep processes the ledger verifies on its threads as usual.
            threads = 1 if pool.processes else None
            ledger = Ledger(Store(config["db"], create=False), key, verify_threads=threads)
            note = latest_checkpoint(ledger)
            pool.start()
        except Exception as exc:  # report it to the parent, which says it to the operator
            with contextlib.suppress(OSError):
                write_frame(replies, ("fatal", str(exc)))
            return 1
        try:
            write_frame(replies, ("ready", note))
        except OSError:
            return 1  # the parent went while we started
        return _serve(ledger, pool, requests, replies)
    finally:
        pool.close()
        if ledger is not None:
            ledger.close()
            ledger.store.close()


def _serve(ledger: Ledger, pool: _PrepPool, requests: Any, replies: Any) -> int:
    """Take groups until told to stop or the parent goes; the writer appends them."""
    writer = _Writer(ledger, pool, replies)
    writer.thread.start()
    while True:
        try:
            request = read_frame(requests)
        except EOFError:
            writer.abandon.set()  # the parent is gone: the broker redelivers the rest
            break
        if request[0] != "commit":
            break
        writer.groups.put(_CommitGroup(request[1], pool))
    writer.groups.put(_STOP)
    while writer.thread.is_alive():
        writer.thread.join(0.5)
    return 1 if writer.failed else 0


if __name__ == "__main__":  # the commit worker process: see WorkerBackend
    sys.exit(worker_main())
