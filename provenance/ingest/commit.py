"""Committing one group of messages: ONE `Ledger.append` for all their
envelopes, the same code on the committer thread or in the worker process.

`commit_batch` decodes each message (or takes what a prep process made of it,
see ingest_prepare), appends everything in one call with each envelope's
topic as its reject source, and reports per message and per envelope what
became of it. A database that refuses is a `TransientError` (retry the whole
group later); a message whose handling raises anything else is rejected
alone as `internal-error`, and the rest of the group is committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from provenance.core.envelope import Envelope, NotAnEnvelope
from provenance.ingest.decode import INTERNAL_ERROR, decode_message, event_time
from provenance.ingest.errors import TransientError
from provenance.ingest.inbox import Message
from provenance.ledger.append import Appended, Ledger
from provenance.store.db import StoreError
from provenance.store.errors import DATABASE_ERRORS

log = logging.getLogger(__name__)

COMMIT_RETRY_MIN_S = 0.05
COMMIT_RETRY_MAX_S = 5.0  # backoff cap while the database refuses writes

# (topic, payload, want_times, may_wait) per message; want_times: also report
# accepted envelopes' own `time` (for latency when the publisher gave no
# sent_at); may_wait: an envelope refused for want of an earlier event is
# `waiting` rather than rejected (the service tries it again; docs/ingest.md).
Request = Sequence[tuple[Any, ...]]

TRANSIENT = (*DATABASE_ERRORS, StoreError, OSError)


class ItemResult(NamedTuple):
    """What became of one envelope (or one whole message that was no envelope)."""

    status: str  # accepted | duplicate | rejected | waiting
    reason: str | None
    message: str | None
    event_id: str | None
    time_us: int | None  # an accepted envelope's time, when asked for (no sent_at)


class BatchResult(NamedTuple):
    messages: list[list[ItemResult]]  # per message, per envelope
    envelopes: int  # in these messages
    seconds: float  # in Ledger.append
    # Envelopes in the Ledger.append that committed them, when it held more
    # than these (the worker merges groups); 0: that append is reported with
    # another group's result. None: the append was exactly these envelopes.
    appended: int | None = None
    checkpoint: str | None = None  # the latest signed checkpoint note after the commit


def commit_batch(
    ledger: Ledger,
    messages: Request,
    prepared: Sequence[list[Any]] | None = None,
    *,
    checkpoint: bool = True,
) -> BatchResult:
    """Decode (topic, payload, want_times, may_wait) messages and append all their
    envelopes in one `Ledger.append`. *prepared*: the items for each message
    when a prep process already decoded them (ingest_prepare). *checkpoint*:
    also read the newest checkpoint note if something was accepted. Raises
    TransientError when the database refuses; a message whose handling raises
    anything else is rejected as `internal-error` and logged, the others are
    committed."""
    decoded = [decode_message(m[1]) for m in messages] if prepared is None else list(prepared)
    items = [item for found in decoded for item in found]
    sources = [m[0] for m, found in zip(messages, decoded, strict=True) for _ in found]
    numbers = [n for n, found in enumerate(decoded) for _ in found]
    waits = [_may_wait(m) for m, found in zip(messages, decoded, strict=True) for _ in found]
    started = time.perf_counter()
    try:
        results = ledger.append(items, sources=sources, messages=numbers, may_wait=waits)
    except TRANSIENT as exc:
        raise TransientError(f"commit failed: {exc}") from exc
    except Exception:
        log.exception("ingest: a group of %d messages failed; committing one by one", len(messages))
        results = []
        for message, found in zip(messages, decoded, strict=True):
            topic, payload, wait = message[0], message[1], _may_wait(message)
            try:
                results.extend(ledger.append(found, source=topic, may_wait=[wait] * len(found)))
            except TRANSIENT as exc:
                raise TransientError(f"commit failed: {exc}") from exc
            except Exception as exc:
                log.exception(
                    "ingest: a message on %s (%d bytes, starting %r) broke the pipeline; "
                    "rejecting it",
                    topic,
                    len(payload),
                    payload[:200],
                )
                results.extend(_internal_reject(ledger, topic, payload, len(found), exc))
    seconds = time.perf_counter() - started
    out: list[list[ItemResult]] = []
    position = 0
    accepted = False
    for (_, _, want_times, *_), found in zip(messages, decoded, strict=True):
        mine = []
        for item, result in zip(found, results[position : position + len(found)], strict=True):
            time_us = None
            if result.status == "accepted":
                accepted = True
                if want_times:
                    time_us = item.time_us if isinstance(item, Envelope) else event_time(item)
            mine.append(
                ItemResult(result.status, result.reason, result.message, result.event_id, time_us)
            )
        out.append(mine)
        position += len(found)
    note = latest_checkpoint(ledger) if accepted and checkpoint else None
    return BatchResult(out, len(items), seconds, checkpoint=note)


def _may_wait(message: tuple[Any, ...]) -> bool:
    """A request of (topic, payload, want_times) never waits."""
    return len(message) > 3 and bool(message[3])


def latest_checkpoint(ledger: Ledger) -> str | None:
    """The newest signed checkpoint note (the ledger signs one at each commit)."""
    try:
        return ledger.store.latest_checkpoint()
    except TRANSIENT as exc:  # committed already: only the note is missing
        log.warning("ingest: cannot read the latest checkpoint: %s", exc)
        return None


def _internal_reject(
    ledger: Ledger, topic: str, payload: bytes, count: int, exc: Exception
) -> list[Appended]:
    """Record a message whose handling raised, so that it is not redelivered
    forever: as a `NotAnEnvelope`, so that the ledger's bounds on stored
    rejects apply to it as to any other refusal."""
    text = f"the ingest service could not process this message ({type(exc).__name__})"
    try:
        ledger.append([NotAnEnvelope(INTERNAL_ERROR, text, payload)], source=topic)
    except Exception:  # the ledger cannot record it either: say so, the count stays
        log.exception("ingest: could not record the reject either")
    return [Appended("rejected", None, None, INTERNAL_ERROR, text) for _ in range(count)]


def request_of(batch: Sequence[Message]) -> list[tuple[str, bytes, bool, bool]]:
    return [(m.topic, m.payload, m.sent_at is None, m.may_wait) for m in batch]
